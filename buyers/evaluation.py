"""Buyers: opening the bids, declarations, scoring, moderation, the ranking, the award, call-offs
and invoices (added to the buyers blueprint).

Every competition and call-off is loaded scoped to the buyer's own organisation, and every bid
to its competition (404 otherwise). What each page shows its reader is built by
dps.services.evaluation.pages, behind the sealed-bid gate and the blind-scoring rule; these
views load, authorise, call a service, and render or redirect. Bid documents are downloaded
through /documents/<id>, behind the one document gate (which asks the same).

The pages: the overview (panel, progress, opening, declarations, the award), who bid, the
matrix of bids × criteria, one bid (its content and the reader's marks, one form), its
moderation (every evaluator's marks side by side and the consensus, one form), the ranking with
its working, and the award decision. Lists are keyset pages of 50.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps

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
from sqlalchemy.orm import joinedload
from werkzeug.wrappers import Response as BaseResponse
from wtforms import DateField, HiddenField, RadioField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, ValidationError

from dps import questionnaire
from dps.auth import one_or_404
from dps.database import writing
from dps.extensions import db
from dps.forms import ConfirmForm
from dps.models import Bid, CallOff, Competition, Criterion, User
from dps.pagination import clean_search
from dps.services import ServiceError, sealed
from dps.services import competitions as competition_lists
from dps.services import evaluation as rules
from dps.services.evaluation import pages
from dps.services.evaluation.common import scored_criteria
from dps.views.helpers import attach_error

from .views import bp

TEXT_LIMIT = 5000


# Forms ----------------------------------------------------------------------------------------

class DayMonthYearField(DateField):
    """Day, month and year boxes (GOV.UK date input); blank is allowed (None)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("format", "%d %m %Y")
        kwargs.setdefault("widget", GovDateInput())
        super().__init__(*args, **kwargs)

    def process_formdata(self, valuelist):
        if len(valuelist) != 3:
            # Not the three boxes (not posted at all, or a hand-made request): the widget redraws
            # them empty rather than failing to unpack what was sent.
            self.raw_data = None
            self.data = None
            if any(v.strip() for v in valuelist):
                raise ValueError(f"{self.label.text} must be a real date, like 31 3 2025")
            return
        if any(v.strip() for v in valuelist):
            try:
                super().process_formdata([" ".join(v.strip() for v in valuelist)])
            except ValueError:
                self.data = None
                raise ValueError(f"{self.label.text} must be a real date, like 31 3 2025") from None
        else:
            self.data = None


def _whole_score_or_blank(form, field) -> None:
    raw = (field.data or "").strip()
    if raw and (not raw.isdigit() or not 0 <= int(raw) <= 100):
        raise ValidationError("Enter a score from 0 to 100, as a whole number")


def _amount(form, field) -> None:
    if field.data and field.data.strip():
        try:
            questionnaire.parse_money(field.data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


def _pence(text: str | None) -> int | None:
    return questionnaire.parse_money(text) if text and text.strip() else None


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(limit_message: str) -> list:
    return [Length(max=TEXT_LIMIT, message=limit_message)]


class PanelForm(FlaskForm):
    # The competition page posts its own copy of this form here too: any colleague id is checked
    # by the service, so the field accepts what is sent and the service says what is wrong.
    user_id = SelectField("Add a colleague to the panel", widget=GovSelect(), coerce=_int_or_none,
                          validate_choice=False)
    submit = SubmitField("Add to the panel", widget=GovSubmitInput())


class DeclarationForm(FlaskForm):
    conflicted = RadioField(
        "Do you have a conflict of interest with any of the bidders?", widget=GovRadioInput(),
        choices=[SelectChoice("no", "No, I have no conflict of interest"),
                 SelectChoice("yes", "Yes, I have a conflict of interest")],
        description="For example a financial or family interest, or a close relationship with a bidder’s people. "
                    "If you have one, you will not see or score the bids.",
        validators=[InputRequired(message="Choose whether you have a conflict of interest")])
    declaration = TextAreaField("Describe the conflict of interest", widget=GovTextArea(),
                                description="Required if you have one. Who it concerns and why.",
                                validators=_text("The description must be 5,000 characters or fewer"))
    submit = SubmitField("Make declaration", widget=GovSubmitInput())


def marks_form(criteria: list[Criterion], *, moderation: bool, **kwargs) -> FlaskForm:
    """One form for every scored criterion of a bid: a score and its justification each (and,
    for moderation, why the consensus departs from the evaluators' marks, where it does). The
    fields are ``score_<criterion id>``, ``justification_<id>`` and ``departure_<id>``."""

    class MarksForm(FlaskForm):
        pass

    for c in criteria:
        if moderation:
            setattr(MarksForm, f"score_{c.id}", StringField(
                f"The panel’s score for {c.title}", widget=GovTextInput(), validators=[_whole_score_or_blank],
                description=f"A whole number from 0 to 100: per cent of the criterion’s weight ({c.weight}%)"))
            setattr(MarksForm, f"justification_{c.id}", TextAreaField(
                f"The panel’s reasons for {c.title}", widget=GovTextArea(),
                description="The bidder reads these, and so do the other bidders if this bid wins.",
                validators=_text("The reasons must be 5,000 characters or fewer")))
            setattr(MarksForm, f"departure_{c.id}", TextAreaField(
                f"Why the panel’s score for {c.title} departs from the evaluators’ marks", widget=GovTextArea(),
                description=(f"Required when the panel’s score is outside the evaluators’ marks or more than "
                             f"{rules.DEPARTURE_POINTS} points from their mean. Kept for the record; bidders do "
                             "not read it."),
                validators=_text("The reason must be 5,000 characters or fewer")))
        else:
            setattr(MarksForm, f"score_{c.id}", StringField(
                f"Your score for {c.title}", widget=GovTextInput(), validators=[_whole_score_or_blank],
                description=f"A whole number from 0 to 100: per cent of the criterion’s weight ({c.weight}%)"))
            setattr(MarksForm, f"justification_{c.id}", TextAreaField(
                f"Why you gave {c.title} this score", widget=GovTextArea(),
                description="Against what the criterion asks for. The other evaluators read it at moderation.",
                validators=_text("The justification must be 5,000 characters or fewer")))
    MarksForm.submit = SubmitField("Save moderated scores" if moderation else "Save scores",
                                   widget=GovSubmitInput())
    return MarksForm(**kwargs)


IRRECOVERABLE_VAT_HINT = ("The part of the contract’s value that is VAT your organisation cannot reclaim. Councils "
                          "reclaim almost all VAT, so this is usually 0. It is published with the contract under "
                          "the Transparency Code.")


class AwardForm(FlaskForm):
    # The bid is chosen on the ranking (the best, unless another is chosen there): one hidden id,
    # whatever the number of bids.
    bid_id = HiddenField()
    value = StringField("Value of the call-off contract, in pounds", widget=GovTextInput(), validators=[_amount],
                        description="Normally the bid’s price. It is committed to the allocation when the award is confirmed.")
    not_best_reason = TextAreaField(
        "Why the award does not go to the highest-ranked bid", widget=GovTextArea(),
        description="Bidders will read it, and exports flag it.",
        validators=_text("The reason must be 5,000 characters or fewer"))
    starts_on = DayMonthYearField("Start date", description="Leave blank to start the day after confirmation")
    ends_on = DayMonthYearField("End date", description="Leave blank for a 12-month contract")
    # Without standstill the award is confirmed at once, so the call-off's details are asked here.
    irrecoverable_vat = StringField("Irrecoverable VAT, if any, in pounds", widget=GovTextInput(),
                                    validators=[_amount], default="0", description=IRRECOVERABLE_VAT_HINT)
    submit = SubmitField("Decide the award", widget=GovSubmitInput())


class NoAwardForm(FlaskForm):
    reason = TextAreaField("Why is there no award?", widget=GovTextArea(), description="Bidders will read this.",
                           validators=_text("The reason must be 5,000 characters or fewer"))
    submit = SubmitField("Close with no award", widget=GovSubmitInput())


class ConfirmAwardForm(FlaskForm):
    starts_on = DayMonthYearField("Start date", description="Leave blank to start tomorrow")
    ends_on = DayMonthYearField("End date", description="Leave blank for a 12-month contract")
    irrecoverable_vat = StringField("Irrecoverable VAT, if any, in pounds", widget=GovTextInput(),
                                    validators=[_amount], default="0", description=IRRECOVERABLE_VAT_HINT)
    submit = SubmitField("Confirm the award and create the call-off", widget=GovSubmitInput())


class InvoiceForm(FlaskForm):
    supplier_reference = StringField("Supplier’s invoice number", widget=GovTextInput(),
                                     validators=[Length(max=100, message="The invoice number must be 100 characters or fewer")])
    amount = StringField("Amount paid, in pounds", widget=GovTextInput(), validators=[_amount])
    paid_on = DayMonthYearField("Date paid", description="For example, 27 3 2025")
    submit = SubmitField("Record invoice", widget=GovSubmitInput())


# Loading --------------------------------------------------------------------------------------

def _own_competition(competition_id: int) -> Competition:
    return one_or_404(select(Competition).where(Competition.id == competition_id,
                                                Competition.buyer_organisation_id == current_user.organisation_id))


def _bid_of(competition: Competition, bid_id: int) -> Bid:
    return one_or_404(select(Bid).where(Bid.id == bid_id, Bid.competition_id == competition.id,
                                        Bid.state == "submitted").options(joinedload(Bid.organisation)))


def _own_call_off(call_off_id: int) -> CallOff:
    return one_or_404(select(CallOff).where(CallOff.id == call_off_id,
                                            CallOff.buyer_organisation_id == current_user.organisation_id)
                      .options(joinedload(CallOff.supplier), joinedload(CallOff.competition)))


def _me() -> User:
    return current_user._get_current_object()


def _cursor() -> dict:
    return {"after": request.args.get("after"), "before": request.args.get("before")}


def _refuse(form: FlaskForm, exc: ServiceError) -> None:
    """Put a service's refusal (or every one of them) next to the fields they concern."""
    for field, message in (exc.errors if isinstance(exc, rules.FieldErrors) else [(exc.field, exc.message)]):
        attach_error(form, ServiceError(message, field=field))


def _sealed(view):
    """For the pages of bid content: when the sealed-bid gate refuses the reader, the attempt is
    audited (in a writing transaction of its own: the page itself only reads) and the page is
    not found."""
    @wraps(view)
    def gated(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except pages.Refused as refused:
            db.session.rollback()
            with writing():
                sealed.record_refusal(_me(), refused.competition, refused.bid, refused.what)
            abort(404)
    return gated


def _done(success: str, target: str) -> BaseResponse:
    db.session.commit()
    flash(success, "success")
    return redirect(target)


# The overview ---------------------------------------------------------------------------------

def _render(competition: Competition, forms: dict[str, FlaskForm] | None = None, status: int = 200,
            failed_form: FlaskForm | None = None):
    """The overview. ``forms`` replaces the blank forms with ones holding what was typed (and
    their errors), by key: "panel", "declaration", "conflict", "award", "no_award", "confirm"."""
    forms = dict(forms or {})
    view = pages.overview(competition, _me())
    context: dict = {"view": view, "competition": competition}
    if view.colleagues:
        panel_form = forms.get("panel") or PanelForm(formdata=None)
        panel_form.user_id.choices = [SelectChoice("", "Choose a colleague")] + [
            SelectChoice(u.id, f"{u.name} ({u.email})") for u in view.colleagues]
        context["panel_form"] = panel_form
    if view.may_declare:
        context["declaration_form"] = forms.get("declaration") or DeclarationForm(formdata=None)
    if view.may_declare_conflict:
        context["conflict_form"] = forms.get("conflict") or DeclarationForm(formdata=None)
    if view.may_decide:
        best = view.best
        context["award_form"] = forms.get("award") or AwardForm(formdata=None, data={
            "bid_id": str(best.bid_id), "value": f"{best.price_pence / 100:.2f}" if best.price_pence else ""})
    if view.may_close:
        context["no_award_form"] = forms.get("no_award") or NoAwardForm(formdata=None)
    if view.confirming:
        context["confirm_form"] = forms.get("confirm") or ConfirmAwardForm(formdata=None)
    context["default_term"] = rules.default_term()
    return render_template("buyers/evaluation.html", form=failed_form, **context), status


@bp.route("/competitions/<int:competition_id>/evaluation")
def evaluation(competition_id: int):
    return _render(_own_competition(competition_id))


def _act(competition: Competition, key: str, form: FlaskForm, action: Callable[[], object], success: str,
         target: Callable[[object], str] | None = None) -> BaseResponse | tuple:
    """The shared end of the overview's forms: run the service if the form is well formed,
    commit and say what happened; otherwise roll back and show the overview again with the
    error next to its field (status 400), keeping what was typed."""
    if form.validate_on_submit():
        try:
            outcome = action()
        except ServiceError as exc:
            db.session.rollback()
            _refuse(form, exc)
        else:
            return _done(success, target(outcome) if target else url_for("buyers.evaluation",
                                                                         competition_id=competition.id))
    competition = _own_competition(competition.id)
    return _render(competition, {key: form}, status=400, failed_form=form)


@bp.route("/competitions/<int:competition_id>/panel", methods=["POST"])
def evaluation_panel(competition_id: int):
    competition = _own_competition(competition_id)
    form = PanelForm()

    def action():
        # Scoped to the buying organisation: anyone else's id is simply not a colleague.
        member = db.session.scalar(select(User).where(User.id == form.user_id.data,
                                                      User.organisation_id == competition.buyer_organisation_id))
        if member is None:
            raise ServiceError("Choose a colleague to add to the panel", field="user_id")
        rules.add_panel_member(competition, _me(), member)

    return _act(competition, "panel", form, action, "Added to the panel.")


@bp.route("/competitions/<int:competition_id>/open", methods=["POST"])
def evaluation_open(competition_id: int):
    competition = _own_competition(competition_id)
    form = ConfirmForm()
    return _act(competition, "open", form, lambda: rules.open_competition(competition, _me()),
                "Bids opened. Declare whether you have a conflict of interest to see them.")


@bp.route("/competitions/<int:competition_id>/declare", methods=["POST"])
def evaluation_declare(competition_id: int):
    competition = _own_competition(competition_id)
    form = DeclarationForm()
    # The overview has two declaration forms: the first one, and "my circumstances changed".
    key = "conflict" if request.form.get("changed") else "declaration"
    return _act(competition, key, form,
                lambda: rules.declare(competition, _me(), form.conflicted.data == "yes", form.declaration.data),
                "Declaration recorded.")


@bp.route("/competitions/<int:competition_id>/no-award", methods=["POST"])
def evaluation_no_award(competition_id: int):
    competition = _own_competition(competition_id)
    form = NoAwardForm()
    return _act(competition, "no_award", form,
                lambda: rules.close_without_award(competition, _me(), form.reason.data),
                "Competition closed with no award. Every bidder has been told why.")


@bp.route("/competitions/<int:competition_id>/award/confirm", methods=["POST"])
def evaluation_confirm(competition_id: int):
    competition = _own_competition(competition_id)
    if competition.award is None:
        abort(404)
    form = ConfirmAwardForm()
    return _act(competition, "confirm", form,
                lambda: rules.confirm_award(competition.award, _me(), starts_on=form.starts_on.data,
                                            ends_on=form.ends_on.data,
                                            irrecoverable_vat_pence=_pence(form.irrecoverable_vat.data)),
                "Award confirmed: the call-off contract is created.",
                target=lambda call_off: url_for("buyers.call_off", call_off_id=call_off.id))


# Who bid, the matrix, the ranking ---------------------------------------------------------------

@bp.route("/competitions/<int:competition_id>/evaluation/bidders")
def evaluation_bidders(competition_id: int):
    competition = _own_competition(competition_id)
    try:
        view = pages.bidders(competition, _me(), **_cursor())
    except pages.NotShown:
        abort(404)
    return render_template("buyers/evaluation_bidders.html", view=view, competition=competition,
                           pager=view.page.navigation("buyers.evaluation_bidders", label="Pages of bidders",
                                                      competition_id=competition.id))


@bp.route("/competitions/<int:competition_id>/evaluation/matrix")
@_sealed
def evaluation_matrix(competition_id: int):
    competition = _own_competition(competition_id)
    view = pages.matrix(competition, _me(), **_cursor())
    return render_template("buyers/evaluation_matrix.html", view=view, competition=competition,
                           pager=view.page.navigation("buyers.evaluation_matrix", label="Pages of bids",
                                                      competition_id=competition.id))


@bp.route("/competitions/<int:competition_id>/evaluation/ranking")
@_sealed
def evaluation_ranking(competition_id: int):
    competition = _own_competition(competition_id)
    view = pages.ranking(competition, _me(), **_cursor())
    pager = None
    if view.page is not None:
        pager = view.page.navigation("buyers.evaluation_ranking", label="Pages of the ranking",
                                     competition_id=competition.id)
    return render_template("buyers/evaluation_ranking.html", view=view, competition=competition, pager=pager,
                           kind_labels=rules.KIND_LABELS)


# One bid: scoring and moderating ----------------------------------------------------------------

def _score_data(sheet: pages.BidSheet) -> dict:
    data = {}
    for view in sheet.criteria:
        if view.mine is not None:
            data[f"score_{view.criterion.id}"] = str(view.mine.score)
            data[f"justification_{view.criterion.id}"] = view.mine.justification
    return data


def _moderation_data(sheet: pages.ModerationSheet) -> dict:
    data = {}
    for view in sheet.criteria:
        if view.moderated is not None:
            data[f"score_{view.criterion.id}"] = str(view.moderated.score)
            data[f"justification_{view.criterion.id}"] = view.moderated.justification
            data[f"departure_{view.criterion.id}"] = view.moderated.departure_reason or ""
    return data


def _score_of(form: FlaskForm, name: str) -> int | None:
    raw = (form[name].data or "").strip()
    return int(raw) if raw else None


def _after_bid(competition: Competition, bid: Bid, endpoint: str) -> str:
    """Where to go once a bid is done: the next one, or back to the matrix after the last."""
    following = pages.neighbours(competition, bid)[1]
    if following is not None:
        return url_for(endpoint, competition_id=competition.id, bid_id=following[0])
    return url_for("buyers.evaluation_matrix", competition_id=competition.id)


def _refused_without_page(competition: Competition, form: FlaskForm, exc: ServiceError):
    """A refusal for someone who may not see the bid's page at all (a conflicted or undeclared
    member): the overview, saying why (status 400)."""
    form.form_errors.append(exc.message)
    return _render(_own_competition(competition.id), status=400, failed_form=form)


@bp.route("/competitions/<int:competition_id>/evaluation/bids/<int:bid_id>", methods=["GET", "POST"])
@_sealed
def evaluation_bid(competition_id: int, bid_id: int):
    competition = _own_competition(competition_id)
    bid = _bid_of(competition, bid_id)
    criteria = scored_criteria(competition)
    if request.method == "POST":
        form = marks_form(criteria, moderation=False)
        if form.validate_on_submit():
            marks = {c.id: (_score_of(form, f"score_{c.id}"), form[f"justification_{c.id}"].data) for c in criteria}
            try:
                rules.score_bid(competition, _me(), bid, marks)
            except ServiceError as exc:
                db.session.rollback()
                if not rules.is_evaluator(rules.panel_member(competition, _me())):
                    return _refused_without_page(competition, form, exc)
                _refuse(form, exc)
            else:
                name = rules.bidder_name(bid)
                message = f"Scores saved for {name}."
                if rules.panel_member(competition, _me()).scores_submitted_at is not None:
                    message = (f"Scores saved for {name}. You have scored every bid, so your scores are submitted: "
                               "they can no longer change, and you now see the marks of the other evaluators who "
                               "have submitted.")
                return _done(message, _after_bid(competition, bid, "buyers.evaluation_bid"))
        competition = _own_competition(competition_id)
        sheet = pages.bid_sheet(competition, _me(), _bid_of(competition, bid_id))
        status = 400
    else:
        sheet = pages.bid_sheet(competition, _me(), bid)
        form = marks_form(criteria, moderation=False, formdata=None, data=_score_data(sheet))
        status = 200
    return render_template("buyers/evaluation_bid.html", sheet=sheet, competition=competition,
                           marks_form=form, form=form if status == 400 else None,
                           kind_labels=rules.KIND_LABELS), status


@bp.route("/competitions/<int:competition_id>/evaluation/bids/<int:bid_id>/moderation", methods=["GET", "POST"])
@_sealed
def evaluation_moderation(competition_id: int, bid_id: int):
    competition = _own_competition(competition_id)
    bid = _bid_of(competition, bid_id)
    criteria = scored_criteria(competition)
    if request.method == "POST":
        form = marks_form(criteria, moderation=True)
        if form.validate_on_submit():
            entries = {c.id: (_score_of(form, f"score_{c.id}"), form[f"justification_{c.id}"].data,
                              form[f"departure_{c.id}"].data) for c in criteria}
            try:
                rules.moderate_bid(competition, _me(), bid, entries)
            except ServiceError as exc:
                db.session.rollback()
                if not rules.is_evaluator(rules.panel_member(competition, _me())):
                    return _refused_without_page(competition, form, exc)
                _refuse(form, exc)
            else:
                return _done(f"Moderated scores saved for {rules.bidder_name(bid)}.",
                             _after_bid(competition, bid, "buyers.evaluation_moderation"))
        competition = _own_competition(competition_id)
        sheet = pages.moderation_sheet(competition, _me(), _bid_of(competition, bid_id))
        status = 400
    else:
        sheet = pages.moderation_sheet(competition, _me(), bid)
        form = marks_form(criteria, moderation=True, formdata=None, data=_moderation_data(sheet))
        status = 200
    return render_template("buyers/evaluation_moderation.html", sheet=sheet, competition=competition,
                           marks_form=form, form=form if status == 400 else None,
                           kind_labels=rules.KIND_LABELS), status


# The award ------------------------------------------------------------------------------------

def _render_award(competition: Competition, bid_id: int | None, form: AwardForm | None = None, status: int = 200):
    sheet = pages.award_sheet(competition, _me(), bid_id)
    if form is None and sheet.chosen is not None:
        chosen = sheet.chosen
        form = AwardForm(formdata=None, data={
            "bid_id": str(chosen.bid_id), "value": f"{chosen.price_pence / 100:.2f}" if chosen.price_pence else ""})
    return render_template("buyers/evaluation_award.html", sheet=sheet, competition=competition,
                           award_form=form, form=form if status == 400 else None,
                           default_term=rules.default_term()), status


@bp.route("/competitions/<int:competition_id>/award", methods=["GET", "POST"])
@_sealed
def evaluation_award(competition_id: int):
    """Deciding the award: to the best bid (the overview has its form too), or to the bid chosen
    on the ranking (``?bid=<id>``), with the reason it is not the best."""
    competition = _own_competition(competition_id)
    if request.method == "GET":
        return _render_award(competition, _int_or_none(request.args.get("bid")))
    form = AwardForm()
    bid_id = _int_or_none(form.bid_id.data)
    if form.validate_on_submit():
        bid = db.session.scalar(select(Bid).where(Bid.id == bid_id, Bid.competition_id == competition.id,
                                                  Bid.state == "submitted")) if bid_id is not None else None
        try:
            if bid is None:
                raise ServiceError("Choose the bid to award the contract to on the ranking")
            rules.decide_award(competition, _me(), bid, _pence(form.value.data), form.not_best_reason.data,
                               starts_on=form.starts_on.data, ends_on=form.ends_on.data,
                               irrecoverable_vat_pence=_pence(form.irrecoverable_vat.data))
        except ServiceError as exc:
            db.session.rollback()
            _refuse(form, exc)
        else:
            if competition.standstill:
                message = ("Award decided. Every bidder has been written to. Confirm the award when the standstill "
                           "period ends.")
            else:
                message = ("Award decided and confirmed: the call-off contract is created and every bidder has been "
                           "written to.")
            return _done(message, url_for("buyers.evaluation", competition_id=competition.id))
    return _render_award(_own_competition(competition_id), bid_id, form, 400)


# Call-offs and invoices -----------------------------------------------------------------------

@bp.route("/call-offs")
def call_offs():
    """The organisation's call-off contracts, newest first, 50 to a page (dps.pagination),
    searched by reference, contract or supplier."""
    text = clean_search(request.args.get("q"))
    page = competition_lists.call_offs_of(current_user.organisation_id, text, after=request.args.get("after"),
                                          before=request.args.get("before"))
    return render_template("buyers/call_offs.html", page=page, q=text,
                           pager=page.navigation("buyers.call_offs", label="Pages of call-off contracts", q=text))


def _render_call_off(item: CallOff, form: InvoiceForm | None = None, status: int = 200):
    return render_template("buyers/call_off.html", call_off=item, invoice_form=form or InvoiceForm(formdata=None),
                           form=form if status != 200 else None), status


@bp.route("/call-offs/<int:call_off_id>")
def call_off(call_off_id: int):
    return _render_call_off(_own_call_off(call_off_id))


@bp.route("/call-offs/<int:call_off_id>/invoices", methods=["POST"])
def call_off_invoice(call_off_id: int):
    item = _own_call_off(call_off_id)
    form = InvoiceForm()
    if form.validate_on_submit():
        try:
            rules.record_invoice(item, _me(), form.supplier_reference.data, _pence(form.amount.data),
                                 form.paid_on.data)
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash("Invoice recorded.", "success")
            return redirect(url_for("buyers.call_off", call_off_id=item.id))
    return _render_call_off(_own_call_off(call_off_id), form, 400)
