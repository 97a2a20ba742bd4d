"""Exports prepared in the background (DESIGN 10): who asked for what, and how far it has got."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, Integer, String, Text, and_, case, update
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql import Update

from ..extensions import db
from .types import UTCDateTime

EXPORT_JOB_STATES = ("queued", "running", "done", "failed")


class IllegalTransition(ValueError):
    """A job was asked to move to a state it cannot reach from where it is."""


class ExportJob(db.Model):
    """One export a person asked the Exports page for, prepared by a worker.

    Its state comes from its timestamps: queued (asked for), running (a worker started it),
    done (finished, its file kept in storage for the person who asked) or failed (``error``
    says why, in words for that person). The moves between them are the methods below; a
    worker reports the rows written as it goes (``progress``), in transactions of its own."""

    __tablename__ = "export_jobs"
    __table_args__ = (
        CheckConstraint("finished_at IS NULL OR failed_at IS NULL", name="one_ending"),
        CheckConstraint("finished_at IS NULL OR (started_at IS NOT NULL AND file_key IS NOT NULL "
                        "AND file_size IS NOT NULL)", name="done_has_its_file"),
        CheckConstraint("failed_at IS NULL OR error IS NOT NULL", name="failure_says_why"),
        CheckConstraint("rows_done >= 0 AND (rows_total IS NULL OR rows_total >= 0)", name="rows_counted"),
        # "Your exports": a person's newest first.
        Index("ix_export_jobs_requested_by_id_id", "requested_by_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # The export's registry name (dps.exports.REGISTRY) and what it covers (dps.exports.Filters).
    export: Mapped[str] = mapped_column(String(40))
    period_from: Mapped[date | None] = mapped_column(Date)
    period_to: Mapped[date | None] = mapped_column(Date)
    agreement: Mapped[str | None] = mapped_column(String(40))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    rows_total: Mapped[int | None] = mapped_column(Integer)  # None: the export cannot count ahead
    file_key: Mapped[str | None] = mapped_column(String(200))
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)

    requested_by = relationship("User")

    @hybrid_property
    def state(self) -> str:
        if self.failed_at is not None:
            return "failed"
        if self.finished_at is not None:
            return "done"
        if self.started_at is not None:
            return "running"
        return "queued"

    @state.inplace.expression
    @classmethod
    def _state_expression(cls):
        return case(
            (cls.failed_at.is_not(None), "failed"),
            (cls.finished_at.is_not(None), "done"),
            (cls.started_at.is_not(None), "running"),
            else_="queued",
        )

    @property
    def percent(self) -> int | None:
        """Whole per cent done, or None while the total is not known."""
        if self.state == "done":
            return 100
        if not self.rows_total:
            return None
        return min(99, self.rows_done * 100 // self.rows_total)

    def _require(self, *states: str) -> None:
        if self.state not in states:
            raise IllegalTransition(f"export job {self.id} is {self.state}, not {' or '.join(states)}")

    def start(self, at: datetime, rows_total: int | None) -> None:
        """A worker takes it up. A job whose worker stopped half-way may be started again, from
        the beginning."""
        self._require("queued", "running")
        self.started_at = at
        self.rows_done = 0
        self.rows_total = rows_total

    @classmethod
    def progress(cls, job_id: int, rows_done: int) -> Update:
        """The statement that records how far a running job has got (run in its own short
        transaction: the export itself reads in another)."""
        running = and_(cls.started_at.is_not(None), cls.finished_at.is_(None), cls.failed_at.is_(None))
        return update(cls).where(cls.id == job_id, running).values(rows_done=rows_done)

    def finish(self, at: datetime, *, rows_done: int, file_key: str, file_size: int, file_sha256: str) -> None:
        self._require("running")
        self.finished_at = at
        self.rows_done = rows_done
        self.file_key = file_key
        self.file_size = file_size
        self.file_sha256 = file_sha256

    def fail(self, at: datetime, error: str) -> None:
        self._require("queued", "running")
        self.failed_at = at
        self.error = error
