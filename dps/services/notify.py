"""Who is told, and the links in what they are told: shared by every service that sends email."""
from __future__ import annotations

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import Organisation, User


def team_emails() -> list[str]:
    """The DPS team's active accounts."""
    return list(db.session.scalars(select(User.email).where(User.role == "dps_admin", User.active.is_(True))))


def organisation_emails(org: Organisation) -> list[str]:
    """Everyone at the organisation who can sign in (not deactivated, invitation accepted)."""
    return list(db.session.scalars(
        select(User.email).where(User.organisation_id == org.id, User.active.is_(True),
                                 User.password_hash.is_not(None))))


def link(path: str) -> str:
    """An absolute link to a page of the service, for an email."""
    return current_app.config["DPS_BASE_URL"] + path
