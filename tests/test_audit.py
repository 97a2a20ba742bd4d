"""The hash-chained, append-only audit log (DESIGN 5)."""
from __future__ import annotations

import collections
import contextlib
import importlib
import json
import re
import threading

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.exc import DatabaseError

from dps import audit, clock
from dps.extensions import db
from dps.models import AuditEvent, User
from tests.conftest import DEFAULT_NOW

GENESIS = "0" * 64


def events(app) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        return rows


def record_events(app, n: int, action: str = "test.event") -> list[int]:
    with app.app_context():
        events = [audit.record(action, "thing", i, {"n": i, "note": f"event {i}"}, actor_label="test")
                  for i in range(n)]
        assert all(event.id is None for event in events)  # appended to the chain at commit, not before
        db.session.commit()
        return [event.id for event in events]


def verify(app) -> audit.Verification:
    with app.app_context():
        return audit.verify_chain()


def run_verify_command(app):
    return app.test_cli_runner().invoke(args=["audit", "verify"])


@pytest.fixture
def drop_audit_triggers(app, is_postgres):
    """Drops the append-only triggers, as someone editing the database behind the app's back
    would. On PostgreSQL the database outlives the test, so the triggers are put back after."""

    def _drop(operation: str) -> None:
        with app.app_context():
            if is_postgres:
                db.session.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update_delete ON audit_events"))
            else:
                db.session.execute(text(f"DROP TRIGGER IF EXISTS audit_events_no_{operation}"))
            db.session.commit()

    yield _drop

    if is_postgres:
        with app.app_context():
            db.session.rollback()
            db.session.execute(text("DROP TRIGGER IF EXISTS audit_events_no_update_delete ON audit_events"))
            db.session.execute(text(
                "CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events "
                "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"))
            db.session.commit()


# The chain ------------------------------------------------------------------------------------

def test_record_appends_rows_chained_by_hash(app):
    ids = record_events(app, 4)
    rows = events(app)
    assert [row.id for row in rows] == ids
    assert rows[0].prev_hash == GENESIS, "the first row must link to 64 zeros"
    for before, after in zip(rows, rows[1:]):
        assert after.prev_hash == before.hash, f"row {after.id} does not link to row {before.id}"
    for row in rows:
        assert re.fullmatch(r"[0-9a-f]{64}", row.hash), row.hash
        assert row.occurred_at == clock.parse_london(DEFAULT_NOW), "events are stamped with the service's clock"
        assert row.actor_label == "test" and row.actor_user_id is None
    assert len({row.hash for row in rows}) == 4
    assert rows[2].data == {"n": 2, "note": "event 2"}
    assert rows[2].object_type == "thing" and rows[2].object_id == "2"


def test_verify_chain_on_an_empty_and_an_intact_log(app):
    result = verify(app)
    assert result.ok and result.count == 0
    record_events(app, 5)
    result = verify(app)
    assert result.ok, f"intact chain reported broken at {result.broken_id}: {result.reason}"
    assert result.count == 5


def test_audit_verify_command_on_an_intact_chain(app):
    record_events(app, 3)
    result = run_verify_command(app)
    assert result.exit_code == 0, result.output
    assert "Audit log intact: 3 events" in result.output


def test_audit_verify_prints_the_head_and_a_recorded_head_catches_rows_cut_off_the_end(app, drop_audit_triggers):
    ids = record_events(app, 3)
    result = run_verify_command(app)
    with app.app_context():
        last = db.session.get(AuditEvent, ids[-1])
        head = f"{last.id}:{last.hash}"
    assert f"Head: {head}" in result.output

    runner = app.test_cli_runner()
    assert runner.invoke(args=["audit", "verify", "--head", head]).exit_code == 0
    bad = runner.invoke(args=["audit", "verify", "--head", "3:nothex"])
    assert bad.exit_code == 2 and "ID:HASH" in bad.output

    # The newest row removed behind the app's back: the rest of the chain still links up, so
    # only the recorded head shows it.
    drop_audit_triggers("delete")
    with app.app_context():
        db.session.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": ids[-1]})
        db.session.commit()
    assert run_verify_command(app).exit_code == 0
    result = runner.invoke(args=["audit", "verify", "--head", head])
    assert result.exit_code == 1
    assert f"the recorded head, event {ids[-1]}, is missing" in result.output


# Append-only in the database ------------------------------------------------------------------

@pytest.mark.parametrize("statement", [
    "UPDATE audit_events SET action = 'tampered'",
    "UPDATE audit_events SET data = data",
    "DELETE FROM audit_events",
], ids=["update-action", "update-data", "delete"])
def test_database_refuses_to_change_or_remove_audit_rows(app, statement):
    record_events(app, 2)
    with app.app_context():
        with pytest.raises(DatabaseError, match="append-only"):
            db.session.execute(text(statement))
        db.session.rollback()
    rows = events(app)
    assert len(rows) == 2
    assert all(row.action == "test.event" for row in rows)
    assert verify(app).ok


def test_database_refuses_to_delete_one_audit_row(app):
    ids = record_events(app, 3)
    with app.app_context():
        with pytest.raises(DatabaseError):
            db.session.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": ids[1]})
        db.session.rollback()
    assert [row.id for row in events(app)] == ids


@pytest.mark.postgres_only
def test_database_refuses_to_truncate_the_audit_log(app, is_postgres):
    if not is_postgres:
        pytest.skip("TRUNCATE exists only on PostgreSQL")
    record_events(app, 2)
    with app.app_context():
        with pytest.raises(DatabaseError, match="append-only"):
            db.session.execute(text("TRUNCATE audit_events CASCADE"))
        db.session.rollback()
    assert len(events(app)) == 2


# Tampering found ------------------------------------------------------------------------------

def test_a_row_changed_behind_the_apps_back_is_named(app, drop_audit_triggers):
    ids = record_events(app, 5)
    target = ids[2]
    drop_audit_triggers("update")
    with app.app_context():
        db.session.execute(update(AuditEvent).where(AuditEvent.id == target).values(data={"n": 999}))
        db.session.commit()

    result = verify(app)
    assert not result.ok, "a changed row was not found"
    assert result.broken_id == target, f"expected row {target} to be named, got {result.broken_id}"
    assert result.count == 2
    assert "changed" in result.reason

    outcome = run_verify_command(app)
    assert outcome.exit_code == 1, outcome.output
    assert re.search(rf"BROKEN at event {target}\b", outcome.output), outcome.output
    assert "2 events before it verified" in outcome.output


def test_a_changed_first_row_is_named(app, drop_audit_triggers):
    ids = record_events(app, 3)
    drop_audit_triggers("update")
    with app.app_context():
        db.session.execute(update(AuditEvent).where(AuditEvent.id == ids[0]).values(actor_label="someone else"))
        db.session.commit()
    result = verify(app)
    assert result.broken_id == ids[0] and result.count == 0


def test_a_deleted_middle_row_is_found_at_the_next_row(app, drop_audit_triggers):
    ids = record_events(app, 5)
    drop_audit_triggers("delete")
    with app.app_context():
        db.session.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": ids[2]})
        db.session.commit()

    result = verify(app)
    assert not result.ok, "a removed row was not found"
    assert result.broken_id == ids[3], f"expected the break at row {ids[3]}, got {result.broken_id}"
    assert "link" in result.reason

    outcome = run_verify_command(app)
    assert outcome.exit_code == 1, outcome.output
    assert re.search(rf"BROKEN at event {ids[3]}\b", outcome.output), outcome.output


# Concurrency ----------------------------------------------------------------------------------

def test_concurrent_writers_never_fork_the_chain(app):
    threads_count, per_thread = 4, 10
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with app.app_context():
                barrier.wait(timeout=10)
                for i in range(per_thread):
                    audit.record("test.concurrent", "thing", f"{n}-{i}", {"writer": n, "i": i}, actor_label=f"writer {n}")
                    db.session.commit()
                db.session.remove()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, f"writers failed: {errors!r}"

    rows = events(app)
    assert len(rows) == threads_count * per_thread
    prev_hashes = [row.prev_hash for row in rows]
    assert len(set(prev_hashes)) == len(prev_hashes), "two rows link to the same previous row: the chain forked"
    result = verify(app)
    assert result.ok, f"chain broken at {result.broken_id}: {result.reason}"
    assert result.count == threads_count * per_thread


# Events written by pages ----------------------------------------------------------------------

def test_deactivating_a_user_through_the_page_writes_its_event(app, signed_in, factory):
    admin_org = factory.organisation()
    browser, admin = signed_in("dps_admin", organisation_id=admin_org)
    buyer = factory.user("buyer")

    response = browser.submit(f"/team/accounts/{buyer['id']}/deactivate", {}, page="/team/accounts")
    assert response.status_code == 302, response.get_data(as_text=True)

    with app.app_context():
        assert db.session.get(User, buyer["id"]).active is False
        found = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "user.deactivated")).all()
        assert len(found) == 1, f"expected one user.deactivated event, found {len(found)}"
        event = found[0]
        assert event.object_type == "user" and event.object_id == str(buyer["id"])
        assert event.actor_user_id == admin["id"]
        assert event.actor_label == admin["email"]
        assert event.organisation_id == admin_org
        assert event.ip_address == "127.0.0.1"
        assert event.data == {"before": {"active": True}, "after": {"active": False}}
        assert event.occurred_at == clock.parse_london(DEFAULT_NOW)
    assert verify(app).ok


def test_a_refused_action_writes_no_event(app, signed_in, factory):
    browser, admin = signed_in("dps_admin", organisation_id=factory.organisation())
    before = len(events(app))
    response = browser.submit(f"/team/accounts/{admin['id']}/deactivate", {}, page="/team/accounts")
    assert response.status_code == 302
    page = browser.get(response.headers["Location"]).get_data(as_text=True)
    assert "You cannot deactivate your own account" in page
    after = events(app)
    assert len(after) == before, f"a refused deactivation wrote {[e.action for e in after[before:]]}"
    with app.app_context():
        assert db.session.get(User, admin["id"]).active is True


def test_a_row_rewritten_with_a_matching_hash_is_found_at_the_row_after_it(app, drop_audit_triggers):
    """Someone who knows the hash formula can make a changed row agree with its own hash; the
    next row still holds the old hash, so the link breaks there."""
    ids = record_events(app, 5)
    target = ids[1]
    drop_audit_triggers("update")
    with app.app_context():
        row = db.session.get(AuditEvent, target)
        forged = audit.compute_hash(row.prev_hash, row.occurred_at.isoformat(), row.actor_user_id, row.actor_label,
                                    row.organisation_id, row.action, row.object_type, row.object_id,
                                    {"n": 1, "note": "forged"}, row.ip_address)
        db.session.execute(update(AuditEvent).where(AuditEvent.id == target)
                           .values(data={"n": 1, "note": "forged"}, hash=forged))
        db.session.commit()
    result = verify(app)
    assert result.broken_id == ids[2], f"expected the break at row {ids[2]}, got {result.broken_id}"
    assert result.count == 2 and "link" in result.reason
    outcome = run_verify_command(app)
    assert outcome.exit_code == 1
    assert re.search(rf"BROKEN at event {ids[2]}\b", outcome.output), outcome.output


def test_audit_verify_counts_what_the_app_wrote(app, signed_in, factory):
    """The command checks rows the app wrote (not just rows written by a test helper): accounts,
    sign-ins and a team action, with real actors and addresses."""
    browser, _ = signed_in("dps_admin", organisation_id=factory.organisation())
    target = factory.user("buyer")
    assert browser.submit(f"/team/accounts/{target['id']}/deactivate", {}, page="/team/accounts").status_code == 302
    count = len(events(app))
    assert count >= 4
    outcome = run_verify_command(app)
    assert outcome.exit_code == 0, outcome.output
    assert f"Audit log intact: {count} events" in outcome.output


# Every state change is audited ----------------------------------------------------------------
#
# While a journey runs through the pages, every database transaction a request commits is
# checked: if it wrote to any table, it must also have appended to the audit log. The tables
# below are the only exceptions, each with its reason.

UNAUDITED_TABLES = {
    # Failed sign-ins are counted here for the sign-in limits; they change no account, and
    # auditing them would let anyone on the internet grow the chain and queue on its lock.
    "sign_in_attempts",
    # Emails are written in the transaction of the change they report (itself audited); sending
    # them only stamps sent_at.
    "outbox_messages",
    # The simulated clock starting at a request (a training sandbox); moving it is audited.
    "simulated_clock",
}
_WRITE = re.compile(r'^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)', re.IGNORECASE)


@contextlib.contextmanager
def every_write_audited(app):
    """Yields the list of unaudited commits found (request, tables written) while it is open."""
    from flask import has_request_context, request

    with app.app_context():
        engine = db.engine
    unaudited: list[tuple[str, list[str]]] = []

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        match = _WRITE.match(statement)
        if match and has_request_context():
            conn.info.setdefault("dps_test_writes", []).append((match.group(1).lower(), f"{request.method} {request.path}"))

    def on_commit(conn):
        writes = conn.info.pop("dps_test_writes", [])
        tables = {table for table, _ in writes}
        if tables - UNAUDITED_TABLES and "audit_events" not in tables:
            unaudited.append((writes[0][1], sorted(tables)))

    def on_rollback(conn):
        conn.info.pop("dps_test_writes", None)

    listeners = [("before_cursor_execute", on_execute), ("commit", on_commit), ("rollback", on_rollback)]
    for name, listener in listeners:
        event.listen(engine, name, listener)
    try:
        yield unaudited
    finally:
        for name, listener in listeners:
            event.remove(engine, name, listener)


def _with_dps_team(app, factory, signed_in, client) -> tuple:
    from tests.applying import make_dps

    dps = make_dps(app)
    return dps, signed_in("dps_admin", organisation_id=dps["body"])[0]


# Each journey is a page-level test of another file, run here on its own fresh database:
# (module, test, how to build its arguments from this file's fixtures).
JOURNEYS = {
    "sign-up": ("test_accounts", "test_supplier_signs_up_confirms_email_and_signs_in",
                lambda app, factory, signed_in, client: (app, client)),
    "confirmation-resent": ("test_accounts", "test_resending_the_confirmation_link",
                            lambda app, factory, signed_in, client: (app, client)),
    "password-reset": ("test_accounts", "test_forgotten_password_by_emailed_one_time_link",
                       lambda app, factory, signed_in, client: (app, client, factory)),
    "password-change": ("test_accounts", "test_changing_password_keeps_this_session_and_ends_others",
                        lambda app, factory, signed_in, client: (app, factory)),
    "colleague-invited": ("test_accounts", "test_a_buyer_invites_a_colleague_who_joins_the_same_organisation",
                          lambda app, factory, signed_in, client: (app, signed_in)),
    "buyer-accounts": ("test_accounts", "test_team_creates_buyer_accounts_only_for_eligible_members",
                       lambda app, factory, signed_in, client: (app, factory, signed_in)),
    "deactivation": ("test_accounts", "test_deactivation_by_the_team_ends_the_users_sessions_at_once",
                     lambda app, factory, signed_in, client: (app, factory, signed_in)),
    "sign-out": ("test_accounts", "test_signing_out_ends_every_session_of_that_user",
                 lambda app, factory, signed_in, client: (app, factory)),
    "application": ("test_applications", "test_the_whole_journey_apply_decide_reapply",
                    lambda app, factory, signed_in, client: (app, *_with_dps_team(app, factory, signed_in, client))),
    "extension": ("test_applications", "test_overdue_flag_and_the_15_day_extension",
                  lambda app, factory, signed_in, client: (app, *_with_dps_team(app, factory, signed_in, client),
                                                           signed_in)),
    "standing": ("test_standing", "test_suspend_reinstate_and_remove_each_emailed_audited_and_shown_publicly",
                 lambda app, factory, signed_in, client: (app, factory, signed_in, client)),
    "renewal": ("test_standing", "test_answered_on_the_due_day_is_in_time_and_unanswered_the_day_after_is_overdue",
                lambda app, factory, signed_in, client: (app, factory, signed_in)),
    "identity": ("test_supplier_details", "test_the_team_acknowledges_a_change_of_identity",
                 lambda app, factory, signed_in, client: (app, factory, signed_in)),
    "budget-lines": ("test_budget", "test_a_line_total_is_never_lowered_below_what_is_allocated",
                     lambda app, factory, signed_in, client: (app, signed_in("dps_admin")[0],
                                                              factory.organisation("council", "full"))),
    "allocation": ("test_budget", "test_the_team_allocates_to_a_council_and_the_buyer_sees_it",
                   lambda app, factory, signed_in, client: (app, signed_in("dps_admin")[0],
                                                            factory.organisation("council", "full",
                                                                                 name="Plymouth City Council"),
                                                            factory, signed_in)),
    "competition": ("test_journey", "test_from_publication_to_the_last_invoice",
                    lambda app, factory, signed_in, client: (app, factory, signed_in)),
    "running-a-dps": ("test_running_a_dps", "test_an_accountable_body_sets_up_and_runs_two_agreements_from_an_empty_database",
                      lambda app, factory, signed_in, client: (app, factory)),
    "lots": ("test_agreements_admin", "test_a_lot_closed_to_applications_is_not_offered_and_is_refused",
             lambda app, factory, signed_in, client: (app, _team_of_body(app, signed_in), signed_in)),
}


def _team_of_body(app, signed_in):
    from tests.applying import accountable_body

    browser, _ = signed_in("dps_admin", organisation_id=accountable_body(app))
    return browser


@pytest.mark.parametrize("journey", list(JOURNEYS))
def test_every_change_a_journey_makes_through_the_pages_is_audited(app, factory, signed_in, client, journey):
    module, name, arguments = JOURNEYS[journey]
    run = getattr(importlib.import_module(f"tests.{module}"), name)
    args = arguments(app, factory, signed_in, client)  # set-up outside requests is not watched
    with every_write_audited(app) as unaudited:
        run(*args)
    assert unaudited == [], f"requests that changed data without an audit event: {unaudited}"
    result = verify(app)
    assert result.ok, f"chain broken at {result.broken_id}: {result.reason}"


def test_the_competition_journey_writes_one_event_per_change_and_nothing_sealed(app, factory, signed_in):
    """Publication to the last invoice (tests/test_journey.py): each change is exactly one
    event, and before the deadline no event carries a bid's price, answers or document names.
    (tests/test_bids.py plants a marker in a bid document's name and checks every event too.)"""
    from tests import test_journey

    test_journey.test_from_publication_to_the_last_invoice(app, factory, signed_in)
    rows = events(app)
    counts = collections.Counter(row.action for row in rows)
    expected = {
        "competition.created": 1, "panel.member_added": 1, "competition.published": 1,
        "invitation.opened": 2, "clarification.asked": 1, "clarification.answered": 1,
        "bid.submitted": 3, "bid.withdrawn": 1,  # A, B, then A again after withdrawing
        "competition.opened": 1, "panel.declared": 1, "bid.scored": 4, "bid.moderated": 4,
        "award.decided": 1, "award.confirmed": 1, "call_off.created": 1, "invoice.recorded": 1,
    }
    assert {action: counts[action] for action in expected} == expected
    # Saving the draft that is then submitted is its own change (the bid's content was written).
    assert counts["bid.draft_saved"] == counts["bid.submitted"]

    with app.app_context():
        from dps.models import Bid, BidAnswer, BidDocument, Competition, Document

        competition = db.session.scalars(select(Competition)).one()
        deadline = competition.tender_deadline
        sealed_values = set()
        for bid in db.session.scalars(select(Bid)):
            sealed_values.add(str(bid.price_pence))
        for answer in db.session.scalars(select(BidAnswer)):
            sealed_values.add(answer.text)
        for document in db.session.scalars(select(Document).join(BidDocument, BidDocument.document_id == Document.id)):
            sealed_values.add(document.filename)
    # Every price the suppliers typed, not just the ones that stand.
    sealed_values |= {"1400000", "1200000", "1150000", "A clear plan.", "A clearer plan.", "Local apprentices."}
    before_deadline = [row for row in rows if row.occurred_at < deadline
                       and (row.object_type in ("bid", "invitation", "document") or row.action.startswith("bid."))]
    assert any(row.action == "bid.submitted" for row in before_deadline)
    for row in before_deadline:
        stored = json.dumps(row.data, ensure_ascii=False)
        for value in sealed_values:
            assert value not in stored, f"event {row.id} ({row.action}) holds sealed content {value!r}: {stored}"
        assert not {"price", "price_pence", "answers", "filename"} & set(row.data), (row.action, row.data)
