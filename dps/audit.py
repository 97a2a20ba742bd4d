"""Writing and verifying the hash-chained audit log (DESIGN 5).

Each row's hash covers its own fields and the previous row's hash. Rows are appended under a
lock so that two writers never read the same "previous" row: on PostgreSQL a transaction-scoped
advisory lock, on SQLite the database write lock that every transaction takes (BEGIN IMMEDIATE).
"""
from __future__ import annotations

import hashlib
import json
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


def _lock_chain() -> None:
    _take_write_lock(db.session())


_LOCKED = "dps_write_lock_held"


def _take_write_lock(session: Session) -> None:
    """PostgreSQL: take the audit chain's advisory lock, once per transaction.

    Every write transaction takes it before its first write (see the listeners below), so all
    writers lock in one order, audit lock first, then rows, and cannot deadlock each other.
    SQLite needs nothing: every transaction begins with BEGIN IMMEDIATE, the same idea."""
    if session.info.get(_LOCKED):
        return
    if session.get_bind().dialect.name != "postgresql":
        return
    session.info[_LOCKED] = True
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})


@event.listens_for(Session, "do_orm_execute")
def _lock_before_bulk_write(state) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        _take_write_lock(state.session)


@event.listens_for(Session, "before_flush")
def _lock_before_flush(session: Session, _context, _instances) -> None:
    if session.new or session.dirty or session.deleted:
        _take_write_lock(session)


@event.listens_for(Session, "after_transaction_end")
def _forget_lock(session: Session, transaction) -> None:
    if transaction.parent is None:  # the outermost transaction: the advisory lock went with it
        session.info.pop(_LOCKED, None)


def record(action: str, object_type: str, object_id: Any = None, data: dict | None = None, *,
           actor=None, organisation_id: int | None = None, actor_label: str | None = None) -> AuditEvent:
    """Append one event in the caller's transaction. ``actor`` defaults to the signed-in user."""
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

    _lock_chain()
    prev = db.session.execute(
        select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).scalar_one_or_none() or GENESIS_HASH
    # Microsecond precision survives both databases; the hash is over the stored value.
    event = AuditEvent(
        occurred_at=clock.now(),
        actor_user_id=user_id,
        actor_label=label,
        organisation_id=organisation_id,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        data=_canonical(data or {}),
        ip_address=ip,
        prev_hash=prev,
    )
    event.hash = _hash_of(event)
    db.session.add(event)
    db.session.flush()
    return event


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
