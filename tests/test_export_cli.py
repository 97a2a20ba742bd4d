"""`flask --app dps export ...`: the period options, a file written atomically, S3 uploads
(multipart above 8 MiB) against moto's server over real HTTP, and that every failure exits
non-zero with the reason, leaving no file, no object and no audit event behind."""
from __future__ import annotations

import errno
import hashlib
import os
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from dps.exports import deliver, tables
from dps.extensions import db
from tests.conftest import AWS_TEST_SECRET, DEFAULT_NOW, count_queries, make_app, set_clock
from tests.test_export_delivery import (
    BROKEN_MESSAGE,
    MIB,
    big_export,
    big_payload,
    broken_export,
    install,  # noqa: F401  (a fixture)
    rows_export,
    taken_events,
)
from tests.test_exports_tables import Records, read_csv, read_xlsx


def run(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def expected_rows(start: str, end: str, rows: int = 3) -> bytes:
    return ("n,from,to,name\r\n" + "".join(
        f"{i},{start},{end},Brighton & Hove’s Café\r\n" for i in range(rows))).encode()


@pytest.fixture
def out_dir(tmp_path) -> Path:
    """A folder of its own (tmp_path also holds the test's SQLite database)."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# --- The period ---------------------------------------------------------------------------------

def test_a_file_is_written_and_the_export_recorded_as_taken_by_the_command_line(app, install, out_dir):
    install(rows_export("audit"))
    out = out_dir / "audit.csv"
    result = run(app, "export", "audit", "--from", "2024-04-01", "--to", "2024-06-30", "--out", str(out))

    assert result.exit_code == 0, result.output
    assert out.read_bytes() == expected_rows("2024-04-01", "2024-06-30")
    size = out.stat().st_size
    assert f"({size:,} bytes) to {out}" in result.stdout
    assert result.stderr == ""  # not a terminal: no progress bar
    [event] = taken_events(app)
    assert event.actor_user_id is None and event.actor_label == "command line"
    assert event.object_id == "audit"
    assert event.data == {"export": "audit", "title": "Test rows",
                          "filters": {"from": "2024-04-01", "to": "2024-06-30", "agreement": None},
                          "destination": "file", "bytes": size, "path": str(out)}
    # Only the file: no temporary file left beside it.
    assert os.listdir(out_dir) == ["audit.csv"]


@pytest.mark.parametrize("quarter, start, end", [
    ("2024-Q1", "2024-01-01", "2024-03-31"),
    ("2024-Q2", "2024-04-01", "2024-06-30"),  # financial Q1 of 2024/25
    ("2023-q4", "2023-10-01", "2023-12-31"),
    ("2024-Q3", "2024-07-01", "2024-09-30"),
])
def test_a_quarter_is_the_calendar_quarter(app, install, out_dir, quarter, start, end):
    install(rows_export("contracts"))
    out = out_dir / "contracts.csv"
    result = run(app, "export", "contracts", "--quarter", quarter, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == expected_rows(start, end)
    assert taken_events(app)[0].data["filters"] == {"from": start, "to": end, "agreement": None}


def test_the_help_explains_calendar_and_financial_quarters(app):
    result = run(app, "export", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # click wraps lines to the terminal's width
    assert "April to June is Q1 of the financial year but calendar Q2, so 2024-Q2" in text
    choices = text.split("{")[1].split("}")[0].replace("- ", "-").split("|")
    assert choices == ["ocds", "records", "transparency", "contracts", "contracts-finder", "award-notices",
                       "audit", "xlsx"]


def test_open_ended_and_single_day_periods(app, install, out_dir):
    install(rows_export("audit"))
    out = out_dir / "a.csv"
    assert run(app, "export", "audit", "--out", str(out)).exit_code == 0
    assert out.read_bytes() == expected_rows("None", "None")
    assert run(app, "export", "audit", "--from", "2024-06-30", "--to", "2024-06-30", "--out", str(out)).exit_code == 0
    assert out.read_bytes() == expected_rows("2024-06-30", "2024-06-30")
    assert run(app, "export", "audit", "--from", "2024-06-30", "--out", str(out)).exit_code == 0
    assert out.read_bytes() == expected_rows("2024-06-30", "None")
    assert len(taken_events(app)) == 3


@pytest.mark.parametrize("args, message", [
    (["--from", "2024-02-30"], "'2024-02-30' is not a real date"),
    (["--to", "30/06/2024"], "'30/06/2024' is not a real date"),
    (["--from", "2024-07-01", "--to", "2024-06-30"], "2024-06-30 is before --from 2024-07-01"),
    (["--to", "9999-12-31"], "9999-12-31 is outside 2000 to 2099"),
    (["--quarter", "2024-Q5"], "'2024-Q5' is not a quarter"),
    (["--quarter", "2024-Q2", "--from", "2024-04-01"], "Give --quarter or --from/--to, not both"),
])
def test_a_period_that_does_not_make_sense_is_refused(app, install, out_dir, args, message):
    install(rows_export("audit"))
    out = out_dir / "audit.csv"
    result = run(app, "export", "audit", *args, "--out", str(out))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not out.exists()
    assert taken_events(app) == []


def test_transparency_needs_a_report_and_maps_it_to_the_registry(app, install, out_dir):
    install(rows_export("transparency-tenders", title="Tenders"))
    install(rows_export("transparency-contracts", rows=1, title="Contracts"))
    out = out_dir / "t.csv"

    result = run(app, "export", "transparency", "--quarter", "2024-Q2", "--out", str(out))
    assert result.exit_code == 2 and "transparency needs --report tenders or --report contracts" in result.stderr
    assert not out.exists()

    assert run(app, "export", "transparency", "--report", "tenders", "--quarter", "2024-Q2", "--out", str(out)).exit_code == 0
    assert out.read_bytes() == expected_rows("2024-04-01", "2024-06-30", rows=3)
    assert run(app, "export", "transparency", "--report", "contracts", "--quarter", "2024-Q2", "--out", str(out)).exit_code == 0
    assert out.read_bytes() == expected_rows("2024-04-01", "2024-06-30", rows=1)
    assert [e.object_id for e in taken_events(app)] == ["transparency-tenders", "transparency-contracts"]

    result = run(app, "export", "audit", "--report", "tenders", "--out", str(out))
    assert result.exit_code == 2 and "--report is only for the transparency export" in result.stderr


def test_an_unknown_kind_is_refused(app, out_dir):
    result = run(app, "export", "everything", "--out", str(out_dir / "x"))
    assert result.exit_code == 2 and "everything" in result.stderr


# --- Progress -------------------------------------------------------------------------------------

def test_progress_shows_only_when_asked_or_on_a_terminal(app, install, out_dir):
    install(rows_export("audit", rows=5))
    out = out_dir / "audit.csv"
    quiet = run(app, "export", "audit", "--out", str(out))
    assert quiet.exit_code == 0 and quiet.stderr == ""
    shown = run(app, "export", "audit", "--progress", "--out", str(out))
    assert shown.exit_code == 0 and "Test rows" in shown.stderr  # click shows the label when not a tty

    # An export that cannot count its rows in advance shows a running count instead.
    install(rows_export("contracts", rows=4, count=False, title="Uncounted"))
    counted = run(app, "export", "contracts", "--progress", "--out", str(out))
    assert counted.exit_code == 0 and counted.stderr.rstrip().endswith("Uncounted: 4 written")


# --- Queries ---------------------------------------------------------------------------------------

TABLE_EXPORTS = [("transparency", "--report", "tenders"), ("transparency", "--report", "contracts"), ("contracts",),
                 ("contracts-finder",), ("award-notices",), ("audit",), ("xlsx",)]


def test_each_table_export_takes_the_same_queries_for_few_rows_as_for_many(app, factory, out_dir, monkeypatch):
    records = Records(app, factory)
    # Two rows a fetch: each export's rows come in several fetches at either size, so a query
    # made per row or per batch would show.
    monkeypatch.setattr(tables, "YIELD_PER", 2)

    def add_call_offs(count: int) -> None:
        for i in range(count):  # over £30,000: in every report, Contracts Finder's too
            records.call_off(created=f"2024-02-{1 + i % 28:02d}T10:00", value_pence=31_000_00 + i,
                             supplier=f"Supplier {i % 4}")

    def take_each() -> tuple[dict[str, int], dict[str, int]]:
        queries, rows = {}, {}
        for kind in TABLE_EXPORTS:
            name = " ".join(kind)
            out = out_dir / ("book.xlsx" if kind == ("xlsx",) else "table.csv")
            with count_queries(app) as n:
                result = run(app, "export", *kind, "--out", str(out))
            assert result.exit_code == 0, (name, result.output)
            queries[name] = n()
            data = out.read_bytes()
            rows[name] = (sum(len(sheet) - 1 for sheet in read_xlsx(data).values()) if kind == ("xlsx",)
                          else len(read_csv(data)))
        return queries, rows

    add_call_offs(3)
    few, few_rows = take_each()
    add_call_offs(12)
    many, many_rows = take_each()
    assert all(many_rows[name] > few_rows[name] > 0 for name in few_rows), (few_rows, many_rows)
    assert many == few


# --- Failures with a local file --------------------------------------------------------------------

def test_an_export_that_fails_its_checks_writes_nothing_and_keeps_the_old_file(app, install, out_dir):
    install(broken_export("ocds"))
    out = out_dir / "ocds.json"
    out.write_bytes(b"last quarter's export")
    result = run(app, "export", "ocds", "--out", str(out))
    assert result.exit_code == 1
    assert f"The ocds export failed its checks; nothing was written. {BROKEN_MESSAGE}" in result.stderr
    assert out.read_bytes() == b"last quarter's export"
    assert os.listdir(out_dir) == ["ocds.json"]
    assert taken_events(app) == []


def test_a_disk_that_fills_up_leaves_no_file_and_no_event(app, install, out_dir, monkeypatch):
    install(big_export("xlsx", 2 * MIB))
    out = out_dir / "book.xlsx"

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(deliver.os, "fsync", full)
    result = run(app, "export", "xlsx", "--out", str(out))
    assert result.exit_code == 1
    assert f"Could not write {out}: No space left on device" in result.stderr
    assert os.listdir(out_dir) == [], "neither the file nor its temporary part"
    assert taken_events(app) == []


def test_an_out_path_that_cannot_be_written_is_refused_before_the_export_runs(app, install, out_dir):
    install(rows_export("audit"))
    result = run(app, "export", "audit", "--out", str(out_dir / "missing" / "audit.csv"))
    assert result.exit_code == 2 and "does not exist" in result.stderr
    result = run(app, "export", "audit", "--out", str(out_dir))
    assert result.exit_code == 2 and "is a folder" in result.stderr
    assert taken_events(app) == []


# --- S3 ---------------------------------------------------------------------------------------------

@pytest.fixture
def s3_app(database_url, aws_env, moto_endpoint):
    application = make_app(database_url, DPS_S3_ENDPOINT_URL=moto_endpoint)
    set_clock(application, DEFAULT_NOW)
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def s3(aws_env, moto_endpoint):
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-west-2")


@pytest.fixture
def bucket(s3) -> str:
    name = f"exports-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    return name


def no_object_and_no_upload(s3, bucket: str, key: str) -> None:
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key=key)
    assert missing.value.response["Error"]["Code"] in ("404", "NoSuchKey")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == [], "an unfinished upload was left behind"


def test_a_small_export_goes_to_s3_in_one_put(s3_app, install, s3, bucket):
    install(rows_export("audit"))
    key = "exports/2024/audit q2.csv"
    result = run(s3_app, "export", "audit", "--quarter", "2024-Q2", "--out", f"s3://{bucket}/{key}")

    assert result.exit_code == 0, result.output
    assert f"to s3://{bucket}/{key}" in result.stdout
    stored = s3.get_object(Bucket=bucket, Key=key)
    assert stored["Body"].read() == expected_rows("2024-04-01", "2024-06-30")
    assert stored["ContentType"] == "text/csv; charset=utf-8"
    assert "-" not in stored["ETag"], "a single PUT, not a multipart upload"
    [event] = taken_events(s3_app)
    assert event.actor_label == "command line"
    assert event.data["destination"] == f"s3://{bucket}/{key}"
    assert event.data["bytes"] == len(expected_rows("2024-04-01", "2024-06-30"))
    assert "path" not in event.data


def test_a_large_export_goes_to_s3_in_8_mib_parts(s3_app, install, s3, bucket):
    size = 20 * MIB + 123
    install(big_export("ocds", size))
    result = run(s3_app, "export", "ocds", "--out", f"s3://{bucket}/ocds.json")
    assert result.exit_code == 0, result.output

    payload = big_payload(size)
    stored = s3.get_object(Bucket=bucket, Key="ocds.json")
    assert hashlib.sha256(stored["Body"].read()).hexdigest() == hashlib.sha256(payload).hexdigest()
    assert stored["ContentType"] == "application/json"
    # A multipart object's ETag is the MD5 of its parts' MD5s, then the number of parts: this
    # pins the part boundaries at 8 MiB, 8 MiB and the rest.
    parts = [payload[i:i + deliver.PART_SIZE] for i in range(0, size, deliver.PART_SIZE)]
    assert [len(p) for p in parts] == [8 * MIB, 8 * MIB, 4 * MIB + 123]
    expected_etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + "-3"
    assert stored["ETag"].strip('"') == expected_etag
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert taken_events(s3_app)[0].data["bytes"] == size


def test_an_upload_failing_mid_way_leaves_no_object_and_no_parts(s3_app, install, s3, bucket, monkeypatch):
    install(big_export("ocds", 20 * MIB))
    sent_parts: list[str] = []
    real_client = deliver.s3_client

    def client_losing_part_2(name: str):
        client = real_client(name)

        def before_send(request, **_kwargs):
            sent_parts.append(request.url)
            if "partNumber=2" in request.url:
                raise ConnectionClosedError(endpoint_url=request.url.split("?")[0])

        client.meta.events.register("before-send.s3.UploadPart", before_send)
        return client

    monkeypatch.setattr(deliver, "s3_client", client_losing_part_2)
    result = run(s3_app, "export", "ocds", "--out", f"s3://{bucket}/ocds.json")

    assert result.exit_code == 1
    assert len(sent_parts) == 2, "part 1 went, part 2 failed, nothing after"
    assert f"Upload to s3://{bucket}/ocds.json failed: ConnectionClosedError: Connection was closed" in result.stderr
    no_object_and_no_upload(s3, bucket, "ocds.json")
    assert taken_events(s3_app) == []
    assert AWS_TEST_SECRET not in result.output


def test_a_missing_bucket_is_named(s3_app, install):
    install(rows_export("audit"))
    result = run(s3_app, "export", "audit", "--out", "s3://no-such-bucket-here/audit.csv")
    assert result.exit_code == 1
    assert "Upload to s3://no-such-bucket-here/audit.csv failed: NoSuchBucket:" in result.stderr
    assert taken_events(s3_app) == []

    install(big_export("xlsx", 9 * MIB))  # multipart: refused at the first call
    result = run(s3_app, "export", "xlsx", "--out", "s3://no-such-bucket-here/book.xlsx")
    assert result.exit_code == 1 and "NoSuchBucket" in result.stderr
    assert taken_events(s3_app) == []


def test_an_unreachable_endpoint_is_named(database_url, aws_env, install):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = make_app(database_url, DPS_S3_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    set_clock(app, DEFAULT_NOW)
    install(rows_export("audit"))
    result = run(app, "export", "audit", "--out", "s3://bucket/audit.csv")
    assert result.exit_code == 1
    assert "Upload to s3://bucket/audit.csv failed: EndpointConnectionError" in result.stderr
    assert taken_events(app) == []
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("url", ["s3://bucket-only", "s3://bucket/", "s3:///key.csv", "s3://b/folder/"])
def test_an_s3_address_without_a_key_is_refused(app, install, url):
    install(rows_export("audit"))
    result = run(app, "export", "audit", "--out", url)
    assert result.exit_code == 2 and "is not an S3 object address" in result.stderr
    assert taken_events(app) == []


def test_an_export_failing_its_checks_uploads_nothing(s3_app, install, s3, bucket):
    install(broken_export("records"))
    result = run(s3_app, "export", "records", "--out", f"s3://{bucket}/records.json")
    assert result.exit_code == 1 and BROKEN_MESSAGE in result.stderr
    no_object_and_no_upload(s3, bucket, "records.json")
    assert taken_events(s3_app) == []


def test_an_s3_address_carrying_credentials_is_refused_without_repeating_them(app, install):
    install(rows_export("audit"))
    result = run(app, "export", "audit", "--out", "s3://AKIAEXAMPLE:s3cr3t-value@bucket/audit.csv")
    assert result.exit_code == 2 and "must not carry credentials" in result.stderr
    assert "s3cr3t-value" not in result.output and "AKIAEXAMPLE" not in result.output
    assert taken_events(app) == []
