"""Rows the running system needs: the installation, the outbox of emails and the simulated clock."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .types import UTCDateTime


class OutboxMessage(db.Model):
    """An email, written in the same transaction as the change it reports; sent afterwards."""

    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class SimulatedClock(db.Model):
    """The state of a simulated clock, shared by every worker and host (never kept in memory).

    Simulated now = anchor_simulated + (real now - anchor_real). Moving the clock on resets both
    anchors. ``configured`` remembers the DPS_CLOCK value it started from, so changing the
    variable starts the clock again from the new value.
    """

    __tablename__ = "simulated_clock"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    configured: Mapped[str] = mapped_column(String(40))
    anchor_simulated: Mapped[datetime] = mapped_column(UTCDateTime())
    anchor_real: Mapped[datetime] = mapped_column(UTCDateTime())
    frozen: Mapped[bool] = mapped_column(default=False)


class Installation(db.Model):
    """The one row `flask --app dps setup` writes: who runs this service. Its presence is what
    makes set-up refuse to run twice; the DPS team's and auditors' accounts belong to this body."""

    __tablename__ = "installation"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    accountable_body_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    set_up_at: Mapped[datetime] = mapped_column(UTCDateTime())

    accountable_body = relationship("Organisation")
