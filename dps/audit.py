"""Writing and verifying the hash-chained audit log (DESIGN 5).

Each row's hash covers its own fields and the previous row's hash. A transaction's events are
appended just before it commits, under a lock so that two writers never read the same "previous"
row: on PostgreSQL a transaction-scoped advisory lock, taken after every other change of the
transaction is flushed and held only for the append and the commit; on SQLite the database
write lock that every transaction takes (BEGIN IMMEDIATE).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from flask import has_request_context, request
from flask_login import current_user
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from . import clock
from .extensions import db
from .models import AuditEvent

GENESIS_HASH = "0" * 64
# Arbitrary constant naming "the audit chain" among PostgreSQL advisory locks.
AUDIT_LOCK_KEY = 0x0D95A0D1


def _canonical(value: Any) -> Any:
    """What the JSON column will hand back, so the hash is of exactly what is stored."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def compute_hash(prev_hash: str, occurred_at_iso: str, actor_user_id, actor_label: str,
                 organisation_id, action: str, object_type: str, object_id, data, ip_address) -> str:
    payload = json.dumps(
        {
            "prev": prev_hash,
            "at": occurred_at_iso,
            "user": actor_user_id,
            "actor": actor_label,
            "org": organisation_id,
            "action": action,
            "type": object_type,
            "id": object_id,
            "data": data,
            "ip": ip_address,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _hash_of(event: AuditEvent) -> str:
    return compute_hash(
        event.prev_hash,
        event.occurred_at.isoformat(),
        event.actor_user_id,
        event.actor_label,
        event.organisation_id,
        event.action,
        event.object_type,
        event.object_id,
        event.data,
        event.ip_address,
    )


_PENDING = "dps_pending_audit"
_LOCKED_AT = "dps_chain_locked_at"
# At DEBUG, how long each transaction held the chain's lock (scripts/benchmark_awards.py reads it).
_lock_log = logging.getLogger("dps.audit.lock")


def _pending(session: Session) -> list[tuple[AuditEvent, object]]:
    return session.info.setdefault(_PENDING, [])


def _lock_chain(session: Session) -> None:
    """PostgreSQL: take the audit chain's advisory lock until the transaction ends. SQLite needs
    nothing: every transaction began with BEGIN IMMEDIATE and already holds the write lock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})


@event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    """Append the transaction's audit events to the chain, at the very end of the transaction.

    The order is what keeps writers on many hosts from deadlocking or queueing for long: first
    every other change is flushed (taking whatever row locks it needs, without holding the
    chain's lock); only then is the chain's lock taken, the last hash read and the events
    inserted, which waits on no row; the commit that follows releases the lock. So a transaction
    holding the chain's lock never waits for one that does not, and holds it for milliseconds."""
    if session.in_nested_transaction():
        return  # a savepoint being released: its events stay pending in the outer transaction
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    session.flush()
    _lock_chain(session)
    session.info[_LOCKED_AT] = time.perf_counter()
    prev = session.execute(
        select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).scalar_one_or_none() or GENESIS_HASH
    for row, _transaction in pending:
        row.prev_hash = prev
        row.hash = _hash_of(row)
        prev = row.hash
        session.add(row)
    session.flush()


@event.listens_for(Session, "after_commit")
def _lock_released(session: Session) -> None:
    locked_at = session.info.pop(_LOCKED_AT, None)
    if locked_at is not None and _lock_log.isEnabledFor(logging.DEBUG):
        _lock_log.debug("audit chain lock held %.3f ms", (time.perf_counter() - locked_at) * 1000)


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction) -> None:
    """Events recorded inside a transaction (or savepoint) that rolled back never happened."""
    if previous_transaction.parent is None:
        session.info.pop(_LOCKED_AT, None)
    pending = session.info.get(_PENDING)
    if not pending:
        return

    def inside(transaction) -> bool:
        while transaction is not None:
            if transaction is previous_transaction:
                return True
            transaction = transaction.parent
        return False

    session.info[_PENDING] = [(row, transaction) for row, transaction in pending if not inside(transaction)]


def record(action: str, object_type: str, object_id: Any = None, data: dict | None = None, *,
           actor=None, organisation_id: int | None = None, actor_label: str | None = None) -> AuditEvent:
    """Record one event in the caller's transaction: written to the chain when it commits, and
    forgotten if it rolls back. ``actor`` defaults to the signed-in user."""
    if actor is None and has_request_context() and current_user and current_user.is_authenticated:
        actor = current_user._get_current_object()
    if actor is not None:
        label = actor.email
        user_id = actor.id
        if organisation_id is None:
            organisation_id = actor.organisation_id
    else:
        label = actor_label or "system"
        user_id = None
    ip = request.remote_addr if has_request_context() else None
    session = db.session()
    # The moment of the change itself; the chain's order is the order of commits.
    row = AuditEvent(
        occurred_at=clock.now(),
        actor_user_id=user_id,
        actor_label=label,
        organisation_id=organisation_id,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        data=_canonical(data or {}),
        ip_address=ip,
    )
    _pending(session).append((row, session.get_nested_transaction() or session.get_transaction()))
    return row


@dataclass
class Verification:
    count: int
    broken_id: int | None = None
    reason: str | None = None
    # The last row verified: its id and hash. A chain cannot show that rows were cut off its
    # end, so operators keep the head somewhere else and check it is still there next time.
    head_id: int | None = None
    head_hash: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_id is None


def verify_chain(batch_size: int = 5000) -> Verification:
    """Walk the chain in id order; name the first row whose link or hash does not hold."""
    expected_prev = GENESIS_HASH
    count = 0
    head_id = None
    stmt = select(AuditEvent).order_by(AuditEvent.id).execution_options(yield_per=batch_size)
    for row in db.session.scalars(stmt):
        if row.prev_hash != expected_prev:
            return Verification(count, row.id, "its link to the row before it does not match (a row was removed or inserted)")
        if _hash_of(row) != row.hash:
            return Verification(count, row.id, "its contents do not match its hash (the row was changed)")
        expected_prev = row.hash
        head_id = row.id
        count += 1
        db.session.expunge(row)
    return Verification(count, head_id=head_id if count else None, head_hash=expected_prev if count else None)
