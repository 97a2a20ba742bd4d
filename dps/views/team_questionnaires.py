"""The DPS team's questionnaire versions of an agreement (added to the team blueprint): the list
with the upload form, and each version's preview as a supplier would see it, with every
question's assessment rule in plain English.

Auditors may read every page; only the DPS team uploads, publishes and deletes (``team_only``).
A published version is fixed: the pages offer nothing that changes it, and the service and the
database's triggers refuse it anyway.
"""
from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from govuk_frontend_wtf.wtforms_widgets import GovCheckboxInput, GovFileInput, GovSubmitInput
from sqlalchemy import select
from wtforms import BooleanField, SubmitField
from wtforms.validators import DataRequired

from .. import questionnaire
from ..auth import one_or_404
from ..extensions import db
from ..forms import ConfirmForm
from ..models import Agreement, QuestionnaireVersion, User
from ..services import ServiceError
from ..services import questionnaires as rules
from ..services.questionnaires import QuestionnaireProblems
from .helpers import attach_error
from .team import bp, team_only

# Forms --------------------------------------------------------------------------------------------

LIMIT_KB = questionnaire.MAX_SOURCE_BYTES // 1024


class UploadForm(FlaskForm):
    file = FileField(
        "Questionnaire file", widget=GovFileInput(),
        description=f"A .yaml or .yml file saved as UTF-8, {LIMIT_KB} KB at most. A file with the version name of "
                    "a draft replaces that draft; a published version is never replaced, so give a new version a "
                    "new name on its version: line.",
        validators=[FileRequired(message="Select the questionnaire file (.yaml or .yml)"),
                    FileAllowed(["yaml", "yml"], message="The selected file must be a .yaml or .yml file")])
    submit = SubmitField("Upload and check", widget=GovSubmitInput())


class PublishForm(FlaskForm):
    confirm = BooleanField(
        "I have checked every section of this preview, and I understand that once it is published this version "
        "can never be changed or deleted",
        widget=GovCheckboxInput(),
        description="New applications will answer it from then on. To change a question later, upload a new version.",
        validators=[DataRequired(message="Confirm that you have checked the preview and understand that a "
                                         "published version can never be changed")])
    submit = SubmitField("Publish this version", widget=GovSubmitInput())


# Rules in words -----------------------------------------------------------------------------------

def _pounds(pence: int) -> str:
    pounds, pennies = divmod(pence, 100)
    return f"£{pounds:,}" + (f".{pennies:02d}" if pennies else "")


def describe_rule(question: questionnaire.Question, content: questionnaire.Questionnaire) -> str:
    """How the automatic assessment treats an answer to ``question``, for the DPS team."""
    rule = question.rule

    def named(question_id: str | None) -> str:
        other = content.question(question_id) if question_id else None
        return f"“{other.label}”" if other else f"question {question_id}"

    if rule.kind == "mandatory_exclusion":
        return ("Mandatory exclusion: “No” passes. “Yes” fails, unless self-cleaning evidence is given in answer "
                f"to {named(rule.self_cleaning)}; then it needs the DPS team’s judgement.")
    if rule.kind == "discretionary_exclusion":
        return "Discretionary exclusion: “No” passes; “Yes” needs the DPS team’s judgement."
    if rule.kind == "required_yes":
        return "“Yes” passes; “No” fails."
    if rule.kind == "minimum":
        text = f"Fails below {_pounds(rule.amount_pence)}; passes at {_pounds(rule.amount_pence)} or more."
        if rule.exempt_if:
            text += f" If {named(rule.exempt_if)} is answered “Yes”, it needs the DPS team’s judgement instead."
        return text
    if rule.kind == "lot_minimum":
        return (f"Lot’s own minimum: {questionnaire.LOT_FIELDS.get(rule.lot_field, rule.lot_field)}. Passes at or above "
                "the level set by each lot applied for; fails below it, lot by lot.")
    if rule.kind == "future_date":
        return "Passes if the date is after the day of assessment; fails if it has passed."
    if rule.kind == "document_provided":
        return "Passes when at least one document is attached; fails without one."
    if rule.kind == "judgement":
        return "Needs the DPS team’s judgement" + (", for each lot applied for." if question.type == "per_lot_textarea"
                                                  else ".")
    return "Recorded, not assessed."


# Loading ------------------------------------------------------------------------------------------

# The DPS team and auditors may see every agreement's versions: nothing here is scoped to an
# organisation, but a version is always loaded through its agreement.

def _agreement(agreement_id: int) -> Agreement:
    return db.get_or_404(Agreement, agreement_id)


def _version(agreement: Agreement, version_id: int) -> QuestionnaireVersion:
    return one_or_404(select(QuestionnaireVersion).where(QuestionnaireVersion.id == version_id,
                                                         QuestionnaireVersion.agreement_id == agreement.id))


def _can_act() -> bool:
    return current_user.role == "dps_admin"


def _actor() -> User:
    return current_user._get_current_object()


def _abort_on_csrf(form: FlaskForm) -> None:
    """After a failed validation: a missing or stale CSRF token is a bad request, not a field error."""
    if "csrf_token" in form.errors:
        abort(400)


def _uploaders(versions: list[QuestionnaireVersion]) -> dict[int, User]:
    ids = {v.uploaded_by_id for v in versions if v.uploaded_by_id is not None}
    return {u.id: u for u in db.session.scalars(select(User).where(User.id.in_(ids)))} if ids else {}


# The list, and uploading ----------------------------------------------------------------------------

def _render_list(agreement: Agreement, form: UploadForm | None = None, problems: list[str] | None = None):
    versions = rules.versions_of(agreement)
    return render_template(
        "team/questionnaires.html", agreement=agreement, versions=versions, current=rules.current_for(agreement),
        uploaders=_uploaders(versions), upload_form=form or UploadForm(formdata=None), form=form,
        problems=problems or [], can_act=_can_act(), limit_kb=LIMIT_KB,
        question_types=questionnaire.QUESTION_TYPES, rule_kinds=questionnaire.RULE_KINDS,
        rule_types=questionnaire.RULE_TYPES, lot_fields=questionnaire.LOT_FIELDS,
    ), 400 if form else 200


@bp.route("/agreements/<int:agreement_id>/questionnaires")
def questionnaires(agreement_id: int):
    return _render_list(_agreement(agreement_id))


@bp.route("/agreements/<int:agreement_id>/questionnaires", methods=["POST"])
@team_only
def upload_questionnaire(agreement_id: int):
    agreement = _agreement(agreement_id)
    form = UploadForm()
    problems: list[str] = []
    if form.validate_on_submit():
        try:
            # One byte more than the limit is enough to know the file is too large.
            text = rules.text_of(form.file.data.stream.read(questionnaire.MAX_SOURCE_BYTES + 1))
            before = {v.id for v in rules.versions_of(agreement)}
            row = rules.upload(_actor(), agreement, text)
        except QuestionnaireProblems as exc:
            db.session.rollback()
            attach_error(form, exc)
            problems = exc.problems
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            if row.id in before:
                flash(f"The draft {row.version} has been replaced by the file you uploaded. Check the preview, then "
                      "publish it.", "success")
            else:
                flash(f"Version {row.version} has been uploaded as a draft. Check the preview, then publish it.",
                      "success")
            return redirect(url_for("team.questionnaire_version", agreement_id=agreement.id, version_id=row.id))
    else:
        _abort_on_csrf(form)
    # The session may have been rolled back: load the page afresh, as it is really stored.
    return _render_list(_agreement(agreement_id), form, problems)


# A version ------------------------------------------------------------------------------------

def _render_version(agreement: Agreement, row: QuestionnaireVersion, form: FlaskForm | None = None,
                    publish_form: PublishForm | None = None):
    try:
        content, problems = questionnaire.load(row.version), []
    except questionnaire.QuestionnaireError as exc:  # a draft the (now stricter) checks refuse
        content, problems = None, exc.problems
    current = rules.current_for(agreement)
    uploader = db.session.get(User, row.uploaded_by_id) if row.uploaded_by_id else None
    return render_template(
        "team/questionnaire.html", agreement=agreement, row=row, content=content, problems=problems,
        lots=list(agreement.lots), is_current=current is not None and current.id == row.id, uploader=uploader,
        describe_rule=describe_rule, lot_fields=questionnaire.LOT_FIELDS,
        publish_form=publish_form or PublishForm(formdata=None), action_form=ConfirmForm(formdata=None),
        form=form, can_act=_can_act(),
    ), 400 if form else 200


@bp.route("/agreements/<int:agreement_id>/questionnaires/<int:version_id>")
def questionnaire_version(agreement_id: int, version_id: int):
    agreement = _agreement(agreement_id)
    return _render_version(agreement, _version(agreement, version_id))


@bp.route("/agreements/<int:agreement_id>/questionnaires/<int:version_id>/source")
def questionnaire_source(agreement_id: int, version_id: int):
    """The YAML exactly as uploaded: to check it, or to start the next version from it."""
    agreement = _agreement(agreement_id)
    row = _version(agreement, version_id)
    return Response(row.source, mimetype="application/yaml",
                    headers={"Content-Disposition": f'attachment; filename="{row.version}.yaml"'})


@bp.route("/agreements/<int:agreement_id>/questionnaires/<int:version_id>/publish", methods=["POST"])
@team_only
def publish_questionnaire(agreement_id: int, version_id: int):
    agreement = _agreement(agreement_id)
    row = _version(agreement, version_id)
    form = PublishForm()
    if form.validate_on_submit():
        try:
            rules.publish(_actor(), row)
        except ServiceError as exc:
            db.session.rollback()
            form.form_errors.append(exc.message)
            if isinstance(exc, QuestionnaireProblems):
                form.form_errors.extend(exc.problems)
        else:
            db.session.commit()
            flash(f"Version {row.version} is published. New applications to {agreement.title} answer it from now "
                  "on; applications already started keep the version they began with.", "success")
            return redirect(url_for("team.questionnaire_version", agreement_id=agreement.id, version_id=row.id))
    else:
        _abort_on_csrf(form)
    agreement = _agreement(agreement_id)
    return _render_version(agreement, _version(agreement, version_id), form, publish_form=form)


@bp.route("/agreements/<int:agreement_id>/questionnaires/<int:version_id>/delete", methods=["POST"])
@team_only
def delete_questionnaire(agreement_id: int, version_id: int):
    agreement = _agreement(agreement_id)
    row = _version(agreement, version_id)
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    name = row.version
    try:
        rules.delete_draft(_actor(), row)
    except ServiceError as exc:
        db.session.rollback()
        form.form_errors.append(exc.message)
        agreement = _agreement(agreement_id)
        return _render_version(agreement, _version(agreement, version_id), form)
    db.session.commit()
    flash(f"The draft {name} has been deleted.", "success")
    return redirect(url_for("team.questionnaires", agreement_id=agreement.id))
