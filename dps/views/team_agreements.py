"""The DPS team's pages for agreements and their lots (added to the team blueprint).

Auditors may read every page; only the DPS team changes anything (``team_only``), and every
change is a service call that writes its audit event. The rules (what is fixed once suppliers
have applied or been admitted, what publication needs) live in ``dps.services.agreements``.
"""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import (
    GovDateInput,
    GovRadioInput,
    GovSelect,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from sqlalchemy import select
from wtforms import IntegerField, RadioField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from .. import clock
from ..auth import one_or_404
from ..extensions import db
from ..forms import ConfirmForm, LondonDateField, single_line
from ..models import Agreement, Lot, Organisation
from ..models.agreements import REGIME_LABELS, REGIMES, STAGE_LABELS
from ..models.organisations import NATIONS
from ..services import ServiceError
from ..services import agreements as rules
from ..services import questionnaires
from .helpers import attach_error, render_form
from .team import bp, team_only
from .team_budget import PoundsField



# Forms --------------------------------------------------------------------------------------------

class AgreementForm(FlaskForm):
    reference = StringField(
        "Reference", widget=GovTextInput(),
        description="Capital letters, digits and hyphens, like CCIN-DPS-2020. It names the agreement in web "
                    "addresses and open data, so it cannot be changed once published.",
        validators=[InputRequired(message="Enter the agreement's reference, like CCIN-DPS-2020"),
                    Length(max=50, message="The reference must be 50 characters or fewer"), single_line])
    title = StringField("Title", widget=GovTextInput(),
                        validators=[InputRequired(message="Enter the agreement's title"),
                                    Length(max=200, message="The title must be 200 characters or fewer"), single_line])
    description = TextAreaField("Description", widget=GovTextArea(),
                                description="What the agreement is for and who can buy from it.",
                                validators=[Optional(), Length(max=5000, message="The description must be 5,000 characters or fewer")])
    regime = RadioField("Legal regime", widget=GovRadioInput(), choices=[(r, REGIME_LABELS[r]) for r in REGIMES],
                        validators=[InputRequired(message="Choose the legal regime")])
    starts_on = LondonDateField("First day", widget=GovDateInput(), format="%d %m %Y",
                                description="For example, 1 4 2020", validators=[InputRequired(message="Enter the first day of the agreement")])
    ends_on = LondonDateField("Last day", widget=GovDateInput(), format="%d %m %Y",
                              description="The agreement is open until the end of this day, UK time. For example, 31 3 2025",
                              validators=[InputRequired(message="Enter the last day of the agreement")])
    nation = RadioField("Nation whose working days apply", widget=GovRadioInput(), choices=[(n, n) for n in NATIONS],
                        description="Its bank holidays are skipped when decision deadlines are counted in working days.",
                        validators=[InputRequired(message="Choose the nation whose bank holidays apply")])
    accountable_body_id = SelectField("Accountable body", widget=GovSelect(), coerce=int, validate_choice=False,
                                      description="The contracting authority that runs the procurement.",
                                      validators=[InputRequired(message="Choose the accountable body")])
    submit = SubmitField("Save", widget=GovSubmitInput())


class LotForm(FlaskForm):
    number = IntegerField("Lot number", widget=GovTextInput(),
                          validators=[InputRequired(message="Enter the lot's number, a whole number from 1 to 999"),
                                      NumberRange(min=1, max=999, message="Enter a whole number from 1 to 999")])
    title = StringField("Title", widget=GovTextInput(),
                        validators=[InputRequired(message="Enter the lot's title"),
                                    Length(max=200, message="The title must be 200 characters or fewer"), single_line])
    description = TextAreaField("Description", widget=GovTextArea(),
                                validators=[InputRequired(message="Enter the lot's description"),
                                            Length(max=5000, message="The description must be 5,000 characters or fewer")])
    scope = TextAreaField("Scope", widget=GovTextArea(), description="What the lot covers and what it does not.",
                          validators=[Optional(), Length(max=5000, message="The scope must be 5,000 characters or fewer")])
    cpv_codes = TextAreaField("CPV codes", widget=GovTextArea(),
                              description="Common Procurement Vocabulary codes, separated by commas or on separate lines, "
                                          "like 73000000-2, 79315000-5",
                              validators=[InputRequired(message="Enter at least one CPV code, like 73000000-2"),
                                          Length(max=2000, message="Enter 2,000 characters or fewer")])
    selection_criteria = TextAreaField("Selection criteria", widget=GovTextArea(),
                                       description="What a supplier must show to join this lot, besides the exclusion grounds.",
                                       validators=[InputRequired(message="Enter the lot's selection criteria"),
                                                   Length(max=10000, message="Enter 10,000 characters or fewer")])
    public_liability_min_pence = PoundsField(
        "Minimum public liability cover", widget=GovTextInput(), description="In pounds. 0 for no minimum.",
        validators=[InputRequired(message="Enter the minimum public liability cover, £0 or more")])
    professional_indemnity_min_pence = PoundsField(
        "Minimum professional indemnity cover", widget=GovTextInput(), description="In pounds. 0 for no minimum.",
        validators=[InputRequired(message="Enter the minimum professional indemnity cover, £0 or more")])
    case_studies_required = IntegerField(
        "Case studies required", widget=GovTextInput(), default=2,
        validators=[InputRequired(message="Enter how many case studies the lot asks for, from 0 to 10"),
                    NumberRange(min=0, max=10, message="Enter a number from 0 to 10")])
    submit = SubmitField("Save", widget=GovSubmitInput())


# Loading and helpers -----------------------------------------------------------------------------

def _agreement(agreement_id: int) -> Agreement:
    # The DPS team and auditors see every agreement: there is no narrower scope for them.
    return one_or_404(select(Agreement).where(Agreement.id == agreement_id))


def _lot(agreement: Agreement, lot_id: int) -> Lot:
    return one_or_404(select(Lot).where(Lot.id == lot_id, Lot.agreement_id == agreement.id))


def _actor():
    return current_user._get_current_object()


def _accountable_body_choices() -> list[tuple[int, str]]:
    bodies = db.session.scalars(select(Organisation).where(Organisation.kind != "supplier",
                                                           Organisation.contracting_authority.is_(True))
                                .order_by(Organisation.name))
    return [(0, "Choose the accountable body")] + [(o.id, o.name) for o in bodies]


def _agreement_values(form: AgreementForm) -> dict:
    return {"reference": form.reference.data, "title": form.title.data, "description": form.description.data,
            "regime": form.regime.data, "starts_on": form.starts_on.data, "ends_on": form.ends_on.data,
            "nation": form.nation.data, "accountable_body_id": form.accountable_body_id.data}


def _lot_values(form: LotForm) -> dict:
    return {"number": form.number.data, "title": form.title.data, "description": form.description.data,
            "scope": form.scope.data, "cpv_codes": form.cpv_codes.data, "selection_criteria": form.selection_criteria.data,
            "public_liability_min_pence": form.public_liability_min_pence.pence,
            "professional_indemnity_min_pence": form.professional_indemnity_min_pence.pence,
            "case_studies_required": form.case_studies_required.data}


def _post_action(form: FlaskForm) -> None:
    if not form.validate_on_submit():
        abort(400)


# Agreements ---------------------------------------------------------------------------------------

@bp.route("/agreements")
def agreements():
    now = clock.now()
    items = [(a, a.stage(now)) for a in rules.all_agreements()]
    return render_template("team/agreements.html", items=items, stage_labels=STAGE_LABELS)


@bp.route("/agreements/new", methods=["GET", "POST"])
@team_only
def new_agreement():
    from ..services.installation import accountable_body

    body = accountable_body()
    form = AgreementForm(data={"nation": body.nation, "accountable_body_id": body.id} if body and request.method == "GET" else None)
    form.accountable_body_id.choices = _accountable_body_choices()
    if form.validate_on_submit():
        try:
            agreement = rules.create_agreement(_actor(), **_agreement_values(form))
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash(f"{agreement.title} has been created as a draft. Add its lots and questionnaire, then publish it.", "success")
            return redirect(url_for("team.agreement", agreement_id=agreement.id))
    return render_form("team/agreement_form.html", form, agreement=None)


@bp.route("/agreements/<int:agreement_id>")
def agreement(agreement_id: int):
    item = _agreement(agreement_id)
    now = clock.now()
    return render_template(
        "team/agreement.html", agreement=item, stage=item.stage(now), stage_labels=STAGE_LABELS,
        status=rules.status_text(item, now), lots=rules.lots(item), admitted={lot.id: rules.has_admissions(lot) for lot in item.lots},
        applications=rules.applications_count(item), retention_until=rules.retention_until(item),
        current_version=questionnaires.current_for(item), versions=questionnaires.versions_of(item),
        problems=rules.publication_problems(item) if item.published_at is None else [],
        action_form=ConfirmForm())


@bp.route("/agreements/<int:agreement_id>/edit", methods=["GET", "POST"])
@team_only
def edit_agreement(agreement_id: int):
    item = _agreement(agreement_id)
    form = AgreementForm(obj=item if request.method == "GET" else None)
    form.accountable_body_id.choices = _accountable_body_choices()
    if form.validate_on_submit():
        try:
            rules.update_agreement(_actor(), item, **_agreement_values(form))
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash("The agreement's details have been saved.", "success")
            return redirect(url_for("team.agreement", agreement_id=item.id))
    return render_form("team/agreement_form.html", form, agreement=item,
                       applications=rules.applications_count(item))


def _act(agreement: Agreement, action, target, done: str, anchor: str | None = None):
    """A button's POST: the service call, then back to the agreement's page with what happened."""
    _post_action(ConfirmForm())
    try:
        action(_actor(), target)
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        db.session.commit()
        flash(done, "success")
    return redirect(url_for("team.agreement", agreement_id=agreement.id, _anchor=anchor))


def _agreement_action(agreement_id: int, action, done: str):
    item = _agreement(agreement_id)
    return _act(item, action, item, done.format(title=item.title))


@bp.route("/agreements/<int:agreement_id>/publish", methods=["POST"])
@team_only
def publish_agreement(agreement_id: int):
    return _agreement_action(agreement_id, rules.publish_agreement,
                             "{title} is published: it is on the public pages, and open to suppliers in its period.")


@bp.route("/agreements/<int:agreement_id>/unpublish", methods=["POST"])
@team_only
def unpublish_agreement(agreement_id: int):
    return _agreement_action(agreement_id, rules.unpublish_agreement, "{title} is a draft again.")


# Lots ------------------------------------------------------------------------------------------

@bp.route("/agreements/<int:agreement_id>/lots/new", methods=["GET", "POST"])
@team_only
def new_lot(agreement_id: int):
    item = _agreement(agreement_id)
    next_number = max((lot.number for lot in item.lots), default=0) + 1
    form = LotForm(data={"number": next_number, "case_studies_required": 2} if request.method == "GET" else None)
    if form.validate_on_submit():
        try:
            lot = rules.create_lot(_actor(), item, **_lot_values(form))
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash(f"{lot.label} has been added.", "success")
            return redirect(url_for("team.agreement", agreement_id=item.id, _anchor="lots"))
    return render_form("team/lot_form.html", form, agreement=item, lot=None, locked=False)


@bp.route("/agreements/<int:agreement_id>/lots/<int:lot_id>/edit", methods=["GET", "POST"])
@team_only
def edit_lot(agreement_id: int, lot_id: int):
    item = _agreement(agreement_id)
    lot = _lot(item, lot_id)
    data = None
    if request.method == "GET":
        data = {name: getattr(lot, name) for name in rules.LOT_FIELDS}
        data["cpv_codes"] = ", ".join(lot.cpv_codes)
        for name in ("public_liability_min_pence", "professional_indemnity_min_pence"):
            pence = getattr(lot, name)
            data[name] = f"{pence // 100}" + (f".{pence % 100:02d}" if pence % 100 else "")
    form = LotForm(data=data)
    if form.validate_on_submit():
        try:
            rules.update_lot(_actor(), lot, **_lot_values(form))
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash(f"{lot.label} has been saved.", "success")
            return redirect(url_for("team.agreement", agreement_id=item.id, _anchor="lots"))
    return render_form("team/lot_form.html", form, agreement=item, lot=lot, locked=rules.has_admissions(lot))


def _lot_action(agreement_id: int, lot_id: int, action, done: str):
    item = _agreement(agreement_id)
    lot = _lot(item, lot_id)
    return _act(item, action, lot, done.format(label=lot.label), anchor="lots")


@bp.route("/agreements/<int:agreement_id>/lots/<int:lot_id>/close", methods=["POST"])
@team_only
def close_lot(agreement_id: int, lot_id: int):
    return _lot_action(agreement_id, lot_id, rules.close_lot,
                       "{label} is closed to new applications. Suppliers on it stay, and are still invited.")


@bp.route("/agreements/<int:agreement_id>/lots/<int:lot_id>/reopen", methods=["POST"])
@team_only
def reopen_lot(agreement_id: int, lot_id: int):
    return _lot_action(agreement_id, lot_id, rules.reopen_lot, "{label} is open to applications again.")


@bp.route("/agreements/<int:agreement_id>/lots/<int:lot_id>/delete", methods=["POST"])
@team_only
def delete_lot(agreement_id: int, lot_id: int):
    return _lot_action(agreement_id, lot_id, rules.delete_lot, "{label} has been deleted.")
