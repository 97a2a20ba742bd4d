"""Applications to join the DPS: the rules of PCR 2015 regulation 34.

- Applications are accepted at any time while the DPS is open, and at no other time.
- The DPS team decides within 10 working days of receipt (counted from the working day after),
  or 15 where justified, with the justification recorded.
- Every supplier that meets the selection criteria is admitted: there is no cap.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from .. import audit, clock, mail, questionnaire, workingdays
from ..extensions import db
from ..filters import plural
from ..models import Admission, Agreement, Answer, Application, ApplicationLot, Document, Lot, Organisation, User
from . import ServiceError
from . import notify
from .agreements import closed_message, is_open
from .questionnaires import current_for

DECISION_WORKING_DAYS = 10
EXTENDED_WORKING_DAYS = 15


def live_application(org: Organisation, agreement: Agreement) -> Application | None:
    """The organisation's draft or undecided application to ``agreement`` (at most one each)."""
    return db.session.scalar(
        select(Application).where(Application.organisation_id == org.id, Application.agreement_id == agreement.id,
                                  Application.decided_at.is_(None))
        .order_by(Application.id.desc()))


def live_applications(org: Organisation) -> dict[int, Application]:
    """The organisation's draft or undecided application to each agreement, by agreement id."""
    rows = db.session.scalars(
        select(Application).where(Application.organisation_id == org.id, Application.decided_at.is_(None))
        .order_by(Application.id))
    return {row.agreement_id: row for row in rows}


def active_lot_ids(org: Organisation) -> set[int]:
    """Lots the organisation is on now (admitted or suspended): it cannot apply for them again."""
    return set(db.session.scalars(
        select(Admission.lot_id).where(Admission.organisation_id == org.id, Admission.status != "removed")))


def start(user: User, agreement: Agreement, previous: Application | None = None) -> Application:
    """Open a draft to join ``agreement``, answering its current questionnaire version. From a
    previous decided application, copy its answers (save re-typing) and, on the same agreement,
    the lots it did not get onto."""
    org = user.organisation
    if not is_open(agreement):
        raise ServiceError(closed_message(agreement, "applying to join"))
    if live_application(org, agreement) is not None:
        raise ServiceError(f"You already have an application to {agreement.title} in progress")
    version = current_for(agreement)
    if version is None:
        raise ServiceError(f"{agreement.title} has no published questionnaire yet")
    now = clock.now()
    application = Application(organisation=org, agreement=agreement, questionnaire_version=version.version,
                              created_at=now, updated_at=now, created_by_id=user.id,
                              previous_application_id=previous.id if previous else None)
    db.session.add(application)
    copied = 0
    if previous is not None:
        if previous.organisation_id != org.id or previous.decided_at is None:
            raise ServiceError("You can only apply again from one of your own decided applications")
        current = questionnaire.load(application.questionnaire_version)
        for answer in previous.answers:
            q = current.question(answer.question_id)
            old = questionnaire.load(previous.questionnaire_version).question(answer.question_id)
            # Only answers to the same question, asked the same way, carry over to a new version.
            if q is not None and old is not None and q.type == old.type:
                application.answers.append(Answer(question_id=answer.question_id, value=answer.value, updated_at=now))
                copied += 1
        on_already = active_lot_ids(org)
        for app_lot in previous.lots if previous.agreement_id == agreement.id else ():
            if app_lot.decision == "rejected" and app_lot.lot_id not in on_already and not app_lot.lot.is_closed:
                application.lots.append(ApplicationLot(lot_id=app_lot.lot_id))
    db.session.flush()
    audit.record("application.started", "application", application.id,
                 {"previous_application_id": application.previous_application_id, "answers_copied": copied})
    return application


def _require_draft(application: Application) -> None:
    if application.submitted_at is not None:
        raise ServiceError("This application has been submitted and can no longer be changed")


def choose_lots(application: Application, user: User, lot_ids: list[int]) -> None:
    _require_draft(application)
    if not lot_ids:
        raise ServiceError("Select at least one lot", field="lots")
    lots = db.session.scalars(select(Lot).where(Lot.agreement_id == application.agreement_id, Lot.id.in_(lot_ids))).all()
    if len(lots) != len(set(lot_ids)):
        raise ServiceError("Select lots of this agreement only", field="lots")
    closed = [lot for lot in lots if lot.is_closed and lot.id not in {al.lot_id for al in application.lots}]
    if closed:
        raise ServiceError(f"{closed[0].label} is closed to new applications: choose another lot", field="lots")
    already = active_lot_ids(application.organisation) & set(lot_ids)
    if already:
        names = ", ".join(f"Lot {lot.number}" for lot in lots if lot.id in already)
        raise ServiceError(f"You are already on {names}: choose only lots you are not on", field="lots")
    before = sorted(al.lot_id for al in application.lots)
    keep = {al.lot_id: al for al in application.lots}
    application.lots = [keep.get(lot.id) or ApplicationLot(lot_id=lot.id) for lot in sorted(lots, key=lambda l: l.number)]
    application.updated_at = clock.now()
    db.session.flush()
    audit.record("application.lots_chosen", "application", application.id,
                 {"before": before, "after": sorted(lot_ids)})


def save_answers(application: Application, user: User, section_id: str, values: dict[str, object]) -> None:
    """Save a section's answers (already shape-checked by the form). Blank answers are kept as
    blank, so a half-finished section can be saved and finished later."""
    _require_draft(application)
    version = questionnaire.load(application.questionnaire_version)
    section = version.section(section_id)
    if section is None:
        raise ServiceError("There is no such section")
    existing = {a.question_id: a for a in application.answers}
    now = clock.now()
    changed = []
    for q in section.questions:
        if q.id not in values or q.type == "file":
            continue  # documents are attached one at a time (attach_document)
        value = values[q.id]
        answer = existing.get(q.id)
        if answer is None:
            application.answers.append(Answer(question_id=q.id, value=value, updated_at=now))
            changed.append(q.id)
        elif answer.value != value:
            answer.value = value
            answer.updated_at = now
            changed.append(q.id)
    application.updated_at = now
    db.session.flush()
    if changed:
        audit.record("application.answers_saved", "application", application.id,
                     {"section": section_id, "questions": changed})


def attach_document(application: Application, user: User, question_id: str, document: Document) -> None:
    _require_draft(application)
    q = questionnaire.load(application.questionnaire_version).question(question_id)
    if q is None or q.type != "file":
        raise ServiceError("That question does not take documents")
    if document.organisation_id != application.organisation_id:
        raise ServiceError("That document is not your organisation's")
    answer = next((a for a in application.answers if a.question_id == question_id), None)
    if answer is None:
        application.answers.append(Answer(question_id=question_id, value=[document.id], updated_at=clock.now()))
    else:
        answer.value = list(answer.value or []) + [document.id]
        answer.updated_at = clock.now()
    application.updated_at = clock.now()
    db.session.flush()
    audit.record("application.document_attached", "application", application.id,
                 {"question": question_id, "document_id": document.id, "filename": document.filename})


def detach_document(application: Application, user: User, question_id: str, document_id: int) -> None:
    _require_draft(application)
    answer = next((a for a in application.answers if a.question_id == question_id), None)
    if answer is None or document_id not in (answer.value or []):
        raise ServiceError("That document is not attached to this question")
    answer.value = [d for d in answer.value if d != document_id]
    answer.updated_at = clock.now()
    db.session.flush()
    audit.record("application.document_removed", "application", application.id,
                 {"question": question_id, "document_id": document_id})


def problems_before_submission(application: Application) -> list[tuple[str, str]]:
    """What stops submission, as (message, where to fix it) pairs; empty when ready."""
    problems: list[tuple[str, str]] = []
    org = application.organisation
    if not org.part1_complete:
        problems.append(("Complete your organisation's details", "organisation"))
    lot_ids = [al.lot_id for al in application.lots]
    if not lot_ids:
        problems.append(("Choose the lots you are applying for", "lots"))
    version = questionnaire.load(application.questionnaire_version)
    answers = application.answer_map()
    for q in questionnaire.missing_answers(version, answers, lot_ids):
        problems.append((f"Answer “{q.label}”", q.section_id))
    return problems


def _period_message(agreement: Agreement) -> str:
    start_day, end_day = agreement.starts_on, agreement.ends_on
    if clock.now() >= agreement.window()[1]:
        when = f"It closed to applications on {end_day.day} {end_day:%B %Y} (UK time)."
    else:
        when = f"It accepts applications from {start_day.day} {start_day:%B %Y} to {end_day.day} {end_day:%B %Y} (UK time)."
    return f"{agreement.title}: {when} Your application has been kept, but it cannot be submitted now."


def submit(application: Application, user: User) -> None:
    """Send the application to the DPS team. Its receipt time is recorded to the second and its
    decision is due 10 working days after the day of receipt."""
    _require_draft(application)
    agreement = application.agreement
    now = clock.now()
    if not is_open(agreement, now):
        raise ServiceError(_period_message(agreement))
    problems = problems_before_submission(application)
    if problems:
        raise ServiceError("Your application is not finished: " + "; ".join(p[0] for p in problems[:3])
                           + ("…" if len(problems) > 3 else ""))
    org = application.organisation
    received_on = clock.to_london(now).date()
    application.submitted_at = now
    application.submitted_by_id = user.id
    application.updated_at = now
    application.decision_due_on = workingdays.add_working_days(received_on, DECISION_WORKING_DAYS, agreement.nation)
    application.supplier_snapshot = supplier_snapshot(org)
    db.session.flush()
    audit.record("application.submitted", "application", application.id,
                 {"received_at": now.isoformat(), "decision_due_on": application.decision_due_on.isoformat(),
                  "lots": [al.lot_id for al in application.lots], "questionnaire_version": application.questionnaire_version})
    lots = ", ".join(f"Lot {al.lot.number}" for al in application.lots)
    due = application.decision_due_on
    for email in notify.organisation_emails(org):
        mail.queue(email, "We have received your application to join the CCIN DPS",
                   f"We received {org.name}'s application to join the CCIN Dynamic Purchasing System ({lots}) "
                   f"at {clock.fmt(now)}.\n\nWe will decide by {due.day} {due:%B %Y}.\n\n"
                   f"Follow its progress: {notify.link(f'/supplier/applications/{application.id}')}\n")
    for email in notify.team_emails():
        mail.queue(email, f"New application to join the DPS: {org.name}",
                   f"{org.name} applied to join {lots}. Decision due by {due.day} {due:%B %Y}.\n\n"
                   f"Assess it: {notify.link(f'/team/applications/{application.id}')}\n")


def supplier_snapshot(org: Organisation) -> dict:
    fields = ("name", "trading_name", "legal_form", "registration_number", "identifier_scheme", "identifier_id",
              "vat_number", "size", "is_vcse", "nation", "address_line_1", "address_line_2", "town", "postcode",
              "parent_company", "contact_name", "contact_email", "contact_phone")
    return {f: getattr(org, f) for f in fields}


def extend(application: Application, actor: User, reason: str) -> None:
    """Extend the decision period to 15 working days; only with a recorded justification."""
    if application.status != "submitted":
        raise ServiceError("Only an application awaiting a decision can be extended")
    if application.extended_at is not None:
        raise ServiceError("This application has already been extended to 15 working days")
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("Enter why this application needs more time: the law asks for a justification", field="reason")
    before = application.decision_due_on
    received_on = clock.to_london(application.submitted_at).date()
    application.decision_due_on = workingdays.add_working_days(received_on, EXTENDED_WORKING_DAYS, application.agreement.nation)
    application.extended_at = clock.now()
    application.extended_by_id = actor.id
    application.extension_reason = reason
    db.session.flush()
    audit.record("application.extended", "application", application.id,
                 {"before": before.isoformat(), "after": application.decision_due_on.isoformat(), "reason": reason})
    due = application.decision_due_on
    for email in notify.organisation_emails(application.organisation):
        mail.queue(email, "We need more time to decide your application",
                   f"We need more time to assess your application to join the CCIN DPS. We will decide by "
                   f"{due.day} {due:%B %Y}.\n\nWhy: {reason}\n")


def assessment(application: Application) -> questionnaire.Assessment:
    version = questionnaire.load(application.questionnaire_version)
    on = clock.to_london(application.submitted_at or clock.now()).date()
    return questionnaire.assess(version, application.answer_map(), [al.lot for al in application.lots], on)


def decide_lot(application: Application, lot_id: int, actor: User, decision: str, reasons: str = "") -> None:
    """Admit to a lot, or reject with reasons the supplier will read.

    An automatic fail (for example a mandatory exclusion with no self-cleaning, or insurance
    below the level) cannot be admitted; anything else is the team's judgement, and when all is
    met the supplier must be admitted: there is no cap on numbers."""
    if application.status != "submitted":
        raise ServiceError("This application is not awaiting a decision")
    app_lot = next((al for al in application.lots if al.lot_id == lot_id), None)
    if app_lot is None:
        raise ServiceError("This application did not ask for that lot")
    if app_lot.decision is not None:
        raise ServiceError(f"Lot {app_lot.lot.number} has already been decided")
    reasons = (reasons or "").strip()
    now = clock.now()
    if decision == "admitted":
        failures = assessment(application).failures_for(lot_id)
        if failures:
            raise ServiceError(f"Lot {app_lot.lot.number} cannot be admitted: "
                               + "; ".join(f"{f.question.label} ({f.detail})" for f in failures[:3]), field="decision")
        _admit(application.organisation, app_lot, now)
    elif decision == "rejected":
        if not reasons:
            raise ServiceError("Enter the reasons for rejecting: the supplier will read them", field="reasons")
    else:
        raise ServiceError("Choose whether to admit or reject", field="decision")
    app_lot.decision = decision
    app_lot.reasons = reasons or None
    app_lot.decided_at = now
    app_lot.decided_by_id = actor.id
    db.session.flush()
    audit.record(f"application.lot_{decision}", "application", application.id,
                 {"lot_id": lot_id, "lot": app_lot.lot.number, "reasons": reasons or None})
    if all(al.decision is not None for al in application.lots):
        _close(application, now)


def _admit(org: Organisation, app_lot: ApplicationLot, now: datetime) -> None:
    admission = db.session.scalar(select(Admission).where(Admission.organisation_id == org.id,
                                                          Admission.lot_id == app_lot.lot_id))
    if admission is None:
        db.session.add(Admission(organisation_id=org.id, lot_id=app_lot.lot_id, application_lot=app_lot,
                                 admitted_at=now, status="admitted", status_changed_at=now))
    elif admission.status == "removed":
        # Removed earlier, admitted again on a new application.
        admission.application_lot = app_lot
        admission.admitted_at = now
        admission.status = "admitted"
        admission.status_changed_at = now
        admission.status_reason = None
    else:
        raise ServiceError(f"{org.name} is already on Lot {app_lot.lot.number}")


def _close(application: Application, now: datetime) -> None:
    application.decided_at = now
    db.session.flush()
    audit.record("application.decided", "application", application.id,
                 {l.lot.number: l.decision for l in application.lots})
    lines = []
    for al in application.lots:
        if al.decision == "admitted":
            lines.append(f"Lot {al.lot.number} ({al.lot.title}): admitted. You will be invited to every mini-competition in this lot.")
        else:
            lines.append(f"Lot {al.lot.number} ({al.lot.title}): not admitted.\nWhy: {al.reasons}")
    body = ("We have decided your application to join the CCIN Dynamic Purchasing System.\n\n" + "\n\n".join(lines)
            + f"\n\nSee the decision: {notify.link(f'/supplier/applications/{application.id}')}\n")
    if any(al.decision == "rejected" for al in application.lots):
        body += "\nYou can apply again at any time while the DPS is open; your answers will be copied into the new application.\n"
    for email in notify.organisation_emails(application.organisation):
        mail.queue(email, "Decision on your application to join the CCIN DPS", body)


def queue(include_decided: bool = False) -> list[Application]:
    """Applications for the DPS team, oldest decision due date first."""
    stmt = (select(Application).where(Application.submitted_at.is_not(None))
            .options(selectinload(Application.lots).selectinload(ApplicationLot.lot),
                     selectinload(Application.organisation)))
    if include_decided:
        stmt = stmt.where(Application.decided_at.is_not(None)).order_by(Application.decided_at.desc())
    else:
        stmt = stmt.where(Application.decided_at.is_(None)).order_by(Application.decision_due_on, Application.submitted_at)
    return list(db.session.scalars(stmt))


def is_overdue(application: Application) -> bool:
    return application.status == "submitted" and clock.today_london() > application.decision_due_on


def notify_overdue() -> int:
    """Email the DPS team the applications past their decision date (run daily). Returns how many."""
    overdue = [a for a in queue() if is_overdue(a)]
    if overdue:
        lines = "\n".join(f"- {a.organisation.name}: due {a.decision_due_on.day} {a.decision_due_on:%B %Y} "
                          f"{notify.link(f'/team/applications/{a.id}')}" for a in overdue)
        for email in notify.team_emails():
            mail.queue(email, f"{plural(len(overdue), 'application decision')} overdue",
                       f"These applications are past their decision date (PCR 2015 reg 34: 10 working days, "
                       f"15 where justified):\n\n{lines}\n")
        audit.record("applications.overdue_notified", "application", None,
                     {"application_ids": [a.id for a in overdue]}, actor_label="system")
    return len(overdue)
