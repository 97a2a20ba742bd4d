"""Taking exports from the web: the exports page, the download (a POST, recorded in the audit
log before a byte goes out), who may take them, and that a failing export hands out nothing.

The delivery machinery is tested with small exports made here and put into the registry for
the test only; the real exports are tested through it at the end."""
from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select

from dps.exports import REGISTRY, Export, ExportInvalid, Filters, all_exports
from dps.extensions import db
from dps.models import AuditEvent
from tests.applying import make_dps
from tests.conftest import count_queries

MIB = 1024 * 1024
BROKEN_MESSAGE = "releases/3/tender/value/amount: -5 is less than the minimum of 0"


# --- Exports for testing the machinery (imported by test_export_cli too) ------------------------

def rows_export(name: str = "test-rows", rows: int = 3, *, count: bool = True,
                audience: tuple[str, ...] = ("dps_admin", "auditor"), title: str = "Test rows") -> Export:
    """A CSV of ``rows`` rows that says which period it was asked for, so a test can see the
    filters arrived."""

    def write(filters: Filters, out, progress) -> None:
        out.write(b"n,from,to,name\r\n")
        for i in range(rows):
            out.write(f"{i},{filters.start},{filters.end},Brighton & Hove’s Café\r\n".encode())
            progress(1)

    return Export(name=name, title=title, description="Rows made by the test.", extension="csv",
                  media_type="text/csv; charset=utf-8", write=write,
                  count=(lambda filters: rows) if count else None, audience=audience)


def big_payload(size: int, seed: int = 5) -> bytes:
    return random.Random(seed).randbytes(size)


def big_export(name: str, size: int) -> Export:
    """``size`` bytes of noise, written 1 MiB at a time."""
    payload = big_payload(size)

    def write(filters: Filters, out, progress) -> None:
        for at in range(0, size, MIB):
            out.write(payload[at:at + MIB])
            progress(1)

    return Export(name=name, title="Big test export", description="Noise.", extension="json",
                  media_type="application/json", write=write)


def broken_export(name: str = "test-broken") -> Export:
    """Writes some output, then fails its own checks, as an OCDS export failing the schema would."""

    def write(filters: Filters, out, progress) -> None:
        out.write(b'{"releases": [' + b"0" * 100_000)
        raise ExportInvalid(BROKEN_MESSAGE)

    return Export(name=name, title="Broken test export", description="Always fails.", extension="json",
                  media_type="application/json", write=write, count=lambda filters: 1)


@pytest.fixture
def install(monkeypatch) -> Callable[[Export], Export]:
    """Put an export in the registry for this test only (replacing a real one of that name)."""
    all_exports()  # the real modules register theirs first, so they never collide with ours

    def _install(export: Export) -> Export:
        monkeypatch.setitem(REGISTRY, export.name, export)
        return export

    return _install


def taken_events(app) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "export.taken")
                                  .order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        return rows


def period(start: str = "", end: str = "") -> dict:
    """Form data for the period: "1 4 2024" -> the three GOV.UK date boxes."""
    def boxes(value: str) -> list[str]:
        return value.split(" ") if value else ["", "", ""]

    return {"date_from": boxes(start), "date_to": boxes(end)}


def take(browser, name: str, data: dict):
    return browser.submit(f"/team/exports/{name}", data, page="/team/exports")


@pytest.fixture
def fakes(install) -> Iterator[dict]:
    yield {
        "rows": install(rows_export()),
        "admin_only": install(rows_export("test-admin-only", audience=("dps_admin",), title="Team only rows")),
        "broken": install(broken_export()),
    }


# --- The page ----------------------------------------------------------------------------------

def test_the_page_lists_the_exports_of_the_users_role(app, signed_in, fakes):
    team, _ = signed_in("dps_admin")
    auditor, _ = signed_in("auditor")

    page = team.get("/team/exports")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    for export in all_exports():
        if "dps_admin" in export.audience:
            assert export.title in body and f'formaction="/team/exports/{export.name}"' in body, export.name
    assert "Rows made by the test." in body

    body = auditor.get("/team/exports").get_data(as_text=True)
    assert "Test rows" in body
    assert "Team only rows" not in body and "/team/exports/test-admin-only" not in body
    # Looking at the page takes nothing.
    assert taken_events(app) == []


def test_the_page_takes_a_fixed_number_of_queries(app, signed_in, fakes):
    team, _ = signed_in("dps_admin")
    team.get("/team/exports")
    with count_queries(app) as n:
        assert team.get("/team/exports").status_code == 200
    assert n() <= 8, n()


def test_a_quarter_shortcut_fills_in_the_calendar_quarter(app, signed_in, fakes):
    team, _ = signed_in("dps_admin")
    body = team.get("/team/exports").get_data(as_text=True)
    # The clock says 3 June 2024: its quarter and the ones before it are offered.
    assert "/team/exports?quarter=2024-Q2" in body and "/team/exports?quarter=2024-Q1" in body
    assert "quarter=2024-Q3" not in body
    assert "April to June 2024" in body and "financial Q1 2024/25" in body
    assert "January to March 2024" in body and "financial Q4 2023/24" in body

    body = team.get("/team/exports?quarter=2024-Q2").get_data(as_text=True)
    assert _boxes(body, "date_from") == ["01", "04", "2024"]
    assert _boxes(body, "date_to") == ["30", "06", "2024"]
    # Something that is not an offered quarter fills in nothing.
    body = team.get("/team/exports?quarter=2024-Q9").get_data(as_text=True)
    assert _boxes(body, "date_from") == ["", "", ""]


def _boxes(html: str, name: str) -> list[str]:
    found = []
    for part in ("day", "month", "year"):
        match = re.search(rf'<input[^>]*id="{name}-{part}"[^>]*>', html)
        assert match, f"no {name}-{part} box"
        value = re.search(r'value="([^"]*)"', match.group(0))
        found.append(value.group(1) if value else "")
    return found


# --- Taking an export --------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["dps_admin", "auditor"])
def test_the_team_and_auditors_download_an_export_and_it_is_recorded(app, signed_in, fakes, role):
    browser, user = signed_in(role)
    response = take(browser, "test-rows", period("1 4 2024", "30 6 2024"))

    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="ccin-dps-test-rows-2024-04-01_to_2024-06-30.csv"; '
        "filename*=UTF-8''ccin-dps-test-rows-2024-04-01_to_2024-06-30.csv")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body = response.get_data()
    assert body == ("n,from,to,name\r\n" + "".join(
        f"{i},2024-04-01,2024-06-30,Brighton & Hove’s Café\r\n" for i in range(3))).encode()
    assert response.headers["Content-Length"] == str(len(body))

    [event] = taken_events(app)
    assert event.actor_user_id == user["id"] and event.organisation_id == user["organisation_id"]
    assert event.object_type == "export" and event.object_id == "test-rows"
    assert event.data == {"export": "test-rows", "title": "Test rows",
                          "filters": {"from": "2024-04-01", "to": "2024-06-30", "agreement": None},
                          "destination": "download", "bytes": len(body)}


def test_no_dates_means_everything_and_one_day_is_a_period(app, signed_in, fakes):
    team, _ = signed_in("dps_admin")
    response = take(team, "test-rows", period())
    assert response.status_code == 200
    assert "ccin-dps-test-rows-all.csv" in response.headers["Content-Disposition"]
    assert b"0,None,None," in response.get_data()

    # The same day at both ends is the shortest period there is: allowed.
    response = take(team, "test-rows", period("30 6 2024", "30 6 2024"))
    assert response.status_code == 200
    assert b"0,2024-06-30,2024-06-30," in response.get_data()
    assert [e.data["filters"] for e in taken_events(app)] == [
        {"from": None, "to": None, "agreement": None}, {"from": "2024-06-30", "to": "2024-06-30", "agreement": None}]


def test_a_large_download_streams_from_the_finished_file(app, signed_in, install):
    install(big_export("test-big", 3 * MIB + 17))
    team, _ = signed_in("dps_admin")
    response = take(team, "test-big", period())
    assert response.status_code == 200
    assert response.is_streamed  # read from the temporary file in pieces, not held in memory
    body = response.get_data()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(big_payload(3 * MIB + 17)).hexdigest()
    assert taken_events(app)[0].data["bytes"] == 3 * MIB + 17


@pytest.mark.parametrize("start, end, field, message", [
    ("31 2 2024", "", "date_from", "Enter a real date, like 27 6 2024"),
    ("1 4", "", "date_from", "Enter a real date, like 27 6 2024"),
    ("", "1 13 2024", "date_to", "Enter a real date, like 27 6 2024"),
    ("1 7 2024", "30 6 2024", "date_to", "The ‘to’ date must be the same as or after the ‘from’ date"),
    ("", "31 12 9999", "date_to", "To must be a date between 2000 and 2099"),
])
def test_a_period_that_does_not_make_sense_is_sent_back(app, signed_in, fakes, start, end, field, message):
    team, _ = signed_in("dps_admin")
    data = period(start, end)
    if start == "1 4":
        data["date_from"] = ["1", "4", ""]
    response = take(team, "test-rows", data)

    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/html")
    body = response.get_data(as_text=True)
    # A date's link goes to its Day box, which takes the focus (issue 16, item 4).
    assert f'href="#{field}-day"' in body and f'id="{field}-day"' in body, "the error summary links to the field"
    assert f'id="{field}-error"' in body and message in body
    # What was typed is still there.
    typed = data[field]
    assert _boxes(body, field) == list(typed)
    assert taken_events(app) == []


def test_an_export_that_fails_its_checks_hands_out_nothing_and_is_not_recorded(app, signed_in, fakes):
    team, _ = signed_in("dps_admin")
    response = take(team, "test-broken", period("1 4 2024", "30 6 2024"))

    # 500: the request was sound, the service's own data or code is at fault.
    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Content-Disposition" not in response.headers
    body = response.get_data(as_text=True)
    assert "The export could not be produced" in body
    assert f"Broken test export: {BROKEN_MESSAGE}" in body
    assert 'href="#export-test-broken"' in body and 'id="export-test-broken"' in body
    assert _boxes(body, "date_from") == ["1", "4", "2024"], "the period typed is kept"
    assert "0000000000" not in body
    assert taken_events(app) == []

    # The page still works afterwards and the next export is recorded normally.
    assert take(team, "test-rows", period()).status_code == 200
    assert len(taken_events(app)) == 1


# --- Who may --------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["supplier", "buyer"])
def test_suppliers_and_buyers_cannot_see_or_take_exports(app, signed_in, fakes, role):
    browser, _ = signed_in(role)
    assert browser.get("/team/exports").status_code == 403
    # A valid CSRF token (from the sign-out form on every page) changes nothing: the role is refused.
    token = browser.csrf_token("/account")
    response = browser.post("/team/exports/test-rows", data={"csrf_token": token, **period()})
    assert response.status_code == 403
    assert b"Brighton" not in response.get_data()
    assert taken_events(app) == []


def test_people_not_signed_in_are_sent_to_sign_in(app, client, fakes):
    response = client.get("/team/exports")
    assert response.status_code == 302 and response.headers["Location"].startswith("/sign-in")
    token = client.csrf_token("/sign-in")
    response = client.post("/team/exports/test-rows", data={"csrf_token": token, **period()})
    assert response.status_code == 302 and response.headers["Location"].startswith("/sign-in")
    assert taken_events(app) == []


def test_an_export_outside_ones_role_or_unknown_is_not_found(app, signed_in, fakes):
    auditor, _ = signed_in("auditor")
    assert take(auditor, "test-admin-only", period()).status_code == 404
    assert take(auditor, "no-such-export", period()).status_code == 404
    team, _ = signed_in("dps_admin")
    assert take(team, "no-such-export", period()).status_code == 404
    assert take(team, "test-admin-only", period()).status_code == 200
    assert [e.object_id for e in taken_events(app)] == ["test-admin-only"]


def test_taking_an_export_needs_a_post_with_the_csrf_token(app, signed_in, fakes):
    team, _ = signed_in("dps_admin")
    # A link (GET) cannot take an export: it would change state (the audit log) on a GET.
    response = team.get("/team/exports/test-rows")
    assert response.status_code == 405
    assert b"Brighton" not in response.get_data()
    # A POST without the token (another site's form) is refused.
    response = team.post("/team/exports/test-rows", data=period())
    assert response.status_code == 400
    assert b"Brighton" not in response.get_data()
    response = team.post("/team/exports/test-rows", data={"csrf_token": "forged", **period()})
    assert response.status_code == 400
    assert taken_events(app) == []


# --- The real exports, through the same machinery --------------------------------------------------

def test_every_registered_export_can_be_taken_by_the_team(app, signed_in):
    make_dps(app)  # the DPS itself: OCDS has its tender release to hand out
    team, user = signed_in("dps_admin")
    exports = [e for e in all_exports() if "dps_admin" in e.audience]
    assert {"ocds", "records", "transparency-tenders", "transparency-contracts", "contracts", "contracts-finder",
            "award-notices", "audit", "xlsx"} <= {e.name for e in exports}
    for export in exports:
        response = take(team, export.name, period("1 4 2020", "31 3 2025"))
        assert response.status_code == 200, (export.name, response.get_data(as_text=True)[:3000])
        assert response.headers["Content-Type"] == export.media_type, export.name
        assert f'filename="ccin-dps-{export.name}-2020-04-01_to_2025-03-31.{export.extension}"' in \
            response.headers["Content-Disposition"]
        body = response.get_data()
        assert len(body) == int(response.headers["Content-Length"]) > 0, export.name
        if export.extension == "xlsx":
            assert body[:2] == b"PK", "an XLSX file is a zip"
        if export.extension == "json":
            assert json.loads(body)["publisher"], export.name
    assert [e.object_id for e in taken_events(app)] == [e.name for e in exports]
    assert all(e.actor_user_id == user["id"] for e in taken_events(app))


def test_an_ocds_export_with_nothing_in_it_says_so_next_to_the_period_and_is_not_taken(app, signed_in):
    make_dps(app)
    auditor, _ = signed_in("auditor")
    # A release package must hold at least one release (the OCDS schema's minItems): a period
    # before the DPS began has none. Not a fault of the service: the person chooses another period.
    response = take(auditor, "ocds", period("1 1 2019", "31 12 2019"))
    assert response.status_code == 400
    assert "Content-Disposition" not in response.headers
    body = response.get_data(as_text=True)
    assert "The export could not be produced" not in body
    error = re.search(r'id="date_from-error"[^>]*>(.*?)</p>', body, re.S)
    assert error and "There are no OCDS releases in this period: choose another period" in error.group(1)
    assert 'value="2019"' in body, "what was typed is kept"
    assert taken_events(app) == []


def test_the_audit_export_shows_who_took_exports_before(app, signed_in):
    import csv
    import io

    auditor, user = signed_in("auditor")
    assert take(auditor, "contracts", period("1 4 2024", "30 6 2024")).status_code == 200
    response = take(auditor, "audit", period("3 6 2024", "3 6 2024"))
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.get_data().decode("utf-8-sig"))))
    header, body = rows[0], rows[1:]
    taken = [dict(zip(header, row)) for row in body if "export.taken" in row]
    # The audit export is written before its own event is recorded: it lists the one before it.
    assert len(taken) == 1, taken
    [row] = taken
    assert user["email"] in row.values()
    assert any('"export": "contracts"' in value and '"from": "2024-04-01"' in value for value in row.values()), row
    assert [e.object_id for e in taken_events(app)] == ["contracts", "audit"]


# --- The temporary file ---------------------------------------------------------------------------

def test_a_failing_export_leaves_no_temporary_file_open(app):
    from dps.exports.deliver import produce

    seen = []

    def write(filters, out, progress):
        seen.append(out)
        out.write(b"half an export")
        raise RuntimeError("the database went away")

    export = Export(name="t", title="T", description="", extension="csv", media_type="text/csv", write=write)
    with app.app_context(), pytest.raises(RuntimeError, match="the database went away"):
        produce(export, Filters())
    assert seen and seen[0].closed


def test_the_download_closes_its_file_when_the_response_closes_even_half_read(app):
    from dps.exports.deliver import CHUNK_SIZE, produce, response

    export = big_export("test-big", 5 * CHUNK_SIZE)
    with app.test_request_context():
        tmp = produce(export, Filters())
        served = response(export, Filters(), tmp)
        first = next(iter(served.response))
        assert len(first) == CHUNK_SIZE, "served in 64 KiB pieces"
        assert not tmp.closed
        served.close()  # what the WSGI server does when the browser goes away
        assert tmp.closed


def test_on_sqlite_a_running_export_leaves_writers_free(app, is_postgres):
    """SQLite transactions begin with BEGIN IMMEDIATE (the write lock); an export's must not, or
    a long export would stop every write on the site until it ended."""
    if is_postgres:
        pytest.skip("PostgreSQL readers never block writers")
    import sqlite3

    from sqlalchemy.engine import make_url

    from dps.exports.deliver import produce

    path = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database
    writes = []

    def write(filters, out, progress):
        db.session.execute(select(AuditEvent.id)).all()  # the export is reading
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # raises "database is locked" if the export held the lock
            writes.append(True)
            other.execute("ROLLBACK")
        finally:
            other.close()
        out.write(b"done")

    export = Export(name="t", title="T", description="", extension="csv", media_type="text/csv", write=write)
    with app.app_context():
        db.session.execute(select(AuditEvent.id)).all()  # a transaction already open, as in a request
        produce(export, Filters()).close()
    assert writes == [True]
