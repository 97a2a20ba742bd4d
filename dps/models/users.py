"""People who sign in, their one-time tokens and sign-in attempts."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .organisations import Organisation
from .types import UTCDateTime

ROLES = ("supplier", "buyer", "dps_admin", "auditor")
ROLE_LABELS = {
    "supplier": "Supplier",
    "buyer": "Buyer",
    "dps_admin": "DPS team",
    "auditor": "Auditor",
}
TOKEN_PURPOSES = ("reset_password", "confirm_email", "invitation")


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"role IN ({', '.join(repr(r) for r in ROLES)})", name="role"),
        # Emails are unique regardless of case: stored in lower case, and the database checks it.
        CheckConstraint("email = lower(email)", name="email_lower_case"),
        # The accounts list: by organisation, then name whatever its case.
        Index("ix_users_organisation_name", "organisation_id", text("lower(name)"), "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # NULL until the person sets a password (from an invitation).
    password_hash: Mapped[str | None] = mapped_column(String(255))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Bumped on sign-out, password change and deactivation: every session carrying an older
    # version is refused on its next request, in every browser and on every worker.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    email_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_signed_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Two-factor sign-in (TOTP, RFC 6238): the secret encrypted with a key derived from
    # DPS_SECRET_KEY (dps/services/two_factor.py), when enrolment completed, and the time step of
    # the last code accepted (a code is never accepted twice).
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)

    organisation: Mapped[Organisation] = relationship(lazy="joined")

    @property
    def two_factor_enabled(self) -> bool:
        return self.totp_enabled_at is not None and self.totp_secret is not None

    # Flask-Login protocol. The id carries the session version so a stale session cannot load.
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"

    @property
    def role_label(self) -> str:
        return ROLE_LABELS[self.role]

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email} {self.role}>"


class UserToken(db.Model):
    """A one-time link: only the SHA-256 of the token is stored, so a database leak gives no links."""

    __tablename__ = "user_tokens"
    __table_args__ = (
        CheckConstraint(f"purpose IN ({', '.join(repr(p) for p in TOKEN_PURPOSES)})", name="purpose"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship()


class RecoveryCode(db.Model):
    """A single-use two-factor recovery code: only its argon2 hash is stored."""

    __tablename__ = "user_recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SignInAttempt(db.Model):
    """Failed and successful sign-ins, kept to slow down guessing per account and per address."""

    __tablename__ = "sign_in_attempts"
    __table_args__ = (
        Index("ix_sign_in_attempts_email_at", "email", "attempted_at"),
        Index("ix_sign_in_attempts_ip_at", "ip_address", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    ip_address: Mapped[str] = mapped_column(String(45))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    succeeded: Mapped[bool] = mapped_column(Boolean)
