"""Accounts: passwords, sign-in with throttling, sessions, one-time links, invitations."""
from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app, url_for
from sqlalchemy import func, select, update
from zxcvbn import zxcvbn

from .. import audit, clock, mail
from ..extensions import db
from ..models import Organisation, SignInAttempt, User, UserToken
from ..models.users import ROLES
from . import ServiceError

# OWASP Password Storage Cheat Sheet: argon2id, 19 MiB of memory, 2 iterations, 1 lane.
# Only the test suite passes cheaper ones (config ARGON2_PARAMETERS), to stay fast.
OWASP_ARGON2 = {"time_cost": 2, "memory_cost": 19 * 1024, "parallelism": 1}


@lru_cache(maxsize=4)
def _hasher_for(time_cost: int, memory_cost: int, parallelism: int) -> tuple[PasswordHasher, str]:
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
    # A hash of a password nobody has, so that signing in as an unknown email costs the same time.
    return hasher, hasher.hash(secrets.token_urlsafe(16))


def _hasher() -> tuple[PasswordHasher, str]:
    params = current_app.config.get("ARGON2_PARAMETERS") or OWASP_ARGON2
    return _hasher_for(params["time_cost"], params["memory_cost"], params["parallelism"])

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ACCOUNT_ANYWHERE = 50
MAX_FAILURES_PER_ADDRESS = 30
# Stands in the address column of the sign-in log when a password is set, not typed.
PASSWORD_SET_MARKER = "password set"
TOKEN_LIFETIMES = {
    "reset_password": timedelta(hours=2),
    "confirm_email": timedelta(days=7),
    "invitation": timedelta(days=7),
}
SIGN_IN_FAILED = "Enter a correct email address and password. Both are case sensitive except the email address."
THROTTLED = "There have been too many attempts to sign in. Wait 15 minutes and try again, or reset your password."


class SignInError(ServiceError):
    pass


class SecondFactorNeeded(SignInError):
    """The password was right; the person has two-factor sign-in, so they are not signed in yet
    (dps.services.two_factor.complete_sign_in finishes). Nothing is logged as a success until
    then, so a known password cannot be used to reset the limit on guessing codes."""

    def __init__(self, user: User):
        super().__init__("Enter the code from your authenticator app.")
        self.user = user


class UnconfirmedEmail(SignInError):
    def __init__(self, user: User):
        super().__init__("Confirm your email address before you sign in. We can send the link again.")
        self.user = user


def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


def hash_password(password: str) -> str:
    return _hasher()[0].hash(password)


def password_problem(password: str, *, email: str = "", name: str = "", organisation: str = "") -> str | None:
    """Length and guessability only: no composition rules (NCSC and NIST guidance)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Password must be {MIN_PASSWORD_LENGTH} characters or more"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"Password must be {MAX_PASSWORD_LENGTH} characters or fewer"
    hints = [part for part in (email, email.split("@")[0], name, organisation, "ccin", "dps", "procurement") if part]
    # zxcvbn compares with lists of common passwords, names and words, keyboard patterns and dates.
    if zxcvbn(password[:100], user_inputs=hints)["score"] < 3:
        return "This password is too easy to guess. Try three or more random words, for example 'copper kettle harbour'"
    return None


def _check_password(user: User | None, password: str) -> bool:
    hasher, dummy_hash = _hasher()
    try:
        ok = hasher.verify(user.password_hash if user and user.password_hash else dummy_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    if user is None or not user.password_hash:
        return False
    if ok and hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    return ok


def _failures(since, *conditions) -> int:
    return db.session.scalar(
        select(func.count()).select_from(SignInAttempt).where(
            SignInAttempt.succeeded.is_(False), SignInAttempt.attempted_at > since, *conditions))


def _is_throttled(email: str, ip: str) -> bool:
    """Three limits, over the last 15 minutes:

    - an account from one address: 5 failures (the usual lock, which a stranger elsewhere
      cannot use to lock the real person out);
    - an account from anywhere: 50 failures (slows guessing spread over many addresses);
    - an address, whatever the accounts: 30 failures (slows spraying one password at many).

    An account's counts start again after a successful sign-in or a new password; an address's
    do not, so signing in to one's own account cannot reset the guessing of others'.
    """
    window_start = clock.now() - THROTTLE_WINDOW
    last_success = db.session.scalar(
        select(func.max(SignInAttempt.attempted_at)).where(SignInAttempt.email == email, SignInAttempt.succeeded.is_(True)))
    account_since = max(window_start, last_success) if last_success else window_start
    return (
        _failures(account_since, SignInAttempt.email == email, SignInAttempt.ip_address == ip) >= MAX_FAILURES_PER_ACCOUNT
        or _failures(account_since, SignInAttempt.email == email) >= MAX_FAILURES_PER_ACCOUNT_ANYWHERE
        or _failures(window_start, SignInAttempt.ip_address == ip) >= MAX_FAILURES_PER_ADDRESS
    )


def _password_was_set(user: User) -> None:
    """A new password (reset, invitation, change) lifts any lock on the account."""
    db.session.add(SignInAttempt(email=user.email, ip_address=PASSWORD_SET_MARKER, attempted_at=clock.now(),
                                 succeeded=True))


def sign_in(email: str, password: str, ip: str) -> User:
    """Check the password; raise SignInError with one message whichever part was wrong, or
    SecondFactorNeeded when the password was right and a code is still to come.

    Failures are counted per email typed (existing or not, so the count reveals nothing) and per
    address; past the limit, the password is not even checked.
    """
    email = normalise_email(email)
    ip = ip or "unknown"
    if _is_throttled(email, ip):
        db.session.add(SignInAttempt(email=email, ip_address=ip, attempted_at=clock.now(), succeeded=False))
        raise SignInError(THROTTLED)
    user = db.session.scalar(select(User).where(User.email == email))
    ok = _check_password(user, password) and user is not None and user.active
    if ok and user.two_factor_enabled and user.email_confirmed_at is not None:
        db.session.flush()
        raise SecondFactorNeeded(user)
    db.session.add(SignInAttempt(email=email, ip_address=ip, attempted_at=clock.now(), succeeded=ok))
    if not ok:
        db.session.flush()
        raise SignInError(SIGN_IN_FAILED)
    if user.email_confirmed_at is None:
        db.session.flush()
        raise UnconfirmedEmail(user)
    user.last_signed_in_at = clock.now()
    audit.record("user.signed_in", "user", user.id, {}, actor=user)
    return user


def sign_out(user: User) -> None:
    """End every session of this user, in every browser."""
    user.session_version += 1
    audit.record("user.signed_out", "user", user.id, {"ended_all_sessions": True}, actor=user)


# One-time links -------------------------------------------------------------------------------

def _token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _issue_token(user: User, purpose: str) -> str:
    raw = secrets.token_urlsafe(32)
    now = clock.now()
    # A new link replaces any earlier unused one for the same purpose.
    for old in db.session.scalars(
        select(UserToken).where(UserToken.user_id == user.id, UserToken.purpose == purpose, UserToken.used_at.is_(None))
    ):
        old.used_at = now
    db.session.add(UserToken(user=user, purpose=purpose, token_hash=_token_hash(raw), created_at=now,
                             expires_at=now + TOKEN_LIFETIMES[purpose]))
    return raw


def find_token(raw: str, purpose: str) -> UserToken | None:
    """A usable (unused, unexpired) token, or None."""
    token = db.session.scalar(select(UserToken).where(UserToken.token_hash == _token_hash(raw or "")))
    if token is None or token.purpose != purpose or token.used_at is not None or token.expires_at <= clock.now():
        return None
    return token


def _link(endpoint: str, **values) -> str:
    return current_app.config["DPS_BASE_URL"] + url_for(endpoint, **values)


def _claim(token: UserToken) -> None:
    """Mark a token used, atomically: of two requests racing with one link, only one wins."""
    claimed = db.session.execute(
        update(UserToken).where(UserToken.id == token.id, UserToken.used_at.is_(None)).values(used_at=clock.now())
    ).rowcount
    if claimed != 1:
        raise ServiceError("This link has expired or has already been used. Ask for a new one.")


def _use_token(raw: str, purpose: str) -> UserToken:
    token = find_token(raw, purpose)
    if token is None:
        raise ServiceError("This link has expired or has already been used. Ask for a new one.")
    _claim(token)
    return token


# Passwords -----------------------------------------------------------------------------------

def request_password_reset(email: str) -> None:
    """Send a reset link if there is such an active account. The page says the same either way."""
    user = db.session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None or not user.active:
        current_app.logger.info("Password reset asked for %s: no active account", normalise_email(email))
        return
    raw = _issue_token(user, "reset_password")
    mail.queue(
        user.email,
        "Reset your password for the CCIN Dynamic Purchasing System",
        f"Dear {user.name},\n\nUse this link to choose a new password. It works once, for 2 hours:\n\n"
        f"{_link('public.reset_password', token=raw)}\n\n"
        "If you did not ask for this, you can ignore this email: your password has not changed.\n",
    )
    audit.record("user.password_reset_requested", "user", user.id, {}, actor_label="system", organisation_id=user.organisation_id)


def _set_password(user: User, password: str) -> None:
    problem = password_problem(password, email=user.email, name=user.name, organisation=user.organisation.name)
    if problem:
        raise ServiceError(problem, field="password")
    user.password_hash = hash_password(password)
    user.session_version += 1  # a new password ends every existing session
    _password_was_set(user)


def reset_password(raw_token: str, password: str) -> User:
    token = find_token(raw_token, "reset_password")
    if token is None:
        raise ServiceError("This link has expired or has already been used. Ask for a new one.")
    _set_password(token.user, password)
    _claim(token)
    audit.record("user.password_reset", "user", token.user.id, {}, actor=token.user)
    return token.user


def change_password(user: User, current_password: str, new_password: str) -> None:
    if not _check_password(user, current_password):
        raise ServiceError("Your current password is not correct", field="current_password")
    _set_password(user, new_password)
    audit.record("user.password_changed", "user", user.id, {}, actor=user)


# Creating accounts ---------------------------------------------------------------------------

def buyer_ineligibility(org: Organisation) -> str | None:
    """Why people of ``org`` cannot have buyer accounts, or None if they can.

    Full and Associate Members that are contracting authorities, and the network itself, may buy
    from the DPS while they are members (from the day they joined to the day before they left);
    Affiliates, opposition groups and suppliers may not. The same reason stops a buyer account
    being made, a competition being started or published, and an allocation being made: a
    member's existing buyers still sign in and see what they did before.
    """
    if org.is_network:
        return None
    if org.kind == "supplier":
        return f"{org.name} is a supplier, not a member of the network."
    today = clock.to_london(clock.now()).date()
    if org.left_on is not None and today >= org.left_on:
        return (f"{org.name} left the network on {clock.fmt_date(org.left_on)}: its buyers can no longer start "
                "or publish a competition.")
    if org.joined_on is not None and today < org.joined_on:
        return (f"{org.name} joins the network on {clock.fmt_date(org.joined_on)}: its buyers cannot start or "
                "publish a competition before then.")
    if org.membership is None:
        return f"{org.name} has no membership tier recorded: only Full and Associate Members may buy from the DPS."
    if org.membership not in ("full", "associate"):
        return f"{org.name} is an Affiliate Member: only Full and Associate Members may buy from the DPS."
    if not org.is_contracting_authority:
        return f"{org.name} is not a contracting authority, so it cannot award contracts under the DPS."
    return None


def _check_role_fits(role: str, org: Organisation) -> None:
    if role not in ROLES:
        raise ServiceError(f"Role must be one of {', '.join(ROLES)}", field="role")
    if role == "supplier" and not org.is_supplier:
        raise ServiceError(f"{org.name} is not a supplier", field="organisation")
    if role != "supplier" and org.is_supplier:
        raise ServiceError("People of a supplier can only have supplier accounts", field="organisation")
    if role == "buyer":
        reason = buyer_ineligibility(org)
        if reason:
            raise ServiceError(reason, field="organisation")


def email_taken(email: str) -> bool:
    return db.session.scalar(select(func.count()).select_from(User).where(User.email == normalise_email(email))) > 0


def create_user(*, email: str, name: str, role: str, organisation: Organisation, password: str | None = None,
                confirmed: bool = True, actor: User | None = None, actor_label: str | None = None) -> User:
    """Create an account. Without a password, the person sets one through an invitation link."""
    email = normalise_email(email)
    _check_role_fits(role, organisation)
    if email_taken(email):
        raise ServiceError("There is already an account with this email address", field="email")
    user = User(email=email, name=name.strip(), role=role, organisation=organisation, active=True,
                session_version=1, created_at=clock.now(),
                email_confirmed_at=clock.now() if confirmed else None)
    if password is not None:
        problem = password_problem(password, email=email, name=name, organisation=organisation.name)
        if problem:
            raise ServiceError(problem, field="password")
        user.password_hash = hash_password(password)
    db.session.add(user)
    db.session.flush()
    audit.record("user.created", "user", user.id,
                 {"email": email, "name": user.name, "role": role, "organisation_id": organisation.id},
                 actor=actor, actor_label=actor_label,
                 # The acting user's organisation when someone acted; else the one concerned.
                 organisation_id=None if actor else organisation.id)
    return user


def invite(inviter: User | None, *, email: str, name: str, role: str, organisation: Organisation,
           actor_label: str | None = None) -> User:
    """Create an account without a password and email its holder a link to set one.

    Used by the DPS team for buyers and by anyone inviting a colleague into their own organisation.
    """
    user = create_user(email=email, name=name, role=role, organisation=organisation,
                       confirmed=False, actor=inviter, actor_label=actor_label)
    raw = _issue_token(user, "invitation")
    who = f"{inviter.name} ({inviter.organisation.name})" if inviter else "The CCIN DPS team"
    mail.queue(
        user.email,
        "You have been invited to the CCIN Dynamic Purchasing System",
        f"Dear {user.name},\n\n{who} has set up an account for you as a {user.role_label.lower()} "
        f"of {organisation.name}.\n\nChoose your password with this link (it works once, for 7 days):\n\n"
        f"{_link('public.accept_invitation', token=raw)}\n",
    )
    audit.record("user.invited", "user", user.id,
                 {"email": user.email, "role": role, "organisation_id": organisation.id}, actor=inviter,
                 actor_label=actor_label, organisation_id=None if inviter else organisation.id)
    return user


def invite_colleague(inviter: User, *, email: str, name: str) -> None:
    """Invite someone into the inviter's own organisation, with the inviter's role.

    An address that already has an account (at any organisation) is not revealed to the inviter:
    the page reads the same, and the holder is told by email instead."""
    existing = db.session.scalar(select(User).where(User.email == normalise_email(email)))
    if existing is None:
        invite(inviter, email=email, name=name, role=inviter.role, organisation=inviter.organisation)
        return
    mail.queue(
        existing.email,
        "Someone tried to invite you to the CCIN Dynamic Purchasing System",
        f"Dear {existing.name},\n\n{inviter.name} of {inviter.organisation.name} tried to invite you to the CCIN "
        f"Dynamic Purchasing System, but you already have an account with this email address.\n\n"
        f"Sign in: {_link('public.sign_in')}\nIf your account should move to another organisation, "
        "ask the DPS team.\n",
    )
    audit.record("user.invitation_to_existing_account", "user", existing.id, {"invited_by": inviter.id},
                 actor=inviter)


def resend_invitation(actor: User, user: User) -> None:
    if user.password_hash is not None:
        raise ServiceError(f"{user.name} has already accepted their invitation")
    raw = _issue_token(user, "invitation")
    mail.queue(user.email, "Your invitation to the CCIN Dynamic Purchasing System",
               f"Dear {user.name},\n\nChoose your password with this link (it works once, for 7 days):\n\n"
               f"{_link('public.accept_invitation', token=raw)}\n")
    audit.record("user.invitation_resent", "user", user.id, {}, actor=actor)


def accept_invitation(raw_token: str, password: str) -> User:
    token = find_token(raw_token, "invitation")
    if token is None:
        raise ServiceError("This invitation has expired or has already been used. Ask the person who invited you to send a new one.")
    user = token.user
    _set_password(user, password)
    user.email_confirmed_at = clock.now()  # the link reached them, so the address is theirs
    _claim(token)
    audit.record("user.invitation_accepted", "user", user.id, {}, actor=user)
    return user


def sign_up_supplier(*, organisation_name: str, name: str, email: str, password: str) -> None:
    """Supplier self sign-up. Always ends in "check your email": if the address already has an
    account, its holder gets an email saying so, and the page reveals nothing to whoever typed it."""
    email = normalise_email(email)
    problem = password_problem(password, email=email, name=name, organisation=organisation_name)
    if problem:
        raise ServiceError(problem, field="password")
    existing = db.session.scalar(select(User).where(User.email == email))
    if existing is not None:
        hash_password(password)  # the same work as a new account, so the timing tells nothing
        mail.queue(
            existing.email,
            "You already have an account with the CCIN Dynamic Purchasing System",
            f"Dear {existing.name},\n\nSomeone, probably you, tried to register with this email address, "
            "but you already have an account.\n\n"
            f"Sign in: {_link('public.sign_in')}\nForgotten your password? {_link('public.forgotten_password')}\n\n"
            "If it was not you, you can ignore this email.\n",
        )
        audit.record("user.duplicate_sign_up", "user", existing.id, {}, actor_label="anonymous",
                     organisation_id=existing.organisation_id)
        return
    org = Organisation(name=organisation_name.strip(), kind="supplier", created_at=clock.now())
    db.session.add(org)
    db.session.flush()
    audit.record("organisation.registered", "organisation", org.id, {"name": org.name}, actor_label=email,
                 organisation_id=org.id)
    user = create_user(email=email, name=name, role="supplier", organisation=org, password=password,
                       confirmed=False, actor_label=email)
    send_confirmation(user)


def send_confirmation(user: User) -> None:
    raw = _issue_token(user, "confirm_email")
    mail.queue(
        user.email,
        "Confirm your email address for the CCIN Dynamic Purchasing System",
        f"Dear {user.name},\n\nConfirm your email address to finish creating your account:\n\n"
        f"{_link('public.confirm_email', token=raw)}\n\nThe link works once, for 7 days.\n",
    )


def resend_confirmation(email: str) -> None:
    user = db.session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is not None and user.email_confirmed_at is None and user.password_hash is not None and user.active:
        send_confirmation(user)
        # A new link replaces the old one: a change to the account's one-time links, like a reset.
        audit.record("user.confirmation_resent", "user", user.id, {}, actor_label="system",
                     organisation_id=user.organisation_id)


def confirm_email(raw_token: str) -> User:
    token = _use_token(raw_token, "confirm_email")
    token.user.email_confirmed_at = clock.now()
    audit.record("user.email_confirmed", "user", token.user.id, {}, actor=token.user)
    return token.user


# Standing of accounts ------------------------------------------------------------------------

def deactivate(actor: User, user: User) -> None:
    if user.id == actor.id:
        raise ServiceError("You cannot deactivate your own account")
    if not user.active:
        raise ServiceError(f"{user.name}'s account is already deactivated")
    user.active = False
    user.session_version += 1  # signs them out everywhere, at once
    audit.record("user.deactivated", "user", user.id, {"before": {"active": True}, "after": {"active": False}},
                 actor=actor)


def reactivate(actor: User, user: User) -> None:
    if user.active:
        raise ServiceError(f"{user.name}'s account is already active")
    user.active = True
    audit.record("user.reactivated", "user", user.id, {"before": {"active": False}, "after": {"active": True}},
                 actor=actor)
