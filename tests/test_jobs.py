"""Background jobs with a real worker and a real queue: huey's SQLite queue on SQLite, procrastinate
on PostgreSQL (whichever database the suite runs on). No queue, worker or SMTP server is mocked.

Workers run in burst mode (every job that is due, then stop) in the test's thread, or in a
thread the test starts and waits for through events: nothing here depends on how long anything
takes."""
from __future__ import annotations

import json
import re
import threading
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from dps import jobs, mail
from dps.config import ConfigError, load
from dps.exports import Export, Filters, get
from dps.exports import deliver
from dps.extensions import db
from dps.models import AuditEvent, ExportJob
from tests.applying import make_dps
from tests.conftest import make_app, outbox
from tests.test_export_delivery import BROKEN_MESSAGE, broken_export, install, period  # noqa: F401 (install: a fixture)
from tests.test_mail import free_port

# Every test of this module waits for a worker thread through events, never for a time; this
# bound only stops a broken test from hanging the suite.
STUCK = 60


def run_jobs(app) -> None:
    """A real worker, in burst mode: it runs every job that is due, then returns."""
    jobs.queue_of(app).run_worker(burst=True)


def job_events(app) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.object_type == "export_job")
                                  .order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        return rows


def export_jobs(app) -> list[ExportJob]:
    with app.app_context():
        rows = db.session.scalars(select(ExportJob).order_by(ExportJob.id)).all()
        db.session.expunge_all()
        return rows


def ask(browser, name: str, data: dict):
    return browser.submit(f"/team/exports/{name}", data, page="/team/exports")


def your_exports(browser) -> str:
    """The "Your exports" table of the Exports page, as its person sees it."""
    body = browser.get("/team/exports").get_data(as_text=True)
    found = re.search(r'<h2 class="govuk-heading-m" id="your-exports">.*?</table>', body, re.S)
    return found.group(0) if found else ""


@pytest.fixture
def in_background(monkeypatch):
    """National scale, as far as the page can tell: every export, even an empty one, is too
    large for a request."""
    monkeypatch.setattr(deliver, "IN_REQUEST_ROWS", -1)
    monkeypatch.setattr(deliver, "IN_REQUEST_PROCESSES", -1)


# --- An OCDS export prepared in the background ------------------------------------------------------

def test_the_team_asks_for_an_ocds_export_and_a_worker_prepares_it_for_them_alone(app, signed_in, in_background):
    make_dps(app)
    team, user = signed_in("dps_admin")
    colleague, _ = signed_in("dps_admin")

    response = ask(team, "ocds", period("1 4 2020", "31 3 2025"))
    assert response.status_code == 303
    [job] = export_jobs(app)
    assert response.headers["Location"].endswith(f"/team/exports#export-job-{job.id}")
    assert "Content-Disposition" not in response.headers, "nothing is downloaded in the request"
    page = team.get("/team/exports").get_data(as_text=True)
    assert "OCDS release package is too large to download at once, so it is being prepared" in page
    table = your_exports(team)
    assert "OCDS release package" in table and "1 April 2020 to 31 March 2025" in table
    assert "Waiting" in table and "Refresh to see how far they have got" in page
    status = team.get(f"/team/exports/jobs/{job.id}").get_json()
    assert status["state"] == "queued" and f'id="export-job-{job.id}"' in status["html"]
    assert "Download" not in table

    run_jobs(app)

    table = your_exports(team)
    assert "Ready" in table and "Only you can download it" in table
    assert f'action="/team/exports/jobs/{job.id}/download"' in table
    assert team.get(f"/team/exports/jobs/{job.id}").get_json()["state"] == "done"
    assert "Refresh to see" not in team.get("/team/exports").get_data(as_text=True)

    download = team.submit(f"/team/exports/jobs/{job.id}/download", page="/team/exports")
    assert download.status_code == 200
    assert 'filename="ccin-dps-ocds-2020-04-01_to_2025-03-31.json"' in download.headers["Content-Disposition"]
    package = json.loads(download.get_data())
    with app.test_request_context():
        with deliver.produce(get("ocds"), Filters(*period_days())) as direct:
            assert package == json.loads(direct.read()), "the file kept is the export itself"
    assert package["releases"] and all(r["ocid"].startswith("ocds-ccindps-") for r in package["releases"])

    [done] = export_jobs(app)
    assert done.state == "done" and done.file_size == len(download.get_data()) and len(done.file_sha256) == 64
    # The bar counted the contracting processes: the DPS and each competition with a release.
    ocids = {release["ocid"] for release in package["releases"]}
    assert done.rows_total == done.rows_done == len(ocids)
    assert [(e.action, e.actor_user_id) for e in job_events(app)] == [
        ("export_job.requested", user["id"]), ("export_job.started", None), ("export_job.done", None)]
    assert job_events(app)[1].actor_label == "background job"
    with app.app_context():
        taken = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "export.taken")).all()
        assert [(t.actor_user_id, t.data["job"], t.data["bytes"]) for t in taken] == [
            (user["id"], job.id, done.file_size)]

    # Another member of the team neither sees it nor downloads it.
    assert colleague.get(f"/team/exports/jobs/{job.id}").status_code == 404
    assert colleague.submit(f"/team/exports/jobs/{job.id}/download", page="/team/exports").status_code == 404
    assert "export-job-" not in colleague.get("/team/exports").get_data(as_text=True)


def period_days():
    from datetime import date

    return date(2020, 4, 1), date(2025, 3, 31)


def test_auditors_ask_for_exports_too_and_a_download_needs_the_form(app, signed_in, in_background):
    auditor, user = signed_in("auditor")
    assert ask(auditor, "contracts", period("1 4 2024", "30 6 2024")).status_code == 303
    [job] = export_jobs(app)
    assert job.requested_by_id == user["id"] and job.rows_total is None  # counted when it starts
    run_jobs(app)
    [job] = export_jobs(app)
    assert job.state == "done" and job.rows_total == 0 and job.rows_done == 0
    assert auditor.get(f"/team/exports/jobs/{job.id}/download").status_code == 405, "no download on GET"
    assert auditor.post(f"/team/exports/jobs/{job.id}/download").status_code == 400, "the CSRF token is needed"
    download = auditor.submit(f"/team/exports/jobs/{job.id}/download", page="/team/exports")
    assert download.status_code == 200 and download.get_data().decode("utf-8-sig").startswith("Agreement,")


def test_a_small_export_still_downloads_at_once(app, signed_in):
    team, _ = signed_in("dps_admin")
    response = ask(team, "contracts", period("1 4 2024", "30 6 2024"))
    assert response.status_code == 200 and "Content-Disposition" in response.headers
    assert export_jobs(app) == []


# --- Progress, as the worker goes ------------------------------------------------------------------

def paused_export(name: str, rows: int, pause_after: int, reached: threading.Event, resume: threading.Event) -> Export:
    """A CSV of ``rows`` rows that stops after ``pause_after`` of them until the test says go on."""

    def write(filters: Filters, out, progress) -> None:
        out.write(b"n\r\n")
        for n in range(rows):
            if n == pause_after:
                reached.set()
                assert resume.wait(STUCK), "the test never let the export go on"
            out.write(f"{n}\r\n".encode())
            progress(1)

    return Export(name=name, title="Paused rows", description="Rows, with a pause.", extension="csv",
                  media_type="text/csv; charset=utf-8", write=write, count=lambda filters: rows)


def test_the_page_shows_the_progress_of_a_running_export(app, signed_in, install, in_background):
    reached, resume = threading.Event(), threading.Event()
    install(paused_export("test-paused", rows=8, pause_after=6, reached=reached, resume=resume))
    team, _ = signed_in("dps_admin")
    assert ask(team, "test-paused", period()).status_code == 303
    [job] = export_jobs(app)

    failures = []

    def work():
        try:
            run_jobs(app)
        except BaseException as exc:  # seen by the test, not lost in the thread
            failures.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert reached.wait(STUCK), "the worker never started the export"
        table = your_exports(team)
        assert "Being prepared" in table
        assert f'<progress id="export-job-{job.id}-progress" class="app-progress" max="100" value="75">75%</progress>' in table
        assert "75% done: 6 of 8 rows" in table
        status = team.get(f"/team/exports/jobs/{job.id}").get_json()
        assert (status["state"], status["rows_done"], status["rows_total"], status["percent"]) == ("running", 6, 8, 75)
        assert "75% done" in status["html"]
    finally:
        resume.set()
        worker.join(STUCK)
    assert not worker.is_alive() and failures == []
    table = your_exports(team)
    assert "Ready" in table
    download = team.submit(f"/team/exports/jobs/{job.id}/download", page="/team/exports")
    assert download.get_data() == b"n\r\n" + b"".join(f"{n}\r\n".encode() for n in range(8))
    assert export_jobs(app)[0].rows_done == 8


# --- Failures -----------------------------------------------------------------------------------

def test_an_export_that_fails_its_checks_says_so_and_is_logged(app, signed_in, install, in_background, caplog,
                                                             monkeypatch):
    # Alembic's logging set-up (the test database's migrations) disabled the loggers there were.
    monkeypatch.setattr(app.logger, "disabled", False)
    install(broken_export())
    team, _ = signed_in("dps_admin")
    ask(team, "test-broken", period())
    run_jobs(app)
    [job] = export_jobs(app)
    assert job.state == "failed" and job.file_key is None
    table = your_exports(team)
    assert "Failed" in table and "The export failed its own checks, so no file was kept" in table
    assert BROKEN_MESSAGE in table
    assert "Download" not in table
    assert any(BROKEN_MESSAGE in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    assert [e.action for e in job_events(app)] == ["export_job.requested", "export_job.started", "export_job.failed"]
    assert job_events(app)[-1].data["error"] == job.error
    assert team.submit(f"/team/exports/jobs/{job.id}/download", page="/team/exports").status_code == 404


def test_an_ocds_export_with_nothing_in_the_period_fails_in_plain_words(app, signed_in, in_background):
    make_dps(app)
    team, _ = signed_in("dps_admin")
    ask(team, "ocds", period("1 1 2019", "31 12 2019"))
    run_jobs(app)
    [job] = export_jobs(app)
    assert job.error == "There are no OCDS releases in this period: choose another period."
    assert job.error in your_exports(team)


def test_a_job_runs_once_however_often_a_worker_is_handed_it(app, signed_in, install, in_background):
    from tests.test_export_delivery import rows_export

    install(rows_export())
    team, _ = signed_in("dps_admin")
    ask(team, "test-rows", period())
    run_jobs(app)
    [job] = export_jobs(app)
    with app.app_context():
        deliver.prepare(job_id=job.id)  # a second delivery of the same job
    assert export_jobs(app)[0].file_key == job.file_key
    assert [e.action for e in job_events(app)].count("export_job.done") == 1


def test_the_lifecycle_refuses_moves_it_does_not_have():
    from datetime import datetime, timezone

    from dps.models.jobs import IllegalTransition

    now = datetime(2024, 6, 3, 8, tzinfo=timezone.utc)
    job = ExportJob(export="ocds", requested_at=now, rows_done=0)
    assert job.state == "queued" and job.percent is None
    with pytest.raises(IllegalTransition):
        job.finish(now, rows_done=1, file_key="k", file_size=1, file_sha256="0" * 64)
    job.start(now, rows_total=200)
    job.rows_done = 50
    assert job.state == "running" and job.percent == 25
    job.finish(now, rows_done=200, file_key="k", file_size=1, file_sha256="0" * 64)
    assert job.state == "done" and job.percent == 100
    with pytest.raises(IllegalTransition):
        job.fail(now, "too late")
    with pytest.raises(IllegalTransition):
        job.start(now, rows_total=1)


# --- The outbox, sent by the worker -------------------------------------------------------------------

class Greylisting:
    """An SMTP handler that puts off the first attempt for each recipient (451, as greylisting
    servers do), accepts the next, and refuses one address for good (550)."""

    REFUSED = "nobody@rejected.example.org"

    def __init__(self):
        self.seen: dict[str, int] = {}
        self.envelopes = []
        self.delivered = threading.Event()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == self.REFUSED:
            return "550 5.1.1 No such user here"
        self.seen[address] = self.seen.get(address, 0) + 1
        if self.seen[address] == 1:
            return "451 4.7.1 Greylisted, please try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        self.delivered.set()
        return "250 Message accepted for delivery"


@pytest.fixture
def greylisting():
    handler = Greylisting()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


@pytest.fixture
def mail_app(app, database_url, greylisting):
    """The app sending through the greylisting server, a failed try being tried again at once."""
    controller, _ = greylisting
    application = make_app(database_url, DPS_SMTP_URL=f"smtp://127.0.0.1:{controller.port}", DPS_JOB_RETRY_SECONDS=0)
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def test_an_email_is_sent_by_the_worker_and_tried_again_when_put_off(mail_app, greylisting, factory):
    _, handler = greylisting
    user = factory.user("buyer", email="pat.buyer@example.org")
    response = mail_app.test_client().submit("/forgotten-password", {"email": user["email"]})
    assert response.status_code == 200
    [row] = [m for m in outbox(mail_app) if m.to_address == user["email"]]
    assert row.sent_at is None, "queued, not sent in the request"

    run_jobs(mail_app)

    assert handler.seen[user["email"]] == 2, "put off once, then accepted"
    [envelope] = handler.envelopes
    message = message_from_bytes(envelope.content, policy=policy.default)
    assert message["To"] == user["email"] and "/reset-password/" in message.get_body().get_content()
    [row] = [m for m in outbox(mail_app) if m.to_address == user["email"]]
    assert row.sent_at is not None and row.attempts == 2 and row.last_error is None
    assert "[link removed after sending]" in row.body


def test_a_retry_waits_for_its_backoff_and_outbox_send_can_catch_up(app, database_url, greylisting):
    controller, handler = greylisting
    patient = make_app(database_url, DPS_SMTP_URL=f"smtp://127.0.0.1:{controller.port}", DPS_JOB_RETRY_SECONDS=3600)
    try:
        with patient.app_context():
            mail.queue("pat@example.org", "Hello", "Body\n")
            db.session.commit()
        run_jobs(patient)
        [row] = outbox(patient)
        assert row.sent_at is None and row.attempts == 1 and "Greylisted" in row.last_error
        assert handler.envelopes == [], "the retry is an hour away: the burst worker did not run it"

        result = patient.test_cli_runner().invoke(args=["outbox", "send"])
        assert result.exit_code == 0 and "Sent 1, failed 0" in result.output
        [row] = outbox(patient)
        assert row.sent_at is not None and row.attempts == 2 and len(handler.envelopes) == 1
    finally:
        with patient.app_context():
            db.session.remove()
            db.engine.dispose()


def test_a_refusal_for_good_is_not_tried_again(mail_app, greylisting):
    _, handler = greylisting
    with mail_app.app_context():
        mail.queue(Greylisting.REFUSED, "Hello", "Body\n")
        mail.queue("kit@example.org", "Hello", "Body\n")
        db.session.commit()
    run_jobs(mail_app)
    rows = {row.to_address: row for row in outbox(mail_app)}
    refused = rows[Greylisting.REFUSED]
    assert refused.sent_at is None and refused.attempts == 1 and "No such user" in refused.last_error
    assert rows["kit@example.org"].sent_at is not None and rows["kit@example.org"].attempts == 2


def test_an_email_in_a_transaction_that_rolls_back_is_never_sent(mail_app, greylisting):
    _, handler = greylisting
    with mail_app.app_context():
        mail.queue("first@example.org", "Kept", "Body\n")
        db.session.commit()
        mail.queue("second@example.org", "Rolled back", "Body\n")
        db.session.rollback()
        with db.session.begin_nested():
            mail.queue("third@example.org", "Kept too", "Body\n")
        savepoint = db.session.begin_nested()
        mail.queue("fourth@example.org", "Savepoint rolled back", "Body\n")
        savepoint.rollback()
        db.session.commit()
    run_jobs(mail_app)
    assert sorted(e.rcpt_tos[0] for e in handler.envelopes) == ["first@example.org", "third@example.org"]


def test_the_worker_command_runs_the_jobs_due(mail_app, greylisting):
    _, handler = greylisting
    with mail_app.app_context():
        mail.queue("pat@example.org", "Hello", "Body\n")
        db.session.commit()
    result = mail_app.test_cli_runner().invoke(args=["worker", "--burst", "--queue", "mail"])
    assert result.exit_code == 0, result.output
    assert len(handler.envelopes) == 1
    help_text = mail_app.test_cli_runner().invoke(args=["worker", "--help"]).output
    assert "--concurrency" in help_text and "--queue [mail|exports]" in help_text and "--burst" in help_text


def test_a_web_process_can_run_a_worker_itself(app, database_url, greylisting, factory):
    """What `make run` does on the embedded queue (and what DPS_WORKER_IN_WEB turns on anywhere):
    the first request starts worker threads in the web process."""
    controller, handler = greylisting
    web = make_app(database_url, DPS_SMTP_URL=f"smtp://127.0.0.1:{controller.port}", DPS_JOB_RETRY_SECONDS=0,
                   DPS_WORKER_IN_WEB=True)
    queue = jobs.queue_of(web)
    try:
        user = factory.user("buyer")
        web.test_client().submit("/forgotten-password", {"email": user["email"]})
        assert handler.delivered.wait(STUCK), "the web process's worker never sent the email"
        assert handler.envelopes[0].rcpt_tos == [user["email"]]
    finally:
        queue.stop_in_web()
        with web.app_context():
            db.session.remove()
            db.engine.dispose()


# --- Configuration --------------------------------------------------------------------------------

def test_the_queue_follows_the_database_unless_told(tmp_path):
    sqlite = load(str(tmp_path), environ={"DPS_DATABASE_URL": f"sqlite:///{tmp_path / 'dps.sqlite3'}"})
    assert sqlite["DPS_JOB_QUEUE"] == f"sqlite:///{tmp_path / 'dps-jobs.sqlite3'}"
    assert sqlite["DPS_WORKER_IN_WEB"] is True and sqlite["DPS_JOB_RETRY_SECONDS"] == 60
    postgres = load(str(tmp_path), environ={"DPS_DATABASE_URL": "postgresql://dps@db/dps"})
    assert postgres["DPS_JOB_QUEUE"] == "procrastinate" and postgres["DPS_WORKER_IN_WEB"] is False
    chosen = load(str(tmp_path), environ={"DPS_DATABASE_URL": "postgresql://dps@db/dps", "DPS_WORKER_IN_WEB": "yes",
                                          "DPS_JOB_QUEUE": "sqlite:///jobs.sqlite3"})
    assert chosen["DPS_JOB_QUEUE"] == "sqlite:///jobs.sqlite3" and chosen["DPS_WORKER_IN_WEB"] is True


@pytest.mark.parametrize("environ, name", [
    ({"DPS_JOB_QUEUE": "procrastinate"}, "DPS_JOB_QUEUE"),
    ({"DPS_JOB_QUEUE": "redis://localhost"}, "DPS_JOB_QUEUE"),
    ({"DPS_WORKER_IN_WEB": "perhaps"}, "DPS_WORKER_IN_WEB"),
    ({"DPS_JOB_RETRY_SECONDS": "-1"}, "DPS_JOB_RETRY_SECONDS"),
])
def test_a_queue_setting_that_cannot_work_names_the_variable(tmp_path, environ, name):
    with pytest.raises(ConfigError, match=name):
        load(str(tmp_path), environ={"DPS_DATABASE_URL": f"sqlite:///{tmp_path / 'dps.sqlite3'}", **environ})


# --- procrastinate's schema -------------------------------------------------------------------------

CATALOGUE = {
    "columns": """SELECT table_name, column_name, data_type, is_nullable, column_default
                  FROM information_schema.columns
                  WHERE table_schema = current_schema() AND table_name LIKE 'procrastinate%'""",
    "indexes": """SELECT indexname, indexdef FROM pg_indexes
                  WHERE schemaname = current_schema() AND tablename LIKE 'procrastinate%'""",
    "functions": """SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid),
                           md5(p.prosrc)
                    FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace
                      AND p.proname LIKE 'procrastinate%'""",
    "triggers": """SELECT t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
                   JOIN pg_class c ON c.oid = t.tgrelid
                   WHERE NOT t.tgisinternal AND c.relname LIKE 'procrastinate%'""",
    # Values in their order (the sort keys themselves differ when a value was added later).
    "types": """SELECT t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
                WHERE t.typname LIKE 'procrastinate%' GROUP BY t.typname""",
    "constraints": """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
                      WHERE conrelid::regclass::text LIKE 'procrastinate%'""",
}


def _catalogue(dsn: str) -> dict[str, set]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return {name: set(conn.execute(query).fetchall()) for name, query in CATALOGUE.items()}


def test_migration_0008_makes_the_schema_of_the_procrastinate_installed(database_template, app):
    """A newer procrastinate without the migration that applies its new SQL files fails here."""
    if database_template["kind"] != "postgresql":
        pytest.skip("procrastinate's queue is made on PostgreSQL only")
    import psycopg
    from procrastinate.schema import SchemaManager
    from sqlalchemy.engine import make_url

    migrated = make_url(database_template["url"]).set(drivername="postgresql")
    scratch = migrated.set(database=f"{migrated.database}_procrastinate")
    admin = migrated.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{scratch.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{scratch.database}"')
    try:
        with psycopg.connect(scratch.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(SchemaManager.get_schema())
        expected = _catalogue(scratch.render_as_string(hide_password=False))
        found = _catalogue(migrated.render_as_string(hide_password=False))
        assert expected["columns"] and expected["functions"]
        for part in CATALOGUE:
            assert found[part] == expected[part], (part, found[part] ^ expected[part])
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch.database}" WITH (FORCE)')


def test_the_schema_check_leaves_only_the_queues_own_tables_out():
    assert not jobs.include_in_schema_check("procrastinate_jobs", "table", {})
    assert jobs.include_in_schema_check("export_jobs", "table", {})
    assert jobs.include_in_schema_check("ix_export_jobs_requested_by_id_id", "index", {"table_name": "export_jobs"})
