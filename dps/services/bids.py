"""Suppliers' bids to mini-competitions: invitations opened, drafts, documents, submission with a
receipt, withdrawal, and what the buyer may know about bidders before the deadline.

Rules (PCR 2015 reg 34; Directive 2014/24/EU Annex IV):
- Only an organisation invited to the competition bids, through its supplier accounts.
- Tenders are received while ``now < tender_deadline``: the deadline is the moment tenders close,
  so a submission at the deadline itself is refused. A draft is kept, but never becomes a bid.
- Each submission records its exact receipt time and gets a receipt reference.
- A supplier suspended from or removed from the lot after being invited cannot submit.
- A submitted bid stands unchanged until it is withdrawn: editing happens only in a draft or a
  withdrawn bid, so what the buyer opens is exactly what was received.
- Bid content (price, answers, documents, document names) is sealed until the deadline
  (``dps.services.sealed``). The audit log is readable by auditors before the deadline, so
  nothing written to it here carries content: ids, times and receipt references only.

The bid row is moved between states by conditional UPDATEs (``_transition``). Besides refusing a
transition that a colleague's request has already made, the UPDATE takes the row's lock, so on
PostgreSQL a submission and an edit of the same bid never interleave (SQLite serialises writers
with BEGIN IMMEDIATE anyway).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.datastructures import FileStorage

from .. import audit, clock, mail
from ..extensions import db
from ..models import (
    Admission,
    AuditEvent,
    Bid,
    BidAnswer,
    BidDocument,
    Competition,
    Criterion,
    Document,
    Invitation,
    Organisation,
    User,
)
from ..models.competitions import Stage
from . import ServiceError, documents, notify

# The criteria a bidder answers in words; price is the bid's price, not an answer.
ANSWERED_KINDS = ("quality", "social_value")
# A ceiling on an answer's length whatever its word limit, so nobody can store megabytes of text.
ANSWER_MAX_CHARACTERS = 50_000
EDITABLE_STATES = ("draft", "withdrawn")


class IncompleteBid(ServiceError):
    """A submission refused because of the bid's content: each problem names its field, so the
    page can show every one of them next to its field at once."""

    def __init__(self, problems: list[ServiceError]):
        message = "Your bid is not finished: " + "; ".join(p.message for p in problems[:3]) + (
            "…" if len(problems) > 3 else "")
        super().__init__(message, field=problems[0].field if len(problems) == 1 else None)
        self.problems = problems


def tenders_open(competition: Competition, now: datetime | None = None) -> bool:
    """True while tenders may be received (the competition's OPEN stage: published, not
    cancelled, and strictly before the deadline)."""
    return competition.refusal("bid", now or clock.now()) is None


def closed_message(competition: Competition, *, submitting: bool) -> str:
    """Why nothing can be changed, for the button that was pressed."""
    stage = competition.stage(clock.now())
    if stage is Stage.CANCELLED:
        return "This competition has been cancelled, so bids can no longer be changed or submitted"
    if stage not in (Stage.CLOSED, Stage.IN_EVALUATION):
        return "This competition is no longer receiving bids"
    closed = f"Tenders closed on {clock.fmt(competition.tender_deadline)}"
    if submitting:
        return f"{closed}: your draft has been kept but cannot be submitted"
    return f"{closed}: your draft has been kept but can no longer be changed"


def require_tenders_open(competition: Competition, *, submitting: bool, now: datetime | None = None) -> None:
    if not tenders_open(competition, now):
        raise ServiceError(closed_message(competition, submitting=submitting))


def receipt_time(moment: datetime | None) -> str:
    """'5 July 2024 at 11:59:59am' in Europe/London: a receipt is exact to the second, which
    the usual GOV.UK time (clock.fmt) leaves out."""
    if moment is None:
        return ""
    local = clock.to_london(moment)
    hour = local.hour % 12 or 12
    suffix = "am" if local.hour < 12 else "pm"
    return f"{local.day} {local:%B %Y} at {hour}:{local.minute:02d}:{local.second:02d}{suffix}"


# Invitations ------------------------------------------------------------------------------------

def invitation_for(competition: Competition, org: Organisation) -> Invitation | None:
    return db.session.scalar(select(Invitation).where(Invitation.competition_id == competition.id,
                                                      Invitation.organisation_id == org.id))


def mark_opened(invitation: Invitation, user: User | None = None) -> bool:
    """Record the first time the supplier opened the invitation (the buyer sees it). Later
    openings change nothing. Returns True if this was the first."""
    if invitation.first_opened_at is not None:
        return False
    now = clock.now()
    # Conditional, so two colleagues opening it at once record one first opening, not two.
    done = db.session.execute(
        update(Invitation).where(Invitation.id == invitation.id, Invitation.first_opened_at.is_(None))
        .values(first_opened_at=now).execution_options(synchronize_session=False)).rowcount
    db.session.refresh(invitation)
    if done != 1:
        return False
    audit.record("invitation.opened", "invitation", invitation.id,
                 {"competition_id": invitation.competition_id, "organisation_id": invitation.organisation_id,
                  "opened_at": now.isoformat()}, actor=user)
    return True


def admission_status(competition: Competition, org: Organisation | int) -> str | None:
    """The organisation's standing on the competition's lot now: admitted, suspended, removed
    (or None if it has no admission)."""
    org_id = org if isinstance(org, int) else org.id
    return db.session.scalar(select(Admission.status).where(Admission.organisation_id == org_id,
                                                            Admission.lot_id == competition.lot_id))


def cannot_submit_reason(competition: Competition, org: Organisation) -> str | None:
    """Why the organisation's standing stops it submitting, or None if it may."""
    status = admission_status(competition, org)
    if status == "admitted":
        return None
    lot = f"Lot {competition.lot.number}"
    if status == "suspended":
        return (f"{org.name} is suspended from {lot} of the DPS, so it cannot submit a bid. "
                "Contact the DPS team about your suspension.")
    if status == "removed":
        return f"{org.name} has been removed from {lot} of the DPS, so it cannot submit a bid."
    return f"{org.name} is not admitted to {lot} of the DPS, so it cannot submit a bid."


# Bids -------------------------------------------------------------------------------------------

def bid_for(competition: Competition, org: Organisation | int) -> Bid | None:
    org_id = org if isinstance(org, int) else org.id
    return db.session.scalar(select(Bid).where(Bid.competition_id == competition.id, Bid.organisation_id == org_id))


def answered_criteria(competition: Competition) -> list[Criterion]:
    return [c for c in competition.criteria if c.kind in ANSWERED_KINDS]


def word_count(text: str) -> int:
    return len((text or "").split())


def _require_bidder(competition: Competition, user: User) -> Invitation:
    """The user must be a supplier of an organisation invited to this competition."""
    invitation = invitation_for(competition, user.organisation) if user.role == "supplier" else None
    if invitation is None:
        raise ServiceError("Your organisation was not invited to this competition, so it cannot bid")
    return invitation


def _check_answer(criterion: Criterion, text: str) -> None:
    field = f"criterion_{criterion.id}"
    if len(text) > ANSWER_MAX_CHARACTERS:
        raise ServiceError(f"Your answer to ‘{criterion.title}’ must be {ANSWER_MAX_CHARACTERS:,} characters or fewer",
                           field=field)
    if criterion.word_limit is not None:
        words = word_count(text)
        if words > criterion.word_limit:
            raise ServiceError(f"Your answer to ‘{criterion.title}’ must be {criterion.word_limit:,} words or fewer: "
                               f"it has {words:,}", field=field)


def _transition(bid: Bid, from_states: tuple[str, ...], **values) -> bool:
    """Move the bid on only if it is still in one of ``from_states``; True if it moved."""
    done = db.session.execute(
        update(Bid).where(Bid.id == bid.id, Bid.state.in_(from_states)).values(**values)
        .execution_options(synchronize_session=False)).rowcount
    # Reload everything: what a colleague committed before this row lock was taken counts.
    db.session.refresh(bid)
    db.session.expire(bid, ["answers", "documents"])
    return done == 1


def _editable_bid(competition: Competition, user: User, now: datetime) -> Bid:
    """The organisation's bid, created if need be, locked and in an editable state."""
    bid = bid_for(competition, user.organisation)
    if bid is None:
        bid = Bid(competition_id=competition.id, organisation_id=user.organisation_id, state="draft", updated_at=now)
        try:
            # A savepoint: a colleague may create the same bid at the same moment (one per
            # organisation, enforced by the database); then theirs is the one to edit.
            with db.session.begin_nested():
                db.session.add(bid)
        except IntegrityError:
            bid = bid_for(competition, user.organisation)
            if bid is None:
                raise
    if not _transition(bid, EDITABLE_STATES, state="draft", updated_at=now):
        raise ServiceError("Your bid has been submitted, so it cannot be changed. To change it, withdraw it, "
                           "make your changes and submit it again before the deadline.")
    return bid


def save_draft(competition: Competition, user: User, price_pence: int | None, answers: dict[int, str]) -> Bid:
    """Save the organisation's draft: its price (may be missing) and its answers, by criterion id.

    Word limits are checked on every save, so a draft is never over them. A withdrawn bid that
    is edited becomes a draft again."""
    invitation = _require_bidder(competition, user)
    now = clock.now()
    require_tenders_open(competition, submitting=False, now=now)
    if price_pence is not None and price_pence <= 0:
        raise ServiceError("Enter a price of more than £0", field="price")
    criteria = {c.id: c for c in answered_criteria(competition)}
    unknown = set(answers) - set(criteria)
    if unknown:
        raise ServiceError("Answer only the criteria of this competition")
    cleaned = {criterion_id: (text or "").strip() for criterion_id, text in answers.items()}
    for criterion_id, text in cleaned.items():
        _check_answer(criteria[criterion_id], text)

    mark_opened(invitation, user)
    bid = _editable_bid(competition, user, now)
    bid.price_pence = price_pence
    existing = {answer.criterion_id: answer for answer in bid.answers}
    for criterion_id, text in cleaned.items():
        answer = existing.get(criterion_id)
        if text and answer is None:
            bid.answers.append(BidAnswer(criterion_id=criterion_id, text=text))
        elif text:
            answer.text = text
        elif answer is not None:
            bid.answers.remove(answer)  # emptied: an empty answer is no answer
    db.session.flush()
    audit.record("bid.draft_saved", "bid", bid.id,
                 {"competition_id": competition.id, "organisation_id": bid.organisation_id,
                  "saved_at": now.isoformat()}, actor=user)
    return bid


def _require_own_editable(bid: Bid, user: User) -> None:
    if user.role != "supplier" or user.organisation_id != bid.organisation_id:
        raise ServiceError("Only the bidder can change its bid")
    require_tenders_open(bid.competition, submitting=False)
    if bid.state not in EDITABLE_STATES:
        raise ServiceError("Your bid has been submitted, so it cannot be changed. To change it, withdraw it first.")


def attach_document(bid: Bid, user: User, document: Document) -> BidDocument:
    """Attach a document the bidder uploaded to its draft."""
    _require_own_editable(bid, user)
    if document.organisation_id != bid.organisation_id:
        raise ServiceError("Attach a document your organisation uploaded", field="document")
    taken = db.session.scalar(select(BidDocument.id).where(BidDocument.document_id == document.id))
    if taken is not None:
        raise ServiceError("This document is already attached to a bid", field="document")
    link = BidDocument(bid=bid, document=document)
    db.session.add(link)
    bid.updated_at = clock.now()
    db.session.flush()
    audit.record("bid.document_attached", "bid", bid.id,
                 {"competition_id": bid.competition_id, "organisation_id": bid.organisation_id,
                  "document_id": document.id}, actor=user)
    return link


def add_document(bid: Bid, user: User, upload: FileStorage | None, *, field: str = "document") -> Document:
    """Check and store an uploaded file and attach it to the bid.

    ``documents.store`` writes the filename it is given into the audit log, and a bid
    document's name is sealed content (it can say what the bid offers), while auditors read the
    audit log before the deadline. So storage is given a neutral name with the same extension
    (checked in the same way) and the real name is recorded on the document row only; and it is
    stored as sealed, so the audit event carries no size or hash either."""
    _require_own_editable(bid, user)
    real_name = documents.clean_filename(upload.filename) if upload is not None and upload.filename else ""
    if not real_name:
        raise ServiceError("Select a file", field)
    stem, dot, extension = real_name.rpartition(".")
    neutral = f"bid-document.{extension}" if dot and stem else "bid-document"
    sealed_upload = FileStorage(stream=upload.stream, filename=neutral, content_type=upload.content_type)
    document = documents.store(user, sealed_upload, field=field, sealed=True)
    document.filename = real_name
    db.session.flush()
    attach_document(bid, user, document)
    return document


def detach_document(bid: Bid, user: User, document_id: int) -> None:
    """Take a document off a draft. The stored file stays (documents are never deleted: the
    audit log refers to them), but it is no longer part of the bid."""
    _require_own_editable(bid, user)
    link = db.session.scalar(select(BidDocument).where(BidDocument.bid_id == bid.id,
                                                       BidDocument.document_id == document_id))
    if link is None:
        raise ServiceError("That document is not attached to your bid")
    db.session.delete(link)
    bid.updated_at = clock.now()
    db.session.flush()
    audit.record("bid.document_detached", "bid", bid.id,
                 {"competition_id": bid.competition_id, "organisation_id": bid.organisation_id,
                  "document_id": document_id}, actor=user)


def problems_before_submission(competition: Competition, bid: Bid) -> list[ServiceError]:
    """What stops the bid's content being submitted, each naming its field."""
    problems = []
    if bid.price_pence is None:
        problems.append(ServiceError("Enter your price", field="price"))
    answers = {answer.criterion_id: answer.text for answer in bid.answers}
    for criterion in answered_criteria(competition):
        text = answers.get(criterion.id, "")
        if not text.strip():
            problems.append(ServiceError(f"Answer ‘{criterion.title}’", field=f"criterion_{criterion.id}"))
            continue
        try:
            _check_answer(criterion, text)
        except ServiceError as exc:
            problems.append(exc)
    return problems


def _submissions_so_far(bid: Bid) -> int:
    # The audit log is the bid's history; counted under the bid's row lock, so two submissions
    # never get the same number.
    return db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "bid.submitted", AuditEvent.object_type == "bid", AuditEvent.object_id == str(bid.id)))


def submit(competition: Competition, user: User) -> Bid:
    """Submit the organisation's saved draft as its tender, strictly before the deadline.

    Records the exact receipt time and a receipt reference, and emails the bidder a receipt."""
    invitation = _require_bidder(competition, user)
    now = clock.now()
    require_tenders_open(competition, submitting=True, now=now)
    org = user.organisation
    reason = cannot_submit_reason(competition, org)
    if reason:
        raise ServiceError(reason)
    bid = bid_for(competition, org)
    if bid is None:
        raise ServiceError("Save your bid before submitting it")
    if bid.state == "submitted":
        raise ServiceError("Your bid has already been submitted. To change it, withdraw it, make your changes "
                           "and submit it again before the deadline.")
    # Lock first, then check what is there: a colleague's save committed meanwhile is what gets
    # submitted, and it is checked.
    if not _transition(bid, EDITABLE_STATES, updated_at=now):
        raise ServiceError("Your bid has just been submitted by a colleague")
    problems = problems_before_submission(competition, bid)
    if problems:
        raise IncompleteBid(problems)
    mark_opened(invitation, user)
    number = _submissions_so_far(bid) + 1
    bid.state = "submitted"
    bid.submitted_at = now
    bid.receipt_reference = f"{competition.reference}-R{bid.id:04d}-{number}"
    db.session.flush()
    # Receipt time, receipt reference and organisation only: never price or answers.
    audit.record("bid.submitted", "bid", bid.id,
                 {"received_at": now.isoformat(), "receipt_reference": bid.receipt_reference,
                  "organisation_id": bid.organisation_id}, actor=user)
    for email in notify.organisation_emails(org):
        mail.queue(email, f"Bid received: {competition.title} ({competition.reference})",
                   f"We received {org.name}'s bid for {competition.title} ({competition.reference}) "
                   f"on {receipt_time(now)}.\n\n"
                   f"Receipt reference: {bid.receipt_reference}\n\n"
                   "Your bid stays sealed until tenders close on "
                   f"{clock.fmt(competition.tender_deadline)}: nobody else can see it before then. "
                   "You can withdraw it and submit it again until the deadline.\n\n"
                   f"{notify.link(f'/supplier/competitions/{competition.id}/receipt')}\n")
    return bid


def withdraw(competition: Competition, user: User) -> Bid:
    """Withdraw the organisation's submitted bid before the deadline. Its content is kept as a
    draft the supplier can change and submit again."""
    _require_bidder(competition, user)
    now = clock.now()
    if not tenders_open(competition, now):
        if competition.stage(now) in (Stage.CLOSED, Stage.IN_EVALUATION):
            raise ServiceError(f"Tenders closed on {clock.fmt(competition.tender_deadline)}: "
                               "your bid can no longer be withdrawn")
        raise ServiceError(closed_message(competition, submitting=False))
    bid = bid_for(competition, user.organisation)
    if bid is None or bid.state != "submitted":
        raise ServiceError("You have no submitted bid to withdraw")
    reference = bid.receipt_reference
    # The receipt time and reference are those of the submission that stands; once withdrawn
    # none stands (the audit log keeps every receipt).
    if not _transition(bid, ("submitted",), state="withdrawn", submitted_at=None, receipt_reference=None,
                       updated_at=now):
        raise ServiceError("Your bid has just been withdrawn by a colleague")
    audit.record("bid.withdrawn", "bid", bid.id,
                 {"withdrawn_at": now.isoformat(), "receipt_reference": reference,
                  "organisation_id": bid.organisation_id}, actor=user)
    org = user.organisation
    for email in notify.organisation_emails(org):
        mail.queue(email, f"Bid withdrawn: {competition.title} ({competition.reference})",
                   f"{user.name} withdrew {org.name}'s bid for {competition.title} ({competition.reference}) "
                   f"on {receipt_time(now)}. Receipt {reference} no longer stands.\n\n"
                   "Your draft has been kept. To bid, submit it again before "
                   f"{clock.fmt(competition.tender_deadline)}.\n\n"
                   f"{notify.link(f'/supplier/competitions/{competition.id}/bid')}\n")
    return bid


# What the buyer may know before the deadline ------------------------------------------------------

@dataclass(frozen=True)
class BidderStatus:
    """One invited supplier, as the buyer sees it: names and times only, never content."""

    organisation_id: int
    organisation_name: str
    invited_at: datetime
    first_opened_at: datetime | None
    # The receipt time of the bid that stands, or None (no bid, a draft, or withdrawn).
    submitted_at: datetime | None
    admission_status: str | None

    @property
    def cannot_submit(self) -> bool:
        """Invited, but suspended or removed from the lot since: it cannot submit."""
        return self.admission_status != "admitted"


def status_for_buyer(competition: Competition) -> list[BidderStatus]:
    """Every invited supplier with when it was invited, first opened the invitation and
    submitted, and its standing on the lot now. One query, whatever the number of suppliers."""
    rows = db.session.execute(
        select(Organisation.id, Organisation.name, Invitation.invited_at, Invitation.first_opened_at,
               Bid.submitted_at, Admission.status)
        .select_from(Invitation)
        .join(Organisation, Organisation.id == Invitation.organisation_id)
        .outerjoin(Bid, and_(Bid.competition_id == Invitation.competition_id,
                             Bid.organisation_id == Invitation.organisation_id, Bid.state == "submitted"))
        .outerjoin(Admission, and_(Admission.organisation_id == Invitation.organisation_id,
                                   Admission.lot_id == competition.lot_id))
        .where(Invitation.competition_id == competition.id)
        .order_by(Organisation.name, Organisation.id)
    ).all()
    return [BidderStatus(*row) for row in rows]
