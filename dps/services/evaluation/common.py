"""What every part of the evaluation shares: who may act, the stage guard with a form field, the
competition's row lock, inserting once, and the submitted bids with their bidders' names."""
from __future__ import annotations

from sqlalchemy import String, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from ... import clock
from ...extensions import db
from ...models import Bid, Competition, Criterion, Organisation, PanelMember, User
from ...models.competitions import Stage, StageError
from .. import ServiceError

SCORED_KINDS = ("quality", "social_value")
KIND_LABELS = {"quality": "Quality", "price": "Price", "social_value": "Social value"}
PRICE_FORMULA_LABELS = {
    "lowest_price_ratio": "lowest price ÷ bid price × weight",
    "linear_from_lowest": "weight × (1 − (bid price − lowest price) ÷ lowest price), never below 0",
}


class FieldErrors(ServiceError):
    """Several refusals at once, each next to its own field: a form that scores or moderates
    every criterion of a bid says everything that is wrong with it in one go. The first is the
    message (and field) of the ServiceError it also is."""

    def __init__(self, errors: list[tuple[str, str]]):
        field, message = errors[0]
        super().__init__(message, field=field)
        self.errors = errors


def require_stage(competition: Competition, action: str, *, field: str | None = None) -> Stage:
    """``competition.require(action, now)``, the lifecycle's one guard, with the refusal put next
    to ``field`` of the form that asked."""
    try:
        return competition.require(action, clock.now())
    except StageError as refused:
        refused.field = field
        raise


# Who may act ----------------------------------------------------------------------------------

def panel(competition: Competition) -> list[PanelMember]:
    """The panel, in the order its members were added, with their accounts."""
    return list(db.session.scalars(
        select(PanelMember).where(PanelMember.competition_id == competition.id)
        .options(selectinload(PanelMember.user)).order_by(PanelMember.id)))


def panel_member(competition: Competition, user: User) -> PanelMember | None:
    return db.session.scalar(select(PanelMember).where(PanelMember.competition_id == competition.id,
                                                       PanelMember.user_id == user.id))


def is_evaluator(member: PanelMember | None) -> bool:
    """Declared no conflict of interest: sees the bids, scores, moderates and decides."""
    return member is not None and member.declared_at is not None and not member.conflicted


def evaluators(members: list[PanelMember]) -> list[PanelMember]:
    return [m for m in members if is_evaluator(m)]


def require_buyer_of(competition: Competition, user: User) -> None:
    if user.role != "buyer" or user.organisation_id != competition.buyer_organisation_id:
        raise ServiceError("Only buyers of the organisation running this competition can do this")


def require_panel_member(competition: Competition, user: User) -> PanelMember:
    require_buyer_of(competition, user)
    member = panel_member(competition, user)
    if member is None:
        raise ServiceError("Only members of this competition’s evaluation panel can do this")
    return member


def require_evaluator(competition: Competition, user: User) -> PanelMember:
    """A panel member who has declared no conflict of interest: the only people who see the
    bids, score them and decide (a conflicted member must take no part at all)."""
    member = require_panel_member(competition, user)
    if member.declared_at is None:
        raise ServiceError("Declare whether you have a conflict of interest first", field="conflicted")
    if member.conflicted:
        raise ServiceError("You declared a conflict of interest, so you cannot take part in this evaluation")
    return member


# Writing safely -------------------------------------------------------------------------------

def lock_competition(competition: Competition) -> None:
    """Take the competition's row lock, then re-read it, so two people deciding at once (an award
    and a closure, two awards) are put one after the other and the second sees the first's result.

    The lock is taken by an UPDATE that changes nothing rather than SELECT ... FOR UPDATE: as a
    write it goes through the same path as every other write (dps.audit takes the audit chain's
    lock only at the end of the transaction, after every row lock, so all writers lock in one
    order and cannot deadlock), and on PostgreSQL the re-read that follows is a new statement
    that sees whatever the transaction it waited for committed. SQLite: every transaction already
    holds the write lock (BEGIN IMMEDIATE)."""
    db.session.execute(update(Competition).where(Competition.id == competition.id)
                       .values(reference=Competition.reference).execution_options(synchronize_session=False))
    db.session.refresh(competition)


def lock_member(member: PanelMember) -> None:
    """The panel member's row lock, then a re-read: one member's marks saved from two windows at
    once are put one after the other, so the last of them sees every mark and records the
    submission (the same UPDATE-that-changes-nothing as ``lock_competition``)."""
    db.session.execute(update(PanelMember).where(PanelMember.id == member.id)
                       .values(declared_at=PanelMember.declared_at).execution_options(synchronize_session=False))
    db.session.refresh(member)


def _is_unique_violation(exc: IntegrityError) -> bool:
    original = exc.orig
    if getattr(original, "sqlstate", None) == "23505":  # PostgreSQL (psycopg): unique_violation
        return True
    return "UNIQUE constraint failed" in str(original)  # SQLite


def insert_once(obj: object, message: str) -> None:
    """Insert ``obj`` in a savepoint: when a UNIQUE constraint refuses it (someone else got there
    first), the refusal becomes ``message`` and the rest of the transaction is untouched. Any
    other integrity error is a bug, and is raised as it is."""
    try:
        with db.session.begin_nested():
            db.session.add(obj)
            db.session.flush()
    except IntegrityError as exc:
        if not _is_unique_violation(exc):
            raise
        raise ServiceError(message) from None


# Bids and criteria ----------------------------------------------------------------------------

def bidder_name(bid: Bid) -> str:
    return bid.organisation.trading_name or bid.organisation.name


def bidder_name_sql():
    """``bidder_name`` in SQL: the trading name when there is one, else the legal name."""
    return func.coalesce(func.nullif(Organisation.trading_name, ""), Organisation.name, type_=String)


def submitted_bids(competition: Competition) -> list[Bid]:
    """Every submitted bid with its answers, documents and bidder, by bidder's name: for the
    letters and the demo, which need them all (pages read a page of them)."""
    return list(db.session.scalars(
        select(Bid).join(Bid.organisation)
        .where(Bid.competition_id == competition.id, Bid.state == "submitted")
        .options(selectinload(Bid.answers), selectinload(Bid.documents), selectinload(Bid.organisation))
        .order_by(bidder_name_sql(), Bid.id)))


def bid_count(competition: Competition) -> int:
    return db.session.scalar(select(func.count(Bid.id)).where(Bid.competition_id == competition.id,
                                                              Bid.state == "submitted")) or 0


def scored_criteria(competition: Competition) -> list[Criterion]:
    """The criteria people score (quality and social value); price comes from its formula."""
    return [c for c in competition.criteria if c.kind in SCORED_KINDS]


def price_criterion(competition: Competition) -> Criterion | None:
    return next((c for c in competition.criteria if c.kind == "price"), None)


def check_bid(competition: Competition, bid: Bid, field: str | None = None) -> None:
    if bid.competition_id != competition.id or bid.state != "submitted":
        raise ServiceError("Choose a bid submitted to this competition", field=field)
