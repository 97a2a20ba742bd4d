"""Suppliers' standing on the DPS, and renewed self-declarations (PCR 2015 regulation 34).

- The DPS team may suspend an admitted supplier from a lot, or remove it, always with a reason the
  supplier reads. A suspended supplier can be reinstated or removed. Removal is final: a removed
  supplier that wants to return applies again, and is assessed again.
- The DPS team may ask admitted suppliers for a renewed self-declaration (the exclusion grounds of
  the selection questionnaire), due 5 working days after the day it is asked for. An answer after
  the due date is still accepted, and recorded as late; unanswered requests past their due date are
  listed so the team can consider suspension.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import exists, func, select, text, update
from sqlalchemy.orm import contains_eager, selectinload

from .. import audit, clock, mail, questionnaire, workingdays
from ..extensions import db
from ..models import Admission, Agreement, AuditEvent, Lot, Organisation, RenewalRequest, User
from . import ServiceError
from . import notify
from .questionnaires import current_for

RENEWAL_WORKING_DAYS = 5
# The parts of the questionnaire a renewed self-declaration asks again: the exclusion grounds.
DECLARATION_SECTIONS: tuple[str, ...] = questionnaire.REQUIRED_SECTIONS
# Same limit as an application's long answers.
TEXT_LIMIT = 10_000
# Arbitrary constant naming "renewal requests" among PostgreSQL advisory locks (the audit chain
# uses another), so two people asking at once cannot both create a request for one supplier.
RENEWAL_LOCK_KEY = 0x0D95A0D2

SUSPEND, REMOVE, REINSTATE = "suspend", "remove", "reinstate"
# The legal changes of standing: action -> {status before: status after}.
TRANSITIONS: dict[str, dict[str, str]] = {
    SUSPEND: {"admitted": "suspended"},
    REMOVE: {"admitted": "removed", "suspended": "removed"},
    REINSTATE: {"suspended": "admitted"},
}
_AUDIT_ACTIONS = {SUSPEND: "admission.suspended", REMOVE: "admission.removed", REINSTATE: "admission.reinstated"}
_REASON_REQUIRED = {
    SUSPEND: "Enter the reason for suspending this supplier: they will read it",
    REMOVE: "Enter the reason for removing this supplier: they will read it",
}
STATUS_LABELS = {"admitted": "Admitted", "suspended": "Suspended", "removed": "Removed"}

OPEN, OVERDUE, ANSWERED, ANSWERED_LATE = "open", "overdue", "answered", "answered late"


def _long_date(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def _require_team(actor: User) -> None:
    if actor.role != "dps_admin":
        raise ServiceError("Only the DPS team can change a supplier's standing or ask for a renewed self-declaration")


# Standing ---------------------------------------------------------------------------------------

def _refusal(action: str, admission: Admission) -> str:
    """Why ``action`` is not possible from the admission's present status, in words for the team."""
    name, lot = admission.organisation.name, f"Lot {admission.lot.number}"
    if admission.status == "removed":
        if action == REMOVE:
            return f"{name} has already been removed from {lot}"
        return f"{name} has been removed from {lot}, which is final: to return, it must apply again"
    if action == SUSPEND:
        return f"{name} is already suspended from {lot}"
    return f"{name} is not suspended from {lot}: only a suspended supplier can be reinstated"


def _change_standing(admission: Admission, actor: User, action: str, reason: str) -> None:
    _require_team(actor)
    before = admission.status
    after = TRANSITIONS[action].get(before)
    if after is None:
        raise ServiceError(_refusal(action, admission))
    reason = (reason or "").strip()
    if action in _REASON_REQUIRED and not reason:
        raise ServiceError(_REASON_REQUIRED[action], field="reason")
    if len(reason) > TEXT_LIMIT:
        raise ServiceError(f"Enter a reason of {TEXT_LIMIT:,} characters or fewer", field="reason")
    now = clock.now()
    # Conditional on the status the decision was made from: if a colleague changed it meanwhile
    # (PostgreSQL lets two requests read the same row), this one is refused rather than recording
    # a "before" that was no longer true.
    changed = db.session.execute(
        update(Admission)
        .where(Admission.id == admission.id, Admission.status == before)
        .values(status=after, status_changed_at=now, status_reason=reason or None)
        .execution_options(synchronize_session="fetch")
    ).rowcount
    if changed != 1:
        db.session.refresh(admission)
        raise ServiceError(f"{admission.organisation.name}'s standing on Lot {admission.lot.number} was changed "
                           "by someone else while you were looking: check it and try again")
    db.session.flush()
    audit.record(_AUDIT_ACTIONS[action], "admission", admission.id,
                 {"organisation_id": admission.organisation_id, "lot": admission.lot.number,
                  "before": {"status": before}, "after": {"status": after}, "reason": reason or None},
                 actor=actor)
    _notify_standing(admission, action, reason)


def _notify_standing(admission: Admission, action: str, reason: str) -> None:
    org, lot = admission.organisation, admission.lot
    where = f"Lot {lot.number} ({lot.title}) of the CCIN Dynamic Purchasing System"
    if action == SUSPEND:
        subject = f"Your place on Lot {lot.number} of the CCIN DPS is suspended"
        body = (f"The DPS team has suspended {org.name}'s place on {where}.\n\nWhy: {reason}\n\n"
                "While your place is suspended, you will not be invited to new mini-competitions in this lot "
                "and you cannot submit bids in it. The DPS team will email you if your place is reinstated.\n")
    elif action == REMOVE:
        subject = f"You have been removed from Lot {lot.number} of the CCIN DPS"
        body = (f"The DPS team has removed {org.name} from {where}.\n\nWhy: {reason}\n\n"
                "You will not be invited to mini-competitions in this lot and you cannot submit bids in it. "
                "To join this lot again, apply again while the DPS is open: "
                f"{notify.link('/supplier/')}\n")
    else:
        subject = f"Your place on Lot {lot.number} of the CCIN DPS is reinstated"
        body = (f"The DPS team has reinstated {org.name}'s place on {where}.\n\n"
                + (f"Why: {reason}\n\n" if reason else "")
                + "You will be invited to new mini-competitions in this lot again, and you can submit bids.\n")
    for email in notify.organisation_emails(org):
        mail.queue(email, subject, body)


def suspend(admission: Admission, actor: User, reason: str) -> None:
    """Suspend an admitted supplier from a lot: it is not invited to new mini-competitions and
    cannot bid until reinstated."""
    _change_standing(admission, actor, SUSPEND, reason)


def remove(admission: Admission, actor: User, reason: str) -> None:
    """Remove a supplier (admitted or suspended) from a lot. Final: to return it applies again."""
    _change_standing(admission, actor, REMOVE, reason)


def reinstate(admission: Admission, actor: User, reason: str = "") -> None:
    """Lift a suspension. The reason is optional (the suspension's reason was the one owed)."""
    _change_standing(admission, actor, REINSTATE, reason)


# Renewed self-declarations -----------------------------------------------------------------------

@dataclass(frozen=True)
class DeclarationPart:
    """One section of the declaration: its yes/no grounds and its optional self-cleaning text."""

    section: questionnaire.Section
    grounds: tuple[questionnaire.Question, ...]
    texts: tuple[questionnaire.Question, ...]


def _agreement_of(org_id: int) -> Agreement | None:
    """The agreement of the supplier's latest place on a lot (admitted or suspended): its
    questionnaire and working days are the ones a renewed declaration uses."""
    return db.session.scalar(
        select(Agreement).join(Lot, Lot.agreement_id == Agreement.id).join(Admission, Admission.lot_id == Lot.id)
        .where(Admission.organisation_id == org_id, Admission.status.in_(("admitted", "suspended")))
        .order_by(Admission.admitted_at.desc(), Admission.id.desc()).limit(1))


def renewal_version(renewal: RenewalRequest) -> str:
    """The questionnaire version a declaration is (or was) made against: the one it answered, or
    the current version of the agreement the supplier is on."""
    if renewal.response:
        return renewal.response["version"]
    agreement = _agreement_of(renewal.organisation_id)
    current = current_for(agreement) if agreement is not None else None
    if current is None:
        raise ServiceError(f"{renewal.organisation.name} is on no agreement with a published questionnaire")
    return current.version


def declaration(version: str | questionnaire.Questionnaire) -> list[DeclarationPart]:
    """What a renewed self-declaration asks, read from the questionnaire version's content.

    Documents are not asked for again: the declaration is a statement, and evidence, if the team
    wants it, is a conversation with the supplier."""
    content = version if isinstance(version, questionnaire.Questionnaire) else questionnaire.load(version)
    parts = []
    for section_id in DECLARATION_SECTIONS:
        section = content.section(section_id)
        if section is None:
            raise questionnaire.QuestionnaireError(f"Questionnaire {version} has no section {section_id!r}")
        parts.append(DeclarationPart(
            section=section,
            grounds=tuple(q for q in section.questions if q.type == "yes_no"),
            texts=tuple(q for q in section.questions if q.type in ("text", "textarea"))))
    return parts


def missing_answer_message(question: questionnaire.Question) -> str:
    return f"Select yes or no for “{question.label}”"


def _open_request(org_id: int) -> RenewalRequest | None:
    return db.session.scalar(
        select(RenewalRequest).where(RenewalRequest.organisation_id == org_id, RenewalRequest.responded_at.is_(None))
        .order_by(RenewalRequest.id.desc()).limit(1))


def _lock_renewals() -> None:
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RENEWAL_LOCK_KEY})
    # SQLite: every transaction began with BEGIN IMMEDIATE, so this one already holds the write lock.


def request_renewal(actor: User, organisation: Organisation | None = None) -> list[RenewalRequest]:
    """Ask for a renewed self-declaration: from one supplier, or from every supplier admitted to at
    least one lot. Due 5 working days after today (UK time), counted in the agreement's nation.

    Suppliers that already have an unanswered request are skipped when asking everyone (the open
    one still stands); asking one such supplier again is refused."""
    _require_team(actor)
    _lock_renewals()
    if organisation is not None:
        # A suspended supplier may be asked too: a fresh declaration can be what reinstatement waits for.
        on_dps = db.session.scalar(select(exists().where(Admission.organisation_id == organisation.id,
                                                         Admission.status.in_(("admitted", "suspended")))))
        if not on_dps:
            raise ServiceError(f"{organisation.name} is not on the DPS, so it cannot be asked for a renewed "
                               "self-declaration")
        current = _open_request(organisation.id)
        if current is not None:
            raise ServiceError(f"{organisation.name} has already been asked: its declaration is due by "
                               f"{_long_date(current.due_on)}")
        targets = [organisation]
    else:
        has_open = exists().where(RenewalRequest.organisation_id == Organisation.id,
                                  RenewalRequest.responded_at.is_(None))
        targets = list(db.session.scalars(
            select(Organisation)
            .where(exists().where(Admission.organisation_id == Organisation.id, Admission.status == "admitted"),
                   ~has_open)
            .order_by(func.lower(Organisation.name), Organisation.id)))
    now = clock.now()
    created = []
    for org in targets:
        agreement = _agreement_of(org.id)
        due_on = workingdays.add_working_days(clock.to_london(now).date(), RENEWAL_WORKING_DAYS, agreement.nation)
        renewal = RenewalRequest(organisation_id=org.id, requested_at=now, requested_by_id=actor.id, due_on=due_on)
        db.session.add(renewal)
        db.session.flush()
        audit.record("renewal.requested", "renewal_request", renewal.id,
                     {"organisation_id": org.id, "due_on": due_on.isoformat()}, actor=actor)
        link = notify.link(f"/supplier/renewals/{renewal.id}")
        for email in notify.organisation_emails(org):
            mail.queue(email, f"Renew your self-declaration for the CCIN DPS by {_long_date(due_on)}",
                       f"The DPS team asks {org.name} to renew its self-declaration: to confirm whether any of the "
                       "exclusion grounds of the Public Contracts Regulations 2015 now apply to it.\n\n"
                       f"Answer by {_long_date(due_on)}: {link}\n\n"
                       "You answer yes or no to each ground. If you do not answer in time, the DPS team may "
                       "suspend your place on the DPS.\n")
        created.append(renewal)
    return created


def respond_to_renewal(renewal: RenewalRequest, user: User, answers: Mapping[str, object]) -> None:
    """Record a supplier's renewed self-declaration. Accepted after the due date too: the lateness
    is derived from the times and shown to the team. A declared ground is sent to the team."""
    if user.role != "supplier" or user.organisation_id != renewal.organisation_id:
        raise ServiceError("You can only answer your own organisation's requests")
    if renewal.responded_at is not None:
        raise ServiceError("This declaration has already been sent")
    version = renewal_version(renewal)
    stored: dict[str, object] = {}
    declared: list[questionnaire.Question] = []
    for part in declaration(version):
        for q in part.grounds:
            value = answers.get(q.id)
            if value not in ("yes", "no"):
                raise ServiceError(missing_answer_message(q), field=q.id)
            stored[q.id] = value
            if value == "yes":
                declared.append(q)
        for q in part.texts:
            raw = answers.get(q.id)
            value = raw.strip() if isinstance(raw, str) else ""
            if len(value) > TEXT_LIMIT:
                raise ServiceError(f"Answer in {TEXT_LIMIT:,} characters or fewer", field=q.id)
            stored[q.id] = value or None
    now = clock.now()
    response = {"version": version, "answers": stored}
    # Conditional on being unanswered: two people of one supplier sending at once give one answer.
    changed = db.session.execute(
        update(RenewalRequest)
        .where(RenewalRequest.id == renewal.id, RenewalRequest.responded_at.is_(None))
        .values(responded_at=now, responded_by_id=user.id, response=response)
        .execution_options(synchronize_session="fetch")
    ).rowcount
    if changed != 1:
        db.session.refresh(renewal)
        raise ServiceError("This declaration has already been sent by someone else in your organisation")
    db.session.flush()
    late = clock.to_london(now).date() > renewal.due_on
    audit.record("renewal.answered", "renewal_request", renewal.id,
                 {"organisation_id": renewal.organisation_id, "due_on": renewal.due_on.isoformat(), "late": late,
                  "version": version, "declared": [q.id for q in declared]}, actor=user)
    if declared:
        _notify_declared(renewal, version, declared, stored)


def _notify_declared(renewal: RenewalRequest, version: str, declared: list[questionnaire.Question],
                     answers: dict) -> None:
    org = renewal.organisation
    lines = []
    for q in declared:
        kind = "mandatory" if q.rule.kind == "mandatory_exclusion" else "discretionary"
        lines.append(f"- {q.label} ({kind} exclusion ground)")
    explained = any(answers.get(q.id) for part in declaration(version) for q in part.texts)
    body = (f"{org.name} answered yes to these exclusion grounds in its renewed self-declaration:\n\n"
            + "\n".join(lines) + "\n\n"
            + ("It explained what it has done about them (self-cleaning). " if explained
               else "It gave no explanation of what it has done about them (self-cleaning). ")
            + "Consider whether it should stay on the DPS, and suspend or remove it if not:\n\n"
            + notify.link(f"/team/suppliers/{org.id}") + "\n")
    for email in notify.team_emails():
        mail.queue(email, f"{org.name} declared an exclusion ground", body)


def answers_version(renewal: RenewalRequest) -> str:
    """The questionnaire version an answered declaration was made against."""
    return renewal_version(renewal)


def declared_grounds(renewal: RenewalRequest) -> list[questionnaire.Question]:
    """The exclusion grounds an answered declaration says yes to."""
    answers = (renewal.response or {}).get("answers", {})
    return [q for part in declaration(answers_version(renewal)) for q in part.grounds if answers.get(q.id) == "yes"]


def renewal_status(renewal: RenewalRequest) -> str:
    """OPEN, OVERDUE, ANSWERED or ANSWERED_LATE. The due date is a whole day in UK time: an answer
    at any time on it is in time."""
    if renewal.responded_at is not None:
        return ANSWERED_LATE if clock.to_london(renewal.responded_at).date() > renewal.due_on else ANSWERED
    return OVERDUE if clock.today_london() > renewal.due_on else OPEN


def overdue_renewals() -> list[RenewalRequest]:
    """Unanswered requests past their due date, oldest first: the suppliers to consider suspending."""
    return list(db.session.scalars(
        select(RenewalRequest)
        .where(RenewalRequest.responded_at.is_(None), RenewalRequest.due_on < clock.today_london(),
               # A supplier removed from every lot has nothing left to suspend.
               exists().where(Admission.organisation_id == RenewalRequest.organisation_id,
                              Admission.status != "removed"))
        .options(selectinload(RenewalRequest.organisation))
        .order_by(RenewalRequest.due_on, RenewalRequest.id)))


def open_renewals(org: Organisation) -> list[RenewalRequest]:
    """A supplier's unanswered requests (normally one), soonest due first: what it has to do."""
    return list(db.session.scalars(
        select(RenewalRequest)
        .where(RenewalRequest.organisation_id == org.id, RenewalRequest.responded_at.is_(None))
        .order_by(RenewalRequest.due_on, RenewalRequest.id)))


def renewals_of(org: Organisation) -> list[RenewalRequest]:
    """Every request made of a supplier, latest first."""
    return list(db.session.scalars(
        select(RenewalRequest).where(RenewalRequest.organisation_id == org.id)
        .order_by(RenewalRequest.requested_at.desc(), RenewalRequest.id.desc())))


# The DPS team's view of suppliers ----------------------------------------------------------------

@dataclass
class SupplierStanding:
    """A supplier with a place (of any standing) on at least one lot, and what needs the team."""

    organisation: Organisation
    admissions: list[Admission] = field(default_factory=list)
    renewal_overdue: bool = False
    renewal_open: bool = False

    @property
    def identity_changed(self) -> bool:
        return self.organisation.identity_changed_at is not None

    @property
    def statuses(self) -> set[str]:
        return {a.status for a in self.admissions}


def supplier_standings(status: str | None = None) -> list[SupplierStanding]:
    """Every supplier with an admission, by name, each with its lots; with ``status`` (admitted,
    suspended or removed), only those with at least one lot in that status. Two queries, however
    many suppliers there are."""
    rows = db.session.scalars(
        select(Admission)
        .join(Admission.organisation)
        .join(Admission.lot)
        .options(contains_eager(Admission.organisation), contains_eager(Admission.lot))
        # lower(): SQLite and PostgreSQL collate differently; this gives one order on both.
        .order_by(func.lower(Organisation.name), Organisation.id, Lot.number))
    by_org: dict[int, SupplierStanding] = {}
    for admission in rows:
        entry = by_org.setdefault(admission.organisation_id, SupplierStanding(admission.organisation))
        entry.admissions.append(admission)
    today = clock.today_london()
    unanswered: dict[int, list[date]] = defaultdict(list)
    if by_org:
        for org_id, due_on in db.session.execute(
                select(RenewalRequest.organisation_id, RenewalRequest.due_on)
                .where(RenewalRequest.responded_at.is_(None), RenewalRequest.organisation_id.in_(list(by_org)))):
            unanswered[org_id].append(due_on)
    for org_id, dues in unanswered.items():
        by_org[org_id].renewal_open = True
        by_org[org_id].renewal_overdue = any(today > due for due in dues)
    standings = list(by_org.values())
    if status in STATUS_LABELS:
        standings = [s for s in standings if status in s.statuses]
    return standings


def identity_changes_to_review() -> list[Organisation]:
    """Suppliers on the DPS whose legal name or registration number changed since the team last
    looked, longest waiting first."""
    return list(db.session.scalars(
        select(Organisation)
        .where(Organisation.identity_changed_at.is_not(None),
               exists().where(Admission.organisation_id == Organisation.id))
        .order_by(Organisation.identity_changed_at, Organisation.id)))


def latest_identity_change(org: Organisation) -> dict | None:
    """What the latest change of identity was (before and after), from the audit log."""
    event = db.session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == "organisation.identity_changed", AuditEvent.object_type == "organisation",
               AuditEvent.object_id == str(org.id))
        .order_by(AuditEvent.id.desc()).limit(1))
    return event.data if event is not None else None


def admissions_of(org: Organisation) -> list[Admission]:
    return list(db.session.scalars(
        select(Admission).join(Admission.lot).where(Admission.organisation_id == org.id)
        .options(contains_eager(Admission.lot)).order_by(Lot.number)))
