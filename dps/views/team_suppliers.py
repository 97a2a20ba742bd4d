"""The DPS team's pages about suppliers' standing: suspend, remove, reinstate, renewed
self-declarations, and changes of identity to review. Auditors may read them; only the team acts.

The routes join the team blueprint (and its role gate) when this module is imported.
"""
from __future__ import annotations

from collections.abc import Callable

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovTextArea
from sqlalchemy import String, exists, func, select
from sqlalchemy.orm import contains_eager, joinedload
from wtforms import TextAreaField
from wtforms.validators import Length

from .. import clock
from ..auth import one_or_404
from ..extensions import db
from ..forms import ConfirmForm
from ..models import Admission, Agreement, Application, Lot, Organisation, RenewalRequest, User
from ..pagination import clean_search, contains, count, keyset_page
from ..services import ServiceError, standing
from ..services import suppliers as supplier_details
from ..services.agreements import LEGAL_FORM_LABELS, SIZE_LABELS
from .helpers import attach_error
from .team import bp, team_only


class StandingForm(FlaskForm):
    """The reason the supplier will read. Required to suspend or remove (the service says so by
    the field); optional to reinstate."""

    reason = TextAreaField(
        "Reason", widget=GovTextArea(),
        description="The supplier will read this. Required to suspend or remove; optional to reinstate.",
        validators=[Length(max=standing.TEXT_LIMIT,
                           message=f"Enter a reason of {standing.TEXT_LIMIT:,} characters or fewer")])


def _standing_form(admission_id: int, formdata=None) -> StandingForm:
    form = StandingForm(formdata=formdata)
    # One form per lot on the page: each textarea needs its own id for its label and error link.
    form.reason.id = f"reason-{admission_id}"
    return form


def _due(renewal: RenewalRequest) -> str:
    return f"{renewal.due_on.day} {renewal.due_on:%B %Y}"


def _supplier(org_id: int) -> Organisation:
    # The DPS team sees suppliers that have come to it: ones with a submitted application (and so
    # any on the DPS). One that has only registered, or has only a draft, is its own business.
    came_forward = exists().where(Application.organisation_id == Organisation.id, Application.submitted_at.is_not(None))
    return one_or_404(select(Organisation).where(Organisation.id == org_id, Organisation.kind == "supplier", came_forward))


# The list -------------------------------------------------------------------------------------
#
# At national scale (10,000 suppliers) nothing on the page may grow with the data: the main list
# is keyset-paginated (dps.pagination), and the two lists of things to act on above it show the
# longest waiting few with their count, and link to the main list filtered to them.

ATTENTION_LABELS = {"renewal_overdue": "a renewal overdue", "details_changed": "details changed"}
# How many overdue renewals and changes of details the top of the page shows before "see all".
FIRST_FEW = 20


def _overdue_renewals() -> tuple[list[RenewalRequest], int]:
    """standing.overdue_renewals, the longest overdue FIRST_FEW, and how many there are."""
    stmt = (select(RenewalRequest)
            .where(RenewalRequest.responded_at.is_(None), RenewalRequest.due_on < clock.today_london(),
                   # A supplier removed from every lot has nothing left to suspend.
                   exists().where(Admission.organisation_id == RenewalRequest.organisation_id,
                                  Admission.status != "removed")))
    shown = db.session.scalars(stmt.options(joinedload(RenewalRequest.organisation))
                               .order_by(RenewalRequest.due_on, RenewalRequest.id).limit(FIRST_FEW)).all()
    return list(shown), count(stmt)


def _identity_changes() -> tuple[list[Organisation], int]:
    """standing.identity_changes_to_review, the longest waiting FIRST_FEW, and how many there are."""
    stmt = select(Organisation).where(Organisation.identity_changed_at.is_not(None),
                                      exists().where(Admission.organisation_id == Organisation.id))
    shown = db.session.scalars(stmt.order_by(Organisation.identity_changed_at, Organisation.id).limit(FIRST_FEW)).all()
    return list(shown), count(stmt)


def _standings(status: str | None, attention: str | None, text: str, after: str | None, before: str | None):
    """A page of suppliers with a place on a lot (of any standing), by name, each with its lots
    and what needs the team: five queries, however many suppliers."""
    placed = exists().where(Admission.organisation_id == Organisation.id,
                            *([Admission.status == status] if status else []))
    stmt = select(Organisation).where(placed)
    if attention == "renewal_overdue":
        stmt = stmt.where(exists().where(RenewalRequest.organisation_id == Organisation.id,
                                         RenewalRequest.responded_at.is_(None),
                                         RenewalRequest.due_on < clock.today_london()))
    elif attention == "details_changed":
        stmt = stmt.where(Organisation.identity_changed_at.is_not(None))
    if text:
        stmt = stmt.where(contains(Organisation.name, text))
    page = keyset_page(stmt, (func.lower(Organisation.name, type_=String), Organisation.id),
                       after=after, before=before)
    entries = {org.id: standing.SupplierStanding(org) for org in page.rows}
    if entries:
        for admission in db.session.scalars(
                select(Admission).join(Admission.lot).join(Lot.agreement)
                .where(Admission.organisation_id.in_(list(entries)))
                .options(contains_eager(Admission.lot).contains_eager(Lot.agreement))
                .order_by(Lot.number, Agreement.starts_on, Admission.id)):
            entries[admission.organisation_id].admissions.append(admission)
        today = clock.today_london()
        for org_id, due_on in db.session.execute(
                select(RenewalRequest.organisation_id, RenewalRequest.due_on)
                .where(RenewalRequest.responded_at.is_(None), RenewalRequest.organisation_id.in_(list(entries)))):
            entries[org_id].renewal_open = True
            entries[org_id].renewal_overdue = entries[org_id].renewal_overdue or today > due_on
    page.rows = list(entries.values())
    return page


@bp.route("/suppliers")
def suppliers():
    # Values the page does not offer (a hand-made address) are ignored, never refused.
    status = request.args.get("status")
    if status not in standing.STATUS_LABELS:
        status = None
    attention = request.args.get("attention")
    if attention not in ATTENTION_LABELS:
        attention = None
    text = clean_search(request.args.get("q"))
    page = _standings(status, attention, text, request.args.get("after"), request.args.get("before"))
    overdue, overdue_count = _overdue_renewals()
    identity_changes, identity_count = _identity_changes()
    filters = {key: value for key, value in (("status", status), ("attention", attention), ("q", text)) if value}
    return render_template(
        "team/suppliers.html",
        page=page,
        pager=page.navigation("team.suppliers", label="Pages of the list of suppliers", _anchor="all", **filters),
        status=status,
        attention=attention,
        q=text,
        filters=filters,
        status_labels=standing.STATUS_LABELS,
        attention_labels=ATTENTION_LABELS,
        overdue=overdue,
        overdue_count=overdue_count,
        identity_changes=identity_changes,
        identity_count=identity_count,
        can_act=current_user.role == "dps_admin",
        action_form=ConfirmForm(),
    )


def _render_supplier(org: Organisation, failed: tuple[int, StandingForm] | None = None):
    """The supplier page; ``failed`` is the admission whose form was refused, shown with its error
    beside its reason box (and in the summary at the top), with status 400."""
    admissions = standing.admissions_of(org)
    forms = {a.id: _standing_form(a.id) for a in admissions}
    if failed is not None:
        forms[failed[0]] = failed[1]
    renewals = standing.renewals_of(org)
    responder_ids = {r.responded_by_id for r in renewals if r.responded_by_id}
    responders = ({u.id: u for u in db.session.scalars(select(User).where(User.id.in_(responder_ids)))}
                  if responder_ids else {})
    people = db.session.scalars(
        select(User).where(User.organisation_id == org.id).order_by(User.name)).all()
    html = render_template(
        "team/supplier.html",
        organisation=org,
        admissions=admissions,
        standing_forms=forms,
        form=failed[1] if failed else None,
        renewals=[(r, standing.renewal_status(r)) for r in renewals],
        declaration=standing.declaration,
        answers_version=standing.answers_version,
        declared_grounds=standing.declared_grounds,
        responders=responders,
        people=people,
        identity_change=standing.latest_identity_change(org) if org.identity_changed_at else None,
        legal_form_labels=LEGAL_FORM_LABELS,
        size_labels=SIZE_LABELS,
        status_labels=standing.STATUS_LABELS,
        can_act=current_user.role == "dps_admin",
        action_form=ConfirmForm(),
    )
    return html, 400 if failed else 200


@bp.route("/suppliers/<int:org_id>")
def supplier(org_id: int):
    return _render_supplier(_supplier(org_id))


def _standing_action(org_id: int, admission_id: int, change: Callable[..., None], done: str):
    org = _supplier(org_id)
    admission = one_or_404(select(Admission).where(Admission.id == admission_id, Admission.organisation_id == org.id))
    form = _standing_form(admission.id, formdata=request.form)
    if form.validate_on_submit():
        try:
            change(admission, current_user._get_current_object(), form.reason.data or "")
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            flash(f"{org.name} {done} Lot {admission.lot.number}. The supplier has been emailed.", "success")
            return redirect(url_for("team.supplier", org_id=org.id))
    elif "csrf_token" in form.errors:
        abort(400)
    # The session was rolled back: load the page afresh, showing what is really stored.
    return _render_supplier(_supplier(org_id), failed=(admission_id, form))


@bp.route("/suppliers/<int:org_id>/admissions/<int:admission_id>/suspend", methods=["POST"])
@team_only
def suspend_admission(org_id: int, admission_id: int):
    return _standing_action(org_id, admission_id, standing.suspend, "is now suspended from")


@bp.route("/suppliers/<int:org_id>/admissions/<int:admission_id>/remove", methods=["POST"])
@team_only
def remove_admission(org_id: int, admission_id: int):
    return _standing_action(org_id, admission_id, standing.remove, "has been removed from")


@bp.route("/suppliers/<int:org_id>/admissions/<int:admission_id>/reinstate", methods=["POST"])
@team_only
def reinstate_admission(org_id: int, admission_id: int):
    return _standing_action(org_id, admission_id, standing.reinstate, "is reinstated on")


def _confirmed() -> None:
    if not ConfirmForm().validate_on_submit():
        abort(400)


@bp.route("/suppliers/<int:org_id>/request-renewal", methods=["POST"])
@team_only
def request_renewal(org_id: int):
    _confirmed()
    org = _supplier(org_id)
    try:
        created = standing.request_renewal(current_user._get_current_object(), org)
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        db.session.commit()
        flash(f"{org.name} has been asked for a renewed self-declaration, due by {_due(created[0])}.",
              "success")
    return redirect(url_for("team.supplier", org_id=org.id))


@bp.route("/suppliers/request-renewals", methods=["POST"])
@team_only
def request_renewals():
    _confirmed()
    try:
        created = standing.request_renewal(current_user._get_current_object())
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        db.session.commit()
        if created:
            count = len(created)
            flash(f"{count} {'supplier has' if count == 1 else 'suppliers have'} been asked for a renewed "
                  f"self-declaration, due by {_due(created[0])}.", "success")
        else:
            flash("No supplier was asked: every admitted supplier already has a request open, or none is admitted.",
                  "info")
    return redirect(url_for("team.suppliers"))


@bp.route("/suppliers/<int:org_id>/identity-reviewed", methods=["POST"])
@team_only
def acknowledge_identity_change(org_id: int):
    _confirmed()
    org = _supplier(org_id)
    try:
        supplier_details.acknowledge_identity_change(org, current_user._get_current_object())
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        db.session.commit()
        flash(f"{org.name}'s change of details is marked as reviewed.", "success")
    return redirect(url_for("team.supplier", org_id=org.id))
