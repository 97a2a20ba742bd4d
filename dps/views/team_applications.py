"""The DPS team's applications queue and assessment (added to the team blueprint)."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovRadioInput, GovSubmitInput, GovTextArea
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms import RadioField, SubmitField, TextAreaField
from wtforms.validators import InputRequired, Length

from .. import clock, questionnaire
from ..auth import one_or_404
from ..extensions import db
from ..models import Application, ApplicationLot, Document
from ..pagination import keyset_page
from ..services import ServiceError
from ..services import applications as rules
from .helpers import attach_error
from .team import bp, team_only


class DecisionForm(FlaskForm):
    decision = RadioField("Decision", choices=[("admitted", "Admit to this lot"), ("rejected", "Reject")],
                          widget=GovRadioInput(), validators=[InputRequired(message="Choose whether to admit or reject")])
    reasons = TextAreaField("Reasons", widget=GovTextArea(),
                            description="Required to reject. The supplier will read them: say which criteria were not met and why.",
                            validators=[Length(max=5000, message="Reasons must be 5,000 characters or fewer")])
    submit = SubmitField("Record decision", widget=GovSubmitInput())


class ExtensionForm(FlaskForm):
    reason = TextAreaField("Why does this application need more time?", widget=GovTextArea(),
                           description="The law allows 15 working days instead of 10 only where justified. The supplier will see this.",
                           validators=[Length(max=2000, message="The reason must be 2,000 characters or fewer")])
    submit = SubmitField("Extend to 15 working days", widget=GovSubmitInput())


@bp.route("/applications")
def applications():
    """The queue, oldest decision due first (then id); or the decided ones, latest first. 50 to a
    page by keyset (dps.pagination), in a fixed number of queries however many applications."""
    decided = request.args.get("show") == "decided"
    stmt = (select(Application).where(Application.submitted_at.is_not(None))
            .options(selectinload(Application.lots).selectinload(ApplicationLot.lot),
                     selectinload(Application.organisation), selectinload(Application.agreement)))
    # The sort keys are never NULL here: a submitted application has its decision due date.
    if decided:
        stmt = stmt.where(Application.decided_at.is_not(None))
        order = (Application.decided_at.desc(), Application.id.desc())
    else:
        stmt = stmt.where(Application.decided_at.is_(None))
        order = (Application.decision_due_on, Application.id)
    page = keyset_page(stmt, order, after=request.args.get("after"), before=request.args.get("before"))
    show = "decided" if decided else None
    return render_template("team/applications.html", page=page, items=page.rows, decided=decided,
                           today=clock.today_london(), is_overdue=rules.is_overdue,
                           pager=page.navigation("team.applications", label="Pages of applications", show=show))


def _load(application_id: int) -> Application:
    # The DPS team may see every submitted application, never a supplier's unsent draft.
    return one_or_404(
        select(Application).where(Application.id == application_id, Application.submitted_at.is_not(None))
        .options(selectinload(Application.answers), selectinload(Application.lots).selectinload(ApplicationLot.lot)))


def _render(item: Application, decision_forms: dict | None = None, extension_form: ExtensionForm | None = None,
            status: int = 200, failed_form: FlaskForm | None = None):
    version = questionnaire.load(item.questionnaire_version)
    answers = item.answer_map()
    doc_ids = [d for q in version.questions if q.type == "file" for d in (answers.get(q.id) or [])]
    docs = {d.id: d for d in db.session.scalars(select(Document).where(Document.id.in_(doc_ids)))} if doc_ids else {}
    result = rules.assessment(item)
    by_question = {r.question.id: r for r in result.general}
    per_lot = {lot_id: {r.question.id: r for r in rs} for lot_id, rs in result.per_lot.items()}
    forms = decision_forms or {}
    for al in item.lots:
        forms.setdefault(al.lot_id, DecisionForm(formdata=None, prefix=f"lot{al.lot_id}"))
    return render_template(
        "team/application.html", application=item, version=version, answers=answers, documents=docs,
        assessment=result, by_question=by_question, per_lot=per_lot, decision_forms=forms,
        extension_form=extension_form or ExtensionForm(formdata=None), overdue=rules.is_overdue(item),
        outcome_labels=questionnaire.OUTCOME_LABELS, lots=[al.lot for al in item.lots],
        can_act=current_user.role == "dps_admin", form=failed_form,
    ), status


@bp.route("/applications/<int:application_id>")
def application(application_id: int):
    return _render(_load(application_id))


@bp.route("/applications/<int:application_id>/lots/<int:lot_id>/decision", methods=["POST"])
@team_only
def decide(application_id: int, lot_id: int):
    item = _load(application_id)
    if lot_id not in {al.lot_id for al in item.lots}:
        abort(404)
    form = DecisionForm(prefix=f"lot{lot_id}")
    if form.validate_on_submit():
        try:
            rules.decide_lot(item, lot_id, current_user._get_current_object(), form.decision.data, form.reasons.data)
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash("Decision recorded." + (" All lots are decided: the supplier has been emailed." if item.decided_at else ""), "success")
            return redirect(url_for("team.application", application_id=item.id))
    return _render(_load(application_id), decision_forms={lot_id: form}, status=400, failed_form=form)


@bp.route("/applications/<int:application_id>/extend", methods=["POST"])
@team_only
def extend(application_id: int):
    item = _load(application_id)
    form = ExtensionForm()
    if form.validate_on_submit():
        try:
            rules.extend(item, current_user._get_current_object(), form.reason.data)
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash(f"Decision now due by {clock.fmt_date(item.decision_due_on)}. The supplier has been told why.", "success")
            return redirect(url_for("team.application", application_id=item.id))
    return _render(_load(application_id), extension_form=form, status=400, failed_form=form)
