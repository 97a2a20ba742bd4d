"""Suppliers' organisation details: the Part 1 answers of the selection questionnaire.

The DPS team admits an organisation as identified by its legal name and registration number.
When an admitted supplier changes either, the team must check again that it is the same legal
person (a new company is not the one that was admitted), so the change is flagged and they are
told at once.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app
from sqlalchemy import exists, select

from .. import audit, clock, mail, validators
from ..extensions import db
from ..models import Admission, Organisation, User
from ..models.organisations import LEGAL_FORMS, NATIONS, SIZES
from . import ServiceError

# What a supplier may change, in the order the before/after of the audit event lists them.
DETAIL_FIELDS: tuple[str, ...] = (
    "name",
    "trading_name",
    "address_line_1",
    "address_line_2",
    "town",
    "postcode",
    "nation",
    "legal_form",
    "registration_number",
    "vat_number",
    "size",
    "is_vcse",
    "parent_company",
    "contact_name",
    "contact_email",
    "contact_phone",
)
# The two details that say which legal person this is.
IDENTITY_FIELDS: tuple[str, ...] = ("name", "registration_number")
# Derived from legal form and registration number, never given directly.
_IDENTIFIER_FIELDS: tuple[str, ...] = ("identifier_scheme", "identifier_id")

_REGISTRATION_REQUIRED: dict[str, str] = {
    "company": "Enter your company number",
    "cic": "Enter your company number",
    "co_operative": "Enter your Mutuals Public Register number",
    "community_benefit_society": "Enter your Mutuals Public Register number",
    "charity": "Enter your charity number",
}
_CHOICES: dict[str, tuple[tuple[str, ...], str]] = {
    "nation": (NATIONS, "Select the nation where your organisation is registered"),
    "legal_form": (LEGAL_FORMS, "Select your organisation's legal form"),
    "size": (SIZES, "Select the size of your organisation"),
}
# Formats checked (and normalised) by dps.validators, field by field.
_FORMATS = {
    "postcode": validators.postcode,
    "vat_number": validators.vat_number,
    "contact_phone": validators.phone_number,
}


def missing_registration_message(legal_form: str | None, registration_number: str | None) -> str | None:
    """What to say when a legal form that is on a public register has no number, else None."""
    if (registration_number or "").strip():
        return None
    return _REGISTRATION_REQUIRED.get(legal_form or "")


def _clean(value: Any) -> Any:
    # Blank text is "not given": stored as NULL so completeness checks and exports agree.
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _checked(org: Organisation, data: Mapping[str, Any]) -> dict[str, Any]:
    """The organisation's details after ``data`` is applied, cleaned, normalised and checked."""
    unknown = set(data) - set(DETAIL_FIELDS)
    if unknown:
        raise ValueError(f"Not organisation details a supplier can change: {', '.join(sorted(unknown))}")
    new = {field: getattr(org, field) for field in DETAIL_FIELDS}
    new.update({field: _clean(value) for field, value in data.items()})

    if not new["name"]:
        raise ServiceError("Enter your organisation's legal name", field="name")
    for field, (allowed, message) in _CHOICES.items():
        if new[field] is not None and new[field] not in allowed:
            raise ServiceError(message, field=field)
    if new["is_vcse"] is not None and not isinstance(new["is_vcse"], bool):
        raise ServiceError("Select yes if your organisation is a voluntary, community or social enterprise",
                           field="is_vcse")
    # Only what was given is checked: a stored value was checked when it was saved.
    for field, normalise in _FORMATS.items():
        if field in data and new[field] is not None:
            try:
                new[field] = normalise(new[field])
            except ValueError as exc:
                raise ServiceError(str(exc), field=field) from exc

    if "legal_form" not in data and "registration_number" not in data:
        new["identifier_scheme"], new["identifier_id"] = org.identifier_scheme, org.identifier_id
        return new
    missing = missing_registration_message(new["legal_form"], new["registration_number"])
    if missing:
        raise ServiceError(missing, field="registration_number")
    try:
        scheme, number = validators.registration(new["legal_form"], new["registration_number"])
    except ValueError as exc:
        raise ServiceError(str(exc), field="registration_number") from exc
    new["registration_number"] = number
    new["identifier_scheme"] = scheme
    new["identifier_id"] = validators.org_id(scheme, number)
    return new


def _identifier_taken(org: Organisation, scheme: str | None, identifier: str | None) -> bool:
    if scheme is None or identifier is None:
        return False
    return db.session.scalar(select(exists().where(
        Organisation.identifier_scheme == scheme,
        Organisation.identifier_id == identifier,
        Organisation.id != org.id,
    )))


def _has_admission(org: Organisation) -> bool:
    # Any standing counts: a suspended or removed supplier's history is still of that legal person.
    return db.session.scalar(select(exists().where(Admission.organisation_id == org.id)))


def update_details(org: Organisation, actor: User, data: Mapping[str, Any]) -> list[str]:
    """Change a supplier's Part 1 details; returns the names of the fields that changed.

    Only the keys given in ``data`` change. The org-id identifier follows the legal form and
    registration number. A change of legal name or registration number by a supplier already on
    the DPS is flagged for the DPS team, who are emailed."""
    if not org.is_supplier:
        raise ServiceError(f"{org.name} is not a supplier")
    if actor.organisation_id != org.id:
        raise ServiceError("You can only change your own organisation's details")
    new = _checked(org, data)
    if _identifier_taken(org, new["identifier_scheme"], new["identifier_id"]):
        raise ServiceError(
            "Another organisation has an account with this registration number. "
            "Ask the people who use it to invite you as a colleague",
            field="registration_number",
        )

    changed = [field for field in DETAIL_FIELDS + _IDENTIFIER_FIELDS if getattr(org, field) != new[field]]
    if not changed:
        return []
    before = {field: getattr(org, field) for field in changed}
    after = {field: new[field] for field in changed}
    for field in changed:
        setattr(org, field, new[field])
    db.session.flush()
    audit.record("organisation.details_updated", "organisation", org.id, {"before": before, "after": after},
                 actor=actor)

    identity_changed = [field for field in IDENTITY_FIELDS if field in changed]
    if identity_changed and _has_admission(org):
        _flag_identity_change(org, actor, {f: before[f] for f in identity_changed},
                              {f: after[f] for f in identity_changed})
    return changed


def _flag_identity_change(org: Organisation, actor: User, before: dict[str, Any], after: dict[str, Any]) -> None:
    # The flag says since when the team has had something to review: a further change before they
    # look is emailed and audited but does not reset how long the supplier has been waiting.
    if org.identity_changed_at is None:
        org.identity_changed_at = clock.now()
    audit.record("organisation.identity_changed", "organisation", org.id, {"before": before, "after": after},
                 actor=actor)
    labels = {"name": "Legal name", "registration_number": "Registration number"}
    lines = "\n".join(
        f"{labels[field]}: was {before[field] or '(none)'}, now {after[field] or '(none)'}" for field in before
    )
    # The team's page for this supplier may not exist yet; their home page lists what needs them.
    link = current_app.config["DPS_BASE_URL"] + f"/team/suppliers/{org.id}"
    admins = db.session.scalars(
        select(User).where(User.role == "dps_admin", User.active.is_(True)).order_by(User.id)
    ).all()
    for admin in admins:
        mail.queue(
            admin.email,
            "A supplier changed its legal name or registration number",
            f"Dear {admin.name},\n\n{org.name}, a supplier on the DPS, changed its details:\n\n{lines}\n\n"
            "Check that it is still the organisation that was admitted, then mark the change as "
            f"reviewed:\n\n{link}\n",
        )


def acknowledge_identity_change(org: Organisation, actor: User) -> None:
    """The DPS team has looked at a supplier's changed identity: clear the flag."""
    if actor.role != "dps_admin":
        raise ServiceError("Only the DPS team can review a supplier's change of identity")
    if org.identity_changed_at is None:
        raise ServiceError(f"{org.name} has no change of legal name or registration number to review")
    flagged_at = org.identity_changed_at
    org.identity_changed_at = None
    db.session.flush()
    audit.record("organisation.identity_change_acknowledged", "organisation", org.id,
                 {"before": {"identity_changed_at": flagged_at.isoformat()}, "after": {"identity_changed_at": None}},
                 actor=actor)
