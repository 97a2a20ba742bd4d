"""Authorisation: a role gate per blueprint and object checks scoped to the user's organisation."""
from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

import time

from flask import Blueprint, abort, request, session
from flask_login import current_user, login_user
from sqlalchemy import Select

from .extensions import db, login_manager

T = TypeVar("T")


def role_gate(blueprint: Blueprint, roles: Iterable[str], public_endpoints: Iterable[str] = ()) -> None:
    """Every view of ``blueprint`` needs a signed-in user with one of ``roles`` (403 otherwise),
    except the endpoints listed as public."""
    allowed = frozenset(roles)
    public = frozenset(f"{blueprint.name}.{name}" for name in public_endpoints)

    @blueprint.before_request
    def _gate():
        if request.endpoint in public:
            return None
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if current_user.role not in allowed:
            abort(403)
        return None


# A session ends after this long, however active (seconds, real time: a session's safety never
# depends on the simulated clock)...
SESSION_LIFETIME = 12 * 60 * 60
# ...or after this long without a request.
SESSION_IDLE_LIMIT = 2 * 60 * 60


def start_session(user) -> None:
    """Sign ``user`` in on this browser, stamping when, so the session can expire."""
    login_user(user)
    now = int(time.time())
    session["signed_in_at"] = now
    session["seen_at"] = now


def session_expired() -> bool:
    """True (and the session's stamps cleared) when the signed-in session is too old or idle."""
    now = int(time.time())
    signed_in_at = session.get("signed_in_at")
    seen_at = session.get("seen_at")
    if signed_in_at is None or seen_at is None or now - signed_in_at > SESSION_LIFETIME or now - seen_at > SESSION_IDLE_LIMIT:
        session.pop("signed_in_at", None)
        session.pop("seen_at", None)
        return True
    if now - seen_at > 60:  # refresh at most once a minute, so most responses set no cookie
        session["seen_at"] = now
    return False


def one_or_404(stmt: Select) -> T:
    """Load exactly one object by a statement already scoped to what the user may see.

    Views never load by bare id: they build a statement that names the user's organisation, and
    anything outside it is simply not found (404), so ids of other organisations' objects leak
    nothing.
    """
    obj = db.session.scalars(stmt).first()
    if obj is None:
        abort(404)
    return obj
