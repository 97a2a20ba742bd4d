"""Two-factor sign-in: time-based one-time codes (TOTP, RFC 6238) and single-use recovery codes.

- The shared secret is kept encrypted (``totp_secret``), with a key derived from the app's
  ``SECRET_KEY`` (``DPS_SECRET_KEY``): a copy of the database alone gives no secrets. Changing
  ``DPS_SECRET_KEY`` makes every stored secret unreadable: those people then need the DPS team to
  reset their two-factor sign-in.
- Codes follow real time, never the simulated clock: the authenticator app on a phone does not
  know about it. A code is accepted one time step (30 seconds) either side, to allow for clocks a
  little out, and the step of the last code accepted is stored, so no code is accepted twice.
- Wrong codes count against the same sign-in limits as wrong passwords (accounts._is_throttled).
- Recovery codes: ten, shown once, stored as argon2 hashes like passwords; each works once.
"""
from __future__ import annotations

import base64
import hmac
import io
import secrets
import time

import pyotp
import segno
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app
from markupsafe import Markup
from sqlalchemy import delete, select

from .. import audit, clock
from ..extensions import db
from ..models import RecoveryCode, SignInAttempt, User
from . import ServiceError
from .accounts import THROTTLED, SignInError, _hasher, _is_throttled

ISSUER = "CCIN DPS"
STEP_SECONDS = 30
RECOVERY_CODE_COUNT = 10
# Roles that must use two-factor sign-in when DPS_REQUIRE_MFA is on: they see and change
# everything (the DPS team) or read everything (auditors).
REQUIRED_ROLES = ("dps_admin", "auditor")
WRONG_CODE = "Enter a correct code from your authenticator app, or one of your recovery codes"
WRONG_SETUP_CODE = "Enter the 6-digit code your authenticator app shows now"
# Recovery codes: 10 characters of an alphabet without look-alikes (0/o, 1/l/i), ~50 bits.
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def real_time() -> float:
    """The real time codes are checked against (tests replace it with a fixed moment)."""
    return time.time()


def current_step() -> int:
    return int(real_time()) // STEP_SECONDS


# The secret, encrypted -------------------------------------------------------------------------
# Fernet (AES-128-CBC with an HMAC-SHA256 tag, from the cryptography package), with its key
# derived from SECRET_KEY by HKDF for this one purpose.

_VERSION = "v2"


def _fernet() -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"dps two-factor secret").derive(current_app.config["SECRET_KEY"].encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_secret(secret: str) -> str:
    return f"{_VERSION}:" + _fernet().encrypt(secret.encode("ascii")).decode("ascii")


def decrypt_secret(stored: str) -> str | None:
    """The secret, or None if it was not encrypted with this SECRET_KEY (or was tampered with)."""
    version, _, token = (stored or "").partition(":")
    if version != _VERSION or not token:
        return None
    try:
        return _fernet().decrypt(token.encode("ascii")).decode("ascii")
    except (InvalidToken, ValueError):
        return None


# Who needs it ----------------------------------------------------------------------------------

def required_for(user: User) -> bool:
    return bool(current_app.config.get("DPS_REQUIRE_MFA")) and user.role in REQUIRED_ROLES


def must_enrol(user: User) -> bool:
    """Signed in, required to use two-factor sign-in, and not yet set up: enrolment comes first."""
    return required_for(user) and not user.two_factor_enabled


# Enrolment -------------------------------------------------------------------------------------

def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_code_svg(uri: str) -> Markup:
    """The QR code as inline SVG markup (no image request, no data: URI, nothing sent elsewhere)."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", xmldecl=False, svgns=True, scale=5, border=4,
                                    title="QR code to scan with your authenticator app",
                                    svgclass="dps-qr-code", lineclass=None, dark="#0b0c0c", light="#ffffff")
    return Markup(out.getvalue().decode("utf-8"))


def grouped(secret: str) -> str:
    """The key as people type it: groups of four."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def _clean_code(code: str | None) -> str:
    return "".join((code or "").split()).replace("-", "").lower()


def _matching_step(secret: str, code: str, last_step: int | None) -> int | None:
    """The time step whose code is ``code`` (within one step of now), if not already used."""
    if len(code) != 6 or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    now = current_step()
    for step in (now - 1, now, now + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code) and (last_step is None or step > last_step):
            return step
    return None


def _new_recovery_codes(user: User) -> list[str]:
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    hasher = _hasher()[0]
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
        db.session.add(RecoveryCode(user_id=user.id, code_hash=hasher.hash(raw), created_at=clock.now()))
    return codes


def complete_enrolment(user: User, secret: str, code: str) -> list[str]:
    """Turn two-factor sign-in on once the person shows a current code from ``secret``; return
    the recovery codes, in clear for the only time."""
    if user.two_factor_enabled:
        raise ServiceError("Two-factor sign-in is already set up for your account")
    step = _matching_step(secret, _clean_code(code), None)
    if step is None:
        raise ServiceError(WRONG_SETUP_CODE, field="code")
    user.totp_secret = encrypt_secret(secret)
    user.totp_enabled_at = clock.now()
    user.totp_last_step = step
    codes = _new_recovery_codes(user)
    audit.record("user.two_factor_enabled", "user", user.id, {"recovery_codes": RECOVERY_CODE_COUNT}, actor=user)
    return codes


# Checking a code -------------------------------------------------------------------------------

def unused_recovery_codes(user: User) -> int:
    return len(db.session.scalars(select(RecoveryCode.id).where(
        RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))).all())


def _use_recovery_code(user: User, code: str) -> bool:
    if len(code) != 10 or any(c not in RECOVERY_ALPHABET for c in code):
        return False
    hasher = _hasher()[0]
    for stored in db.session.scalars(select(RecoveryCode).where(
            RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)).with_for_update()):
        try:
            hasher.verify(stored.code_hash, code)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            continue
        stored.used_at = clock.now()
        return True
    return False


def check_code(user: User, code: str, ip: str, *, allow_recovery: bool = True) -> str:
    """Check a code from the app (or a recovery code, used up), within the sign-in limits.

    Returns "code" or "recovery_code"; raises SignInError (the message for the ``code`` field)
    otherwise. Every check is logged as a sign-in attempt against the account's email and the
    address, so wrong codes and wrong passwords share one limit."""
    ip = ip or "unknown"
    if _is_throttled(user.email, ip):
        db.session.add(SignInAttempt(email=user.email, ip_address=ip, attempted_at=clock.now(), succeeded=False))
        db.session.flush()
        raise SignInError(THROTTLED, field="code")
    secret = decrypt_secret(user.totp_secret) if user.totp_secret else None
    cleaned = _clean_code(code)
    kind = None
    if secret is not None:
        step = _matching_step(secret, cleaned, user.totp_last_step)
        if step is not None:
            user.totp_last_step = step
            kind = "code"
    if kind is None and allow_recovery and _use_recovery_code(user, cleaned):
        kind = "recovery_code"
    db.session.add(SignInAttempt(email=user.email, ip_address=ip, attempted_at=clock.now(), succeeded=kind is not None))
    db.session.flush()
    if kind is None:
        raise SignInError(WRONG_CODE, field="code")
    return kind


def complete_sign_in(user: User, code: str, ip: str) -> str:
    """The second step of signing in, after the password (accounts.SecondFactorNeeded)."""
    if not user.active or not user.two_factor_enabled:
        raise SignInError("Sign in again.")
    kind = check_code(user, code, ip)
    user.last_signed_in_at = clock.now()
    data = {"second_factor": kind}
    if kind == "recovery_code":
        data["recovery_codes_left"] = unused_recovery_codes(user)
    audit.record("user.signed_in", "user", user.id, data, actor=user)
    return kind


# Turning it off --------------------------------------------------------------------------------

def _clear(user: User) -> None:
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


def turn_off(user: User, code: str, ip: str) -> None:
    """The person turns their own off, with a current code (or a recovery code)."""
    if not user.two_factor_enabled:
        raise ServiceError("Two-factor sign-in is not set up for your account")
    if required_for(user):
        raise ServiceError(f"Two-factor sign-in is required for the {user.role_label.lower()} role: it cannot be "
                           "turned off. If you have lost your device, ask the DPS team to reset it.")
    check_code(user, code, ip)
    _clear(user)
    audit.record("user.two_factor_disabled", "user", user.id, {}, actor=user)


def reset(actor: User, user: User) -> None:
    """The DPS team resets someone's two-factor sign-in (a lost phone): every session of theirs
    ends, and they set it up again at their next sign-in if their role requires it."""
    if user.id == actor.id:
        raise ServiceError("You cannot reset your own two-factor sign-in: turn it off from your account page")
    if not user.two_factor_enabled:
        raise ServiceError(f"{user.name} has not set up two-factor sign-in")
    _clear(user)
    user.session_version += 1  # signs them out everywhere, at once
    audit.record("user.two_factor_reset", "user", user.id, {"ended_all_sessions": True}, actor=actor)
