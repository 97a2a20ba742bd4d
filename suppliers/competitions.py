"""Suppliers: invitations to mini-competitions, the specification and clarifications, and bids.

Every page loads the competition through the supplier's own invitation, so a competition the
organisation was not invited to is simply not found (404). State changes only on POST: opening
an invitation is a button, so that the buyer's "first opened" time means a person opened it.
"""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovCharacterCount, GovFileInput, GovTextArea, GovTextInput
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from wtforms import FileField, StringField, TextAreaField
from wtforms.validators import ValidationError

from dps import questionnaire
from dps.auth import one_or_404
from dps.extensions import db
from dps.forms import ConfirmForm
from dps.models import Bid, BidDocument, Competition, CompetitionDocument, Criterion, Document, Invitation, User
from dps.services import ServiceError, bids, clarifications, documents
from dps.services import competitions as competition_lists
from dps.views.helpers import attach_error, render_form

from .views import bp

BID_STATE_LABELS = {None: "Not started", "draft": "Draft", "submitted": "Submitted", "withdrawn": "Withdrawn"}


def _user() -> User:
    return current_user._get_current_object()


def _invited(competition_id: int) -> tuple[Competition, Invitation]:
    """The competition and this organisation's invitation to it; 404 if it was not invited."""
    invitation = one_or_404(
        select(Invitation).options(joinedload(Invitation.competition))
        .where(Invitation.competition_id == competition_id, Invitation.organisation_id == current_user.organisation_id))
    return invitation.competition, invitation


def _require_confirm() -> None:
    if not ConfirmForm().validate_on_submit():
        abort(400)


@bp.route("/competitions")
def competitions():
    """The organisation's invitations, the latest first, 50 to a page (dps.pagination); all of
    them, or only those still open for tenders."""
    open_only = request.args.get("show") == "open"
    page = competition_lists.invitations_of(current_user.organisation_id, open_only=open_only,
                                            after=request.args.get("after"), before=request.args.get("before"))
    return render_template("suppliers/invitations.html", page=page, open_only=open_only, state_labels=BID_STATE_LABELS,
                           action_form=ConfirmForm(),
                           pager=page.navigation("suppliers.competitions", label="Pages of invitations",
                                                 show="open" if open_only else None))


@bp.route("/competitions/<int:competition_id>/view", methods=["POST"])
def view_invitation(competition_id: int):
    _competition, invitation = _invited(competition_id)
    _require_confirm()
    bids.mark_opened(invitation, _user())
    db.session.commit()
    return redirect(url_for("suppliers.competition", competition_id=competition_id))


@bp.route("/competitions/<int:competition_id>")
def competition(competition_id: int):
    item, invitation = _invited(competition_id)
    if invitation.first_opened_at is None:
        # Opening is recorded by the button on this page (a POST), never by loading it.
        return render_template("suppliers/competition.html", competition=item, invitation=invitation,
                               opened=False, action_form=ConfirmForm())
    specification = db.session.scalars(
        select(Document).join(CompetitionDocument, CompetitionDocument.document_id == Document.id)
        .where(CompetitionDocument.competition_id == item.id).order_by(Document.id)).all()
    user = _user()
    # Answered questions only, each in the wording this supplier may read (another supplier's
    # question is shown only as the buyer published it); asking is on the clarifications page.
    answered = [(c, clarifications.wording_for(c, user)) for c in clarifications.visible_to(item, user)
                if c.answered_at is not None]
    bid = bids.bid_for(item, current_user.organisation_id)
    return render_template("suppliers/competition.html", competition=item, invitation=invitation, opened=True,
                           specification=specification, clarifications=answered, bid=bid,
                           state_labels=BID_STATE_LABELS, tenders_open=bids.tenders_open(item),
                           cannot_submit=bids.cannot_submit_reason(item, current_user.organisation))


# The bid ------------------------------------------------------------------------------------------

def _price_check(form, field) -> None:
    if field.data and field.data.strip():
        try:
            questionnaire.parse_money(field.data)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


def bid_form(criteria: list[Criterion], formdata=None, bid: Bid | None = None) -> FlaskForm:
    """The bid form: price, one answer per quality and social value criterion, a document.

    Every field is optional here: a half-finished draft can be saved. Submission checks that it
    is complete (dps.services.bids)."""

    class BidForm(FlaskForm):
        price = StringField("Your price", widget=GovTextInput(), validators=[_price_check],
                            description="In pounds and pence, including any VAT, for the whole contract. "
                                        "For example, 9,500.00")
        document = FileField("Add a supporting document", widget=GovFileInput(),
                             description=f"Optional. One at a time: {documents.ALLOWED_DESCRIPTION}.")

    for criterion in criteria:
        # A word limit is shown by the GOV.UK character count ("You can enter up to 500 words"),
        # which counts as the supplier types and still says the limit without JavaScript.
        setattr(BidForm, f"criterion_{criterion.id}", TextAreaField(
            f"{criterion.title} ({criterion.weight}%)", description=criterion.description or "",
            widget=GovCharacterCount() if criterion.word_limit else GovTextArea()))

    data: dict[str, object] = {}
    if bid is not None:
        if bid.price_pence is not None:
            data["price"] = f"{bid.price_pence / 100:,.2f}"
        for answer in bid.answers:
            data[f"criterion_{answer.criterion_id}"] = answer.text
    return BidForm(formdata=formdata, data=data)


def _bid_documents(bid: Bid | None) -> list[Document]:
    if bid is None:
        return []
    return list(db.session.scalars(
        select(Document).join(BidDocument, BidDocument.document_id == Document.id)
        .where(BidDocument.bid_id == bid.id).order_by(Document.id)))


def _render_bid(item: Competition, form: FlaskForm, bid: Bid | None, http_status: int | None = None):
    criteria = bids.answered_criteria(item)
    editable = bids.tenders_open(item) and (bid is None or bid.state in bids.EDITABLE_STATES)
    answers = {a.criterion_id: a.text for a in bid.answers} if bid is not None else {}
    return render_form("suppliers/bid.html", form, http_status, competition=item, bid=bid, criteria=criteria,
                       answers=answers, editable=editable, tenders_open=bids.tenders_open(item),
                       attached=_bid_documents(bid), action_form=ConfirmForm(),
                       cannot_submit=bids.cannot_submit_reason(item, current_user.organisation),
                       closed_message=bids.closed_message(item, submitting=True),
                       receipt_time=bids.receipt_time)


def _attach_problems(form: FlaskForm, exc: ServiceError) -> None:
    if isinstance(exc, bids.IncompleteBid):
        for problem in exc.problems:
            attach_error(form, problem)
    else:
        attach_error(form, exc)


@bp.route("/competitions/<int:competition_id>/bid", methods=["GET", "POST"])
def bid(competition_id: int):
    item, _invitation = _invited(competition_id)
    user = _user()
    criteria = bids.answered_criteria(item)
    current = bids.bid_for(item, user.organisation_id)
    if request.method == "GET":
        return _render_bid(item, bid_form(criteria, bid=current), current)

    form = bid_form(criteria, formdata=request.form)
    if not form.validate():
        return _render_bid(item, form, current)
    submitting = request.form.get("action") == "submit"
    raw_price = (form.price.data or "").strip()
    price = questionnaire.parse_money(raw_price) if raw_price else None
    answers = {c.id: getattr(form, f"criterion_{c.id}").data or "" for c in criteria}
    upload = request.files.get("document")
    try:
        if submitting:
            # After the deadline nothing typed now can be kept: say so as a refused submission.
            bids.require_tenders_open(item, submitting=True)
        saved = bids.save_draft(item, user, price, answers)
        if upload is not None and upload.filename:
            bids.add_document(saved, user, upload, field="document")
    except ServiceError as exc:
        # Nothing of this save is kept; the page shows what was typed with the problem by its field.
        db.session.rollback()
        _attach_problems(form, exc)
        return _render_bid(item, form, bids.bid_for(item, user.organisation_id), http_status=400)
    if not submitting:
        db.session.commit()
        flash("Your draft has been saved. It is not a bid until you submit it.", "success")
        return redirect(url_for("suppliers.bid", competition_id=item.id))
    try:
        # The draft just saved is kept even when the submission is refused.
        with db.session.begin_nested():
            bids.submit(item, user)
    except ServiceError as exc:
        db.session.commit()
        form.form_errors.append("Your draft has been saved, but your bid has not been submitted.")
        _attach_problems(form, exc)
        return _render_bid(item, form, saved, http_status=400)
    db.session.commit()
    return redirect(url_for("suppliers.bid_receipt", competition_id=item.id))


@bp.route("/competitions/<int:competition_id>/bid/documents/<int:document_id>/remove", methods=["POST"])
def remove_bid_document(competition_id: int, document_id: int):
    item, _invitation = _invited(competition_id)
    _require_confirm()
    current = bids.bid_for(item, current_user.organisation_id)
    if current is None:
        abort(404)
    try:
        bids.detach_document(current, _user(), document_id)
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        db.session.commit()
        flash("The document has been removed from your draft.", "success")
    return redirect(url_for("suppliers.bid", competition_id=item.id))


@bp.route("/competitions/<int:competition_id>/withdraw", methods=["POST"])
def withdraw_bid(competition_id: int):
    item, _invitation = _invited(competition_id)
    _require_confirm()
    try:
        bids.withdraw(item, _user())
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        db.session.commit()
        flash("Your bid has been withdrawn. Your draft has been kept: to bid, submit it again before the deadline.",
              "success")
    return redirect(url_for("suppliers.bid", competition_id=item.id))


@bp.route("/competitions/<int:competition_id>/receipt")
def bid_receipt(competition_id: int):
    item, _invitation = _invited(competition_id)
    current = bids.bid_for(item, current_user.organisation_id)
    if current is None or current.state != "submitted":
        return redirect(url_for("suppliers.bid", competition_id=item.id))
    return render_template("suppliers/bid_receipt.html", competition=item, bid=current,
                           received=bids.receipt_time(current.submitted_at))
