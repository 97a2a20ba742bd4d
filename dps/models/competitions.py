"""Mini-competitions under the DPS: invitations, clarifications, sealed bids, evaluation,
award, the call-off contract it creates, and invoices paid against it.

A competition's stage is derived from its timestamps and the clock (``Competition.stage(now)``,
with the SQL form ``Competition.stage_at(now)``), so there is one truth about where it stands;
what may be done in each stage is one table (``ACTIONS``), and services ask
``competition.require(action, now)`` before they act.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    case,
    exists,
    or_,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..errors import ServiceError
from ..extensions import db
from ..timefmt import fmt
from .agreements import Lot
from .applications import Document
from .budget import Allocation
from .organisations import Organisation
from .types import UTCDateTime
from .users import User

CRITERION_KINDS = ("quality", "price", "social_value")
PRICE_FORMULAS = ("lowest_price_ratio", "linear_from_lowest")
BID_STATES = ("draft", "submitted", "withdrawn")


# The lifecycle ----------------------------------------------------------------------------------

class Stage(StrEnum):
    """Where a mini-competition stands. Opening the bids is an act (recorded, audited), not a
    stage: it moves a competition from CLOSED to IN_EVALUATION."""

    DRAFT = "draft"
    OPEN = "open"  # published: every admitted supplier invited, tenders received until the deadline
    CLOSED = "closed"  # the deadline has passed; the bids are still sealed
    IN_EVALUATION = "in_evaluation"  # the bids are opened: the panel scores and moderates
    STANDSTILL = "standstill"  # the award is decided and every bidder told; standstill runs
    AWARD_INTENDED = "award_intended"  # standstill over (or none): the award waits to be confirmed
    AWARDED = "awarded"  # the award is confirmed: the call-off contract exists
    NO_AWARD = "no_award"  # closed with no award, bidders told why
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class StageLabel:
    buyer: str  # what the buyer's pages (and the DPS team's, and the exports) call it
    supplier: str  # what an invited supplier reads
    colour: str  # the GOV.UK tag's modifier

    @property
    def tag(self) -> str:
        return f"govuk-tag--{self.colour}"


STAGE_LABELS: dict[Stage, StageLabel] = {
    Stage.DRAFT: StageLabel("Draft", "Draft", "grey"),
    Stage.OPEN: StageLabel("Open for tenders", "Open for tenders", "blue"),
    Stage.CLOSED: StageLabel("Tenders closed: bids not opened", "Tenders closed", "yellow"),
    Stage.IN_EVALUATION: StageLabel("In evaluation", "Tenders closed: being evaluated", "yellow"),
    Stage.STANDSTILL: StageLabel("Award intended: standstill", "Award intended: standstill", "turquoise"),
    Stage.AWARD_INTENDED: StageLabel("Award intended: ready to confirm", "Award intended", "turquoise"),
    Stage.AWARDED: StageLabel("Awarded", "Awarded", "green"),
    Stage.NO_AWARD: StageLabel("Closed with no award", "Closed with no award", "red"),
    Stage.CANCELLED: StageLabel("Cancelled", "Cancelled", "red"),
}

FINISHED = frozenset({Stage.AWARDED, Stage.NO_AWARD, Stage.CANCELLED})
_RUNNING = frozenset({Stage.OPEN, Stage.CLOSED, Stage.IN_EVALUATION})
_BEFORE_AWARD = frozenset({Stage.DRAFT}) | _RUNNING


@dataclass(frozen=True)
class Action:
    """What may be done to a competition: in which stages, and the stage it leads to (None: it
    stays where it is). The deadline moves OPEN to CLOSED, and the end of standstill STANDSTILL
    to AWARD_INTENDED, by the clock alone."""

    allowed: frozenset[Stage]
    leads_to: Stage | None = None


ACTIONS: dict[str, Action] = {
    "edit": Action(frozenset({Stage.DRAFT})),
    "publish": Action(frozenset({Stage.DRAFT}), Stage.OPEN),
    "cancel": Action(_BEFORE_AWARD, Stage.CANCELLED),
    "ask_clarification": Action(frozenset({Stage.OPEN})),
    "answer_clarification": Action(frozenset({Stage.OPEN})),
    "bid": Action(frozenset({Stage.OPEN})),  # save, submit or withdraw a bid
    "change_panel": Action(_BEFORE_AWARD),
    "declare": Action(frozenset({Stage.IN_EVALUATION})),
    "open_bids": Action(frozenset({Stage.CLOSED}), Stage.IN_EVALUATION),
    "score": Action(frozenset({Stage.IN_EVALUATION})),
    "moderate": Action(frozenset({Stage.IN_EVALUATION})),
    # With standstill, to STANDSTILL; without, confirmed at once (AWARDED).
    "decide_award": Action(frozenset({Stage.IN_EVALUATION}), Stage.STANDSTILL),
    "close_without_award": Action(frozenset({Stage.IN_EVALUATION}), Stage.NO_AWARD),
    "confirm_award": Action(frozenset({Stage.AWARD_INTENDED}), Stage.AWARDED),
    "record_invoice": Action(frozenset({Stage.AWARDED})),
}


class StageError(ServiceError):
    """An action refused because of the competition's stage; the message says why, in words."""

    def __init__(self, message: str, stage: Stage):
        super().__init__(message)
        self.stage = stage


class Competition(db.Model):
    __tablename__ = "competitions"
    __table_args__ = (
        CheckConstraint("estimated_value_pence > 0", name="estimated_value_positive"),
        CheckConstraint("clarification_deadline < tender_deadline", name="clarifications_before_tenders"),
        CheckConstraint(f"price_formula IN {PRICE_FORMULAS!r}", name="price_formula"),
        CheckConstraint("cancelled_at IS NULL OR length(cancel_reason) > 0", name="cancellation_has_reason"),
        CheckConstraint("standstill_days >= 0", name="standstill_not_negative"),
        Index("ix_competitions_lot_deadline", "lot_id", "tender_deadline"),
        # A buyer's competitions, newest first (its keyset page).
        Index("ix_competitions_buyer_created", "buyer_organisation_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(40), unique=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("lots.id"))
    buyer_organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    estimated_value_pence: Mapped[int] = mapped_column(BigInteger)
    # The allocation the call-off will be charged to (the buyer's own, or the network's).
    allocation_id: Mapped[int] = mapped_column(ForeignKey("allocations.id"), index=True)
    clarification_deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    tender_deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    standstill: Mapped[bool] = mapped_column(Boolean)
    standstill_days: Mapped[int] = mapped_column(Integer, default=10)
    price_formula: Mapped[str] = mapped_column(String(40), default="lowest_price_ratio")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Publication is the moment every admitted supplier of the lot is invited.
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    # Opening: after the deadline, an audited act, the panel may see the bids.
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    opened_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    closed_without_award_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    no_award_reason: Mapped[str | None] = mapped_column(Text)

    lot: Mapped[Lot] = relationship()
    buyer_organisation: Mapped[Organisation] = relationship()
    allocation: Mapped[Allocation] = relationship()
    criteria: Mapped[list["Criterion"]] = relationship(back_populates="competition", order_by="Criterion.position",
                                                      cascade="all, delete-orphan")
    invitations: Mapped[list["Invitation"]] = relationship(back_populates="competition")
    award: Mapped["Award | None"] = relationship(back_populates="competition", uselist=False)

    def stage(self, now: datetime) -> Stage:
        """Where the competition stands at ``now``. Only what had happened by ``now`` counts, so
        the same function tells the stage as at any moment (an OCDS release's date) and the SQL
        form ``stage_at`` agrees with it on every stage (tests/test_lifecycle.py)."""
        def by(moment: datetime | None) -> bool:
            return moment is not None and moment <= now

        award = self.award
        if by(self.cancelled_at):
            return Stage.CANCELLED
        if by(self.closed_without_award_at):
            return Stage.NO_AWARD
        if award is not None and by(award.confirmed_at):
            return Stage.AWARDED
        if award is not None and by(award.decided_at):
            if award.standstill_ends_at is not None and now < award.standstill_ends_at:
                return Stage.STANDSTILL
            return Stage.AWARD_INTENDED
        if not by(self.published_at):
            return Stage.DRAFT
        if now < self.tender_deadline:
            return Stage.OPEN
        if not by(self.opened_at):
            return Stage.CLOSED
        return Stage.IN_EVALUATION

    @classmethod
    def stage_at(cls, now: datetime):
        """The SQL form of ``stage(now)``, for filtering and counting lists in the database."""
        def by(column):
            return and_(column.is_not(None), column <= now)

        def award_where(*conditions):
            return exists().where(Award.competition_id == cls.id, *conditions)

        return case(
            (by(cls.cancelled_at), Stage.CANCELLED.value),
            (by(cls.closed_without_award_at), Stage.NO_AWARD.value),
            (award_where(by(Award.confirmed_at)), Stage.AWARDED.value),
            (award_where(by(Award.decided_at), Award.standstill_ends_at > now), Stage.STANDSTILL.value),
            (award_where(by(Award.decided_at)), Stage.AWARD_INTENDED.value),
            (or_(cls.published_at.is_(None), cls.published_at > now), Stage.DRAFT.value),
            (cls.tender_deadline > now, Stage.OPEN.value),
            (or_(cls.opened_at.is_(None), cls.opened_at > now), Stage.CLOSED.value),
            else_=Stage.IN_EVALUATION.value,
        )

    def label(self, now: datetime) -> StageLabel:
        return STAGE_LABELS[self.stage(now)]

    def refusal(self, action: str, now: datetime) -> str | None:
        """Why ``action`` cannot be done at ``now``, in words; None when it can."""
        stage = self.stage(now)
        if stage in ACTIONS[action].allowed:
            return None
        if stage is Stage.DRAFT:
            return "This competition has not been published yet"
        if stage is Stage.OPEN:
            return f"Tenders are open until {fmt(self.tender_deadline)}"
        if stage is Stage.CLOSED:
            if action == "bid":
                return f"Tenders closed on {fmt(self.tender_deadline)}"
            return "The bids have not been opened yet"
        if stage is Stage.IN_EVALUATION:
            return "The bids have been opened and are being evaluated"
        if stage is Stage.STANDSTILL:
            return (f"The award has been decided. The standstill period ends on {fmt(self.award.standstill_ends_at)}: "
                    "you can confirm the award after that")
        if stage is Stage.AWARD_INTENDED:
            return "The award has been decided, so the evaluation can no longer change"
        if stage is Stage.AWARDED:
            return "The contract has been awarded"
        if stage is Stage.NO_AWARD:
            return "This competition was closed with no award"
        return "This competition was cancelled"

    def require(self, action: str, now: datetime) -> Stage:
        """The one guard services call before they act: the stage at ``now``, or StageError
        saying why ``action`` cannot be done in it."""
        refusal = self.refusal(action, now)
        if refusal is not None:
            raise StageError(refusal, self.stage(now))
        return self.stage(now)


class Criterion(db.Model):
    """An award criterion, with its weight in per cent: set before publication, fixed after."""

    __tablename__ = "criteria"
    __table_args__ = (
        CheckConstraint(f"kind IN {CRITERION_KINDS!r}", name="kind"),
        CheckConstraint("weight > 0 AND weight <= 100", name="weight_range"),
        CheckConstraint("word_limit IS NULL OR word_limit > 0", name="word_limit_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    competition_id: Mapped[int] = mapped_column(ForeignKey("competitions.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    weight: Mapped[int] = mapped_column(Integer)
    word_limit: Mapped[int | None] = mapped_column(Integer)

    competition: Mapped[Competition] = relationship(back_populates="criteria")


class CompetitionDocument(db.Model):
    """A specification document of a competition (shown to invited suppliers)."""

    __tablename__ = "competition_documents"
    __table_args__ = (UniqueConstraint("competition_id", "document_id", name="uq_competition_documents_pair"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    competition_id: Mapped[int] = mapped_column(ForeignKey("competitions.id"), index=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"))

    document: Mapped[Document] = relationship()


class PanelMember(db.Model):
    """A buyer on the evaluation panel. Sees bids only after declaring no conflict of interest."""

    __tablename__ = "panel_members"
    __table_args__ = (
        UniqueConstraint("competition_id", "user_id", name="uq_panel_members_pair"),
        CheckConstraint("scores_submitted_at IS NULL OR declared_at IS NOT NULL", name="submitted_after_declaring"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    competition_id: Mapped[int] = mapped_column(ForeignKey("competitions.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    declared_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # True: declared a conflict, so excluded from seeing and scoring the bids.
    conflicted: Mapped[bool | None] = mapped_column(Boolean)
    declaration: Mapped[str | None] = mapped_column(Text)
    # The moment the member's last mark went in (every submitted bid has one on every criterion
    # the panel scores): from then on their marks are fixed, and they see the marks of the others
    # who have submitted (dps.services.evaluation.scoring).
    scores_submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship()


class Invitation(db.Model):
    """The record that a supplier was invited (reg 34: every supplier admitted to the lot)."""

    __tablename__ = "invitations"
    __table_args__ = (
        UniqueConstraint("competition_id", "organisation_id", name="uq_invitations_pair"),
        # A supplier's invitations, the latest first (its keyset page).
        Index("ix_invitations_organisation_invited", "organisation_id", "invited_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    competition_id: Mapped[int] = mapped_column(ForeignKey("competitions.id"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    invited_at: Mapped[datetime] = mapped_column(UTCDateTime())
    first_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    competition: Mapped[Competition] = relationship(back_populates="invitations")
    organisation: Mapped[Organisation] = relationship()


class Clarification(db.Model):
    """A supplier's private question; the answer goes to every invited supplier, unattributed."""

    __tablename__ = "clarifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    competition_id: Mapped[int] = mapped_column(ForeignKey("competitions.id"), index=True)
    asked_by_organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    asked_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    question: Mapped[str] = mapped_column(Text)
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The question as published with the answer: the buyer may reword it so it names nobody.
    published_question: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    answered_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class Bid(db.Model):
    """A supplier's tender. Its content is sealed until the deadline (dps.services.sealed)."""

    __tablename__ = "bids"
    __table_args__ = (
        UniqueConstraint("competition_id", "organisation_id", name="uq_bids_pair"),
        CheckConstraint(f"state IN {BID_STATES!r}", name="state"),
        CheckConstraint("price_pence IS NULL OR price_pence > 0", name="price_positive"),
        CheckConstraint("state <> 'submitted' OR submitted_at IS NOT NULL", name="submitted_has_receipt"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    competition_id: Mapped[int] = mapped_column(ForeignKey("competitions.id"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    state: Mapped[str] = mapped_column(String(20), default="draft")
    price_pence: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The exact receipt time of the submission that stands (the latest one).
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    receipt_reference: Mapped[str | None] = mapped_column(String(40))

    competition: Mapped[Competition] = relationship()
    organisation: Mapped[Organisation] = relationship()
    answers: Mapped[list["BidAnswer"]] = relationship(back_populates="bid", cascade="all, delete-orphan")
    documents: Mapped[list["BidDocument"]] = relationship(back_populates="bid", cascade="all, delete-orphan")


class BidAnswer(db.Model):
    __tablename__ = "bid_answers"
    __table_args__ = (UniqueConstraint("bid_id", "criterion_id", name="uq_bid_answers_pair"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    bid_id: Mapped[int] = mapped_column(ForeignKey("bids.id"))
    criterion_id: Mapped[int] = mapped_column(ForeignKey("criteria.id"))
    text: Mapped[str] = mapped_column(Text)

    bid: Mapped[Bid] = relationship(back_populates="answers")


class BidDocument(db.Model):
    __tablename__ = "bid_documents"
    __table_args__ = (UniqueConstraint("bid_id", "document_id", name="uq_bid_documents_pair"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    bid_id: Mapped[int] = mapped_column(ForeignKey("bids.id"))
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"), unique=True)

    bid: Mapped[Bid] = relationship(back_populates="documents")
    document: Mapped[Document] = relationship()


class Score(db.Model):
    """One panel member's score of one bid on one quality or social value criterion, as a
    percentage of the criterion's weight (0 to 100), with its justification."""

    __tablename__ = "scores"
    __table_args__ = (
        UniqueConstraint("bid_id", "criterion_id", "panel_member_id", name="uq_scores_triple"),
        CheckConstraint("score >= 0 AND score <= 100", name="score_range"),
        CheckConstraint("length(justification) > 0", name="justified"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    bid_id: Mapped[int] = mapped_column(ForeignKey("bids.id"), index=True)
    criterion_id: Mapped[int] = mapped_column(ForeignKey("criteria.id"))
    # Indexed: each member's progress (how many marks of how many) is counted by it.
    panel_member_id: Mapped[int] = mapped_column(ForeignKey("panel_members.id"), index=True)
    score: Mapped[int] = mapped_column(Integer)
    justification: Mapped[str] = mapped_column(Text)
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ModeratedScore(db.Model):
    """The panel's one consensus score per bid and criterion, fixed at moderation."""

    __tablename__ = "moderated_scores"
    __table_args__ = (
        UniqueConstraint("bid_id", "criterion_id", name="uq_moderated_scores_pair"),
        CheckConstraint("score >= 0 AND score <= 100", name="score_range"),
        CheckConstraint("length(justification) > 0", name="justified"),
        CheckConstraint("departure_reason IS NULL OR length(departure_reason) > 0", name="departure_reason_not_empty"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    bid_id: Mapped[int] = mapped_column(ForeignKey("bids.id"), index=True)
    criterion_id: Mapped[int] = mapped_column(ForeignKey("criteria.id"))
    score: Mapped[int] = mapped_column(Integer)
    justification: Mapped[str] = mapped_column(Text)
    # Why the consensus departs from the evaluators' marks, when it does (the rule:
    # dps.services.evaluation.scoring.departs). For the record, not for the bidders' letters.
    departure_reason: Mapped[str | None] = mapped_column(Text)
    moderated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    moderated_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))


class Award(db.Model):
    """The award decision: one per competition, enforced by the database."""

    __tablename__ = "awards"
    __table_args__ = (
        CheckConstraint("value_pence > 0", name="value_positive"),
        CheckConstraint("standstill_ends_at IS NULL OR standstill_ends_at > decided_at", name="standstill_after_decision"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    competition_id: Mapped[int] = mapped_column(ForeignKey("competitions.id"), unique=True)
    bid_id: Mapped[int] = mapped_column(ForeignKey("bids.id"))
    value_pence: Mapped[int] = mapped_column(BigInteger)
    # Set when the award does not go to the best-ranked bid: exports flag these.
    not_best_reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    standstill_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    competition: Mapped[Competition] = relationship(back_populates="award")
    bid: Mapped[Bid] = relationship()


class CallOff(db.Model):
    """The call-off contract a confirmed award creates, charged to the network budget."""

    __tablename__ = "call_offs"
    __table_args__ = (
        CheckConstraint("value_pence > 0", name="value_positive"),
        CheckConstraint("ends_on >= starts_on", name="period"),
        CheckConstraint("paid_pence >= 0 AND paid_pence <= value_pence", name="paid_within_value"),
        CheckConstraint("irrecoverable_vat_pence >= 0 AND irrecoverable_vat_pence <= value_pence",
                        name="irrecoverable_vat_within_value"),
        # A buyer's call-offs, newest first (its keyset page).
        Index("ix_call_offs_buyer_created", "buyer_organisation_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(40), unique=True)
    competition_id: Mapped[int] = mapped_column(ForeignKey("competitions.id"), unique=True)
    award_id: Mapped[int] = mapped_column(ForeignKey("awards.id"), unique=True)
    supplier_organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    buyer_organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("allocations.id"), index=True)
    value_pence: Mapped[int] = mapped_column(BigInteger)
    paid_pence: Mapped[int] = mapped_column(BigInteger, default=0)
    # The part of the value (which includes VAT) that is VAT the buyer cannot recover: the
    # Transparency Code asks for it. Most councils recover VAT (VAT Act 1994 s33), so often 0.
    irrecoverable_vat_pence: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    competition: Mapped[Competition] = relationship()
    supplier: Mapped[Organisation] = relationship(foreign_keys=[supplier_organisation_id])
    buyer: Mapped[Organisation] = relationship(foreign_keys=[buyer_organisation_id])
    allocation: Mapped[Allocation] = relationship()
    invoices: Mapped[list["Invoice"]] = relationship(back_populates="call_off", order_by="Invoice.paid_on")


class Invoice(db.Model):
    """An invoice paid against a call-off; paid never exceeds the call-off's value."""

    __tablename__ = "invoices"
    __table_args__ = (CheckConstraint("amount_pence > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_off_id: Mapped[int] = mapped_column(ForeignKey("call_offs.id"), index=True)
    supplier_reference: Mapped[str] = mapped_column(String(100))
    amount_pence: Mapped[int] = mapped_column(BigInteger)
    paid_on: Mapped[date] = mapped_column(Date)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))

    call_off: Mapped[CallOff] = relationship(back_populates="invoices")
