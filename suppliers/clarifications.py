"""Suppliers: asking a clarification question about a mini-competition, and reading the answers.

The competition is loaded through the supplier's own invitation: one it was not invited to is not
found (404). A question goes privately to the buyer; answers go to every invited supplier.
"""
from __future__ import annotations

from flask import flash, redirect, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovSubmitInput, GovTextArea
from sqlalchemy import select
from wtforms import SubmitField, TextAreaField
from wtforms.validators import InputRequired, Length

from dps import clock
from dps.auth import one_or_404
from dps.extensions import db
from dps.models import Competition, Invitation
from dps.services import ServiceError, clarifications
from dps.views.helpers import attach_error, render_form

from .views import bp


class QuestionForm(FlaskForm):
    question = TextAreaField(
        "Your question", widget=GovTextArea(),
        description="Only the buyer sees who asked. If they answer, every invited supplier gets the question "
                    "and the answer, without your organisation’s name.",
        validators=[InputRequired(message="Enter your question"),
                    Length(max=clarifications.QUESTION_LIMIT,
                           message=f"Your question must be {clarifications.QUESTION_LIMIT:,} characters or fewer")])
    submit = SubmitField("Send your question", widget=GovSubmitInput())


def _invited_competition(competition_id: int) -> Competition:
    return one_or_404(
        select(Competition).join(Invitation, Invitation.competition_id == Competition.id)
        .where(Competition.id == competition_id, Invitation.organisation_id == current_user.organisation_id))


@bp.route("/competitions/<int:competition_id>/clarifications", methods=["GET", "POST"])
def clarifications_page(competition_id: int):
    item = _invited_competition(competition_id)
    user = current_user._get_current_object()
    form = QuestionForm()
    if form.validate_on_submit():
        try:
            clarifications.ask(item, user, form.question.data)
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash(f"Your question has been sent to {item.buyer_organisation.name}.", "success")
            return redirect(url_for("suppliers.clarifications_page", competition_id=competition_id))
    questions = [(c, clarifications.wording_for(c, user), c.asked_by_organisation_id == user.organisation_id)
                 for c in clarifications.visible_to(item, user)]
    return render_form("suppliers/clarifications.html", form, competition=item, questions=questions,
                       asking=item.refusal("ask_clarification", clock.now()) is None
                       and clock.now() < item.clarification_deadline)
