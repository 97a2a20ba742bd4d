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
from sqlalchemy import exists, select
from wtforms import TextAreaField
from wtforms.validators import Length

from ..auth import one_or_404
from ..extensions import db
from ..forms import ConfirmForm
from ..models import Admission, Application, Organisation, RenewalRequest, User
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


@bp.route("/suppliers")
def suppliers():
    status = request.args.get("status")
    if status not in standing.STATUS_LABELS:
        status = None
    return render_template(
        "team/suppliers.html",
        standings=standing.supplier_standings(status),
        status=status,
        status_labels=standing.STATUS_LABELS,
        overdue=standing.overdue_renewals(),
        identity_changes=standing.identity_changes_to_review(),
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
