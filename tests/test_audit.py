"""The hash-chained, append-only audit log (DESIGN 5)."""
from __future__ import annotations

import re
import threading

import pytest
from sqlalchemy import select, text, update
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
    ids = []
    with app.app_context():
        for i in range(n):
            event = audit.record(action, "thing", i, {"n": i, "note": f"event {i}"}, actor_label="test")
            ids.append(event.id)
        db.session.commit()
    return ids


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
