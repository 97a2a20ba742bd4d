"""Authorisation: a role gate per blueprint and object checks scoped to the user's organisation."""
from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from flask import Blueprint, abort, request
from flask_login import current_user
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
