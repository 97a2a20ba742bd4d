"""The supplier's organisation details (selection questionnaire Part 1)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import flash, redirect, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovRadioInput, GovSubmitInput, GovTextInput
from wtforms import Field, RadioField, StringField, SubmitField
from wtforms.validators import AnyOf, InputRequired, Length, ValidationError

from dps import validators
from dps.extensions import db
from dps.forms import email_field, single_line
from dps.models import Organisation
from dps.models.organisations import LEGAL_FORMS, NATIONS, SIZES
from dps.services import ServiceError, suppliers
from dps.views.helpers import attach_error, render_form

from .views import bp

LEGAL_FORM_LABELS: dict[str, str] = {
    "company": "Company limited by shares or guarantee",
    "cic": "Community interest company (CIC)",
    "co_operative": "Co-operative society",
    "community_benefit_society": "Community benefit society",
    "charity": "Charity or charitable incorporated organisation",
    "partnership": "Partnership or limited liability partnership",
    "sole_trader": "Sole trader",
}
SIZE_LABELS: dict[str, str] = {"micro": "Micro", "small": "Small", "medium": "Medium", "large": "Large"}
# The UK size thresholds (Companies Act 2006 and the micro-entity regime), as the hint under each choice.
SIZE_HINTS: dict[str, str] = {
    "micro": "Fewer than 10 staff, and a turnover or balance sheet total of £2 million or less",
    "small": "Fewer than 50 staff, and a turnover or balance sheet total of £10 million or less",
    "medium": "Fewer than 250 staff, and a turnover of £50 million or less or a balance sheet total of "
              "£43 million or less",
    "large": "Bigger than a medium-sized organisation",
}
# Built from the model's codes so that a code added there without a label fails at import.
LEGAL_FORM_CHOICES: list[tuple[str, str]] = [(code, LEGAL_FORM_LABELS[code]) for code in LEGAL_FORMS]
SIZE_CHOICES: list[tuple[str, str]] = [(code, SIZE_LABELS[code]) for code in SIZES]
NATION_CHOICES: list[tuple[str, str]] = [(nation, nation) for nation in NATIONS]
YES_NO: list[tuple[str, str]] = [("yes", "Yes"), ("no", "No")]


class Format:
    """A form validator that runs one of dps.validators, so its message shows by the field.
    A blank is for InputRequired to refuse, or is allowed."""

    def __init__(self, check: Callable[[str], Any]):
        self.check = check

    def __call__(self, form: FlaskForm, field: Field) -> None:
        if not (field.data or "").strip():
            return
        try:
            self.check(field.data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc


def _text(label: str, what: str, *, required: str | None = None, max_length: int = 200, hint: str = "",
          extra: tuple[Callable[[FlaskForm, Field], None], ...] = ()) -> StringField:
    """A text input; ``what`` names it in the message when it is too long.

    Optional fields do without WTForms' Optional(), which would end the checks at a blank: a blank
    registration number must still reach the check of whether the legal form needs one."""
    presence = [InputRequired(message=required)] if required else []
    return StringField(label, widget=GovTextInput(), description=hint, validators=[
        *presence,
        Length(max=max_length, message=f"{what} must be {max_length} characters or fewer"),
        single_line,
        *extra,
    ])


def _radios(label: str, choices: list[tuple[str, str]], message: str, hint: str = "") -> RadioField:
    # AnyOf rather than WTForms' own choice check, whose message ("Not a valid choice") says
    # nothing about what to do.
    return RadioField(label, widget=GovRadioInput(), choices=choices, description=hint, validate_choice=False,
                      validators=[InputRequired(message=message), AnyOf([value for value, _ in choices], message=message)])


class OrganisationForm(FlaskForm):
    name = _text("Legal name", "Legal name", required="Enter your organisation's legal name",
                 hint="As it appears on the register your organisation is on, or your own name if you are a sole trader")
    trading_name = _text("Trading name (optional)", "Trading name", hint="Only if it trades under a different name")
    address_line_1 = _text("Address line 1", "Address line 1", required="Enter the first line of the registered address")
    address_line_2 = _text("Address line 2 (optional)", "Address line 2")
    town = _text("Town or city", "Town or city", required="Enter the town or city", max_length=100)
    postcode = _text("Postcode", "Postcode", required="Enter the postcode", max_length=10, extra=(Format(validators.postcode),))
    nation = _radios("Where is your organisation registered?", NATION_CHOICES,
                     "Select the nation where your organisation is registered")
    legal_form = _radios("Legal form", LEGAL_FORM_CHOICES, "Select your organisation's legal form")
    registration_number = _text(
        "Registration number", "Registration number", max_length=40,
        hint="Companies and CICs: your Companies House number, like 01234567 or SC123456. "
             "Limited liability partnerships: your Companies House number, like OC123456. "
             "Co-operative and community benefit societies: your Mutuals Public Register number, like "
             "RS007654 or 30155R. Charities: your charity number, like 1187654, SC012345 or NIC100001. "
             "Leave this blank if you are a sole trader or an ordinary partnership.")
    vat_number = _text("VAT registration number (optional)", "VAT number", max_length=20, hint="For example, GB123456789",
                       extra=(Format(validators.vat_number),))
    size = _radios("Size of your organisation", SIZE_CHOICES, "Select the size of your organisation",
                   hint="Count staff as full-time equivalents. Include any organisations that own or control yours.")
    is_vcse = _radios("Is your organisation a voluntary, community or social enterprise?", YES_NO,
                      "Select yes if your organisation is a voluntary, community or social enterprise",
                      hint="A charity, community group, social enterprise, co-operative or mutual that reinvests "
                           "its surpluses in its social aims")
    parent_company = _text("Parent company (optional)", "Parent company",
                           hint="The legal name of any company that owns or controls yours")
    contact_name = _text("Full name", "Full name", required="Enter the contact's full name")
    contact_email = email_field("Email address")
    contact_phone = _text("Telephone number (optional)", "Telephone number", max_length=40,
                          hint="For international numbers include the country code",
                          extra=(Format(validators.phone_number),))
    submit = SubmitField("Save details", widget=GovSubmitInput())

    def validate_registration_number(self, field: Field) -> None:
        legal_form = self.legal_form.data if self.legal_form.data in LEGAL_FORMS else None
        missing = suppliers.missing_registration_message(legal_form, field.data)
        if missing:
            raise ValidationError(missing)
        if legal_form is None:
            return  # its format depends on the legal form, which has its own error
        try:
            validators.registration(legal_form, field.data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc


def _prefill(org: Organisation) -> dict[str, Any]:
    data = {field: getattr(org, field) for field in suppliers.DETAIL_FIELDS}
    data["is_vcse"] = None if org.is_vcse is None else ("yes" if org.is_vcse else "no")
    return data


def _submitted(form: OrganisationForm) -> dict[str, Any]:
    data = {field: form[field].data for field in suppliers.DETAIL_FIELDS}
    data["is_vcse"] = form.is_vcse.data == "yes"
    return data


@bp.route("/organisation", methods=["GET", "POST"])
def organisation():
    # Always the signed-in supplier's own organisation: nothing in the request can name another.
    user = current_user._get_current_object()
    org = user.organisation
    # Prefilled on GET only: on POST the page shows what was typed, even where it was wrong.
    form = OrganisationForm(data=_prefill(org) if request.method == "GET" else None)
    if form.validate_on_submit():
        try:
            suppliers.update_details(org, user, _submitted(form))
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash("Your organisation's details have been saved", "success")
            return redirect(url_for("suppliers.dashboard"))
    # The widget merges these into the radios in order, one hint per size.
    size_items = [{"hint": {"text": SIZE_HINTS[code]}} for code, _ in SIZE_CHOICES]
    return render_form("suppliers/organisation.html", form, size_items=size_items)
