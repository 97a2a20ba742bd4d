"""Answering the DPS team's request for a renewed self-declaration (PCR 2015 regulation 34).

The dashboard can link to ``suppliers.renewals`` (every request, open ones first) or to each of
``dps.services.standing.open_renewals(org)`` at ``suppliers.renewal``.
"""
from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovRadioInput, GovSubmitInput, GovTextArea
from sqlalchemy import select
from wtforms import RadioField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional

from dps import questionnaire
from dps.auth import one_or_404
from dps.extensions import db
from dps.models import RenewalRequest
from dps.services import ServiceError, standing
from dps.views.helpers import attach_error, render_form

from .views import bp

YES_NO = [SelectChoice("yes", "Yes"), SelectChoice("no", "No")]


def _own_request(request_id: int) -> RenewalRequest:
    """Only the supplier's own organisation's requests; anything else is not found."""
    return one_or_404(select(RenewalRequest).where(RenewalRequest.id == request_id,
                                                   RenewalRequest.organisation_id == current_user.organisation_id))


def declaration_form(parts: list[standing.DeclarationPart], formdata=None) -> FlaskForm:
    """Yes or no for every exclusion ground, and the optional self-cleaning text of each part,
    built from the questionnaire content so a new version needs no code."""

    class DeclarationForm(FlaskForm):
        pass

    for part in parts:
        for q in part.grounds:
            setattr(DeclarationForm, q.id, RadioField(
                q.label, choices=YES_NO, widget=GovRadioInput(), description=q.hint,
                validators=[InputRequired(message=standing.missing_answer_message(q))]))
        for q in part.texts:
            setattr(DeclarationForm, q.id, TextAreaField(
                q.label, widget=GovTextArea(), description=q.hint, validators=[
                    Optional(), Length(max=standing.TEXT_LIMIT,
                                       message=f"Answer in {standing.TEXT_LIMIT:,} characters or fewer")]))
    DeclarationForm.submit = SubmitField("Send your declaration", widget=GovSubmitInput())
    return DeclarationForm(formdata=formdata)


@bp.route("/renewals")
def renewals():
    org = current_user.organisation
    items = sorted(standing.renewals_of(org), key=lambda r: r.responded_at is not None)
    return render_template("suppliers/renewal.html", renewal=None,
                           renewals=[(r, standing.renewal_status(r)) for r in items])


@bp.route("/renewals/<int:request_id>", methods=["GET", "POST"])
def renewal(request_id: int):
    item = _own_request(request_id)
    if item.responded_at is not None:
        version = standing.answers_version(item)
        return render_template("suppliers/renewal.html", renewal=item, state=standing.renewal_status(item),
                               parts=standing.declaration(version), answers=item.response.get("answers", {}),
                               sent=request.args.get("sent") == "1")
    parts = standing.declaration(standing.renewal_version(item))
    form = declaration_form(parts, formdata=request.form if request.method == "POST" else None)
    if form.validate_on_submit():
        answers = {name: field.data for name, field in form._fields.items() if name not in ("csrf_token", "submit")}
        try:
            standing.respond_to_renewal(item, current_user._get_current_object(), answers)
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            return redirect(url_for("suppliers.renewal", request_id=item.id, sent=1))
    return render_form("suppliers/renewal.html", form, renewal=item, state=standing.renewal_status(item),
                       parts=parts)
