"""Buyers' mini-competitions: the list, creating one, changing it while it is a draft (the same
form and checks), its page, specification documents, the evaluation panel, publishing to every
admitted supplier, answering clarifications, cancelling.

Every competition is loaded through the buyer's own organisation (``_own_competition``), so
another organisation's competition is simply not found. Before the tender deadline the page shows
who was invited, who opened the invitation and who submitted: names and times only, read as
columns, so no bid content is ever loaded here.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import (
    GovCheckboxesInput,
    GovDateInput,
    GovFileInput,
    GovRadioInput,
    GovSelect,
    GovSubmitInput,
    GovTextArea,
    GovTextInput,
)
from sqlalchemy import Select, select
from sqlalchemy.orm import joinedload, selectinload
from wtforms import (
    FileField,
    HiddenField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional, StopValidation

from dps import clock, questionnaire
from dps.auth import one_or_404
from dps.extensions import db
from dps.filters import money
from dps.forms import ConfirmForm, LondonDateField, single_line
from dps.models import (
    Clarification,
    Competition,
    CompetitionDocument,
    Document,
    Organisation,
    PanelMember,
    User,
)
from dps.models.competitions import STAGE_LABELS
from dps.pagination import clean_search
from dps.services import ServiceError, budget, clarifications, competitions, documents, evaluation
from dps.views.helpers import attach_error, render_form

from .views import bp

QUALITY_ROWS = 3
WORD_LIMIT_MAX = 10_000
TEXT_LIMIT = 10_000
PRICE_FORMULA_CHOICES = [
    SelectChoice("lowest_price_ratio", "Lowest price ÷ bid price × price weight"),
    SelectChoice("linear_from_lowest", "Linear: the lowest price gets the full price weight, and a bid loses it in "
                                       "proportion to how far its price is above the lowest (double the lowest "
                                       "scores nothing)"),
]
PRICE_FORMULA_LABELS = {choice.value: choice.label for choice in PRICE_FORMULA_CHOICES}
STANDSTILL_CHOICES = [SelectChoice("yes", "Yes, a standstill period before the contract is confirmed"),
                      SelectChoice("no", "No standstill")]
KIND_LABELS = {"price": "Price", "quality": "Quality", "social_value": "Social value"}


def _user() -> User:
    return current_user._get_current_object()


def _own_competitions() -> Select:
    """Competitions of the buyer's own organisation: the only ones a buyer may see."""
    return select(Competition).where(Competition.buyer_organisation_id == current_user.organisation_id)


def _own_competition(competition_id: int) -> Competition:
    return one_or_404(_own_competitions().where(Competition.id == competition_id)
                      .options(joinedload(Competition.lot), selectinload(Competition.criteria),
                               selectinload(Competition.award)))


# Fields and validators ------------------------------------------------------------------------

_TIME = re.compile(r"^(\d{1,2})(?:[:.](\d{2}))?\s*(am|pm)?$")


def parse_time(text: str) -> tuple[int, int]:
    """'9:00am', '9am', '5.30pm', '17:30', 'midday' -> (hour, minute) on the 24-hour clock."""
    value = (text or "").strip().lower().replace(" ", "")
    if value in ("midday", "noon", "12noon"):
        return 12, 0
    if value == "midnight":
        return 0, 0
    match = _TIME.match(value)
    if not match:
        raise ValueError("Enter a time like 9:00am or 17:30")
    hour, minute, half = int(match.group(1)), int(match.group(2) or 0), match.group(3)
    if half:
        if not 1 <= hour <= 12:
            raise ValueError("Enter a time like 9:00am or 17:30")
        hour = hour % 12 + (12 if half == "pm" else 0)
    elif match.group(2) is None:
        # "9" alone could be morning or evening.
        raise ValueError("Enter a time like 9:00am or 17:30")
    if hour > 23 or minute > 59:
        raise ValueError("Enter a real time, like 9:00am or 17:30")
    return hour, minute


def london_moment(day: date, text: str) -> datetime:
    """A UK wall-clock date and time as an aware UTC moment. A time the clocks skip (the hour
    after 1am on the last Sunday of March) is refused rather than silently moved."""
    hour, minute = parse_time(text)
    moment = clock.parse_london(f"{day.isoformat()}T{hour:02d}:{minute:02d}")
    local = clock.to_london(moment)
    if (local.hour, local.minute) != (hour, minute):
        raise ValueError("That time does not exist in the UK on that day, because the clocks go forward: "
                         "choose another time")
    return moment


def _money(form: FlaskForm, field) -> None:
    if field.data and field.data.strip():
        try:
            questionnaire.parse_money(field.data)
        except ValueError as exc:
            raise StopValidation(str(exc)) from None


def _whole_number(label: str, lowest: int, highest: int, unit: str = ""):
    def check(form: FlaskForm, field) -> None:
        raw = (field.data or "").strip().removesuffix("%").strip().replace(",", "")
        if not raw:
            return
        if not raw.isdigit() or not lowest <= int(raw) <= highest:
            raise StopValidation(f"{label} must be a whole number from {lowest:,}{unit} to {highest:,}{unit}")
    return check


def _number(field) -> int | None:
    raw = (field.data or "").strip().removesuffix("%").strip().replace(",", "")
    return int(raw) if raw.isdigit() else None


def _chosen(message: str):
    """A select whose value must be one of its choices (a tampered value reads as not chosen)."""
    def check(form: FlaskForm, field) -> None:
        if field.data is None or field.data not in {SelectChoice.from_input(c).value for c in field.choices}:
            raise StopValidation(message)
    return check


def _picked(message: str):
    """A select that must hold a number; whether it is one the user may choose is the service's rule."""
    def check(form: FlaskForm, field) -> None:
        if field.data is None:
            raise StopValidation(message)
    return check


def _financial_year_of(day: date) -> str:
    """The label of the financial year (1 April to 31 March) containing ``day``: "2024/25"."""
    return budget.year_label(day.year if day.month >= 4 else day.year - 1)


def _payable_now(form: FlaskForm, field) -> None:
    """The chosen allocation can pay for the competition now: of the financial year containing
    today, with something left. (Another organisation's allocation is the service's refusal.)"""
    allocation = competitions.own_allocation(current_user, field.data)
    if allocation is None:
        return
    today = clock.today_london()
    year = allocation.line.year
    current = _financial_year_of(today)
    if year.ends_on < today:
        raise StopValidation(f"{allocation.project_title} belongs to {year.label}, which has ended: "
                             f"choose an allocation of {current}")
    if year.starts_on > today:
        raise StopValidation(f"{allocation.project_title} belongs to {year.label}, which has not started: "
                             f"choose an allocation of {current}")
    if allocation.remaining_pence <= 0:
        raise StopValidation(f"Nothing is left of {allocation.project_title}: all "
                             f"{money(allocation.amount_pence)} is committed to call-offs. Choose another allocation")


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(label: str, required: str | None = None, limit: int = 200, hint: str = "", one_line: bool = True):
    validators = [InputRequired(message=required)] if required else [Optional()]
    validators.append(Length(max=limit, message=f"{label} must be {limit:,} characters or fewer"))
    if one_line:
        validators.append(single_line)
    return StringField(label, widget=GovTextInput(), description=hint, validators=validators)


def _area(label: str, required: str | None = None, limit: int = TEXT_LIMIT, hint: str = ""):
    validators = [InputRequired(message=required)] if required else [Optional()]
    validators.append(Length(max=limit, message=f"{label} must be {limit:,} characters or fewer"))
    return TextAreaField(label, widget=GovTextArea(), description=hint, validators=validators)


def _weight(label: str, required: str | None = None):
    validators = [InputRequired(message=required)] if required else []
    validators.append(_whole_number(f"The weight of {label.lower()}", 0 if not required else 1, 100, "%"))
    return StringField("Weight", widget=GovTextInput(), validators=validators)


def _word_limit(label: str):
    return StringField("Word limit (optional)", widget=GovTextInput(),
                       validators=[_whole_number(f"The word limit of {label.lower()}", 1, WORD_LIMIT_MAX)])


# The form to create a competition -------------------------------------------------------------

class CompetitionForm(FlaskForm):
    lot = SelectField("Lot", widget=GovSelect(), coerce=_int_or_none, validate_choice=False,
                      validators=[_chosen("Select the lot")])
    title = _text("Title", "Enter the title of the competition",
                  hint="Suppliers see this in their invitation. For example, Community wealth building review")
    description = _area("Description", "Enter a description of what you are buying",
                        hint="What you need, the outcomes you want and when. Attach the full specification "
                             "after you save.")
    estimated_value = StringField("Estimated value", widget=GovTextInput(),
                                  description="In pounds, including VAT, for the whole contract",
                                  validators=[InputRequired(message="Enter the estimated value"), _money])
    # The service refuses another organisation's allocation by this field, so the choice is not
    # checked against the list here.
    allocation = SelectField("Budget allocation", widget=GovSelect(), coerce=_int_or_none, validate_choice=False,
                             validators=[InputRequired(message="Select the budget allocation to charge"),
                                         _picked("Select the budget allocation to charge"), _payable_now],
                             description="The call-off will be charged to this allocation when you award it. "
                                         "Only your allocations of this financial year with money left are shown")
    clarification_deadline = LondonDateField("Deadline for questions", widget=GovDateInput(), format="%d %m %Y",
                                             validators=[InputRequired(message="Enter the deadline for questions")])
    clarification_deadline_time = StringField(
        "Time", widget=GovTextInput(), description="UK time, for example 5:00pm or 17:00",
        validators=[InputRequired(message="Enter the time of the deadline for questions")])
    tender_deadline = LondonDateField("Tender deadline", widget=GovDateInput(), format="%d %m %Y",
                                      validators=[InputRequired(message="Enter the tender deadline")])
    tender_deadline_time = StringField(
        "Time", widget=GovTextInput(), description="UK time, for example 12:00pm or 12:00",
        validators=[InputRequired(message="Enter the time of the tender deadline")])
    standstill = RadioField("Standstill period", widget=GovRadioInput(), validators=[Optional()],
                            choices=STANDSTILL_CHOICES)
    # Shown under "Yes" of the standstill; read only with it.
    standstill_days = StringField(
        "Length of the standstill period", widget=GovTextInput(),
        description=f"At least {competitions.MIN_STANDSTILL_DAYS} days (Public Contracts Regulations 2015, "
                    f"regulation 87) and no more than {competitions.MAX_STANDSTILL_DAYS}. Left empty, it is "
                    f"{competitions.DEFAULT_STANDSTILL_DAYS} days.")
    price_formula = RadioField("How price is scored", widget=GovRadioInput(), choices=PRICE_FORMULA_CHOICES,
                               validate_choice=False, validators=[_chosen("Choose how price is scored")])
    # Holds the service's message about the criteria as a whole (weights adding up to 100%), so
    # the error summary links to the criteria fieldset. Never rendered as an input.
    criteria = HiddenField()
    price_weight = _weight("Price", "Enter the weight of price")
    social_value_title = _text("Title of the social value criterion")
    social_value_description = _area("What you are looking for", limit=2_000)
    social_value_weight = _weight("Social value")
    social_value_word_limit = _word_limit("Social value")
    panel = SelectMultipleField("Evaluation panel", widget=GovCheckboxesInput(), coerce=int,
                                validators=[InputRequired(message="Choose at least one person for the evaluation panel")],
                                description="Who will score the tenders. Each member declares any conflict of "
                                            "interest before seeing them.")
    submit = SubmitField("Save as draft", widget=GovSubmitInput())

    def validate_standstill_days(self, field) -> None:
        if self.standstill.data != "yes":
            return  # no standstill: its length does not matter
        if (field.data or "").strip() and _number(field) is None:
            raise StopValidation("Enter the standstill period as a whole number of days, like 10")

    def validate_clarification_deadline_time(self, field) -> None:
        self.clarification_moment = self._moment(self.clarification_deadline, field)

    def validate_tender_deadline_time(self, field) -> None:
        self.tender_moment = self._moment(self.tender_deadline, field)

    @staticmethod
    def _moment(day_field, time_field) -> datetime | None:
        try:
            parse_time(time_field.data)
        except ValueError as exc:
            raise StopValidation(str(exc)) from None
        if day_field.data is None:
            return None  # the date's own message says what is wrong
        try:
            return london_moment(day_field.data, time_field.data)
        except ValueError as exc:
            raise StopValidation(str(exc)) from None

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        for label, title, weight, others in self._optional_rows():
            if weight.errors or title.errors:
                continue
            typed = bool(_number(weight)) or any((f.data or "").strip() for f in others)
            if not typed:
                continue  # an empty row (or weight 0) is a criterion left out
            if not (title.data or "").strip():
                title.errors.append(f"Enter the title of {label[0].lower()}{label[1:]}")
                valid = False
            if not _number(weight):
                weight.errors.append(f"Enter the weight of {label[0].lower()}{label[1:]}, or leave the criterion empty")
                valid = False
        return valid

    def _optional_rows(self):
        """(label, title, weight, fields that make the row count as typed) for each optional
        criterion. The social value title comes filled in, so it alone does not count."""
        for n in range(1, QUALITY_ROWS + 1):
            yield (f"Quality criterion {n}", self[f"quality_{n}_title"], self[f"quality_{n}_weight"],
                   (self[f"quality_{n}_title"], self[f"quality_{n}_description"], self[f"quality_{n}_word_limit"]))
        yield ("The social value criterion", self.social_value_title, self.social_value_weight,
               (self.social_value_description, self.social_value_word_limit))

    def inputs(self) -> competitions.CompetitionInputs:
        """What was typed, for the service (the same for a new competition and an edited one)."""
        standstill = {"yes": True, "no": False}.get(self.standstill.data)
        return competitions.CompetitionInputs(
            lot_id=self.lot.data, title=self.title.data or "", description=self.description.data or "",
            estimated_value_pence=questionnaire.parse_money(self.estimated_value.data),
            allocation_id=self.allocation.data, clarification_deadline=self.clarification_moment,
            tender_deadline=self.tender_moment, criteria=self.criteria_inputs(), standstill=standstill,
            standstill_days=_number(self.standstill_days) if standstill else None,
            price_formula=self.price_formula.data)

    def criteria_inputs(self) -> list[competitions.CriterionInput]:
        """The criteria typed in, in the order they are shown: price, quality, social value."""
        items = [competitions.CriterionInput(kind="price", title="Price", weight=_number(self.price_weight) or 0)]
        for n in range(1, QUALITY_ROWS + 1):
            weight = _number(self[f"quality_{n}_weight"])
            if weight:
                items.append(competitions.CriterionInput(
                    kind="quality", title=self[f"quality_{n}_title"].data or "", weight=weight,
                    description=self[f"quality_{n}_description"].data or "",
                    word_limit=_number(self[f"quality_{n}_word_limit"])))
        weight = _number(self.social_value_weight)
        if weight:
            items.append(competitions.CriterionInput(
                kind="social_value", title=self.social_value_title.data or "", weight=weight,
                description=self.social_value_description.data or "",
                word_limit=_number(self.social_value_word_limit)))
        return items


for _n in range(1, QUALITY_ROWS + 1):
    setattr(CompetitionForm, f"quality_{_n}_title", _text(f"Title of quality criterion {_n}"))
    setattr(CompetitionForm, f"quality_{_n}_description", _area("What you are looking for", limit=2_000))
    setattr(CompetitionForm, f"quality_{_n}_weight", _weight(f"Quality criterion {_n}"))
    setattr(CompetitionForm, f"quality_{_n}_word_limit", _word_limit(f"Quality criterion {_n}"))


def _allocation_label(allocation) -> str:
    line = allocation.line
    return (f"{line.year.label}, {line.programme}: {allocation.project_title} "
            f"({money(allocation.remaining_pence)} remaining)")


def _offer_label(allocation) -> str:
    """An allocation as the select offers it, with what is left to commit:
    "Community wealth building lab, Policy Labs 2024/25: £12,500.00 left"."""
    line = allocation.line
    return f"{allocation.project_title}, {line.programme} {line.year.label}: {money(allocation.remaining_pence)} left"


def _pounds(pence: int) -> str:
    """Pence as the buyer would type pounds: 15000000 -> '150,000'; 1234550 -> '12,345.50'."""
    return f"{pence / 100:,.2f}".removesuffix(".00")


def _wall_time(moment: datetime) -> str:
    """A moment as the time box takes it, in UK time: '5:00pm', '12:00pm'."""
    local = clock.to_london(moment)
    return f"{local.hour % 12 or 12}:{local.minute:02d}{'am' if local.hour < 12 else 'pm'}"


def _misfit(competition: Competition) -> str | None:
    """Why the form cannot show the draft's criteria (None when it can). Drafts made on the new
    page always fit; one made otherwise with more rows than the form has is refused rather than
    saved with criteria silently dropped."""
    kinds = [c.kind for c in competition.criteria]
    if kinds.count("quality") > QUALITY_ROWS or kinds.count("social_value") > 1 or kinds.count("price") > 1:
        return (f"This draft has more award criteria than the edit page can show ({QUALITY_ROWS} quality, one "
                "social value and one price criterion), so it cannot be edited here")
    return None


def _saved_data(competition: Competition) -> dict:
    """The edit form's starting values: what is saved."""
    data = {
        "lot": competition.lot_id, "title": competition.title, "description": competition.description,
        "estimated_value": _pounds(competition.estimated_value_pence), "allocation": competition.allocation_id,
        "clarification_deadline": clock.to_london(competition.clarification_deadline).date(),
        "clarification_deadline_time": _wall_time(competition.clarification_deadline),
        "tender_deadline": clock.to_london(competition.tender_deadline).date(),
        "tender_deadline_time": _wall_time(competition.tender_deadline),
        "standstill": "yes" if competition.standstill else "no",
        "standstill_days": str(competition.standstill_days), "price_formula": competition.price_formula,
        "social_value_title": "Social value",
        "panel": list(db.session.scalars(select(PanelMember.user_id)
                                         .where(PanelMember.competition_id == competition.id))),
    }
    quality = 0
    for c in sorted(competition.criteria, key=lambda c: c.position):
        if c.kind == "price":
            data["price_weight"] = str(c.weight)
            continue
        if c.kind == "quality":
            quality += 1
            prefix = f"quality_{quality}"
        else:
            prefix = "social_value"
        data[f"{prefix}_title"] = c.title
        data[f"{prefix}_description"] = c.description
        data[f"{prefix}_weight"] = str(c.weight)
        data[f"{prefix}_word_limit"] = str(c.word_limit) if c.word_limit else ""
    return data


def _competition_form(user: User, competition: Competition | None = None) -> CompetitionForm:
    """The form of the new page (``competition`` None) and of a draft's edit page: one form, so
    both ask the same and check the same."""
    data = None
    if request.method == "GET":
        if competition is None:
            # The buyer creating it is on the panel unless they choose otherwise.
            data = {"panel": [user.id], "price_formula": "lowest_price_ratio", "social_value_title": "Social value",
                    "standstill_days": str(competitions.DEFAULT_STANDSTILL_DAYS)}
        else:
            data = _saved_data(competition)
    form = CompetitionForm(data=data)
    # Every open agreement's lots, each named with its agreement: several may be open at once.
    lots = competitions.open_lots()
    form.lot.choices = [SelectChoice("", "Choose a lot")] + [
        SelectChoice(lot.id, f"{lot.agreement.reference}: {lot.label}") for lot in lots]
    if competition is not None and competition.lot_id not in {lot.id for lot in lots}:
        # The draft's lot, though its agreement is no longer open: shown as chosen, so that saving
        # says why it cannot stay on it rather than that no lot was chosen.
        lot = competition.lot
        form.lot.choices.append(SelectChoice(lot.id, f"{lot.agreement.reference}: {lot.label} (not open)"))
    payable = competitions.payable_allocations(user, clock.today_london())
    form.allocation.choices = [SelectChoice("", "Choose an allocation")] + [
        SelectChoice(a.id, _offer_label(a)) for a in payable]
    if competition is not None and competition.allocation_id not in {a.id for a in payable}:
        # The draft's allocation, though it can no longer pay (its year has ended, or it is spent):
        # shown as chosen, so that saving says why by the field rather than that none was chosen.
        form.allocation.choices.append(SelectChoice(
            competition.allocation_id, _offer_label(competition.allocation) + " (cannot be charged now)"))
    candidates = competitions.panel_candidates(user)
    form.panel.choices = [SelectChoice(person.id, person.name + (" (you)" if person.id == user.id else ""))
                          for person in candidates]
    if competition is not None:
        # Someone on the draft's panel whose account has closed since is shown, ticked, so the
        # buyer sees them and unticks them, rather than being dropped unseen.
        offered = {person.id for person in candidates}
        form.panel.choices += [
            SelectChoice(member.user.id, f"{member.user.name} (account closed)")
            for member in db.session.scalars(
                select(PanelMember).join(PanelMember.user).options(joinedload(PanelMember.user))
                .where(PanelMember.competition_id == competition.id).order_by(User.name, User.id))
            if member.user_id not in offered]
    return form


def _form_page(template: str, form: CompetitionForm, **context):
    today = clock.to_london(clock.now()).date()
    return render_form(template, form, threshold=competitions.threshold_on(today),
                       earliest_tender_deadline=clock.now() + timedelta(days=competitions.MIN_TENDER_DAYS),
                       min_tender_days=competitions.MIN_TENDER_DAYS, quality_rows=range(1, QUALITY_ROWS + 1),
                       **context)


# Pages ----------------------------------------------------------------------------------------

@bp.route("/competitions")
def competitions_list():
    """The organisation's competitions, newest first, 50 to a page (dps.pagination), searched by
    title or reference."""
    text = clean_search(request.args.get("q"))
    page = competitions.competitions_of(current_user.organisation_id, text, after=request.args.get("after"),
                                        before=request.args.get("before"))
    return render_template("buyers/competitions.html", page=page, q=text, now=clock.now(),
                           pager=page.navigation("buyers.competitions_list", label="Pages of mini-competitions", q=text),
                           cannot_buy=competitions.why_cannot_buy(_user()))


@bp.route("/competitions/new", methods=["GET", "POST"])
def new_competition():
    user = _user()
    reason = competitions.why_cannot_buy(user)
    if reason:
        return render_template("buyers/competition_new.html", form=None, cannot_buy=reason), 403
    form = _competition_form(user)
    if form.validate_on_submit():
        try:
            competition, warnings = competitions.create(user, form.inputs())
            competitions.appoint_panel(competition, user, form.panel.data or [])
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash(f"{competition.reference} has been saved as a draft. Add the specification documents, "
                  "then publish it to invite every supplier on the lot.", "success")
            for warning in warnings:
                flash(warning, "warning")
            return redirect(url_for("buyers.competition", competition_id=competition.id))
    return _form_page("buyers/competition_new.html", form, cannot_buy=None)


# What the flash after an edit calls each thing that changed.
CHANGE_LABELS = {
    "lot_id": "lot", "title": "title", "description": "description", "estimated_value_pence": "estimated value",
    "allocation_id": "budget allocation", "clarification_deadline": "deadline for questions",
    "tender_deadline": "tender deadline", "standstill": "standstill", "standstill_days": "length of the standstill",
    "price_formula": "how price is scored", "criteria": "award criteria", "panel": "evaluation panel",
}


def _said(names: list[str]) -> str:
    labels = [CHANGE_LABELS.get(name, name) for name in names]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


@bp.route("/competitions/<int:competition_id>/edit", methods=["GET", "POST"])
def edit_competition(competition_id: int):
    """A draft's edit page: the new page's form, filled in with what is saved, checked by the same
    service path. Once published (or cancelled) the page and its POST are refused with the reason,
    on the competition's page."""
    item = _own_competition(competition_id)
    user = _user()
    refusal = competitions.edit_refusal(item) or competitions.why_cannot_buy(user) or _misfit(item)
    if refusal:
        return _refused(item, refusal)
    form = _competition_form(user, item)
    if form.validate_on_submit():
        try:
            changed, warnings = competitions.update_draft(item, user, form.inputs())
            panel = competitions.appoint_panel(item, user, form.panel.data or [])
        except ServiceError as exc:
            db.session.rollback()
            item = _own_competition(competition_id)
            refusal = competitions.edit_refusal(item)
            if refusal:  # published or cancelled by a colleague meanwhile
                return _refused(item, refusal)
            attach_error(form, exc)
        else:
            db.session.commit()
            if panel.added or panel.removed:
                changed.append("panel")
            if changed:
                flash(f"Your changes to {item.reference} have been saved: {_said(changed)}.", "success")
            else:
                flash("You did not change anything, so nothing was saved.", "info")
            for warning in warnings:
                flash(warning, "warning")
            return redirect(url_for("buyers.competition", competition_id=item.id))
    return _form_page("buyers/competition_edit.html", form, competition=item)


def _refused(item: Competition, message: str):
    """The competition's page with why it cannot be changed (status 400): nothing was saved."""
    form = FlaskForm(formdata=None)
    form.form_errors.append(message)
    return _competition_page(item, form)


class UploadForm(FlaskForm):
    document = FileField("Upload a specification document", widget=GovFileInput(),
                         description=f"{documents.ALLOWED_DESCRIPTION}. Invited suppliers can read it.")
    submit = SubmitField("Upload", widget=GovSubmitInput())


class PanelForm(FlaskForm):
    """Adding a colleague to the panel later: the evaluation pages' action (``buyers.evaluation_panel``,
    dps.services.evaluation.add_panel_member) is the one place the panel changes after creation,
    so this form posts there with its field name."""

    user_id = SelectField("Add a colleague to the panel", widget=GovSelect(), coerce=_int_or_none,
                          validate_choice=False)
    submit = SubmitField("Add to the panel", widget=GovSubmitInput())


class CancelForm(FlaskForm):
    reason = _area("Why are you cancelling it?", "Enter why the competition is cancelled: invited suppliers will read it",
                   limit=5_000, hint="Every invited supplier is emailed this reason.")
    submit = SubmitField("Cancel the competition", widget=GovSubmitInput())


class AnswerForm(FlaskForm):
    published_question = _area("Question, as every invited supplier will read it",
                               "Enter the question as every invited supplier will read it",
                               limit=clarifications.QUESTION_LIMIT,
                               hint="Reword it if it could show who asked.")
    answer = _area("Answer", "Enter your answer", limit=clarifications.ANSWER_LIMIT)
    submit = SubmitField("Send the answer to every invited supplier", widget=GovSubmitInput())


def _answer_form(clarification: Clarification, formdata=None) -> AnswerForm:
    # One form per question on the page, so each has its own field ids. The question as asked
    # is the starting point for its published wording.
    if formdata is not None:
        return AnswerForm(formdata=formdata, prefix=f"c{clarification.id}")
    return AnswerForm(formdata=None, prefix=f"c{clarification.id}", data={"published_question": clarification.question})


def _social_value_warnings(competition: Competition) -> list[str]:
    try:
        return competitions.check_criteria([
            competitions.CriterionInput(kind=c.kind, title=c.title, weight=c.weight) for c in competition.criteria])
    except ServiceError:
        # Criteria saved are valid by construction; if weights were refined since, the page still shows.
        return []


def _competition_page(competition: Competition, failed: FlaskForm | None = None, *,
                      upload_form: UploadForm | None = None, publish_form: ConfirmForm | None = None,
                      cancel_form: CancelForm | None = None, answer_forms: dict[int, AnswerForm] | None = None):
    """The competition page; ``failed`` is the form whose errors it shows (status 400). Each
    action's form appears only while its action is possible, even when it is the one that failed."""
    user = _user()
    now = clock.now()
    stage = competition.stage(now)
    specification = db.session.scalars(
        select(Document).join(CompetitionDocument, CompetitionDocument.document_id == Document.id)
        .where(CompetitionDocument.competition_id == competition.id).order_by(Document.id)).all()
    panel = db.session.scalars(
        select(PanelMember).join(PanelMember.user).options(joinedload(PanelMember.user))
        .where(PanelMember.competition_id == competition.id).order_by(User.name, User.id)).all()
    on_panel = {member.user_id for member in panel}
    panel_form = None
    if competition.refusal("change_panel", now) is None and evaluation.may_manage_panel(competition, user):
        others = [person for person in competitions.panel_candidates(user) if person.id not in on_panel]
        if others:
            panel_form = PanelForm(formdata=None)
            panel_form.user_id.choices = [SelectChoice("", "Choose a colleague")] + [
                SelectChoice(person.id, person.name) for person in others]

    questions = clarifications.visible_to(competition, user)
    askers = dict(db.session.execute(
        select(Organisation.id, Organisation.name)
        .where(Organisation.id.in_({c.asked_by_organisation_id for c in questions}))).all()) if questions else {}
    answering = competition.refusal("answer_clarification", now) is None
    forms = dict(answer_forms or {})
    if answering:
        for item in questions:
            if item.answered_at is None:
                forms.setdefault(item.id, _answer_form(item))

    # Who was invited, a page at a time: a lot may have thousands of suppliers.
    invited = invited_counts = None
    if competition.published_at is not None:
        invited = competitions.invited_suppliers(competition, after=request.args.get("after"),
                                                 before=request.args.get("before"))
        invited_counts = competitions.invitation_counts(competition)

    allocation = competition.allocation
    editable = competition.refusal("edit", now) is None
    context = dict(
        competition=competition, now=now, stage=stage.value, stage_label=STAGE_LABELS[stage],
        criteria=competition.criteria, kind_labels=KIND_LABELS,
        price_formula=PRICE_FORMULA_LABELS.get(competition.price_formula, competition.price_formula),
        warnings=_social_value_warnings(competition), allocation=allocation,
        allocation_label=_allocation_label(allocation), specification=specification, panel=panel,
        invited=invited, invited_counts=invited_counts,
        invited_pager=invited.navigation("buyers.competition", label="Pages of invited suppliers",
                                         competition_id=competition.id, _anchor="invitations") if invited else None,
        clarifications=questions, askers=askers, answer_forms=forms,
        editable=editable,
        upload_form=(upload_form or UploadForm(formdata=None)) if editable else None,
        remove_form=ConfirmForm(formdata=None) if editable else None,
        panel_form=panel_form,
        publish_form=(publish_form or ConfirmForm(formdata=None)) if competition.refusal("publish", now) is None else None,
        # Cancelling is possible at any time before an award (the service has the final word).
        cancel_form=((cancel_form or CancelForm(formdata=None)) if competition.refusal("cancel", now) is None
                     else None),
    )
    return render_form("buyers/competition.html", failed or FlaskForm(formdata=None),
                       400 if failed is not None else None, **context)


@bp.route("/competitions/<int:competition_id>")
def competition(competition_id: int):
    return _competition_page(_own_competition(competition_id))


@bp.route("/competitions/<int:competition_id>/documents", methods=["POST"])
def add_competition_document(competition_id: int):
    item = _own_competition(competition_id)
    form = UploadForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        link = competitions.add_document(item, _user(), request.files.get("document"))
    except ServiceError as exc:
        db.session.rollback()
        attach_error(form, exc)
        return _competition_page(_own_competition(competition_id), form, upload_form=form)
    filename = link.document.filename
    db.session.commit()
    flash(f"“{filename}” has been added to the specification.", "success")
    return redirect(url_for("buyers.competition", competition_id=item.id, _anchor="documents"))


@bp.route("/competitions/<int:competition_id>/documents/<int:document_id>/remove", methods=["POST"])
def remove_competition_document(competition_id: int, document_id: int):
    item = _own_competition(competition_id)
    link = one_or_404(select(CompetitionDocument).options(joinedload(CompetitionDocument.document))
                      .where(CompetitionDocument.competition_id == item.id,
                             CompetitionDocument.document_id == document_id))
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        document = competitions.remove_document(item, _user(), link)
    except ServiceError as exc:
        db.session.rollback()
        form.form_errors.append(exc.message)
        return _competition_page(_own_competition(competition_id), form)
    filename = document.filename
    db.session.commit()
    flash(f"“{filename}” has been removed from the specification.", "success")
    return redirect(url_for("buyers.competition", competition_id=item.id, _anchor="documents"))


@bp.route("/competitions/<int:competition_id>/publish", methods=["POST"])
def publish_competition(competition_id: int):
    item = _own_competition(competition_id)
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        invitations = competitions.publish(item, _user())
    except ServiceError as exc:
        db.session.rollback()
        form.form_errors.append(exc.message)
        return _competition_page(_own_competition(competition_id), form, publish_form=form)
    count = len(invitations)
    db.session.commit()
    flash(f"Published. {count} {'supplier' if count == 1 else 'suppliers'} admitted to Lot {item.lot.number} "
          f"{'has' if count == 1 else 'have'} been invited and emailed.", "success")
    return redirect(url_for("buyers.competition", competition_id=item.id))


@bp.route("/competitions/<int:competition_id>/cancel", methods=["POST"])
def cancel_competition(competition_id: int):
    item = _own_competition(competition_id)
    form = CancelForm()
    if form.validate_on_submit():
        try:
            competitions.cancel(item, _user(), form.reason.data)
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash("The competition has been cancelled. Every invited supplier has been emailed the reason.", "success")
            return redirect(url_for("buyers.competition", competition_id=item.id))
    return _competition_page(_own_competition(competition_id), form, cancel_form=form)


@bp.route("/competitions/<int:competition_id>/clarifications/<int:clarification_id>/answer", methods=["POST"])
def answer_clarification(competition_id: int, clarification_id: int):
    item = _own_competition(competition_id)
    question = one_or_404(select(Clarification).where(Clarification.id == clarification_id,
                                                      Clarification.competition_id == item.id))
    form = _answer_form(question, formdata=request.form)
    if form.validate_on_submit():
        try:
            clarifications.answer(question, _user(), form.published_question.data, form.answer.data)
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash("Your answer has been sent to every invited supplier, without saying who asked.", "success")
            return redirect(url_for("buyers.competition", competition_id=item.id, _anchor="clarifications"))
    return _competition_page(_own_competition(competition_id), form, answer_forms={clarification_id: form})
