"""Clarification questions during a mini-competition.

Equal treatment (PCR 2015 reg 18) is why these work as they do: a supplier asks privately, and
the buyer's answer goes to every invited supplier at once, so nobody gets information the others
do not. The answer never says who asked: the buyer publishes the question in words that may be
reworded (``published_question``) so that it identifies nobody, and this service refuses an answer
that names the organisation that asked.

Who sees what:
- the buying organisation, the DPS team and auditors: every question, as asked;
- an invited supplier: its own organisation's questions as asked, and every answered question in
  its published wording only (``wording_for``);
- anyone else: nothing.
"""
from __future__ import annotations

import re

from sqlalchemy import or_, select, update

from .. import audit, clock, mail
from ..extensions import db
from ..models import Clarification, Competition, Invitation, Organisation, User
from ..models.competitions import Stage
from . import ServiceError, notify

QUESTION_LIMIT = 5_000
ANSWER_LIMIT = 10_000
# Roles that oversee the DPS and may read every question (read-only).
OVERSIGHT_ROLES = ("dps_admin", "auditor")


def _invited(competition: Competition, organisation_id: int) -> bool:
    return db.session.scalar(select(Invitation.id).where(Invitation.competition_id == competition.id,
                                                         Invitation.organisation_id == organisation_id)) is not None


def _is_buyer_of(competition: Competition, user: User) -> bool:
    return user.role == "buyer" and user.organisation_id == competition.buyer_organisation_id


def ask(competition: Competition, user: User, question: str) -> Clarification:
    """A supplier's question, sent privately to the buying organisation."""
    if user.role != "supplier" or not _invited(competition, user.organisation_id):
        raise ServiceError("Only suppliers invited to this competition can ask questions about it")
    now = clock.now()
    if competition.refusal("ask_clarification", now) is not None:
        raise ServiceError("This competition is no longer open for tenders, so it takes no more questions",
                           field="question")
    if now >= competition.clarification_deadline:
        raise ServiceError(f"The deadline for questions was {clock.fmt(competition.clarification_deadline)}: "
                           "you can no longer ask a question", field="question")
    text = (question or "").strip()
    if not text:
        raise ServiceError("Enter your question", field="question")
    if len(text) > QUESTION_LIMIT:
        raise ServiceError(f"Your question must be {QUESTION_LIMIT:,} characters or fewer", field="question")
    clarification = Clarification(competition_id=competition.id, asked_by_organisation_id=user.organisation_id,
                                  asked_by_id=user.id, question=text, asked_at=now)
    db.session.add(clarification)
    db.session.flush()
    audit.record("clarification.asked", "clarification", clarification.id,
                 {"competition_id": competition.id, "question": text}, actor=user)
    # The buyer's email does not name the asker either: it may be forwarded, and the buyer's page
    # shows who asked to those who need to know.
    for email in notify.organisation_emails(competition.buyer_organisation):
        mail.queue(email, f"New question: {competition.title} ({competition.reference})",
                   f"A supplier invited to your mini-competition “{competition.title}” has asked a question.\n\n"
                   f"{text}\n\n"
                   "Your answer will go to every invited supplier, without saying who asked. "
                   f"Tenders close on {clock.fmt(competition.tender_deadline)}.\n\n"
                   f"{notify.link(f'/buyer/competitions/{competition.id}#clarifications')}\n")
    return clarification


# Legal endings people leave off when they write a name: "Brightwater Research" for
# "Brightwater Research Ltd".
_LEGAL_ENDING = re.compile(r"[\s,.]+(ltd|limited|plc|llp|cic|c\.i\.c|cio)\.?$", re.IGNORECASE)
# Shorter names are too likely to be ordinary words in an answer to check for.
_SHORTEST_NAME = 4


def _names_of(organisation: Organisation) -> list[str]:
    """The names that would identify the organisation: legal and trading name, with and without
    their legal endings."""
    names: list[str] = []
    for name in (organisation.name, organisation.trading_name):
        name = (name or "").strip()
        if not name:
            continue
        names.append(name)
        short = _LEGAL_ENDING.sub("", name).strip()
        if short != name and len(short) >= _SHORTEST_NAME:
            names.append(short)
    return [name for name in dict.fromkeys(names) if len(name) >= _SHORTEST_NAME]


def answer(clarification: Clarification, user: User, published_question: str, answer: str) -> None:
    """Publish the answer (and the question, as the buyer words it) to every invited supplier."""
    competition = db.session.get(Competition, clarification.competition_id)
    if not _is_buyer_of(competition, user):
        raise ServiceError("Only the buying organisation can answer questions about its competition")
    now = clock.now()
    stage = competition.stage(now)
    if stage in (Stage.CLOSED, Stage.IN_EVALUATION):
        # An answer after tenders close could not be used by anyone, and would arrive unequally late.
        raise ServiceError(f"Tenders closed on {clock.fmt(competition.tender_deadline)}: "
                           "questions can no longer be answered", field="answer")
    if competition.refusal("answer_clarification", now) is not None:
        raise ServiceError("This competition is no longer running, so its questions cannot be answered")
    if clarification.answered_at is not None:
        raise ServiceError("This question has already been answered", field="answer")
    wording = (published_question or "").strip()
    reply = (answer or "").strip()
    if not wording:
        raise ServiceError("Enter the question as every invited supplier will read it", field="published_question")
    if len(wording) > QUESTION_LIMIT:
        raise ServiceError(f"The question must be {QUESTION_LIMIT:,} characters or fewer", field="published_question")
    if not reply:
        raise ServiceError("Enter your answer", field="answer")
    if len(reply) > ANSWER_LIMIT:
        raise ServiceError(f"Your answer must be {ANSWER_LIMIT:,} characters or fewer", field="answer")
    asker = db.session.get(Organisation, clarification.asked_by_organisation_id)
    for field, text in (("published_question", wording), ("answer", reply)):
        for name in _names_of(asker):
            if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE):
                raise ServiceError(f"Remove “{name}”: every invited supplier reads this, and it must not say "
                                   "who asked", field=field)
    # Conditional on it being unanswered still, so two colleagues answering at once send one
    # answer (and one set of emails), not two.
    done = db.session.execute(
        update(Clarification).where(Clarification.id == clarification.id, Clarification.answered_at.is_(None))
        .values(published_question=wording, answer=reply, answered_at=now, answered_by_id=user.id)
        .execution_options(synchronize_session=False)).rowcount
    if done != 1:
        raise ServiceError("This question has already been answered", field="answer")
    db.session.refresh(clarification)
    audit.record("clarification.answered", "clarification", clarification.id,
                 {"competition_id": competition.id, "published_question": wording, "answer": reply}, actor=user)
    invited = db.session.scalars(
        select(Organisation).join(Invitation, Invitation.organisation_id == Organisation.id)
        .where(Invitation.competition_id == competition.id).order_by(Organisation.id)).all()
    for organisation in invited:
        for email in notify.organisation_emails(organisation):
            mail.queue(email, f"Clarification: {competition.title} ({competition.reference})",
                       f"{competition.buyer_organisation.name} has answered a question about the mini-competition "
                       f"“{competition.title}”. Every invited supplier gets the same answer.\n\n"
                       f"Question:\n{wording}\n\n"
                       f"Answer:\n{reply}\n\n"
                       f"Tenders close on {clock.fmt(competition.tender_deadline)}.\n\n"
                       f"{notify.link(f'/supplier/competitions/{competition.id}/clarifications')}\n")


def visible_to(competition: Competition, user: User) -> list[Clarification]:
    """The questions ``user`` may see, oldest first. Show each with ``wording_for``: a supplier
    must never be shown another supplier's question as it was asked."""
    stmt = (select(Clarification).where(Clarification.competition_id == competition.id)
            .order_by(Clarification.asked_at, Clarification.id))
    if _is_buyer_of(competition, user) or user.role in OVERSIGHT_ROLES:
        return list(db.session.scalars(stmt))
    if user.role == "supplier" and _invited(competition, user.organisation_id):
        return list(db.session.scalars(stmt.where(or_(
            Clarification.asked_by_organisation_id == user.organisation_id,
            Clarification.answered_at.is_not(None)))))
    return []


def wording_for(clarification: Clarification, user: User) -> str | None:
    """The question as ``user`` may read it: as asked for the asker's own organisation, the buyer
    and oversight; as published (None until answered) for every other supplier."""
    if user.role == "supplier" and user.organisation_id != clarification.asked_by_organisation_id:
        return clarification.published_question
    return clarification.question
