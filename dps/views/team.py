"""The DPS team's pages (the accountable body). Auditors may read; only the team may act."""
from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import String, func, or_, select
from sqlalchemy.orm import contains_eager

from .. import audit, clock
from ..auth import one_or_404, role_gate
from ..extensions import db
from ..forms import ClockForm, ConfirmForm, NewBuyerForm
from ..models import Organisation, User
from ..models.users import ROLE_LABELS
from ..pagination import clean_search, contains, keyset_page
from ..services import ServiceError, accounts
from .helpers import attach_error, render_form

bp = Blueprint("team", __name__, url_prefix="/team")
role_gate(bp, roles=("dps_admin", "auditor"))


def team_only(view):
    """Auditors are read-only: actions are for the DPS team alone."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if current_user.role != "dps_admin":
            abort(403)
        return view(*args, **kwargs)

    return wrapper


@bp.route("/")
def dashboard():
    counts = dict(db.session.execute(select(User.role, func.count()).group_by(User.role)).all())
    return render_template("team/dashboard.html", counts=counts, role_labels=ROLE_LABELS,
                           uploads_scanned=bool(current_app.config.get("DPS_CLAMD_URL")))


@bp.route("/accounts")
@team_only
def users():
    """Every account, by organisation then name, 50 to a page by keyset (dps.pagination); by role
    and by a part of the name or email. A role the page does not offer is ignored."""
    role = request.args.get("role")
    if role not in ROLE_LABELS:
        role = None
    text = clean_search(request.args.get("q"))
    stmt = select(User).join(User.organisation).options(contains_eager(User.organisation))
    if role:
        stmt = stmt.where(User.role == role)
    if text:
        stmt = stmt.where(or_(contains(User.name, text), contains(User.email, text)))
    # lower(): SQLite and PostgreSQL collate differently; this gives one order on both.
    page = keyset_page(stmt, (func.lower(Organisation.name, type_=String), Organisation.id,
                              func.lower(User.name, type_=String), User.id),
                       after=request.args.get("after"), before=request.args.get("before"))
    return render_template("team/users.html", page=page, users=page.rows, role=role, q=text,
                           pager=page.navigation("team.users", label="Pages of accounts", role=role, q=text),
                           role_labels=ROLE_LABELS, action_form=ConfirmForm())


def _eligible_buyer_organisations() -> list[Organisation]:
    orgs = db.session.scalars(select(Organisation).where(Organisation.kind != "supplier").order_by(Organisation.name))
    return [org for org in orgs if accounts.buyer_ineligibility(org) is None]


@bp.route("/accounts/new-buyer", methods=["GET", "POST"])
@team_only
def new_buyer():
    form = NewBuyerForm()
    form.organisation.choices = [(0, "Select an organisation")] + [(o.id, o.name) for o in _eligible_buyer_organisations()]
    if form.validate_on_submit():
        org = db.session.get(Organisation, form.organisation.data) if form.organisation.data else None
        if org is None:
            form.organisation.errors = ["Select the buyer's organisation"]
        else:
            try:
                user = accounts.invite(current_user._get_current_object(), email=form.email.data,
                                       name=form.name.data, role="buyer", organisation=org)
            except ServiceError as exc:
                db.session.rollback()
                attach_error(form, exc)
            else:
                db.session.commit()
                flash(f"Account created. {user.name} has been emailed a link to choose a password.", "success")
                return redirect(url_for("team.users", role="buyer"))
    return render_form("team/new_buyer.html", form)


def _set_active(user_id: int, active: bool):
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    user = one_or_404(select(User).where(User.id == user_id))  # the team may act on every account
    try:
        if active:
            accounts.reactivate(current_user._get_current_object(), user)
        else:
            accounts.deactivate(current_user._get_current_object(), user)
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        db.session.commit()
        flash(f"{user.name}'s account is now {'active' if active else 'deactivated; they have been signed out everywhere'}.", "success")
    return redirect(url_for("team.users"))


@bp.route("/accounts/<int:user_id>/deactivate", methods=["POST"])
@team_only
def deactivate(user_id: int):
    return _set_active(user_id, False)


@bp.route("/accounts/<int:user_id>/reactivate", methods=["POST"])
@team_only
def reactivate(user_id: int):
    return _set_active(user_id, True)


@bp.route("/accounts/<int:user_id>/reset-two-factor", methods=["GET", "POST"])
@team_only
def reset_two_factor(user_id: int):
    """A confirmation page (GET changes nothing), then the reset (POST)."""
    from ..services import two_factor

    user = one_or_404(select(User).where(User.id == user_id))  # the team may act on every account
    form = ConfirmForm()
    if form.validate_on_submit():
        try:
            two_factor.reset(current_user._get_current_object(), user)
        except ServiceError as exc:
            db.session.rollback()
            flash(exc.message, "error")
        else:
            db.session.commit()
            flash(f"{user.name}'s two-factor sign-in has been reset and they have been signed out everywhere. "
                  "They can set it up again when they next sign in.", "success")
        return redirect(url_for("team.users"))
    return render_form("team/reset_two_factor.html", form, user=user)


@bp.route("/clock", methods=["GET", "POST"], endpoint="clock")
@team_only
def clock_page():
    if not clock.is_simulated():
        return render_template("team/clock.html", form=None), 200
    form = ClockForm()
    if form.validate_on_submit():
        try:
            target = clock.parse_london(form.moment.data.strip().replace(" ", "T", 1))
            moved_from = clock.move_forward_to(target)
        except clock.ClockError as exc:
            form.moment.errors = [str(exc)]
        else:
            audit.record("clock.moved", "clock", 1, {"before": moved_from.isoformat(), "after": target.isoformat()})
            db.session.commit()
            flash(f"The simulated clock now reads {clock.fmt(target)}.", "success")
            return redirect(url_for("team.clock"))
    return render_form("team/clock.html", form)

