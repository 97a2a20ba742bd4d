"""The audit log: append-only, one row per state change, each row chained to the one before."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .types import UTCDateTime


class AuditEvent(db.Model):
    __tablename__ = "audit_events"
    __table_args__ = (
        # Each filter of the audit log page has an index ending in id, so that "newest first,
        # after this id" (keyset pagination) reads only the rows it shows, even at millions of rows.
        Index("ix_audit_events_object", "object_type", "object_id", "id"),
        Index("ix_audit_events_object_type", "object_type", "id"),
        Index("ix_audit_events_organisation", "organisation_id", "id"),
        Index("ix_audit_events_action", "action", "id"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(db.Integer, "sqlite"), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Who did it: a user (NULL for the system and the command line), with their email copied so
    # the row still reads true if the account changes later. organisation_id is the acting
    # user's organisation; when no user acted (system, command line), the organisation the
    # event concerns.
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    actor_label: Mapped[str] = mapped_column(String(320))
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    action: Mapped[str] = mapped_column(String(80))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str | None] = mapped_column(String(40))
    data: Mapped[dict] = mapped_column(JSON)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
