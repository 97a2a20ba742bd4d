"""Applying to join the DPS: lots, the questionnaire, evidence, check answers, submit."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import (
    GovCheckboxesInput,
    GovDateInput,
    GovFileInput,
    GovRadioInput,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from sqlalchemy import select
from wtforms import FileField, RadioField, SelectMultipleField, StringField, SubmitField, TextAreaField
from wtforms.validators import Length, Optional, ValidationError

from dps import questionnaire
from dps.auth import one_or_404
from dps.extensions import db
from dps.forms import ConfirmForm, LondonDateField
from dps.models import Agreement, Application, Document, Lot
from dps.services import ServiceError, applications, documents
from dps.services.agreements import is_open
from dps.views.helpers import attach_error, render_form

from .views import bp

TEXT_LIMIT = 10_000


def _own_application(application_id: int) -> Application:
    """Only the supplier's own organisation's applications; anything else is not found."""
    return one_or_404(select(Application).where(Application.id == application_id,
                                                Application.organisation_id == current_user.organisation_id))


def _money_check(form, field):
    if field.data and field.data.strip():
        try:
            questionnaire.parse_money(field.data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


def section_form(section: questionnaire.Section, lots: list[Lot], formdata=None, answers: dict | None = None) -> FlaskForm:
    """A form for one section, built from the questionnaire content the application answers.

    Every field is optional here: a half-finished section can be saved. What is still missing
    is listed on "check your answers", and submission is refused until it is answered."""
    answers = answers or {}

    class SectionForm(FlaskForm):
        pass

    for q in section.questions:
        hint = q.hint
        if q.type == "yes_no":
            field = RadioField(q.label, choices=[("yes", "Yes"), ("no", "No")], widget=GovRadioInput(),
                               validators=[Optional()], description=hint)
        elif q.type == "text":
            field = StringField(q.label, widget=GovTextInput(), description=hint,
                                validators=[Optional(), Length(max=2000, message="Answer in 2,000 characters or fewer")])
        elif q.type == "textarea":
            field = TextAreaField(q.label, widget=GovTextArea(), description=hint, validators=[
                Optional(), Length(max=TEXT_LIMIT, message=f"Answer in {TEXT_LIMIT:,} characters or fewer")])
        elif q.type == "money":
            field = StringField(q.label, widget=GovTextInput(), description=hint, validators=[_money_check])
        elif q.type == "date":
            field = LondonDateField(q.label, widget=GovDateInput(), format="%d %m %Y", description=hint,
                                    validators=[Optional()])
        elif q.type == "file":
            field = FileField(q.label, widget=GovFileInput(), description=hint)
        elif q.type == "per_lot_textarea":
            for lot in lots:
                setattr(SectionForm, f"{q.id}__{lot.id}", TextAreaField(
                    f"{q.label} Lot {lot.number}: {lot.title}", widget=GovTextArea(),
                    description=f"{hint} This lot asks for {lot.case_studies_required}.",
                    validators=[Optional(), Length(max=TEXT_LIMIT, message=f"Answer in {TEXT_LIMIT:,} characters or fewer")]))
            continue
        else:  # the questionnaire loader refuses unknown types
            raise questionnaire.QuestionnaireError(q.type)
        setattr(SectionForm, q.id, field)
    SectionForm.submit = SubmitField("Save and continue", widget=GovSubmitInput())

    data = {}
    for q in section.questions:
        value = answers.get(q.id)
        if value is None:
            continue
        if q.type == "money":
            data[q.id] = f"{value / 100:.2f}".removesuffix(".00")
        elif q.type == "date":
            from datetime import date

            data[q.id] = date.fromisoformat(value)
        elif q.type == "per_lot_textarea":
            for lot in lots:
                data[f"{q.id}__{lot.id}"] = (value or {}).get(str(lot.id), "")
        elif q.type != "file":
            data[q.id] = value
    return SectionForm(formdata=formdata, data=data)


def _values_from(form: FlaskForm, section: questionnaire.Section, lots: list[Lot]) -> dict:
    values: dict[str, object] = {}
    for q in section.questions:
        if q.type == "per_lot_textarea":
            values[q.id] = {str(lot.id): (getattr(form, f"{q.id}__{lot.id}").data or "").strip() for lot in lots}
        elif q.type == "money":
            raw = (getattr(form, q.id).data or "").strip()
            values[q.id] = questionnaire.parse_money(raw) if raw else None
        elif q.type == "date":
            day = getattr(form, q.id).data
            values[q.id] = day.isoformat() if day else None
        elif q.type in ("text", "textarea"):
            values[q.id] = (getattr(form, q.id).data or "").strip() or None
        elif q.type == "yes_no":
            values[q.id] = getattr(form, q.id).data or None
    return values


class LotsForm(FlaskForm):
    lots = SelectMultipleField("Which lots are you applying to join?", coerce=int, widget=GovCheckboxesInput(),
                               description="Select all that apply. You can apply for more lots later.")
    submit = SubmitField("Save and continue", widget=GovSubmitInput())


@bp.route("/applications/new", methods=["POST"])
def start_application():
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    agreement_id = request.form.get("agreement", type=int)
    if agreement_id is None or not (0 < agreement_id < 2**31):
        abort(400)
    agreement = db.session.get(Agreement, agreement_id)
    if agreement is None or agreement.published_at is None:
        abort(404)
    previous = None
    if request.form.get("previous"):
        previous_id = request.form.get("previous", type=int)
        if previous_id is None or not (0 < previous_id < 2**31):
            abort(400)
        previous = _own_application(previous_id)
    try:
        application = applications.start(current_user._get_current_object(), agreement, previous=previous)
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("suppliers.dashboard"))
    db.session.commit()
    if previous is not None:
        flash("We have copied your answers from your last application. Check them, change what has changed, and submit.", "success")
    return redirect(url_for("suppliers.application", application_id=application.id))


@bp.route("/applications/<int:application_id>")
def application(application_id: int):
    item = _own_application(application_id)
    version = questionnaire.load(item.questionnaire_version)
    lot_ids = [al.lot_id for al in item.lots]
    answers = item.answer_map()
    statuses = {s.id: questionnaire.section_status(s, answers, lot_ids) for s in version.sections}
    agreement = item.agreement
    return render_template("suppliers/application.html", application=item, version=version, statuses=statuses,
                           open_now=is_open(agreement), agreement=agreement, action_form=ConfirmForm(),
                           problems=applications.problems_before_submission(item) if item.status == "draft" else [])


@bp.route("/applications/<int:application_id>/lots", methods=["GET", "POST"])
def application_lots(application_id: int):
    item = _own_application(application_id)
    if item.status != "draft":
        return redirect(url_for("suppliers.application", application_id=item.id))
    lots = db.session.scalars(select(Lot).where(Lot.agreement_id == item.agreement_id).order_by(Lot.number)).all()
    on_already = applications.active_lot_ids(item.organisation)
    form = LotsForm(data={"lots": [al.lot_id for al in item.lots]} if request.method == "GET" else None)
    chosen = {al.lot_id for al in item.lots}
    # A lot closed to new applications is offered only to a draft that had already chosen it.
    form.lots.choices = [(lot.id, lot.label) for lot in lots
                         if lot.id not in on_already and (not lot.is_closed or lot.id in chosen)]
    if form.validate_on_submit():
        try:
            applications.choose_lots(item, current_user._get_current_object(), form.lots.data or [])
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            return redirect(url_for("suppliers.application", application_id=item.id))
    return render_form("suppliers/application_lots.html", form, application=item, on_already=on_already, lots=lots)


@bp.route("/applications/<int:application_id>/sections/<section_id>", methods=["GET", "POST"])
def application_section(application_id: int, section_id: str):
    item = _own_application(application_id)
    if item.status != "draft":
        return redirect(url_for("suppliers.application", application_id=item.id))
    version = questionnaire.load(item.questionnaire_version)
    section = version.section(section_id)
    if section is None:
        abort(404)
    lots = [al.lot for al in item.lots]
    user = current_user._get_current_object()
    form = section_form(section, lots, formdata=request.form if request.method == "POST" else None,
                        answers=item.answer_map())
    if request.method == "POST" and form.validate():
        try:
            applications.save_answers(item, user, section.id, _values_from(form, section, lots))
            for q in section.questions:
                upload = request.files.get(q.id) if q.type == "file" else None
                if upload and upload.filename:
                    document = documents.store(user, upload, field=q.id)
                    applications.attach_document(item, user, q.id, document)
        except ServiceError as exc:
            # Nothing of this save is kept (answers or files): the page shows the problem by
            # its field with what was typed, and earlier saves are untouched.
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash(f"“{section.title}” saved.", "success")
            return redirect(url_for("suppliers.application", application_id=item.id))
    attached = _documents_for(item, section)
    return render_form("suppliers/application_section.html", form, application=item, section=section,
                       attached=attached, remove_form=ConfirmForm(),
                       money_fields={q.id for q in section.questions if q.type == "money"})


def _documents_for(item: Application, section: questionnaire.Section) -> dict[str, list[Document]]:
    answers = item.answer_map()
    ids = {q.id: list(answers.get(q.id) or []) for q in section.questions if q.type == "file"}
    wanted = [d for group in ids.values() for d in group]
    found = {d.id: d for d in db.session.scalars(select(Document).where(Document.id.in_(wanted)))} if wanted else {}
    return {qid: [found[d] for d in group if d in found] for qid, group in ids.items()}


@bp.route("/applications/<int:application_id>/documents/<int:document_id>/remove", methods=["POST"])
def remove_document(application_id: int, document_id: int):
    item = _own_application(application_id)
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    question_id = request.form.get("question_id", "")
    try:
        applications.detach_document(item, current_user._get_current_object(), question_id, document_id)
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        db.session.commit()
        flash("The document has been removed from your application.", "success")
    q = questionnaire.load(item.questionnaire_version).question(question_id)
    if q is None:
        return redirect(url_for("suppliers.application", application_id=item.id))
    return redirect(url_for("suppliers.application_section", application_id=item.id, section_id=q.section_id))


@bp.route("/applications/<int:application_id>/check", methods=["GET", "POST"])
def check_answers(application_id: int):
    item = _own_application(application_id)
    if item.status != "draft":
        return redirect(url_for("suppliers.application", application_id=item.id))
    form = ConfirmForm()
    if form.validate_on_submit():
        try:
            applications.submit(item, current_user._get_current_object())
        except ServiceError as exc:
            db.session.rollback()
            form.form_errors.append(exc.message)
        else:
            db.session.commit()
            return redirect(url_for("suppliers.application", application_id=item.id, submitted=1))
    version = questionnaire.load(item.questionnaire_version)
    answers = item.answer_map()
    doc_ids = [d for q in version.questions if q.type == "file" for d in (answers.get(q.id) or [])]
    docs = {d.id: d for d in db.session.scalars(select(Document).where(Document.id.in_(doc_ids)))} if doc_ids else {}
    return render_form("suppliers/application_check.html", form, application=item, version=version, answers=answers,
                       documents=docs, problems=applications.problems_before_submission(item),
                       open_now=is_open(item.agreement))
