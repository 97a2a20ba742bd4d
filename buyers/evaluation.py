"""Buyers: opening the bids, declarations, scoring, moderation, results, the award, call-offs and
invoices (added to the buyers blueprint).

Every competition and call-off is loaded scoped to the buyer's own organisation (404 otherwise).
Bid content is shown only after dps.services.sealed says this person may see it; bid documents
are downloaded through /documents/<id>, behind the one document gate (which asks the same).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

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
from wtforms import DateField, RadioField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, ValidationError

from dps import clock, questionnaire
from dps.auth import one_or_404
from dps.extensions import db
from dps.forms import ConfirmForm
from dps.models import Bid, BidDocument, CallOff, Competition, Criterion, Score, User
from dps.pagination import clean_search
from dps.services import ServiceError, sealed
from dps.services import competitions as competition_lists
from dps.services import evaluation as rules
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


def _whole_score(form, field) -> None:
    raw = (field.data or "").strip()
    if not raw.isdigit() or not 0 <= int(raw) <= 100:
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
                                validators=[Length(max=TEXT_LIMIT, message="The description must be 5,000 characters or fewer")])
    submit = SubmitField("Make declaration", widget=GovSubmitInput())


class ScoreForm(FlaskForm):
    score = StringField("Score (per cent of the weight)", widget=GovTextInput(), validators=[_whole_score],
                        description="A whole number from 0 to 100")
    justification = TextAreaField("Justification", widget=GovTextArea(),
                                  description="Why this score, against what the criterion asks for.",
                                  validators=[Length(max=TEXT_LIMIT, message="The justification must be 5,000 characters or fewer")])
    submit = SubmitField("Save score", widget=GovSubmitInput())


class ModerationForm(ScoreForm):
    justification = TextAreaField("Justification", widget=GovTextArea(),
                                  description="The panel’s agreed reasons. The bidder will read them, and so will the "
                                              "other bidders if this bid wins.",
                                  validators=[Length(max=TEXT_LIMIT, message="The justification must be 5,000 characters or fewer")])
    submit = SubmitField("Save moderated score", widget=GovSubmitInput())


IRRECOVERABLE_VAT_HINT = ("The part of the contract’s value that is VAT your organisation cannot reclaim. Councils "
                          "reclaim almost all VAT, so this is usually 0. It is published with the contract under "
                          "the Transparency Code.")


class AwardForm(FlaskForm):
    bid_id = RadioField("Award the contract to", widget=GovRadioInput(), coerce=int, validate_choice=False,
                        validators=[InputRequired(message="Choose the bid to award the contract to")])
    value = StringField("Value of the call-off contract, in pounds", widget=GovTextInput(), validators=[_amount],
                        description="Normally the bid’s price. It is committed to the allocation when the award is confirmed.")
    not_best_reason = TextAreaField(
        "Why the award does not go to the highest-ranked bid", widget=GovTextArea(),
        description="Required only if you choose a bid that is not ranked first. Bidders will read it, and exports flag it.",
        validators=[Length(max=TEXT_LIMIT, message="The reason must be 5,000 characters or fewer")])
    starts_on = DayMonthYearField("Start date", description="Leave blank to start the day after confirmation")
    ends_on = DayMonthYearField("End date", description="Leave blank for a 12-month contract")
    # Without standstill the award is confirmed at once, so the call-off's details are asked here.
    irrecoverable_vat = StringField("Irrecoverable VAT, if any, in pounds", widget=GovTextInput(),
                                    validators=[_amount], default="0", description=IRRECOVERABLE_VAT_HINT)
    submit = SubmitField("Decide the award", widget=GovSubmitInput())


class NoAwardForm(FlaskForm):
    reason = TextAreaField("Why is there no award?", widget=GovTextArea(), description="Bidders will read this.",
                           validators=[Length(max=TEXT_LIMIT, message="The reason must be 5,000 characters or fewer")])
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
                                        Bid.state == "submitted"))


def _criterion_of(competition: Competition, criterion_id: int) -> Criterion:
    return one_or_404(select(Criterion).where(Criterion.id == criterion_id,
                                              Criterion.competition_id == competition.id))


def _own_call_off(call_off_id: int) -> CallOff:
    return one_or_404(select(CallOff).where(CallOff.id == call_off_id,
                                            CallOff.buyer_organisation_id == current_user.organisation_id)
                      .options(joinedload(CallOff.supplier), joinedload(CallOff.competition)))


def _me() -> User:
    return current_user._get_current_object()


def _score_key(bid_id: int, criterion_id: int) -> str:
    return f"s{bid_id}-{criterion_id}"


def _moderation_key(bid_id: int, criterion_id: int) -> str:
    return f"m{bid_id}-{criterion_id}"


# The page -------------------------------------------------------------------------------------

def _render(competition: Competition, forms: dict[str, FlaskForm] | None = None, status: int = 200,
            failed_form: FlaskForm | None = None):
    """The evaluation page. ``forms`` replaces the blank forms with ones holding what was typed
    (and their errors), by key: "panel", "declaration", "award", "no_award", "confirm", or a
    score or moderation key."""
    user = _me()
    forms = dict(forms or {})
    member = rules.panel_member(competition, user)
    panel = rules.panel(competition)
    now = clock.now()
    finished = competition.cancelled_at is not None or competition.closed_without_award_at is not None
    context: dict = {
        "competition": competition, "stage": competition.label(now).buyer, "member": member, "panel": panel,
        "deadline_passed": now >= competition.tender_deadline, "finished": finished,
        "award": competition.award, "readable": False, "bidders": [],
        "formula": rules.PRICE_FORMULA_LABELS[competition.price_formula],
    }

    if rules.may_manage_panel(competition, user) and not finished and competition.award is None:
        on_panel = {m.user_id for m in panel}
        colleagues = [u for u in db.session.scalars(
            select(User).where(User.organisation_id == competition.buyer_organisation_id, User.role == "buyer",
                               User.active.is_(True)).order_by(User.name)) if u.id not in on_panel]
        if colleagues:
            panel_form = forms.get("panel") or PanelForm(formdata=None)
            panel_form.user_id.choices = [SelectChoice("", "Choose a colleague")] + [
                SelectChoice(u.id, f"{u.name} ({u.email})") for u in colleagues]
            context["panel_form"] = panel_form

    if competition.opened_at is not None:
        bids = rules.submitted_bids(competition)
        context["bidders"] = [rules.bidder_name(b) for b in bids]
        if member is not None and not finished and competition.award is None and not member.conflicted:
            context["declaration_form"] = forms.get("declaration") or DeclarationForm(formdata=None)

    # Bid content: only for those the sealed-bid gate lets through, and only after asking it.
    if sealed.may_read(user, competition):
        sealed.require(user, competition, what="bids for evaluation")
        context.update(_evaluation_context(competition, member, forms))
    else:
        context["why_not_readable"] = _why_not_readable(competition, member, now)
    return render_template("buyers/evaluation.html", form=failed_form, **context), status


def _why_not_readable(competition: Competition, member, now) -> str:
    if now < competition.tender_deadline:
        return f"Bids are sealed until the tender deadline, {clock.fmt(competition.tender_deadline)}. Nobody can see them before then."
    if competition.opened_at is None:
        return "The bids have not been opened yet. A panel member opens them."
    if member is None:
        return "Only members of the evaluation panel see the bids."
    if member.conflicted:
        return "You declared a conflict of interest, so you do not see or score the bids."
    return "Declare whether you have a conflict of interest to see the bids."


def _evaluation_context(competition: Competition, member, forms: dict[str, FlaskForm]) -> dict:
    bids = rules.submitted_bids(competition)
    bid_ids = [b.id for b in bids]
    results = rules.results(competition, bids)
    by_bid = {r.bid.id: r for r in results}
    scored = [c for c in competition.criteria if c.kind in rules.SCORED_KINDS]
    panel_names = {m.id: m.user.name for m in rules.panel(competition)}
    scores: dict[tuple[int, int], list] = defaultdict(list)
    mine: dict[tuple[int, int], Score] = {}
    if bid_ids:
        for s in db.session.scalars(select(Score).where(Score.bid_id.in_(bid_ids)).order_by(Score.id)):
            scores[(s.bid_id, s.criterion_id)].append((panel_names.get(s.panel_member_id, ""), s))
            if member is not None and s.panel_member_id == member.id:
                mine[(s.bid_id, s.criterion_id)] = s
    open_for_change = (competition.award is None and competition.closed_without_award_at is None
                       and competition.cancelled_at is None)
    score_forms: dict[str, FlaskForm] = {}
    moderation_forms: dict[str, FlaskForm] = {}
    if open_for_change:
        for bid in bids:
            lines = {line.criterion.id: line for line in by_bid[bid.id].lines}
            for c in scored:
                line = lines[c.id]
                key = _score_key(bid.id, c.id)
                own = mine.get((bid.id, c.id))
                # Individual scores are fixed once the panel has moderated them.
                if line.score is None or key in forms:
                    score_forms[key] = forms.get(key) or ScoreForm(
                        formdata=None, prefix=key,
                        data={"score": str(own.score), "justification": own.justification} if own else None)
                key = _moderation_key(bid.id, c.id)
                moderation_forms[key] = forms.get(key) or ModerationForm(
                    formdata=None, prefix=key,
                    data={"score": str(line.score), "justification": line.justification} if line.score is not None else None)
    documents_by_bid = {}
    if bid_ids:
        for bd in db.session.scalars(select(BidDocument).where(BidDocument.bid_id.in_(bid_ids))
                                     .options(joinedload(BidDocument.document))):
            documents_by_bid.setdefault(bd.bid_id, []).append(bd.document)
    complete = bool(results) and all(r.complete for r in results)
    context = {
        "readable": True, "bids": bids, "results": results, "complete": complete, "scored_criteria": scored,
        "scores": scores, "score_forms": score_forms, "moderation_forms": moderation_forms,
        "score_key": _score_key, "moderation_key": _moderation_key, "documents_by_bid": documents_by_bid,
        "answers": {(a.bid_id, a.criterion_id): a.text for b in bids for a in b.answers},
        "kind_labels": rules.KIND_LABELS,
    }
    if open_for_change and complete:
        award_form = forms.get("award")
        if award_form is None:
            best = results[0]
            award_form = AwardForm(formdata=None, data={"bid_id": best.bid.id,
                                                        "value": f"{best.bid.price_pence / 100:.2f}" if best.bid.price_pence else ""})
        award_form.bid_id.choices = [SelectChoice(r.bid.id, f"{r.supplier_name}: ranked {r.rank}, {r.total:.2f} points")
                                     for r in results]
        context["award_form"] = award_form
    if open_for_change and competition.opened_at is not None:
        context["no_award_form"] = forms.get("no_award") or NoAwardForm(formdata=None)
    award = competition.award
    if award is not None and award.confirmed_at is None:
        context["confirm_form"] = forms.get("confirm") or ConfirmAwardForm(formdata=None)
        context["standstill_over"] = award.standstill_ends_at is None or clock.now() >= award.standstill_ends_at
    if award is not None:
        context["call_off"] = db.session.scalar(select(CallOff).where(CallOff.award_id == award.id))
        context["award_result"] = by_bid.get(award.bid_id)
    context["default_term"] = rules.default_term()
    return context


@bp.route("/competitions/<int:competition_id>/evaluation")
def evaluation(competition_id: int):
    return _render(_own_competition(competition_id))


def _act(competition: Competition, key: str, form: FlaskForm, action: Callable[[], object], success: str,
         target: Callable[[object], str] | None = None) -> BaseResponse | tuple:
    """The shared end of every form on the page: run the service if the form is well formed,
    commit and say what happened; otherwise roll back and show the page again with the error
    next to its field (status 400), keeping what was typed."""
    if form.validate_on_submit():
        try:
            outcome = action()
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash(success, "success")
            return redirect(target(outcome) if target else url_for("buyers.evaluation", competition_id=competition.id))
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
    return _act(competition, "declaration", form,
                lambda: rules.declare(competition, _me(), form.conflicted.data == "yes", form.declaration.data),
                "Declaration recorded.")


@bp.route("/competitions/<int:competition_id>/bids/<int:bid_id>/criteria/<int:criterion_id>/score", methods=["POST"])
def evaluation_score(competition_id: int, bid_id: int, criterion_id: int):
    competition = _own_competition(competition_id)
    bid, criterion = _bid_of(competition, bid_id), _criterion_of(competition, criterion_id)
    key = _score_key(bid.id, criterion.id)
    form = ScoreForm(prefix=key)
    return _act(competition, key, form,
                lambda: rules.score(competition, _me(), bid, criterion, int(form.score.data), form.justification.data),
                f"Score saved for {rules.bidder_name(bid)}: {criterion.title}.")


@bp.route("/competitions/<int:competition_id>/bids/<int:bid_id>/criteria/<int:criterion_id>/moderate", methods=["POST"])
def evaluation_moderate(competition_id: int, bid_id: int, criterion_id: int):
    competition = _own_competition(competition_id)
    bid, criterion = _bid_of(competition, bid_id), _criterion_of(competition, criterion_id)
    key = _moderation_key(bid.id, criterion.id)
    form = ModerationForm(prefix=key)
    return _act(competition, key, form,
                lambda: rules.moderate(competition, _me(), bid, criterion, int(form.score.data), form.justification.data),
                f"Moderated score saved for {rules.bidder_name(bid)}: {criterion.title}.")


@bp.route("/competitions/<int:competition_id>/award", methods=["POST"])
def evaluation_award(competition_id: int):
    competition = _own_competition(competition_id)
    form = AwardForm()
    bids = {b.id: b for b in rules.submitted_bids(competition)}
    form.bid_id.choices = [SelectChoice(b.id, rules.bidder_name(b)) for b in bids.values()]

    def action():
        bid = bids.get(form.bid_id.data)
        if bid is None:
            raise ServiceError("Choose the bid to award the contract to", field="bid_id")
        rules.decide_award(competition, _me(), bid, _pence(form.value.data), form.not_best_reason.data,
                           starts_on=form.starts_on.data, ends_on=form.ends_on.data,
                           irrecoverable_vat_pence=_pence(form.irrecoverable_vat.data))

    if not competition.standstill:
        message = "Award decided and confirmed: the call-off contract is created and every bidder has been written to."
    else:
        message = "Award decided. Every bidder has been written to. Confirm the award when the standstill period ends."
    return _act(competition, "award", form, action, message)


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
