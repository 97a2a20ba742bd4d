"""Setting the service up on an empty database: the accountable body and the first DPS team account.

Everything else (agreements, lots, members, questionnaires, budgets) the DPS team then does through
its own pages, each change audited. Set-up runs once: the installation row it writes is what
makes a second run refuse.
"""
from __future__ import annotations

from sqlalchemy import func, select

from .. import audit, clock
from ..extensions import db
from ..models import Installation, Organisation, User
from ..models.organisations import NATIONS
from . import ServiceError
from .accounts import create_user

ACTOR = "set-up"
# The spellings the command line takes, for the nations of the model.
NATION_CHOICES = {n.lower().replace(" ", "-"): n for n in NATIONS}


def installation() -> Installation | None:
    return db.session.get(Installation, 1)


def accountable_body() -> Organisation | None:
    """The organisation that runs this service (its DPS team and auditors belong to it)."""
    row = installation()
    return row.accountable_body if row is not None else None


def set_up(*, accountable_body_name: str, nation: str, admin_email: str, admin_name: str, password: str,
           actor_label: str = ACTOR) -> User:
    """Create the accountable body and the first DPS team account, once."""
    if installation() is not None:
        raise ServiceError(f"The service is already set up for {accountable_body().name}: "
                           "sign in as the DPS team to manage it")
    if db.session.scalar(select(func.count()).select_from(User).where(User.role == "dps_admin")):
        raise ServiceError("This database already has DPS team accounts: it is not empty")
    name = " ".join((accountable_body_name or "").split())
    if not name:
        raise ServiceError("Enter the accountable body's name", field="accountable_body")
    if len(name) > 200:
        raise ServiceError("The accountable body's name must be 200 characters or fewer", field="accountable_body")
    if nation not in NATIONS:
        raise ServiceError(f"The nation must be one of {', '.join(NATIONS)}", field="nation")
    now = clock.now()
    body = db.session.scalar(select(Organisation).where(func.lower(Organisation.name) == name.lower(),
                                                        Organisation.kind != "supplier"))
    if body is None:
        # Accountable bodies are contracting authorities (a council or another public body); the
        # DPS team can record its membership, identifier and kind on the members pages.
        body = Organisation(name=name, kind="council", nation=nation, contracting_authority=True, created_at=now)
        db.session.add(body)
        db.session.flush()
        audit.record("organisation.created", "organisation", body.id,
                     {"name": body.name, "kind": body.kind, "nation": nation, "contracting_authority": True},
                     actor_label=actor_label, organisation_id=body.id)
    db.session.add(Installation(id=1, accountable_body_id=body.id, set_up_at=now))
    db.session.flush()
    audit.record("service.set_up", "installation", 1, {"accountable_body": body.name, "nation": nation},
                 actor_label=actor_label, organisation_id=body.id)
    return create_user(email=admin_email, name=admin_name, role="dps_admin", organisation=body, password=password,
                       confirmed=True, actor_label=actor_label)
