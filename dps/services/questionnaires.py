"""Questionnaire versions of an agreement: uploaded as YAML, checked, previewed, published.

A version is a draft until published; a draft may be replaced or deleted. Once published it is
fixed for ever (applications are read against the exact questions they answered): the service
refuses, and database triggers refuse an UPDATE or DELETE of a published row. New applications
answer the agreement's latest published version; applications already started keep theirs.
"""
from __future__ import annotations

import hashlib

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError

from .. import audit, clock, questionnaire
from ..extensions import db
from ..models import Agreement, Application, QuestionnaireVersion, User
from . import ServiceError


class QuestionnaireProblems(ServiceError):
    """An upload refused for what is wrong in the file: ``problems`` lists each, by line."""

    def __init__(self, problems: list[str]):
        count = len(problems)
        super().__init__(f"The file has {count} problem{'' if count == 1 else 's'}: correct "
                         f"{'it' if count == 1 else 'them'} and upload the file again", field="file")
        self.problems = problems

    def __str__(self) -> str:  # in a log or a traceback, say what the problems are
        return self.message + ": " + "; ".join(self.problems)


def current_for(agreement: Agreement) -> QuestionnaireVersion | None:
    """The version new applications to ``agreement`` answer: its latest published one."""
    return db.session.scalar(
        select(QuestionnaireVersion)
        .where(QuestionnaireVersion.agreement_id == agreement.id, QuestionnaireVersion.published_at.is_not(None))
        .order_by(QuestionnaireVersion.published_at.desc(), QuestionnaireVersion.id.desc()).limit(1))


def versions_of(agreement: Agreement) -> list[QuestionnaireVersion]:
    """Every version of the agreement, newest upload first (an agreement has a handful)."""
    return list(db.session.scalars(
        select(QuestionnaireVersion).where(QuestionnaireVersion.agreement_id == agreement.id)
        .order_by(QuestionnaireVersion.id.desc())))


def text_of(data: bytes) -> str:
    """An uploaded file's bytes as text: at most MAX_SOURCE_BYTES, UTF-8 (a BOM is dropped).

    Raises ServiceError (field ``file``) saying what to do."""
    limit_kb = questionnaire.MAX_SOURCE_BYTES // 1024
    if len(data) > questionnaire.MAX_SOURCE_BYTES:
        raise ServiceError(f"The selected file must be {limit_kb} KB or smaller", field="file")
    if not data.strip():
        raise ServiceError("The selected file is empty", field="file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ServiceError(f"The selected file must be saved as UTF-8 text: line {line} has a character that is "
                           "not UTF-8 (in your editor, save it again choosing the UTF-8 encoding)", field="file") from None


def _require_team(actor: User | None) -> None:
    if actor is not None and actor.role != "dps_admin":
        raise ServiceError("Only the DPS team can change questionnaires")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def upload(actor: User | None, agreement: Agreement, text: str, *, actor_label: str | None = None) -> QuestionnaireVersion:
    """Add a draft version from its YAML text, after checking every question of it; a draft of
    the same version name is replaced. Nothing is saved when anything is wrong.

    Raises QuestionnaireProblems (a ServiceError, field ``file``) listing each problem found, or
    ServiceError when the version name is taken by a published version or another agreement."""
    _require_team(actor)
    try:
        content = questionnaire.parse(text)
    except questionnaire.QuestionnaireError as exc:
        raise QuestionnaireProblems(exc.problems) from None
    existing = db.session.scalar(select(QuestionnaireVersion).where(QuestionnaireVersion.version == content.version))
    if existing is not None:
        if existing.agreement_id != agreement.id:
            raise ServiceError(f"Version {content.version} belongs to another agreement ({existing.agreement.reference}): "
                               "give this version a new name on its version: line", field="file")
        if existing.is_published:
            raise ServiceError(f"Version {content.version} is published, so it can never be replaced: give the "
                               "new version a new name on its version: line", field="file")
        # A draft replaced by a corrected upload of the same name.
        before = existing.sha256
        existing.source, existing.title = text, content.title
        existing.sha256 = _sha256(text)
        existing.uploaded_at, existing.uploaded_by_id = clock.now(), actor.id if actor else None
        db.session.flush()
        audit.record("questionnaire.replaced", "questionnaire_version", existing.id,
                     {"agreement": agreement.reference, "version": content.version, "title": content.title,
                      "before": {"sha256": before}, "after": {"sha256": existing.sha256},
                      "questions": len(content.questions)},
                     actor=actor, actor_label=actor_label)
        return existing
    row = QuestionnaireVersion(agreement_id=agreement.id, version=content.version, title=content.title, source=text,
                               sha256=_sha256(text), uploaded_at=clock.now(),
                               uploaded_by_id=actor.id if actor else None)
    try:
        # A savepoint: a colleague uploading the same version name at the same moment loses to
        # the UNIQUE constraint with a message, not an error page.
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError:
        raise ServiceError(f"Version {content.version} has just been uploaded by someone else: reload the page to "
                           "see it, or give this version a new name on its version: line", field="file") from None
    audit.record("questionnaire.uploaded", "questionnaire_version", row.id,
                 {"agreement": agreement.reference, "version": row.version, "title": row.title,
                  "sha256": row.sha256, "questions": len(content.questions)},
                 actor=actor, actor_label=actor_label)
    return row


def publish(actor: User | None, row: QuestionnaireVersion, *, actor_label: str | None = None) -> None:
    """Fix the version for ever; from now on new applications to its agreement answer it."""
    _require_team(actor)
    if row.is_published:
        raise ServiceError(f"Version {row.version} is already published: it is fixed, and cannot be published again")
    # Checked again: the checks may have become stricter since the draft was uploaded.
    problems = questionnaire.problems_in(row.source)
    if problems:
        raise QuestionnaireProblems(problems)
    row.published_at = clock.now()
    db.session.flush()
    audit.record("questionnaire.published", "questionnaire_version", row.id,
                 {"agreement": row.agreement.reference, "version": row.version, "sha256": row.sha256},
                 actor=actor, actor_label=actor_label)


def delete_draft(actor: User | None, row: QuestionnaireVersion, *, actor_label: str | None = None) -> None:
    _require_team(actor)
    if row.is_published:
        raise ServiceError(f"Version {row.version} is published: it can never be changed or deleted")
    if db.session.scalar(select(exists().where(Application.questionnaire_version == row.version))):
        raise ServiceError(f"Applications answer version {row.version}, so it cannot be deleted")
    data = {"agreement": row.agreement.reference, "version": row.version, "sha256": row.sha256}
    row_id = row.id
    db.session.delete(row)
    db.session.flush()
    audit.record("questionnaire.draft_deleted", "questionnaire_version", row_id, data,
                 actor=actor, actor_label=actor_label)
