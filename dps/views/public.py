"""Public pages and the account pages every role shares (sign in, passwords, invitations)."""
from __future__ import annotations

import time

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user
from flask_wtf import FlaskForm
from govuk_frontend_wtf.wtforms_widgets import GovSubmitInput, GovTextInput
from sqlalchemy import select
from wtforms import StringField, SubmitField
from wtforms.validators import InputRequired, Length

from .. import clock
from ..auth import start_session
from ..extensions import db
from ..forms import (
    ChangePasswordForm,
    ConfirmForm,
    ForgottenPasswordForm,
    ResendConfirmationForm,
    SetPasswordForm,
    SignInForm,
)
from ..models import Agreement, Lot, User
from ..pagination import clean_search
from ..services import ServiceError, accounts, two_factor
from ..services import agreements as agreement_rules
from .helpers import attach_error, client_ip, render_form, safe_next

bp = Blueprint("public", __name__)

HOME_BY_ROLE = {
    "supplier": "suppliers.dashboard",
    "buyer": "buyers.dashboard",
    "dps_admin": "team.dashboard",
    "auditor": "team.dashboard",
}


def home_for(user) -> str:
    return url_for(HOME_BY_ROLE[user.role])


def _listed(agreements: list[Agreement]) -> list[dict]:
    # One reading of the clock for the whole list, so no two lines of it disagree.
    now = clock.now()
    return [{"agreement": a, "stage": a.stage(now), "status": agreement_rules.status_text(a, now)} for a in agreements]


@bp.route("/")
def index():
    # The same agreements and the same open/closed rule as the agreement pages.
    listed = _listed(agreement_rules.published_agreements())
    return render_template("public/index.html", listed=listed,
                           any_open=any(item["stage"] == agreement_rules.OPEN for item in listed))


class CodeForm(FlaskForm):
    code = StringField("Code", widget=GovTextInput(),
                       validators=[InputRequired(message="Enter the code from your authenticator app"),
                                   Length(max=40, message="Enter the code from your authenticator app")])
    submit = SubmitField("Continue", widget=GovSubmitInput())


class SignInCodeForm(CodeForm):
    code = StringField("Code from your authenticator app, or a recovery code", widget=GovTextInput(),
                       validators=[InputRequired(message="Enter the code from your authenticator app, or a recovery code"),
                                   Length(max=40, message="Enter a correct code from your authenticator app, or one of your recovery codes")],
                       description="The 6-digit code your app shows for the CCIN DPS, or one of the recovery codes "
                                   "you kept when you set it up.")


class TurnOffForm(CodeForm):
    code = StringField("Code from your authenticator app", widget=GovTextInput(),
                       validators=[InputRequired(message="Enter the code from your authenticator app, or a recovery code"),
                                   Length(max=40, message="Enter a correct code from your authenticator app, or one of your recovery codes")],
                       description="Or one of your recovery codes.")
    submit = SubmitField("Turn off two-factor sign-in", widget=GovSubmitInput())


# Between a correct password and a correct code the person is not signed in: only this, in the
# signed session cookie, for a few minutes of real time.
PENDING_KEY = "two_factor_pending"
PENDING_LIFETIME = 5 * 60
# The secret being set up, encrypted, in the session until the person types a correct code.
SETUP_KEY = "two_factor_setup"
SETUP_LIFETIME = 30 * 60


def _pending_user() -> User | None:
    pending = session.get(PENDING_KEY)
    if not isinstance(pending, dict):
        return None
    if int(time.time()) - int(pending.get("at", 0)) > PENDING_LIFETIME:
        session.pop(PENDING_KEY, None)
        return None
    user = db.session.get(User, pending.get("user_id"))
    if user is None or not user.active or user.session_version != pending.get("version"):
        session.pop(PENDING_KEY, None)
        return None
    return user


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = SignInForm()
    unconfirmed = False
    if form.validate_on_submit():
        try:
            user = accounts.sign_in(form.email.data, form.password.data, client_ip())
        except accounts.SecondFactorNeeded as exc:
            db.session.commit()
            session[PENDING_KEY] = {"user_id": exc.user.id, "version": exc.user.session_version,
                                    "at": int(time.time()), "next": safe_next(request.args.get("next"))}
            return redirect(url_for("public.sign_in_code"))
        except accounts.UnconfirmedEmail as exc:
            db.session.commit()
            form.form_errors.append(exc.message)
            unconfirmed = True
        except accounts.SignInError as exc:
            db.session.commit()  # the failed attempt counts towards the limit
            form.form_errors.append(exc.message)
        else:
            db.session.commit()
            start_session(user)
            return redirect(safe_next(request.args.get("next")) or home_for(user))
    return render_form("public/sign_in.html", form, unconfirmed=unconfirmed,
                       resend_form=ResendConfirmationForm(formdata=None, email=form.email.data))


@bp.route("/sign-in/code", methods=["GET", "POST"])
def sign_in_code():
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    user = _pending_user()
    if user is None:
        flash("Sign in again: the time to enter your code ran out.", "info")
        return redirect(url_for("public.sign_in"))
    form = SignInCodeForm()
    if form.validate_on_submit():
        try:
            kind = two_factor.complete_sign_in(user, form.code.data, client_ip())
        except accounts.SignInError as exc:
            db.session.commit()  # the failed attempt counts towards the limit
            attach_error(form, exc)
        else:
            db.session.commit()
            pending = session.pop(PENDING_KEY)
            start_session(user)
            if kind == "recovery_code":
                left = two_factor.unused_recovery_codes(user)
                flash(f"You used a recovery code: it will not work again. You have {left} left."
                      + (" If you have lost your device, turn two-factor sign-in off and set it up again, or ask the DPS team to reset it." if left < 4 else ""),
                      "info")
            return redirect(pending.get("next") or home_for(user))
    return render_form("public/sign_in_code.html", form)


@bp.route("/sign-out", methods=["POST"])
@login_required
def sign_out():
    accounts.sign_out(current_user._get_current_object())
    db.session.commit()
    logout_user()
    flash("You have been signed out on every device.", "success")
    return redirect(url_for("public.sign_in"))


@bp.route("/forgotten-password", methods=["GET", "POST"])
def forgotten_password():
    form = ForgottenPasswordForm()
    if form.validate_on_submit():
        accounts.request_password_reset(form.email.data)
        db.session.commit()
        return render_template("public/check_email.html", email=form.email.data, purpose="reset")
    return render_form("public/forgotten_password.html", form)


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    if accounts.find_token(token, "reset_password") is None:
        return render_template("public/link_expired.html", purpose="reset"), 404
    form = SetPasswordForm()
    if form.validate_on_submit():
        try:
            accounts.reset_password(token, form.password.data)
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            logout_user()
            flash("Your password has been changed. Sign in with your new password.", "success")
            return redirect(url_for("public.sign_in"))
    return render_form("public/set_password.html", form, heading="Choose a new password")


@bp.route("/invitation/<token>", methods=["GET", "POST"])
def accept_invitation(token: str):
    invitation = accounts.find_token(token, "invitation")
    if invitation is None:
        return render_template("public/link_expired.html", purpose="invitation"), 404
    form = SetPasswordForm()
    if form.validate_on_submit():
        try:
            accounts.accept_invitation(token, form.password.data)
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            logout_user()
            flash("Your account is ready. Sign in with your email address and new password.", "success")
            return redirect(url_for("public.sign_in"))
    return render_form("public/set_password.html", form, heading="Choose your password",
                       invited=invitation.user)


@bp.route("/confirm-email/<token>", methods=["GET", "POST"])
def confirm_email(token: str):
    if accounts.find_token(token, "confirm_email") is None:
        return render_template("public/link_expired.html", purpose="confirm"), 404
    form = ConfirmForm()
    if form.validate_on_submit():
        accounts.confirm_email(token)
        db.session.commit()
        flash("Your email address is confirmed. You can now sign in.", "success")
        return redirect(url_for("public.sign_in"))
    # Confirming is a change of state, so the link shows a button rather than acting on GET.
    return render_form("public/confirm_email.html", form)


@bp.route("/resend-confirmation", methods=["POST"])
def resend_confirmation():
    form = ResendConfirmationForm()
    if form.validate_on_submit():
        accounts.resend_confirmation(form.email.data)
        db.session.commit()
        return render_template("public/check_email.html", email=form.email.data, purpose="confirm")
    return redirect(url_for("public.sign_in"))


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            accounts.change_password(current_user._get_current_object(), form.current_password.data, form.password.data)
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            # The new password ended every session, this one included: start a fresh one here.
            start_session(current_user._get_current_object())
            flash("Your password has been changed. You have been signed out on your other devices.", "success")
            return redirect(url_for("public.account"))
    return render_form("public/account.html", form, two_factor_required=two_factor.required_for(current_user))


def _setup_secret() -> str | None:
    setup = session.get(SETUP_KEY)
    if not isinstance(setup, dict) or setup.get("user_id") != current_user.id:
        return None
    if int(time.time()) - int(setup.get("at", 0)) > SETUP_LIFETIME:
        session.pop(SETUP_KEY, None)
        return None
    return two_factor.decrypt_secret(setup.get("secret", ""))


def _two_factor_page(form=None, turn_off_form=None):
    user = current_user._get_current_object()
    secret = None if user.two_factor_enabled else _setup_secret()
    context = {"required": two_factor.required_for(user), "must_enrol": two_factor.must_enrol(user),
               "secret": secret, "start_form": ConfirmForm(), "code_form": form or CodeForm(formdata=None),
               "turn_off_form": turn_off_form or TurnOffForm(formdata=None),
               # The form whose errors the summary at the top of the page lists.
               "form": form or turn_off_form}
    if secret is not None:
        context["qr_code"] = two_factor.qr_code_svg(two_factor.provisioning_uri(user, secret))
        context["key"] = two_factor.grouped(secret)
    if user.two_factor_enabled:
        context["recovery_codes_left"] = two_factor.unused_recovery_codes(user)
    errors = (form is not None and form.errors) or (turn_off_form is not None and turn_off_form.errors)
    return render_template("public/two_factor.html", **context), 400 if errors else 200


@bp.route("/account/two-factor")
@login_required
def two_factor_page():
    return _two_factor_page()


@bp.route("/account/two-factor/start", methods=["POST"])
@login_required
def two_factor_start():
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    if current_user.two_factor_enabled:
        return redirect(url_for("public.two_factor_page"))
    # A new secret each time set-up starts: an old one never becomes valid later.
    session[SETUP_KEY] = {"user_id": current_user.id, "at": int(time.time()),
                          "secret": two_factor.encrypt_secret(two_factor.new_secret())}
    return redirect(url_for("public.two_factor_page"))


@bp.route("/account/two-factor/confirm", methods=["POST"])
@login_required
def two_factor_confirm():
    form = CodeForm()
    secret = _setup_secret()
    if secret is None or current_user.two_factor_enabled:
        flash("Start setting up two-factor sign-in again.", "info")
        return redirect(url_for("public.two_factor_page"))
    if form.validate_on_submit():
        try:
            codes = two_factor.complete_enrolment(current_user._get_current_object(), secret, form.code.data)
        except ServiceError as exc:
            db.session.rollback()
            attach_error(form, exc)
        else:
            db.session.commit()
            session.pop(SETUP_KEY, None)
            # Shown on this response only: never stored in clear, never shown again.
            return render_template("public/two_factor_recovery_codes.html", codes=codes)
    return _two_factor_page(form=form)


@bp.route("/account/two-factor/turn-off", methods=["POST"])
@login_required
def two_factor_turn_off():
    form = TurnOffForm()
    if form.validate_on_submit():
        try:
            two_factor.turn_off(current_user._get_current_object(), form.code.data, client_ip())
        except ServiceError as exc:
            db.session.commit()  # a wrong code counts towards the sign-in limits
            attach_error(form, exc)
        else:
            db.session.commit()
            flash("Two-factor sign-in is turned off. Your recovery codes no longer work.", "success")
            return redirect(url_for("public.account"))
    return _two_factor_page(turn_off_form=form)


# Public pages about the agreements: no sign-in, as anyone may read what each is and who is on it.

@bp.route("/agreements")
def agreements():
    return render_template("public/agreements.html", listed=_listed(agreement_rules.published_agreements()))


def _public_agreement(reference: str) -> Agreement:
    agreement = agreement_rules.by_reference(reference)
    if agreement is None or agreement.published_at is None:
        abort(404)
    return agreement


def _period_context(agreement: Agreement) -> dict:
    """What every agreement page needs to say whether it is open, read once from the clock."""
    # One reading, so the banner and the status line cannot disagree on a running clock.
    now = clock.now()
    phase = agreement_rules.phase(agreement, now)
    return {
        "agreement": agreement,
        "is_open": phase == agreement_rules.OPEN,
        "is_closed": phase == agreement_rules.CLOSED,
        "status": agreement_rules.status_text(agreement, now),
    }


@bp.route("/agreements/<reference>")
def agreement(reference: str):
    item = _public_agreement(reference)
    return render_template("public/dps.html", lots=agreement_rules.lots(item),
                           retention_until=agreement_rules.retention_until(item), **_period_context(item))


@bp.route("/agreements/<reference>/lots/<int:number>")
def agreement_lot(reference: str, number: int):
    item = _public_agreement(reference)
    lot = db.first_or_404(select(Lot).where(Lot.agreement_id == item.id, Lot.number == number))
    return render_template("public/lot.html", lot=lot,
                           employers_liability_min_pence=agreement_rules.EMPLOYERS_LIABILITY_MIN_PENCE,
                           **_period_context(item))


def _one_of(name: str, allowed) -> str | None:
    """A filter from the address: one of ``allowed``, or None (not given, or not a value it can
    take: a hand-made address is shown unfiltered by it, never refused)."""
    value = request.args.get(name, "")
    return value if value in allowed else None


@bp.route("/agreements/<reference>/suppliers")
def agreement_suppliers(reference: str):
    """The lots with how many suppliers are on each, then one lot's suppliers, 50 a page, by name:
    searched and filtered by a GET form that works without JavaScript. A constant number of
    queries, however many suppliers (DESIGN 10)."""
    item = _public_agreement(reference)
    lots = agreement_rules.lots_with_counts(item)
    search = agreement_rules.SupplierSearch(
        text=clean_search(request.args.get("q")),
        legal_form=_one_of("legal_form", agreement_rules.LEGAL_FORM_LABELS),
        size=_one_of("size", agreement_rules.SIZE_LABELS),
        vcse=agreement_rules.VCSE_CHOICES.get(request.args.get("vcse", "")))
    asked = (request.args.get("lot") or "").strip()
    chosen = None
    if not asked:
        chosen = lots[0] if lots else None
    elif asked.isascii() and asked.isdigit() and len(asked) <= 4:
        chosen = next((entry for entry in lots if entry[0].number == int(asked)), None)
    page = None
    if chosen is not None:
        page = agreement_rules.suppliers_on_lot(chosen[0], search, after=request.args.get("after"),
                                                before=request.args.get("before"))
    filters = {"q": search.text, "legal_form": search.legal_form, "size": search.size,
               "vcse": request.args.get("vcse") if search.vcse is not None else None}
    html = render_template(
        "public/dps_suppliers.html",
        lots=lots, chosen=chosen, asked_lot=asked, page=page, search=search, filters=filters,
        pager=page.navigation("public.agreement_suppliers", label=f"Pages of the suppliers on lot {chosen[0].number}",
                                   reference=item.reference, lot=chosen[0].number, **filters) if page else None,
        supplier_count=agreement_rules.supplier_count(item),
        legal_form_labels=agreement_rules.LEGAL_FORM_LABELS,
        size_labels=agreement_rules.SIZE_LABELS,
        **_period_context(item))
    # A lot the agreement does not have: the page, saying so, with the lots to choose from.
    return html, 404 if lots and chosen is None else 200


# The addresses of the first release, when the service held one DPS: they named the first
# agreement published, so they lead there for good (links to them are in emails and notices).

def _first_published() -> Agreement | None:
    return db.session.scalar(select(Agreement).where(Agreement.published_at.is_not(None))
                             .order_by(Agreement.id).limit(1))


@bp.route("/dps")
def about_dps():
    first = _first_published()
    return redirect(url_for("public.agreement", reference=first.reference) if first else url_for("public.agreements"),
                    301)


@bp.route("/dps/lots/<int:number>")
def dps_lot(number: int):
    first = _first_published()
    if first is None:
        abort(404)
    return redirect(url_for("public.agreement_lot", reference=first.reference, number=number), 301)


@bp.route("/dps/suppliers")
def dps_suppliers():
    first = _first_published()
    if first is None:
        abort(404)
    return redirect(url_for("public.agreement_suppliers", reference=first.reference), 301)
