"""Applications to join the DPS, the admissions they lead to, documents, and renewals.

An application's state is derived from its timestamps (Digital Marketplace's Brief.status):
a draft until submitted_at, then "submitted" until every lot it asks for is decided.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    and_,
    case,
    exists,
    select,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .agreements import Agreement, Lot
from .organisations import Organisation
from .types import UTCDateTime
from .users import User

LOT_DECISIONS = ("admitted", "rejected")
ADMISSION_STATES = ("admitted", "suspended", "removed")


class Document(db.Model):
    """An uploaded file. The bytes live in storage under a key the server made; the row records
    what the user called it and what it really is (type sniffed from content, size, SHA-256)."""

    __tablename__ = "documents"
    __table_args__ = (CheckConstraint("size_bytes >= 0", name="size_not_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    storage_key: Mapped[str] = mapped_column(String(200), unique=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))

    organisation: Mapped[Organisation] = relationship()
    uploaded_by: Mapped[User] = relationship()


class Application(db.Model):
    __tablename__ = "applications"
    __table_args__ = (
        CheckConstraint("submitted_at IS NOT NULL OR decision_due_on IS NULL", name="due_only_when_submitted"),
        CheckConstraint("extension_reason IS NULL OR extended_at IS NOT NULL", name="extension_recorded"),
        Index("ix_applications_due", "decision_due_on"),
        # The team's queue (undecided, by decision date) and its decided view, page by page.
        Index("ix_applications_queue", "decided_at", "decision_due_on", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id"))
    # The questionnaire version answered: answers are read against this version only.
    questionnaire_version: Mapped[str] = mapped_column(ForeignKey("questionnaire_versions.version"))
    # The application a rejected supplier reapplied from (its answers were copied in).
    previous_application_id: Mapped[int | None] = mapped_column(ForeignKey("applications.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Receipt: the moment the DPS received it, and who sent it.
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # Part 1 (the organisation's details) as they stood when submitted.
    supplier_snapshot: Mapped[dict | None] = mapped_column(JSON)
    # 10 working days after receipt; 15 when extended with a recorded justification.
    decision_due_on: Mapped[date | None] = mapped_column(Date)
    extended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    extended_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    extension_reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    organisation: Mapped[Organisation] = relationship()
    agreement: Mapped[Agreement] = relationship()
    lots: Mapped[list["ApplicationLot"]] = relationship(
        back_populates="application", cascade="all, delete-orphan", order_by="ApplicationLot.lot_id")
    answers: Mapped[list["Answer"]] = relationship(back_populates="application", cascade="all, delete-orphan")
    created_by: Mapped[User] = relationship(foreign_keys=[created_by_id])
    submitted_by: Mapped[User | None] = relationship(foreign_keys=[submitted_by_id])

    @hybrid_property
    def status(self) -> str:
        if self.submitted_at is None:
            return "draft"
        if self.decided_at is None:
            return "submitted"
        return "decided"

    @status.inplace.expression
    @classmethod
    def _status_expression(cls):
        return case(
            (cls.submitted_at.is_(None), "draft"),
            (cls.decided_at.is_(None), "submitted"),
            else_="decided",
        )

    def answer_map(self) -> dict[str, object]:
        return {answer.question_id: answer.value for answer in self.answers}


class ApplicationLot(db.Model):
    """A lot an application asks to join, and the DPS team's decision on it."""

    __tablename__ = "application_lots"
    __table_args__ = (
        UniqueConstraint("application_id", "lot_id", name="uq_application_lots_application_lot"),
        CheckConstraint(f"decision IS NULL OR decision IN {LOT_DECISIONS!r}", name="decision"),
        CheckConstraint("decision IS NULL OR decided_at IS NOT NULL", name="decided_at_recorded"),
        CheckConstraint("decision <> 'rejected' OR length(reasons) > 0", name="rejection_has_reasons"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("lots.id"))
    decision: Mapped[str | None] = mapped_column(String(20))
    reasons: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    application: Mapped[Application] = relationship(back_populates="lots")
    lot: Mapped[Lot] = relationship()


class Answer(db.Model):
    """One answer to one question of the questionnaire version the application records."""

    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("application_id", "question_id", name="uq_answers_application_question"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"))
    question_id: Mapped[str] = mapped_column(String(60))
    value: Mapped[object] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    application: Mapped[Application] = relationship(back_populates="answers")


class Admission(db.Model):
    """A supplier's place on a lot of the DPS, and its standing."""

    __tablename__ = "admissions"
    __table_args__ = (
        # One lot's suppliers in good standing, and the count on each lot.
        Index("ix_admissions_lot_status", "lot_id", "status", "organisation_id"),
        UniqueConstraint("organisation_id", "lot_id", name="uq_admissions_organisation_lot"),
        CheckConstraint(f"status IN {ADMISSION_STATES!r}", name="status"),
        CheckConstraint("status = 'admitted' OR length(status_reason) > 0", name="standing_change_has_reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("lots.id"), index=True)
    # The decision that admitted it (the latest, after a removal and a new application).
    application_lot_id: Mapped[int] = mapped_column(ForeignKey("application_lots.id"))
    admitted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20))
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_reason: Mapped[str | None] = mapped_column(Text)

    organisation: Mapped[Organisation] = relationship()
    lot: Mapped[Lot] = relationship()
    application_lot: Mapped[ApplicationLot] = relationship()


class RenewalRequest(db.Model):
    """A request for a renewed self-declaration (reg 34): due in 5 working days."""

    __tablename__ = "renewal_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    due_on: Mapped[date] = mapped_column(Date)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    responded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # The declaration as answered: the exclusion questions of the current questionnaire version.
    response: Mapped[dict | None] = mapped_column(JSON)

    organisation: Mapped[Organisation] = relationship()


def has_live_application(organisation_id: int):
    """SQL: the organisation has a draft or an undecided application."""
    return exists(
        select(Application.id).where(and_(Application.organisation_id == organisation_id,
                                          Application.decided_at.is_(None)))
    )
