"""Mini-competitions: who may buy, creating, publishing to every admitted supplier, cancelling.

PCR 2015 reg 34: every supplier admitted to the lot is invited, at once, electronically; at
least 10 days for receipt of tenders after the invitation is sent; award on the criteria set out.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import String, and_, func, or_, select, update
from sqlalchemy.orm import contains_eager, joinedload, selectinload
from sqlalchemy.orm.attributes import set_committed_value
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


def allocations_for(user: User) -> list[Allocation]:
    """Budget a buyer may charge a call-off to: its own organisation's allocations (for the
    network's own buyers, the network's allocations on its lines)."""
    # Loaded with their line and year: every page that offers them shows both.
    return list(db.session.scalars(
        select(Allocation).join(Allocation.line).join(BudgetLine.year)
        .options(contains_eager(Allocation.line).contains_eager(BudgetLine.year))
        .where(Allocation.organisation_id == user.organisation_id)
        .order_by(BudgetYear.starts_on.desc(), BudgetLine.programme, Allocation.project_title, Allocation.id)))


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


def _check_dps_valid(lot: Lot) -> None:
    """Call-offs are made only while the DPS is valid (reg 34): none before it opens or after it
    ends (call-offs already made run on)."""
    agreement = lot.agreement
    if not is_open(agreement):
        raise ServiceError(closed_message(agreement, "starting a mini-competition"), field="lot")


def create(user: User, *, lot_id: int, title: str, description: str, estimated_value_pence: int, allocation_id: int,
           clarification_deadline: datetime, tender_deadline: datetime, criteria: list[CriterionInput],
           standstill: bool | None = None, price_formula: str = "lowest_price_ratio") -> tuple[Competition, list[str]]:
    """A draft competition. Returns it with any warnings (e.g. little weight on social value)."""
    reason = why_cannot_buy(user)
    if reason:
        raise ServiceError(reason)
    lot = db.session.get(Lot, lot_id)
    if lot is None or lot.agreement.published_at is None:
        raise ServiceError("Choose a lot of an open agreement", field="lot")
    _check_dps_valid(lot)
    if price_formula not in PRICE_FORMULAS:
        raise ServiceError("Choose how price is scored", field="price_formula")
    allocation = db.session.get(Allocation, allocation_id)
    if allocation is None or allocation.organisation_id != user.organisation_id:
        raise ServiceError("Choose one of your organisation's allocations", field="allocation")
    if estimated_value_pence <= 0:
        raise ServiceError("Enter the estimated value, more than £0", field="estimated_value")
    cap = allocation.line.cap_per_call_off_pence
    if cap is not None and estimated_value_pence > cap:
        raise ServiceError(f"{allocation.line.programme} call-offs are capped at £{cap / 100:,.2f} each",
                           field="estimated_value")
    _check_deadlines(clarification_deadline, tender_deadline, clock.now())
    warnings = check_criteria(criteria)
    now = clock.now()
    if standstill is None:
        standstill = estimated_value_pence >= threshold_on(clock.to_london(now).date())
    competition = Competition(
        reference="pending", lot_id=lot.id, buyer_organisation_id=user.organisation_id, created_by_id=user.id,
        title=title.strip(), description=description.strip(), estimated_value_pence=estimated_value_pence,
        allocation_id=allocation.id, clarification_deadline=clarification_deadline, tender_deadline=tender_deadline,
        standstill=standstill, standstill_days=10, price_formula=price_formula, created_at=now)
    for position, c in enumerate(criteria, start=1):
        competition.criteria.append(Criterion(position=position, kind=c.kind, title=c.title.strip(), weight=c.weight,
                                              description=c.description.strip(), word_limit=c.word_limit))
    db.session.add(competition)
    db.session.flush()
    competition.reference = f"CCIN-MC-{clock.to_london(now).year}-{competition.id:04d}"
    audit.record("competition.created", "competition", competition.id, {
        "reference": competition.reference, "lot": lot.number, "title": competition.title,
        "estimated_value_pence": estimated_value_pence, "allocation_id": allocation.id,
        "tender_deadline": tender_deadline.isoformat(), "standstill": standstill,
        "criteria": [{"kind": c.kind, "title": c.title, "weight": c.weight} for c in criteria]})
    return competition, warnings


def publish(competition: Competition, user: User) -> list[Invitation]:
    """Invite every supplier admitted to the lot at this moment, record the list, tell them."""
    if competition.refusal("publish", clock.now()) is not None:
        raise ServiceError("Only a draft competition can be published")
    if user.organisation_id != competition.buyer_organisation_id:
        raise ServiceError("Only the buying organisation can publish its competition")
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


def commit_to_budget(allocation_id: int, amount_pence: int) -> int:
    """Commit ``amount_pence`` of an allocation, never past its amount, even with many awards
    confirmed at the same moment: one conditional UPDATE, checked by what it returns (DESIGN 5).
    The CHECK constraint on allocations is the last line of defence. Returns the allocation's
    committed amount after it.

    The UPDATE takes the allocation's row lock, which every other confirmation charged to it
    waits for until this transaction ends: callers make it their last change before commit."""
    cap, programme = db.session.execute(
        select(BudgetLine.cap_per_call_off_pence, BudgetLine.programme)
        .join(Allocation, Allocation.line_id == BudgetLine.id).where(Allocation.id == allocation_id)).one()
    if cap is not None and amount_pence > cap:
        raise ServiceError(f"{programme} call-offs are capped at £{cap / 100:,.2f} each")
    committed = db.session.execute(
        update(Allocation)
        .where(Allocation.id == allocation_id, Allocation.committed_pence + amount_pence <= Allocation.amount_pence)
        .values(committed_pence=Allocation.committed_pence + amount_pence)
        .returning(Allocation.committed_pence)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if committed is None:
        title, amount, committed = db.session.execute(
            select(Allocation.project_title, Allocation.amount_pence, Allocation.committed_pence)
            .where(Allocation.id == allocation_id)).one()
        raise ServiceError(f"There is not enough left in “{title}”: £{(amount - committed) / 100:,.2f} remains, "
                           f"and this call-off needs £{amount_pence / 100:,.2f}")
    allocation = db.session.identity_map.get(db.session.identity_key(Allocation, allocation_id))
    if allocation is not None:  # already loaded: show it the committed amount, without a query
        set_committed_value(allocation, "committed_pence", committed)
    return committed


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


def appoint_panel(competition: Competition, user: User, colleague_ids: list[int]) -> list[PanelMember]:
    """The evaluation panel chosen when the competition is created: at least one buyer of the
    buying organisation. Later changes are dps.services.evaluation.add_panel_member."""
    _require_buying_organisation(competition, user, "choose its evaluation panel")
    if competition.refusal("edit", clock.now()) is not None:
        raise ServiceError("The panel is chosen when the competition is created", field="panel")
    wanted = list(dict.fromkeys(colleague_ids))
    if not wanted:
        raise ServiceError("Choose at least one person for the evaluation panel", field="panel")
    people = {person.id: person for person in db.session.scalars(select(User).where(User.id.in_(wanted)))}
    members = []
    for colleague_id in wanted:
        colleague = people.get(colleague_id)
        if (colleague is None or colleague.organisation_id != competition.buyer_organisation_id
                or colleague.role != "buyer" or not colleague.active):
            raise ServiceError(f"Choose buyers of {competition.buyer_organisation.name} for the panel", field="panel")
        members.append(PanelMember(competition_id=competition.id, user_id=colleague.id))
    db.session.add_all(members)
    db.session.flush()
    for member in members:
        # The same event as a later addition to the panel, so the log reads as one history.
        audit.record("panel.member_added", "competition", competition.id,
                     {"user_id": member.user_id, "email": people[member.user_id].email}, actor=user)
    return members


def add_document(competition: Competition, user: User, upload: FileStorage | None) -> CompetitionDocument:
    """Store a specification document and attach it to a draft competition.

    Drafts only: once suppliers are invited, they must all be told of any change, which is what
    a clarification does."""
    _require_buying_organisation(competition, user, "add documents to its competition")
    if competition.refusal("edit", clock.now()) is not None:
        raise ServiceError("Documents can only be added before the competition is published", field="document")
    document = documents.store(user, upload, field="document")
    link = CompetitionDocument(competition_id=competition.id, document_id=document.id)
    db.session.add(link)
    db.session.flush()
    audit.record("competition.document_added", "competition", competition.id,
                 {"document_id": document.id, "filename": document.filename, "sha256": document.sha256}, actor=user)
    return link


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
