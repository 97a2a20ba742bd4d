"""Mini-competitions: who may buy, creating, publishing to every admitted supplier, cancelling.

PCR 2015 reg 34: every supplier admitted to the lot is invited, at once, electronically; at
least 10 days for receipt of tenders after the invitation is sent; award on the criteria set out.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import String, and_, func, or_, select, update
from sqlalchemy.orm import contains_eager, joinedload, selectinload
from werkzeug.datastructures import FileStorage

from .. import audit, clock, mail
from ..extensions import db
from ..models import (
    Admission,
    Allocation,
    Bid,
    BudgetLine,
    BudgetYear,
    CallOff,
    Competition,
    CompetitionDocument,
    Criterion,
    Document,
    Invitation,
    Lot,
    Organisation,
    PanelMember,
    User,
)
from ..models.competitions import CRITERION_KINDS, PRICE_FORMULAS, Stage
from ..pagination import Page, contains, keyset_page
from . import ServiceError, documents, notify
from .accounts import buyer_ineligibility
from .agreements import closed_message, is_open
from .bids import BidderStatus

MIN_TENDER_DAYS = 10
SOCIAL_VALUE_ADVISED = 10
# A standstill, when there is one, is at least 10 days when the award is sent electronically
# (PCR 2015 reg 87). A buyer may choose longer, up to 30 days: more is far more likely a typing
# slip than a pause anyone wants before the contract is confirmed.
DEFAULT_STANDSTILL_DAYS = MIN_STANDSTILL_DAYS = 10
MAX_STANDSTILL_DAYS = 30
# Sub-central thresholds for services, in pence including VAT, by the date they took effect.
SERVICES_THRESHOLDS = (
    (date(2020, 1, 1), 189_330_00),
    (date(2022, 1, 1), 213_477_00),
    (date(2024, 1, 1), 214_904_00),
)


def threshold_on(day: date) -> int:
    amount = SERVICES_THRESHOLDS[0][1]
    for start, value in SERVICES_THRESHOLDS:
        if day >= start:
            amount = value
    return amount


def open_lots() -> list[Lot]:
    """Lots a buyer may run a mini-competition on now: those of every open agreement."""
    from .agreements import open_agreements

    return [lot for agreement in open_agreements() for lot in agreement.lots]


def why_cannot_buy(user: User) -> str | None:
    """None if ``user`` may run mini-competitions; otherwise the reason, for the page."""
    if user.role != "buyer":
        return "Only buyers of the network's members can run mini-competitions."
    return buyer_ineligibility(user.organisation)


def payable_allocations(user: User, today: date) -> list[Allocation]:
    """The allocations a new competition of ``user``'s can be charged to on ``today``: its own
    organisation's, of the financial year containing ``today``, with something left to commit.
    Loaded with their line and year, which every label shows."""
    return list(db.session.scalars(
        select(Allocation).join(Allocation.line).join(BudgetLine.year)
        .options(contains_eager(Allocation.line).contains_eager(BudgetLine.year))
        .where(Allocation.organisation_id == user.organisation_id,
               BudgetYear.starts_on <= today, BudgetYear.ends_on >= today,
               Allocation.committed_pence < Allocation.amount_pence)
        .order_by(BudgetLine.programme, Allocation.project_title, Allocation.id)))


def own_allocation(user: User, allocation_id: int | None) -> Allocation | None:
    """One of ``user``'s organisation's allocations, with its line and year, or None (another
    organisation's, or none at all)."""
    if allocation_id is None:
        return None
    return db.session.scalar(
        select(Allocation).join(Allocation.line).join(BudgetLine.year)
        .options(contains_eager(Allocation.line).contains_eager(BudgetLine.year))
        .where(Allocation.id == allocation_id, Allocation.organisation_id == user.organisation_id))


@dataclass
class CriterionInput:
    kind: str
    title: str
    weight: int
    description: str = ""
    word_limit: int | None = None


def check_criteria(criteria: list[CriterionInput]) -> list[str]:
    """Refuse criteria that break the rules; return warnings that do not."""
    if not criteria:
        raise ServiceError("Add the award criteria", field="criteria")
    # Each weight is checked before the total, so a zero or negative weight cannot make up a
    # total of 100 (and never reaches the database's own check as an error page).
    for c in criteria:
        if c.kind not in CRITERION_KINDS:
            raise ServiceError("Each criterion must be quality, price or social value", field="criteria")
        if not c.title.strip():
            raise ServiceError("Enter a title for each criterion", field="criteria")
        if not 1 <= c.weight <= 100:
            raise ServiceError(f"Give “{c.title.strip()}” a weight from 1% to 100%", field="criteria")
    total = sum(c.weight for c in criteria)
    if total != 100:
        raise ServiceError(f"The weights must add up to 100%: they add up to {total}%", field="criteria")
    kinds = [c.kind for c in criteria]
    if kinds.count("price") != 1:
        raise ServiceError("Include exactly one price criterion", field="criteria")
    if "quality" not in kinds:
        raise ServiceError("Include at least one quality criterion", field="criteria")
    warnings = []
    social = sum(c.weight for c in criteria if c.kind == "social_value")
    if social < SOCIAL_VALUE_ADVISED:
        warnings.append(f"Social value is weighted {social}%. The network expects at least {SOCIAL_VALUE_ADVISED}% "
                        "(Public Services (Social Value) Act 2012).")
    return warnings


def _check_deadlines(clarification_deadline: datetime, tender_deadline: datetime, publish_at: datetime) -> None:
    earliest = publish_at + timedelta(days=MIN_TENDER_DAYS)
    if tender_deadline < earliest:
        raise ServiceError(
            f"The tender deadline must be at least {MIN_TENDER_DAYS} days after the invitation is sent "
            f"(PCR 2015 reg 34): if published now, no earlier than {clock.fmt(earliest)}", field="tender_deadline")
    if clarification_deadline <= publish_at:
        raise ServiceError("The deadline for questions must be in the future", field="clarification_deadline")
    if clarification_deadline >= tender_deadline:
        raise ServiceError("The deadline for questions must be before the tender deadline", field="clarification_deadline")


def _check_dps_valid(lot: Lot, doing: str = "starting a mini-competition") -> None:
    """Call-offs are made only while the DPS is valid (reg 34): none before it opens or after it
    ends (call-offs already made run on)."""
    agreement = lot.agreement
    if not is_open(agreement):
        raise ServiceError(closed_message(agreement, doing), field="lot")


@dataclass
class CompetitionInputs:
    """Everything a buyer sets on a draft competition, as its new and edit pages send it."""

    lot_id: int | None
    title: str
    description: str
    estimated_value_pence: int
    allocation_id: int | None
    clarification_deadline: datetime
    tender_deadline: datetime
    criteria: list[CriterionInput]
    # None: a standstill when the estimated value is at or above the services threshold.
    standstill: bool | None = None
    # None: the default length. Read only when there is a standstill.
    standstill_days: int | None = None
    price_formula: str = "lowest_price_ratio"


@dataclass
class _Checked:
    lot: Lot
    allocation: Allocation
    standstill: bool
    warnings: list[str]


def _check(user: User, inputs: CompetitionInputs, doing: str) -> _Checked:
    """The rules a draft meets, when it is created and every time it is changed: one path, so an
    edit can never save what creation would refuse. Raises ServiceError naming the field."""
    reason = why_cannot_buy(user)
    if reason:
        raise ServiceError(reason)
    lot = db.session.get(Lot, inputs.lot_id) if inputs.lot_id is not None else None
    if lot is None or lot.agreement.published_at is None:
        raise ServiceError("Choose a lot of an open agreement", field="lot")
    _check_dps_valid(lot, doing)
    if inputs.price_formula not in PRICE_FORMULAS:
        raise ServiceError("Choose how price is scored", field="price_formula")
    allocation = db.session.get(Allocation, inputs.allocation_id) if inputs.allocation_id is not None else None
    if allocation is None or allocation.organisation_id != user.organisation_id:
        raise ServiceError("Choose one of your organisation's allocations", field="allocation")
    if inputs.estimated_value_pence <= 0:
        raise ServiceError("Enter the estimated value, more than £0", field="estimated_value")
    cap = allocation.line.cap_per_call_off_pence
    if cap is not None and inputs.estimated_value_pence > cap:
        raise ServiceError(f"{allocation.line.programme} call-offs are capped at £{cap / 100:,.2f} each",
                           field="estimated_value")
    _check_deadlines(inputs.clarification_deadline, inputs.tender_deadline, clock.now())
    warnings = check_criteria(inputs.criteria)
    standstill = inputs.standstill
    if standstill is None:
        standstill = inputs.estimated_value_pence >= threshold_on(clock.to_london(clock.now()).date())
    if standstill and inputs.standstill_days is not None and not (
            MIN_STANDSTILL_DAYS <= inputs.standstill_days <= MAX_STANDSTILL_DAYS):
        raise ServiceError(f"The standstill period must be from {MIN_STANDSTILL_DAYS} to {MAX_STANDSTILL_DAYS} days "
                           f"(PCR 2015 reg 87: at least {MIN_STANDSTILL_DAYS} when the award is sent electronically)",
                           field="standstill_days")
    return _Checked(lot, allocation, standstill, warnings)


def _columns(inputs: CompetitionInputs, checked: _Checked, standstill_days: int) -> dict:
    """The competition's own columns, from checked inputs. ``standstill_days``: the length kept
    when there is no standstill (it is not asked for then)."""
    if checked.standstill:
        standstill_days = inputs.standstill_days if inputs.standstill_days is not None else DEFAULT_STANDSTILL_DAYS
    return {
        "lot_id": checked.lot.id, "title": inputs.title.strip(), "description": inputs.description.strip(),
        "estimated_value_pence": inputs.estimated_value_pence, "allocation_id": checked.allocation.id,
        "clarification_deadline": inputs.clarification_deadline, "tender_deadline": inputs.tender_deadline,
        "standstill": checked.standstill, "standstill_days": standstill_days, "price_formula": inputs.price_formula,
    }


def _criterion_record(kind: str, title: str, weight: int, description: str, word_limit: int | None) -> dict:
    return {"kind": kind, "title": title.strip(), "weight": weight, "description": (description or "").strip(),
            "word_limit": word_limit}


_KIND_ORDER = {"price": 0, "quality": 1, "social_value": 2}


def _saved_criteria(competition: Competition) -> list[Criterion]:
    """The saved criteria in the order the form lays them out (price, quality, social value), so a
    draft saved again unchanged is not a change of order."""
    return sorted(competition.criteria, key=lambda c: (_KIND_ORDER.get(c.kind, 3), c.position))


def _set_criteria(competition: Competition, criteria: list[CriterionInput]) -> None:
    """Make the competition's criteria these, in this order. Rows are reused by position: a
    draft has no bids, so nothing refers to them yet."""
    rows = sorted(competition.criteria, key=lambda c: c.position)
    for position, c in enumerate(criteria, start=1):
        record = _criterion_record(c.kind, c.title, c.weight, c.description, c.word_limit)
        if position <= len(rows):
            row = rows[position - 1]
            row.position = position
            for name, value in record.items():
                setattr(row, name, value)
        else:
            competition.criteria.append(Criterion(position=position, **record))
    for row in rows[len(criteria):]:
        competition.criteria.remove(row)  # delete-orphan: the row goes


def _audit_value(value):
    return value.isoformat() if isinstance(value, (date, datetime)) else value


def create(user: User, inputs: CompetitionInputs | None = None, **fields) -> tuple[Competition, list[str]]:
    """A draft competition, from ``inputs`` (or the same given as keywords). Returns it with any
    warnings (e.g. little weight on social value)."""
    if inputs is None:
        inputs = CompetitionInputs(**fields)
    checked = _check(user, inputs, "starting a mini-competition")
    now = clock.now()
    competition = Competition(
        reference="pending", buyer_organisation_id=user.organisation_id, created_by_id=user.id, created_at=now,
        **_columns(inputs, checked, DEFAULT_STANDSTILL_DAYS))
    _set_criteria(competition, inputs.criteria)
    db.session.add(competition)
    db.session.flush()
    competition.reference = f"CCIN-MC-{clock.to_london(now).year}-{competition.id:04d}"
    audit.record("competition.created", "competition", competition.id, {
        "reference": competition.reference, "lot": checked.lot.number, "title": competition.title,
        "estimated_value_pence": competition.estimated_value_pence, "allocation_id": checked.allocation.id,
        "tender_deadline": inputs.tender_deadline.isoformat(), "standstill": checked.standstill,
        "standstill_days": competition.standstill_days,
        "criteria": [{"kind": c.kind, "title": c.title, "weight": c.weight} for c in inputs.criteria]})
    return competition, checked.warnings


def edit_refusal(competition: Competition) -> str | None:
    """Why the competition can no longer be changed, in words; None while it is a draft."""
    refusal = competition.refusal("edit", clock.now())
    if refusal is None:
        return None
    return f"Only a draft competition can be changed. {refusal}."


def _lock_draft(competition: Competition, message: str | None = None, field: str | None = None) -> None:
    """Take the competition's row lock while it is still a draft, and re-read it; refuse (with
    ``message``, or why it is no longer a draft) when it is not.

    A change to a draft and its publication (or cancellation) at the same moment are so put one
    after the other: the UPDATE that changes nothing waits for the other's row lock, and its
    condition is then checked again against what the other committed (PostgreSQL), so an edit
    never lands on a competition whose suppliers were already invited with the old terms. On
    SQLite every writing transaction holds the write lock from its start (BEGIN IMMEDIATE)."""
    db.session.flush()  # the re-read below must not drop a change made before the call
    locked = db.session.execute(
        update(Competition)
        .where(Competition.id == competition.id, Competition.stage_at(clock.now()) == Stage.DRAFT.value)
        .values(reference=Competition.reference)
        .execution_options(synchronize_session=False)).rowcount
    db.session.refresh(competition)
    if not locked or competition.refusal("edit", clock.now()) is not None:
        raise ServiceError(message or edit_refusal(competition) or "Only a draft competition can be changed",
                           field=field)


def update_draft(competition: Competition, user: User, inputs: CompetitionInputs) -> tuple[list[str], list[str]]:
    """Change a draft: every field and the criteria, with the checks of creation (``_check``).
    Returns the names of what changed (empty: nothing did, and nothing is written) and any
    warnings. The audit event records each changed value before and after."""
    _require_buying_organisation(competition, user, "change its competition")
    _lock_draft(competition)
    checked = _check(user, inputs, "changing a mini-competition")
    values = _columns(inputs, checked, competition.standstill_days)
    changed = {name: value for name, value in values.items() if getattr(competition, name) != value}
    before = {name: _audit_value(getattr(competition, name)) for name in changed}
    after = {name: _audit_value(value) for name, value in changed.items()}
    saved = [_criterion_record(c.kind, c.title, c.weight, c.description, c.word_limit)
             for c in _saved_criteria(competition)]
    wanted = [_criterion_record(c.kind, c.title, c.weight, c.description, c.word_limit) for c in inputs.criteria]
    if saved != wanted:
        before["criteria"], after["criteria"] = saved, wanted
    if not after:
        return [], checked.warnings
    for name, value in changed.items():
        setattr(competition, name, value)
    if "criteria" in after:
        _set_criteria(competition, inputs.criteria)
    db.session.flush()
    audit.record("competition.updated", "competition", competition.id,
                 {"reference": competition.reference, "before": before, "after": after}, actor=user)
    return list(after), checked.warnings


def publish(competition: Competition, user: User) -> list[Invitation]:
    """Invite every supplier admitted to the lot at this moment, record the list, tell them."""
    if user.organisation_id != competition.buyer_organisation_id:
        raise ServiceError("Only the buying organisation can publish its competition")
    # Locked and re-read, so what is published (and emailed) is the draft as last saved.
    _lock_draft(competition, "Only a draft competition can be published")
    # The organisation may have lost the right to buy since the draft was made (e.g. now an Affiliate).
    reason = why_cannot_buy(user)
    if reason:
        raise ServiceError(reason)
    now = clock.now()
    _check_dps_valid(competition.lot)
    _check_deadlines(competition.clarification_deadline, competition.tender_deadline, now)
    suppliers = db.session.scalars(
        select(Organisation).join(Admission, Admission.organisation_id == Organisation.id)
        .where(Admission.lot_id == competition.lot_id, Admission.status == "admitted")
        .order_by(Organisation.name)).all()
    if not suppliers:
        raise ServiceError(f"No supplier is admitted to Lot {competition.lot.number} yet, so there is nobody to invite")
    competition.published_at = now
    invitations = [Invitation(competition_id=competition.id, organisation_id=org.id, invited_at=now) for org in suppliers]
    db.session.add_all(invitations)
    db.session.flush()
    audit.record("competition.published", "competition", competition.id, {
        "reference": competition.reference, "invited": [org.id for org in suppliers],
        "tender_deadline": competition.tender_deadline.isoformat()})
    for org in suppliers:
        for email in notify.organisation_emails(org):
            mail.queue(email, f"Invitation to tender: {competition.title} ({competition.reference})",
                       f"{competition.buyer_organisation.name} invites {org.name} to a mini-competition under "
                       f"Lot {competition.lot.number} of the CCIN DPS: {competition.title}.\n\n"
                       f"Questions by {clock.fmt(competition.clarification_deadline)}.\n"
                       f"Tenders by {clock.fmt(competition.tender_deadline)}.\n\n"
                       f"{notify.link(f'/supplier/competitions/{competition.id}')}\n")
    return invitations


def cancel(competition: Competition, user: User, reason: str) -> None:
    if competition.refusal("cancel", clock.now()) is not None:
        raise ServiceError("This competition can no longer be cancelled")
    if user.organisation_id != competition.buyer_organisation_id:
        raise ServiceError("Only the buying organisation can cancel its competition")
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("Enter why the competition is cancelled: invited suppliers will read it", field="reason")
    competition.cancelled_at = clock.now()
    competition.cancel_reason = reason
    db.session.flush()
    audit.record("competition.cancelled", "competition", competition.id, {"reason": reason})
    for invitation in competition.invitations:
        for email in notify.organisation_emails(invitation.organisation):
            mail.queue(email, f"Cancelled: {competition.title} ({competition.reference})",
                       f"{competition.buyer_organisation.name} has cancelled this mini-competition.\n\nWhy: {reason}\n")


# The evaluation panel and the specification documents -------------------------------------------

def _require_buying_organisation(competition: Competition, user: User, doing: str) -> None:
    if user.role != "buyer" or user.organisation_id != competition.buyer_organisation_id:
        raise ServiceError(f"Only the buying organisation can {doing}")


def panel_candidates(user: User) -> list[User]:
    """The people who may sit on a panel of ``user``'s organisation: its buyers with live accounts."""
    return list(db.session.scalars(
        select(User).where(User.organisation_id == user.organisation_id, User.role == "buyer",
                           User.active.is_(True))
        .order_by(User.name, User.id)))


@dataclass
class PanelChange:
    added: list[User]
    removed: list[User]


def appoint_panel(competition: Competition, user: User, colleague_ids: list[int]) -> PanelChange:
    """The evaluation panel of a draft, as its new and edit pages choose it: at least one buyer of
    the buying organisation. Those chosen who are not on it join; those on it who are no longer
    chosen leave (a draft's panel has neither declared nor scored, so nothing of theirs is lost).
    After publication colleagues are added on the evaluation pages
    (dps.services.evaluation.add_panel_member)."""
    _require_buying_organisation(competition, user, "choose its evaluation panel")
    _lock_draft(competition, field="panel")
    wanted = list(dict.fromkeys(colleague_ids))
    if not wanted:
        raise ServiceError("Choose at least one person for the evaluation panel", field="panel")
    people = {person.id: person for person in db.session.scalars(select(User).where(User.id.in_(wanted)))}
    for colleague_id in wanted:
        colleague = people.get(colleague_id)
        if colleague is None or colleague.organisation_id != competition.buyer_organisation_id or colleague.role != "buyer":
            raise ServiceError(f"Choose buyers of {competition.buyer_organisation.name} for the panel", field="panel")
        if not colleague.active:
            raise ServiceError(f"{colleague.name}’s account is closed, so they cannot sit on the panel: untick them",
                               field="panel")
    current = {member.user_id: member for member in db.session.scalars(
        select(PanelMember).options(joinedload(PanelMember.user)).where(PanelMember.competition_id == competition.id))}
    joining = [PanelMember(competition_id=competition.id, user_id=i) for i in wanted if i not in current]
    leaving = [member for user_id, member in current.items() if user_id not in people]
    db.session.add_all(joining)
    for member in leaving:
        db.session.delete(member)
    db.session.flush()
    for member in joining:
        # The same event as a later addition to the panel, so the log reads as one history.
        audit.record("panel.member_added", "competition", competition.id,
                     {"user_id": member.user_id, "email": people[member.user_id].email}, actor=user)
    for member in leaving:
        audit.record("panel.member_removed", "competition", competition.id,
                     {"user_id": member.user_id, "email": member.user.email}, actor=user)
    return PanelChange([people[m.user_id] for m in joining], [m.user for m in leaving])


def add_document(competition: Competition, user: User, upload: FileStorage | None) -> CompetitionDocument:
    """Store a specification document and attach it to a draft competition.

    Drafts only: once suppliers are invited, they must all be told of any change, which is what
    a clarification does."""
    _require_buying_organisation(competition, user, "add documents to its competition")
    _lock_draft(competition, "Documents can only be added before the competition is published", field="document")
    document = documents.store(user, upload, field="document")
    link = CompetitionDocument(competition_id=competition.id, document_id=document.id)
    db.session.add(link)
    db.session.flush()
    audit.record("competition.document_added", "competition", competition.id,
                 {"document_id": document.id, "filename": document.filename, "sha256": document.sha256}, actor=user)
    return link


def remove_document(competition: Competition, user: User, link: CompetitionDocument) -> Document:
    """Take a specification document out of a draft competition. The document itself is kept
    (its row and its bytes stay its organisation's, like every record): it is only no longer
    part of what suppliers will be sent."""
    _require_buying_organisation(competition, user, "remove documents from its competition")
    if link.competition_id != competition.id:
        raise ServiceError("That document is not part of this competition’s specification")
    _lock_draft(competition, "Documents can only be removed before the competition is published")
    document = link.document
    db.session.delete(link)
    db.session.flush()
    audit.record("competition.document_removed", "competition", competition.id,
                 {"document_id": document.id, "filename": document.filename, "sha256": document.sha256}, actor=user)
    return document


# The lists, a page at a time --------------------------------------------------------------------
#
# Keyset pages (dps.pagination), each read off an index that holds its rows in page order, so a
# page costs the same few queries, and reads the same few rows, however long the list. Scoping
# is the caller's: it passes the organisation the signed-in user belongs to.

# Newest first; ix_competitions_buyer_created and ix_call_offs_buyer_created.
COMPETITION_ORDER = (Competition.created_at.desc(), Competition.id.desc())
CALL_OFF_ORDER = (CallOff.created_at.desc(), CallOff.id.desc())
# The latest invitation first (ix_invitations_organisation_invited): a supplier's open
# competitions are its newest invitations.
INVITATION_ORDER = (Invitation.invited_at.desc(), Invitation.id.desc())
# lower(): SQLite and PostgreSQL collate differently; this gives one order on both.
INVITED_ORDER = (func.lower(Organisation.name, type_=String), Organisation.id)


def competitions_of(organisation_id: int, text: str = "", *, after: str | None = None,
                    before: str | None = None) -> Page:
    """A page of the organisation's competitions, newest first, whose title or reference
    contains ``text`` (any case), with how many there are."""
    stmt = (select(Competition).where(Competition.buyer_organisation_id == organisation_id)
            # The page shows each one's lot and agreement; its stage reads the award.
            .options(joinedload(Competition.lot).joinedload(Lot.agreement), selectinload(Competition.award)))
    if text:
        stmt = stmt.where(or_(contains(Competition.title, text), contains(Competition.reference, text)))
    return keyset_page(stmt, COMPETITION_ORDER, after=after, before=before)


def invited_suppliers(competition: Competition, *, after: str | None = None, before: str | None = None) -> Page:
    """A page of the suppliers invited to ``competition``, by name, as the buyer may see them
    before the deadline (dps.services.bids.BidderStatus: names and times, never content)."""
    stmt = (select(Organisation.id, Organisation.name, Invitation.invited_at, Invitation.first_opened_at,
                   Bid.submitted_at, Admission.status)
            .select_from(Invitation)
            .join(Organisation, Organisation.id == Invitation.organisation_id)
            .outerjoin(Bid, and_(Bid.competition_id == Invitation.competition_id,
                                 Bid.organisation_id == Invitation.organisation_id, Bid.state == "submitted"))
            .outerjoin(Admission, and_(Admission.organisation_id == Invitation.organisation_id,
                                       Admission.lot_id == competition.lot_id))
            .where(Invitation.competition_id == competition.id))
    page = keyset_page(stmt, INVITED_ORDER, after=after, before=before)
    page.rows = [BidderStatus(*row) for row in page.rows]
    return page


@dataclass(frozen=True)
class InvitationCounts:
    invited: int
    opened: int
    submitted: int


def invitation_counts(competition: Competition) -> InvitationCounts:
    """How many suppliers were invited, have opened the invitation and have a bid submitted: one
    query over the competition's invitations (uq_invitations_pair, uq_bids_pair)."""
    invited, opened, submitted = db.session.execute(
        select(func.count(), func.count(Invitation.first_opened_at), func.count(Bid.id))
        .select_from(Invitation)
        .outerjoin(Bid, and_(Bid.competition_id == Invitation.competition_id,
                             Bid.organisation_id == Invitation.organisation_id, Bid.state == "submitted"))
        .where(Invitation.competition_id == competition.id)).one()
    return InvitationCounts(invited, opened, submitted)


def invitations_of(organisation_id: int, *, open_only: bool = False, after: str | None = None,
                   before: str | None = None) -> Page:
    """A page of the organisation's invitations, the latest first, each with its competition
    and the state of the organisation's bid, as (Invitation, state or None); ``open_only``: those
    still open for tenders."""
    stmt = (select(Invitation, Bid.state)
            .join(Invitation.competition)
            .outerjoin(Bid, and_(Bid.competition_id == Invitation.competition_id,
                                 Bid.organisation_id == Invitation.organisation_id))
            .options(contains_eager(Invitation.competition).joinedload(Competition.buyer_organisation),
                     contains_eager(Invitation.competition).joinedload(Competition.lot),
                     # Competition.stage reads the award: loaded with the page, not once per row.
                     contains_eager(Invitation.competition).joinedload(Competition.award))
            .where(Invitation.organisation_id == organisation_id))
    if open_only:
        stmt = stmt.where(Competition.stage_at(clock.now()) == Stage.OPEN.value)
    return keyset_page(stmt, INVITATION_ORDER, after=after, before=before)


def call_offs_of(organisation_id: int, text: str = "", *, after: str | None = None,
                 before: str | None = None) -> Page:
    """A page of the call-off contracts the organisation has awarded, newest first, whose
    reference, contract title or supplier's name contains ``text`` (any case)."""
    stmt = (select(CallOff).join(CallOff.competition).join(CallOff.supplier)
            .options(contains_eager(CallOff.competition), contains_eager(CallOff.supplier))
            .where(CallOff.buyer_organisation_id == organisation_id))
    if text:
        stmt = stmt.where(or_(contains(CallOff.reference, text), contains(Competition.title, text),
                              contains(Organisation.name, text)))
    return keyset_page(stmt, CALL_OFF_ORDER, after=after, before=before)
