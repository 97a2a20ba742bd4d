"""The DPS team's budget pages (added to the team blueprint): financial years, budget lines,
allocations to members' funded projects, and the dashboard with its charts.

Auditors may read every page; only the DPS team acts (``team_only``). Money is typed in pounds and
kept in pence. The charts are inline SVG drawn here on the server with presentation attributes
(fill, width), because the Content-Security-Policy allows no inline styles and no script but
our own; each chart has a text alternative and the tables beside it hold the same figures.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovSelect, GovSubmitInput, GovTextInput
from sqlalchemy import select
from wtforms import SelectField, StringField, SubmitField
from wtforms.validators import InputRequired, Length, Regexp, ValidationError

from .. import questionnaire
from ..auth import one_or_404
from ..extensions import db
from ..filters import money
from ..models import Allocation, BudgetLine, BudgetYear, Organisation
from ..services import ServiceError
from ..services import budget as rules
from .helpers import attach_error
from .team import bp, team_only

# Forms --------------------------------------------------------------------------------------------


class PoundsField(StringField):
    """An amount typed in pounds ("£1,250.50"). After validation, ``pence`` holds it in pence
    (None when left empty); the typed text stays in ``data`` so a refused form shows it again."""

    pence: int | None = None

    def post_validate(self, form: FlaskForm, validation_stopped: bool) -> None:
        self.pence = None
        if validation_stopped or not (self.data or "").strip():
            return
        try:
            self.pence = questionnaire.parse_money(self.data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


def _pounds(label: str, required: str | None, hint: str = "") -> PoundsField:
    validators = [InputRequired(message=required)] if required else []
    return PoundsField(label, widget=GovTextInput(), description=hint, validators=validators)


class YearForm(FlaskForm):
    start_year = StringField(
        "Year it starts", widget=GovTextInput(),
        description="Financial years run from 1 April to 31 March. For example, 2025 for 1 April 2025 to 31 March 2026.",
        validators=[InputRequired(message="Enter the year the financial year starts"),
                    Regexp(r"^\s*\d{4}\s*$", message="Enter the year as 4 digits, like 2025")])
    submit = SubmitField("Add financial year", widget=GovSubmitInput())


class LineForm(FlaskForm):
    programme = StringField(
        "Programme", widget=GovTextInput(), description="For example, Policy Labs",
        validators=[InputRequired(message="Enter the name of the programme"),
                    Length(max=rules.PROGRAMME_LIMIT,
                           message=f"Programme must be {rules.PROGRAMME_LIMIT} characters or fewer")])
    total = _pounds("Total for the year", "Enter the line’s total for the year, in pounds")
    cap_per_call_off = _pounds("Cap per call-off (optional)", None,
                               "The most one call-off charged to this line may be worth. Leave empty for no cap.")
    submit = SubmitField("Add budget line", widget=GovSubmitInput())


class LineTotalForm(FlaskForm):
    total = _pounds("New total for the year", "Enter the line’s new total, in pounds",
                    "It cannot be less than what is already allocated from the line.")
    submit = SubmitField("Change total", widget=GovSubmitInput())


class AllocateForm(FlaskForm):
    # Choices are set per page. validate_choice is off so that an organisation that may not hold
    # an allocation is refused by the service, with the reason, rather than as "not a valid choice".
    line = SelectField("Budget line", widget=GovSelect(), coerce=int, validate_choice=False,
                       validators=[InputRequired(message="Select the budget line")])
    organisation = SelectField("Organisation", widget=GovSelect(), coerce=int, validate_choice=False,
                               description="Full and Associate Members that are contracting authorities, or the network itself.",
                               validators=[InputRequired(message="Select the organisation")])
    project_title = StringField(
        "Funded project", widget=GovTextInput(),
        validators=[InputRequired(message="Enter the title of the funded project"),
                    Length(max=rules.PROJECT_TITLE_LIMIT,
                           message=f"Project title must be {rules.PROJECT_TITLE_LIMIT} characters or fewer")])
    amount = _pounds("Amount", "Enter the amount to allocate, in pounds",
                     "An allocation can be more than the line’s cap per call-off, because a project may have "
                     "several call-offs. Each call-off stays within the cap.")
    submit = SubmitField("Allocate", widget=GovSubmitInput())


class AllocationAmountForm(FlaskForm):
    amount = _pounds("New amount", "Enter the allocation’s new amount, in pounds",
                     "It cannot be less than what is already committed to call-offs.")
    submit = SubmitField("Change amount", widget=GovSubmitInput())


# Charts -------------------------------------------------------------------------------------------

CHART_WIDTH = 960
ROW_HEIGHT = 64  # a label line, then the bar
BAR_TOP = 26  # from the top of a row
BAR_HEIGHT = 26
LEGEND_HEIGHT = 40
# GOV.UK colours. Neighbouring segments differ by at least 3:1 (WCAG 1.4.11), and the bar has a
# black outline so the white "not yet" part is visible.
DARK_BLUE, LIGHT_BLUE, WHITE, BLACK = "#003078", "#5694ca", "#ffffff", "#0b0c0c"


@dataclass(frozen=True)
class Key:
    label: str
    fill: str


TEAM_KEYS = (Key("Committed to call-offs", DARK_BLUE), Key("Allocated, not yet committed", LIGHT_BLUE),
             Key("Not yet allocated", WHITE))
BUYER_KEYS = (Key("Paid", DARK_BLUE), Key("Committed, not yet paid", LIGHT_BLUE), Key("Not yet committed", WHITE))


@dataclass(frozen=True)
class Segment:
    x: float
    width: float
    fill: str


@dataclass(frozen=True)
class Bar:
    label: str
    y: int
    segments: tuple[Segment, ...]
    text: str  # the bar in words: the chart's text alternative


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    keys: tuple[Key, ...]
    bars: tuple[Bar, ...]
    width: int
    height: int
    bar_top: int
    bar_height: int


def stacked_bars(chart_id: str, title: str, keys: Sequence[Key],
                 rows: Iterable[tuple[str, Sequence[int]]]) -> Chart:
    """A horizontal bar per row, each the full width for its own total, split into ``keys`` parts.

    ``rows``: (label, amounts in pence, one per key, adding up to the row's total). Every bar is
    scaled to its own total, so a £10,000 line and a £120,000 line are equally readable; the
    total is in the bar's label.
    """
    bars = []
    for index, (label, amounts) in enumerate(rows):
        total = sum(amounts)
        y = LEGEND_HEIGHT + index * ROW_HEIGHT
        segments = []
        if total > 0:
            # Place each boundary from the running sum, so rounding never leaves a gap or overlap.
            start, before = 0.0, 0
            for key, amount in zip(keys, amounts):
                before += amount
                end = round(before * CHART_WIDTH / total, 1)
                if end > start:
                    segments.append(Segment(start, round(end - start, 1), key.fill))
                start = end
            parts = "; ".join(f"{key.label.lower()} {money(amount)}" for key, amount in zip(keys, amounts))
            text = f"{label}: {money(total)} in all; {parts}."
        else:
            text = f"{label}: no money."
        bars.append(Bar(f"{label} ({money(total)})", y, tuple(segments), text))
    height = LEGEND_HEIGHT + max(len(bars), 1) * ROW_HEIGHT
    return Chart(chart_id, title, tuple(keys), tuple(bars), CHART_WIDTH, height, BAR_TOP, BAR_HEIGHT)


def _year_chart(year: rules.YearSummary) -> Chart:
    return stacked_bars(
        f"chart-{year.id}", f"Budget lines {year.label}: committed, allocated and not yet allocated", TEAM_KEYS,
        ((line.programme, (line.figures.committed, line.figures.uncommitted, line.figures.remaining))
         for line in year.lines))


# Loading ----------------------------------------------------------------------------------------

# The DPS team may see every year, line and allocation: nothing here is scoped to an organisation.

def _year(year_id: int) -> BudgetYear:
    return one_or_404(select(BudgetYear).where(BudgetYear.id == year_id))


def _line(line_id: int) -> BudgetLine:
    return one_or_404(select(BudgetLine).where(BudgetLine.id == line_id))


def _allocation(allocation_id: int) -> Allocation:
    return one_or_404(select(Allocation).where(Allocation.id == allocation_id))


def _can_act() -> bool:
    return current_user.role == "dps_admin"


def _actor():
    return current_user._get_current_object()


def _abort_on_csrf(form: FlaskForm) -> None:
    """After a failed validation: a missing or stale CSRF token is a bad request, not a field error."""
    if "csrf_token" in form.errors:
        abort(400)


# The dashboard ----------------------------------------------------------------------------------

def _render_dashboard(year_form: YearForm | None = None, status: int = 200):
    years = rules.dashboard()
    return render_template(
        "team/budget.html", years=years, charts={y.id: _year_chart(y) for y in years},
        year_form=year_form or YearForm(formdata=None), form=year_form if status != 200 else None,
        can_act=_can_act(),
    ), status


@bp.route("/budget")
def budget():
    return _render_dashboard()


@bp.route("/budget/years", methods=["POST"])
@team_only
def create_year():
    form = YearForm()
    if form.validate_on_submit():
        try:
            year = rules.create_year(_actor(), int(form.start_year.data))
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash(f"Financial year {year.label} added. Add its budget lines.", "success")
            return redirect(url_for("team.budget_year", year_id=year.id))
    else:
        _abort_on_csrf(form)
    return _render_dashboard(form, 400)


# A year ---------------------------------------------------------------------------------------

def _allocate_form(year: BudgetYear, submitted: bool = False) -> AllocateForm:
    # formdata=None: a blank form on a page that shows another form's refusal.
    form = AllocateForm() if submitted else AllocateForm(formdata=None)
    form.line.choices = [(0, "Select a budget line")] + [(line.id, line.programme) for line in year.lines]
    form.organisation.choices = [(0, "Select an organisation")] + [(o.id, o.name) for o in rules.eligible_recipients()]
    return form


def _render_year(year: BudgetYear, line_form: LineForm | None = None, allocate_form: AllocateForm | None = None):
    failed = line_form or allocate_form
    summary = rules.dashboard(year)[0]
    return render_template(
        "team/budget_year.html", year=year, summary=summary, chart=_year_chart(summary),
        allocations=rules.allocations_of(year=year),
        line_form=line_form or LineForm(formdata=None),
        allocate_form=allocate_form or _allocate_form(year),
        form=failed, can_act=_can_act(),
    ), 400 if failed else 200


@bp.route("/budget/<int:year_id>")
def budget_year(year_id: int):
    return _render_year(_year(year_id))


@bp.route("/budget/<int:year_id>/lines", methods=["POST"])
@team_only
def create_line(year_id: int):
    year = _year(year_id)
    form = LineForm()
    if form.validate_on_submit():
        try:
            line = rules.create_line(_actor(), year, form.programme.data, form.total.pence,
                                     form.cap_per_call_off.pence)
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash(f"{line.programme} {year.label} added, with {money(line.total_pence)}.", "success")
            return redirect(url_for("team.budget_year", year_id=year.id))
    else:
        _abort_on_csrf(form)
    # The session may have been rolled back: load the page afresh, as it is really stored.
    return _render_year(_year(year_id), line_form=form)


@bp.route("/budget/<int:year_id>/allocations", methods=["POST"])
@team_only
def allocate(year_id: int):
    year = _year(year_id)
    form = _allocate_form(year, submitted=True)
    if form.validate_on_submit():
        line = next((item for item in year.lines if item.id == form.line.data), None)
        organisation = db.session.get(Organisation, form.organisation.data) if form.organisation.data else None
        if line is None:
            form.line.errors = ["Select the budget line"]
        elif organisation is None:
            form.organisation.errors = ["Select the organisation"]
        else:
            try:
                allocation = rules.allocate(_actor(), line, organisation, form.project_title.data, form.amount.pence)
            except ServiceError as exc:
                db.session.rollback()
                attach_error(form, exc)
            else:
                db.session.commit()
                message = (f"{money(allocation.amount_pence)} allocated to {organisation.name} for "
                           f"“{allocation.project_title}” from {line.programme}.")
                cap = line.cap_per_call_off_pence
                if cap is not None and allocation.amount_pence > cap:
                    message += (f" This is more than the cap per call-off of {money(cap)}, so the project will "
                                "need more than one call-off.")
                flash(message, "success")
                return redirect(url_for("team.budget_year", year_id=year.id))
    else:
        _abort_on_csrf(form)
    # The choices are plain ids and names, still good after a rollback; the page is loaded afresh.
    return _render_year(_year(year_id), allocate_form=form)


# A line -----------------------------------------------------------------------------------------

def _render_line(line: BudgetLine, form: LineTotalForm | None = None):
    summary = next(item for item in rules.dashboard(line.year)[0].lines if item.id == line.id)
    return render_template(
        "team/budget_line.html", line=line, summary=summary, allocations=rules.allocations_of(line=line),
        total_form=form or LineTotalForm(formdata=None), form=form, can_act=_can_act(),
    ), 400 if form else 200


@bp.route("/budget/lines/<int:line_id>")
def budget_line(line_id: int):
    return _render_line(_line(line_id))


@bp.route("/budget/lines/<int:line_id>/total", methods=["POST"])
@team_only
def change_line_total(line_id: int):
    line = _line(line_id)
    form = LineTotalForm()
    if form.validate_on_submit():
        before = line.total_pence
        try:
            line = rules.change_line_total(_actor(), line, form.total.pence)
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash(f"The total of {line.programme} {line.year.label} is now {money(line.total_pence)} "
                  f"(it was {money(before)}).", "success")
            return redirect(url_for("team.budget_line", line_id=line.id))
    else:
        _abort_on_csrf(form)
    return _render_line(_line(line_id), form)


# An allocation ----------------------------------------------------------------------------------

def _render_allocation(allocation: Allocation, form: AllocationAmountForm | None = None):
    call_offs = rules.call_offs_of(allocation)
    return render_template(
        "team/allocation.html", allocation=allocation, call_offs=call_offs,
        paid_pence=sum(call_off.paid_pence for call_off in call_offs), cap_hint=rules.cap_hint(allocation.line),
        amount_form=form or AllocationAmountForm(formdata=None), form=form, can_act=_can_act(),
    ), 400 if form else 200


@bp.route("/budget/allocations/<int:allocation_id>")
def budget_allocation(allocation_id: int):
    return _render_allocation(_allocation(allocation_id))


@bp.route("/budget/allocations/<int:allocation_id>/amount", methods=["POST"])
@team_only
def change_allocation(allocation_id: int):
    allocation = _allocation(allocation_id)
    form = AllocationAmountForm()
    if form.validate_on_submit():
        before = allocation.amount_pence
        try:
            allocation = rules.change_allocation(_actor(), allocation, form.amount.pence)
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash(f"The allocation for “{allocation.project_title}” is now {money(allocation.amount_pence)} "
                  f"(it was {money(before)}).", "success")
            return redirect(url_for("team.budget_allocation", allocation_id=allocation.id))
    else:
        _abort_on_csrf(form)
    return _render_allocation(_allocation(allocation_id), form)
