"""Refused reads of sealed bid content, counted (issue 14: the audit log cannot be flooded)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .types import UTCDateTime


class SealedReadRefusal(db.Model):
    """One person's refused reads of one competition's bid content within one clock hour (UTC).

    The first refusal of the hour writes a ``bid_content.refused`` audit event, which names this
    row (``data.refusal_count_id``); the later ones only add to ``count`` and move ``last_at``.
    So anyone can be refused as often as they like without growing the append-only log, and the
    log still shows who tried, when first, and (on the event's page) how many times."""

    __tablename__ = "sealed_read_refusals"
    __table_args__ = (UniqueConstraint("actor", "competition_id", "hour"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Who was refused: the user's id as text, or "anonymous" (NULL would not be unique).
    actor: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    competition_id: Mapped[int] = mapped_column(ForeignKey("competitions.id"), index=True)
    # The start of the UTC hour the refusals fell in.
    hour: Mapped[datetime] = mapped_column(UTCDateTime())
    count: Mapped[int] = mapped_column(Integer)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_at: Mapped[datetime] = mapped_column(UTCDateTime())
