from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from flask_login import current_user

from sqlalchemy import select

from dps.auth import role_gate
from dps.extensions import db
from dps.forms import ConfirmForm, SupplierSignUpForm
from dps.models import Admission, Application, Lot
from dps.services import ServiceError, accounts, applications, standing
from dps import clock
from dps.services import agreements as agreement_rules
from dps.views.colleagues import colleagues_page
from dps.views.helpers import attach_error, render_form

bp = Blueprint("suppliers", __name__, url_prefix="/supplier")
role_gate(bp, roles=("supplier",), public_endpoints=("sign_up",))


@bp.route("/sign-up", methods=["GET", "POST"])
def sign_up():
    if current_user.is_authenticated:
        return redirect(url_for("public.index"))
    form = SupplierSignUpForm()
    if form.validate_on_submit():
        try:
            accounts.sign_up_supplier(organisation_name=form.organisation_name.data, name=form.name.data,
                                      email=form.email.data, password=form.password.data)
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            return render_template("public/check_email.html", email=form.email.data, purpose="sign_up")
    return render_form("suppliers/sign_up.html", form)


@bp.route("/")
def dashboard():
    org = current_user.organisation
    history = db.session.scalars(
        select(Application).where(Application.organisation_id == org.id).order_by(Application.id.desc())).all()
    admissions = db.session.scalars(
        select(Admission).where(Admission.organisation_id == org.id).join(Admission.lot).order_by(Lot.number)).all()
    live = applications.live_applications(org)
    now = clock.now()
    # One part per agreement: those open to applications, and any other the supplier has a
    # history with (a closed DPS it was on still shows its places and applications).
    involved = {a.agreement_id for a in history} | {a.lot.agreement_id for a in admissions}
    parts = []
    for agreement in agreement_rules.published_agreements():
        stage = agreement.stage(now)
        if stage != agreement_rules.OPEN and agreement.id not in involved:
            continue
        own_history = [a for a in history if a.agreement_id == agreement.id]
        parts.append({
            "agreement": agreement, "stage": stage, "status": agreement_rules.status_text(agreement, now),
            "admissions": [a for a in admissions if a.lot.agreement_id == agreement.id],
            "history": own_history, "live": live.get(agreement.id),
            "previous": next((a for a in own_history if a.decided_at is not None), None)})
    return render_template("suppliers/dashboard.html", organisation=org, parts=parts,
                           renewals=standing.open_renewals(org), renewal_status=standing.renewal_status,
                           action_form=ConfirmForm())


@bp.route("/colleagues", methods=["GET", "POST"])
def colleagues():
    return colleagues_page("suppliers.colleagues")
