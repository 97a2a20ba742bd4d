"""Agreements and their lots: their periods, whether they are open, who is on them, and the DPS
team's changes to them.

Several agreements live side by side (a DPS under PCR 2015 and, after it, a Procurement Act 2023
dynamic market). The period is held as two Europe/London dates (first and last day); every
question about "is it open now" goes through ``Agreement.stage`` so the public pages, the supplier
pages and every rule agree to the second, on both sides of a clock change.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import String, and_, exists, func, select

from .. import audit, clock
from ..extensions import db
from ..models import Admission, Agreement, Application, ApplicationLot, Lot, Organisation, User
from ..models import agreements as model_stages
from ..models.agreements import PA_2023_DYNAMIC_MARKET, PCR_2015_DPS, REGIMES
from ..models.organisations import NATIONS
from ..pagination import PAGE_SIZE, Page, contains, keyset_page
from . import ServiceError

# Display labels for the supplier details of the selection questionnaire (Part 1). The stored
# values are the codes in dps.models.organisations.LEGAL_FORMS and SIZES.
LEGAL_FORM_LABELS: dict[str, str] = {
    "cic": "Community interest company (CIC)",
    "co_operative": "Co-operative society",
    "community_benefit_society": "Community benefit society",
    "charity": "Charity",
    "partnership": "Partnership",
    "sole_trader": "Sole trader",
    "company": "Company",
}
SIZE_LABELS: dict[str, str] = {
    "micro": "Micro",
    "small": "Small",
    "medium": "Medium",
    "large": "Large",
}

# Employer's liability insurance of at least £5 million is required by law (Employers' Liability
# (Compulsory Insurance) Regulations 1998), so it is the same for every lot rather than a lot setting.
EMPLOYERS_LIABILITY_MIN_PENCE = 5_000_000_00

# Where the clock stands against the period (the model's stages).
DRAFT, NOT_YET_OPEN, OPEN, CLOSED = model_stages.DRAFT, model_stages.UPCOMING, model_stages.OPEN, model_stages.CLOSED
# The Procurement Act 2023 took effect: no new DPS may be set up under PCR 2015 from this day.
PROCUREMENT_ACT_IN_FORCE = date(2025, 2, 24)
# Reg 84: procurement records are kept for at least 3 years.
RETENTION_YEARS = 3
REFERENCE_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9-]{1,48}[A-Z0-9]")
CPV_PATTERN = re.compile(r"\d{8}-\d")


def published_agreements() -> list[Agreement]:
    """Every published agreement: open ones first, then upcoming, then closed (latest first)."""
    now = clock.now()
    rows = db.session.scalars(select(Agreement).where(Agreement.published_at.is_not(None))
                              .order_by(Agreement.starts_on.desc(), Agreement.id.desc())).all()
    order = {OPEN: 0, NOT_YET_OPEN: 1, CLOSED: 2}
    return sorted(rows, key=lambda a: order[a.stage(now)])


def all_agreements() -> list[Agreement]:
    return list(db.session.scalars(select(Agreement).order_by(Agreement.starts_on.desc(), Agreement.id.desc())))


def open_agreements(at: datetime | None = None) -> list[Agreement]:
    """Published agreements inside their period now: suppliers may apply, buyers may compete."""
    moment = at if at is not None else clock.now()
    return [a for a in published_agreements() if a.stage(moment) == OPEN]


def by_reference(reference: str) -> Agreement | None:
    return db.session.scalar(select(Agreement).where(Agreement.reference == reference.upper()))


def window(agreement: Agreement) -> tuple[datetime, datetime]:
    """The period as a half-open interval of aware UTC datetimes: [start, end)."""
    return agreement.window()


def phase(agreement: Agreement, at: datetime | None = None) -> str:
    """DRAFT, NOT_YET_OPEN, OPEN or CLOSED at ``at`` (default: the DPS clock's now)."""
    return agreement.stage(at if at is not None else clock.now())


def is_open(agreement: Agreement, at: datetime | None = None) -> bool:
    """Whether suppliers may apply to join (reg 34: at any time while the DPS is valid)."""
    return phase(agreement, at) == OPEN


def _long_date(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def status_text(agreement: Agreement, at: datetime | None = None) -> str:
    """One line for a status banner, e.g. 'Open to new suppliers until 31 March 2025'."""
    current = phase(agreement, at)
    if current == DRAFT:
        return "Draft: not published"
    if current == NOT_YET_OPEN:
        return f"Opens on {_long_date(agreement.starts_on)}"
    if current == OPEN:
        return f"Open to new suppliers until {_long_date(agreement.ends_on)}"
    # Named by its last day, as people say it ("closed on 31 March"), not by the midnight after.
    return f"Closed on {_long_date(agreement.ends_on)}"


def closed_message(agreement: Agreement, doing: str) -> str:
    """Why ``doing`` is refused on an agreement outside its period (or not published)."""
    current = phase(agreement)
    if current == CLOSED:
        return (f"{agreement.title} closed on {_long_date(agreement.ends_on)}: {doing} is no longer possible on it. "
                "Call-offs already made run on.")
    if current == NOT_YET_OPEN:
        return f"{agreement.title} opens on {_long_date(agreement.starts_on)}: {doing} is possible from then."
    if current == DRAFT:
        return f"{agreement.title} is not published yet: {doing} is possible once it is."
    return ""


def retention_until(agreement: Agreement) -> date:
    """The earliest day its procurement records may be destroyed (reg 84: at least 3 years):
    3 years after the later of the agreement's end and the end of its last call-off."""
    from ..models import CallOff, Competition

    last_call_off = db.session.scalar(
        select(func.max(CallOff.ends_on)).join(Competition, Competition.id == CallOff.competition_id)
        .join(Lot, Lot.id == Competition.lot_id).where(Lot.agreement_id == agreement.id))
    last = max(agreement.ends_on, last_call_off) if last_call_off else agreement.ends_on
    try:
        return last.replace(year=last.year + RETENTION_YEARS)
    except ValueError:  # 29 February
        return last.replace(year=last.year + RETENTION_YEARS, day=28)


def applications_count(agreement: Agreement) -> int:
    return db.session.scalar(select(func.count()).select_from(Application)
                             .where(Application.agreement_id == agreement.id)) or 0


def lots(agreement: Agreement) -> Sequence[Lot]:
    return db.session.scalars(select(Lot).where(Lot.agreement_id == agreement.id).order_by(Lot.number)).all()


# Who is on an agreement: the public page -------------------------------------------------------
#
# Only admissions in good standing count: a suspended or removed supplier is not "on the DPS" and
# is not invited to mini-competitions, so it is not listed. At national scale an agreement has
# thousands of suppliers, so the page shows the lots with their counts and then one lot's
# suppliers a page at a time (keyset pagination, dps.pagination).

# lower(): SQLite and PostgreSQL collate differently; this gives one order on both.
SUPPLIER_ORDER = (func.lower(Organisation.name, type_=String), Organisation.id)
VCSE_CHOICES = {"yes": True, "no": False}


@dataclass(frozen=True)
class SupplierSearch:
    """What the public list of a lot's suppliers is narrowed to: a part of the name (any case),
    a legal form, a size, VCSE or not. Empty: every supplier on the lot."""

    text: str = ""
    legal_form: str | None = None
    size: str | None = None
    vcse: bool | None = None

    @property
    def narrowed(self) -> bool:
        return self != SupplierSearch()

    def conditions(self) -> list:
        found = []
        if self.text:
            found.append(contains(Organisation.name, self.text))
        if self.legal_form is not None:
            found.append(Organisation.legal_form == self.legal_form)
        if self.size is not None:
            found.append(Organisation.size == self.size)
        if self.vcse is not None:
            found.append(Organisation.is_vcse.is_(self.vcse))
        return found


def lots_with_counts(agreement: Agreement) -> list[tuple[Lot, int]]:
    """Every lot of the agreement, by number, with how many suppliers in good standing are on it.
    One grouped query, however many lots and suppliers."""
    return [(lot, n) for lot, n in db.session.execute(
        select(Lot, func.count(Admission.id))
        .outerjoin(Admission, and_(Admission.lot_id == Lot.id, Admission.status == "admitted"))
        .where(Lot.agreement_id == agreement.id)
        .group_by(Lot.id)
        .order_by(Lot.number))]


def supplier_count(agreement: Agreement) -> int:
    """How many suppliers are on the agreement: one on several lots counts once."""
    return db.session.scalar(
        select(func.count(func.distinct(Admission.organisation_id)))
        .join(Lot, Lot.id == Admission.lot_id)
        .where(Lot.agreement_id == agreement.id, Admission.status == "admitted")) or 0


def suppliers_on_lot(lot: Lot, search: SupplierSearch = SupplierSearch(), *, after: str | None = None,
                     before: str | None = None, page_size: int = PAGE_SIZE) -> Page:
    """One page of the suppliers in good standing on ``lot`` that match ``search``, by name
    (then id), with how many match. Three queries at most, however many suppliers."""
    stmt = (select(Organisation)
            .join(Admission, Admission.organisation_id == Organisation.id)
            .where(Admission.lot_id == lot.id, Admission.status == "admitted", *search.conditions()))
    return keyset_page(stmt, SUPPLIER_ORDER, after=after, before=before, size=page_size)


# Changes by the DPS team ------------------------------------------------------------------------

AGREEMENT_FIELDS = ("reference", "title", "description", "regime", "starts_on", "ends_on", "nation",
                    "accountable_body_id")
# Fixed once a supplier has applied: they applied to this period, under this law, with deadlines
# counted in this nation's working days.
FIXED_ONCE_APPLIED = {"regime": "legal regime", "starts_on": "first day", "ends_on": "last day",
                      "nation": "nation whose working days apply"}


def _require_team(actor: User | None) -> None:
    if actor is not None and actor.role != "dps_admin":
        raise ServiceError("Only the DPS team can change agreements and lots")


def _clean_agreement(values: dict, agreement: Agreement | None) -> dict:
    reference = (values.get("reference") or "").strip().upper()
    if not reference:
        raise ServiceError("Enter the agreement's reference, like CCIN-DPS-2020", field="reference")
    if not REFERENCE_PATTERN.fullmatch(reference):
        raise ServiceError("The reference must be 3 to 50 capital letters, digits and hyphens, like CCIN-DPS-2020, "
                           "and start and end with a letter or digit", field="reference")
    clash = db.session.scalar(select(Agreement.id).where(Agreement.reference == reference))
    if clash is not None and (agreement is None or clash != agreement.id):
        raise ServiceError(f"Another agreement already has the reference {reference}", field="reference")
    title = " ".join((values.get("title") or "").split())
    if not title:
        raise ServiceError("Enter the agreement's title", field="title")
    if len(title) > 200:
        raise ServiceError("The title must be 200 characters or fewer", field="title")
    regime = values.get("regime")
    if regime not in REGIMES:
        raise ServiceError("Choose the legal regime", field="regime")
    starts_on, ends_on = values.get("starts_on"), values.get("ends_on")
    if not isinstance(starts_on, date):
        raise ServiceError("Enter the first day of the agreement", field="starts_on")
    if not isinstance(ends_on, date):
        raise ServiceError("Enter the last day of the agreement", field="ends_on")
    if ends_on <= starts_on:
        raise ServiceError("The last day must be after the first day", field="ends_on")
    nation = values.get("nation")
    if nation not in NATIONS:
        raise ServiceError("Choose the nation whose bank holidays apply", field="nation")
    body = db.session.get(Organisation, values.get("accountable_body_id") or 0)
    if body is None or body.kind == "supplier" or not body.is_contracting_authority:
        raise ServiceError("Choose the accountable body: a contracting authority", field="accountable_body_id")
    return {"reference": reference, "title": title, "description": (values.get("description") or "").strip(),
            "regime": regime, "starts_on": starts_on, "ends_on": ends_on, "nation": nation,
            "accountable_body_id": body.id}


def _check_regime_fits_period(regime: str, starts_on: date) -> None:
    """PCR 2015 governs procurements begun before the Procurement Act 2023 took effect (24 February
    2025), and the Act those begun on or after it: a DPS begun in 2020 can still be recorded
    here today, but a new vehicle from that day is a dynamic market."""
    if regime == PCR_2015_DPS and starts_on >= PROCUREMENT_ACT_IN_FORCE:
        raise ServiceError("A dynamic purchasing system under the Public Contracts Regulations 2015 must begin before "
                           "24 February 2025, when the Procurement Act 2023 took effect: from then, choose a dynamic "
                           "market", field="regime")
    if regime == PA_2023_DYNAMIC_MARKET and starts_on < PROCUREMENT_ACT_IN_FORCE:
        raise ServiceError("A dynamic market under the Procurement Act 2023 can begin on 24 February 2025 at the "
                           "earliest, when the Act took effect", field="starts_on")


def _audit_value(value):
    return value.isoformat() if isinstance(value, date) else value


def create_agreement(actor: User | None, *, actor_label: str | None = None, **values) -> Agreement:
    """A new agreement, in draft: the public sees it once it is published."""
    _require_team(actor)
    clean = _clean_agreement(values, None)
    _check_regime_fits_period(clean["regime"], clean["starts_on"])
    agreement = Agreement(**clean, created_at=clock.now())
    db.session.add(agreement)
    db.session.flush()
    audit.record("agreement.created", "agreement", agreement.id,
                 {k: _audit_value(v) for k, v in clean.items()}, actor=actor, actor_label=actor_label)
    return agreement


def update_agreement(actor: User | None, agreement: Agreement, **values) -> None:
    """Change an agreement's details. Its period, regime and nation are fixed once a supplier has
    started an application to it (the change is refused, saying why)."""
    _require_team(actor)
    clean = _clean_agreement(values, agreement)
    changed = {k: v for k, v in clean.items() if getattr(agreement, k) != v}
    if not changed:
        return
    if "reference" in changed and agreement.published_at is not None:
        raise ServiceError(f"{agreement.title} is published as {agreement.reference}: its reference names it in web "
                           "addresses and open data (its OCDS ocid), so it cannot change", field="reference")
    applied = applications_count(agreement)
    fixed = [label for name, label in FIXED_ONCE_APPLIED.items() if name in changed]
    if applied and fixed:
        field = next(name for name in FIXED_ONCE_APPLIED if name in changed)
        raise ServiceError(
            f"{applied} {'supplier has' if applied == 1 else 'suppliers have'} applied to this agreement, so its "
            f"{', '.join(fixed)} can no longer change: suppliers applied on those terms", field=field)
    _check_regime_fits_period(clean["regime"], clean["starts_on"])
    before = {k: _audit_value(getattr(agreement, k)) for k in changed}
    for name, value in changed.items():
        setattr(agreement, name, value)
    db.session.flush()
    audit.record("agreement.updated", "agreement", agreement.id,
                 {"before": before, "after": {k: _audit_value(v) for k, v in changed.items()}}, actor=actor)


def publication_problems(agreement: Agreement) -> list[str]:
    """What stops the agreement being published ([] when it can be)."""
    from .questionnaires import current_for

    problems = []
    if agreement.regime == PA_2023_DYNAMIC_MARKET:
        problems.append("The service does not yet run a dynamic market's rules under the Procurement Act 2023 "
                        "(its notices UK13 to UK16 and membership conditions): it holds the market's details, "
                        "but cannot open it to suppliers")
    if not agreement.lots:
        problems.append("Add at least one lot")
    if current_for(agreement) is None:
        problems.append("Publish a version of the selection questionnaire")
    if agreement.ends_on < clock.today_london():
        problems.append(f"Its last day, {_long_date(agreement.ends_on)}, has passed")
    return problems


def publish_agreement(actor: User | None, agreement: Agreement, *, actor_label: str | None = None) -> None:
    _require_team(actor)
    if agreement.published_at is not None:
        raise ServiceError("The agreement is already published")
    problems = publication_problems(agreement)
    if problems:
        raise ServiceError("The agreement cannot be published yet: " + "; ".join(problems))
    agreement.published_at = clock.now()
    db.session.flush()
    audit.record("agreement.published", "agreement", agreement.id, {"reference": agreement.reference},
                 actor=actor, actor_label=actor_label)


def unpublish_agreement(actor: User | None, agreement: Agreement) -> None:
    """Take a published agreement back to draft: only while no supplier has applied to it."""
    _require_team(actor)
    if agreement.published_at is None:
        raise ServiceError("The agreement is not published")
    if applications_count(agreement):
        raise ServiceError("Suppliers have applied to this agreement: it stays published, and its records are kept")
    agreement.published_at = None
    db.session.flush()
    audit.record("agreement.unpublished", "agreement", agreement.id, {"reference": agreement.reference}, actor=actor)


# Lots ------------------------------------------------------------------------------------------

LOT_FIELDS = ("number", "title", "description", "scope", "cpv_codes", "selection_criteria",
              "public_liability_min_pence", "professional_indemnity_min_pence", "case_studies_required")
# Reg 34: lots are objectively defined. Once a supplier is admitted on these terms, only the
# title's wording may still be corrected.
EDITABLE_WITH_ADMISSIONS = ("title",)
# Money a lot may ask for: beyond £1bn is a typing mistake.
MAX_COVER_PENCE = 1_000_000_000_00


def has_admissions(lot: Lot) -> bool:
    return bool(db.session.scalar(select(exists().where(Admission.lot_id == lot.id))))


def parse_cpv_codes(text: str) -> list[str]:
    """'73000000-2, 79315000-5' -> ['73000000-2', '79315000-5'] (commas, spaces or new lines)."""
    codes = [c for c in re.split(r"[\s,;]+", text or "") if c]
    bad = [c for c in codes if not CPV_PATTERN.fullmatch(c)]
    if bad:
        raise ServiceError(f"{bad[0]} is not a CPV code: enter 8 digits, a hyphen and a check digit, like 73000000-2",
                           field="cpv_codes")
    return list(dict.fromkeys(codes))


def _clean_lot(agreement: Agreement, values: dict, lot: Lot | None) -> dict:
    number = values.get("number")
    if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 999:
        raise ServiceError("Enter the lot's number, a whole number from 1 to 999", field="number")
    clash = db.session.scalar(select(Lot.id).where(Lot.agreement_id == agreement.id, Lot.number == number))
    if clash is not None and (lot is None or clash != lot.id):
        raise ServiceError(f"This agreement already has a Lot {number}", field="number")
    clean: dict = {"number": number}
    for name, label, limit in (("title", "title", 200), ("description", "description", 5000),
                               ("selection_criteria", "selection criteria", 10000)):
        text = (values.get(name) or "").strip()
        if not text:
            raise ServiceError(f"Enter the lot's {label}", field=name)
        if len(text) > limit:
            raise ServiceError(f"The {label} must be {limit:,} characters or fewer", field=name)
        clean[name] = text
    clean["scope"] = (values.get("scope") or "").strip()
    codes = values.get("cpv_codes")
    clean["cpv_codes"] = parse_cpv_codes(codes) if isinstance(codes, str) else list(codes or [])
    if not clean["cpv_codes"]:
        raise ServiceError("Enter at least one CPV code, like 73000000-2", field="cpv_codes")
    for name, label in (("public_liability_min_pence", "public liability"),
                        ("professional_indemnity_min_pence", "professional indemnity")):
        amount = values.get(name)
        if not isinstance(amount, int) or amount < 0:
            raise ServiceError(f"Enter the minimum {label} cover, £0 or more", field=name)
        if amount > MAX_COVER_PENCE:
            raise ServiceError(f"Enter a minimum {label} cover of £1,000,000,000 or less", field=name)
        clean[name] = amount
    studies = values.get("case_studies_required")
    if not isinstance(studies, int) or not 0 <= studies <= 10:
        raise ServiceError("Enter how many case studies the lot asks for, from 0 to 10", field="case_studies_required")
    clean["case_studies_required"] = studies
    return clean


def create_lot(actor: User | None, agreement: Agreement, *, actor_label: str | None = None, **values) -> Lot:
    _require_team(actor)
    if phase(agreement) == CLOSED:
        raise ServiceError(closed_message(agreement, "adding a lot"))
    clean = _clean_lot(agreement, values, None)
    lot = Lot(agreement_id=agreement.id, **clean)
    db.session.add(lot)
    db.session.flush()
    db.session.refresh(agreement, ["lots"])
    audit.record("lot.created", "lot", lot.id, {"agreement": agreement.reference, **clean},
                 actor=actor, actor_label=actor_label)
    return lot


def update_lot(actor: User | None, lot: Lot, **values) -> None:
    """Change a lot. With a supplier admitted, its definition and criteria are fixed (reg 34)."""
    _require_team(actor)
    clean = _clean_lot(lot.agreement, values, lot)
    changed = {k: v for k, v in clean.items() if getattr(lot, k) != v}
    if not changed:
        return
    locked = [k for k in changed if k not in EDITABLE_WITH_ADMISSIONS]
    if locked and has_admissions(lot):
        raise ServiceError(
            f"Suppliers have been admitted to {lot.label}, so its definition and selection criteria are fixed: "
            "lots of a DPS are objectively defined (reg 34). Only the title's wording can be corrected. "
            "For a different scope or criteria, add a new lot.", field=locked[0])
    before = {k: getattr(lot, k) for k in changed}
    for name, value in changed.items():
        setattr(lot, name, value)
    db.session.flush()
    audit.record("lot.updated", "lot", lot.id, {"agreement": lot.agreement.reference, "before": before,
                                                "after": changed}, actor=actor)


def close_lot(actor: User | None, lot: Lot) -> None:
    """Stop new applications to a lot. Suppliers already on it stay, and are still invited."""
    _require_team(actor)
    if lot.closed_at is not None:
        raise ServiceError(f"{lot.label} is already closed to new applications")
    lot.closed_at = clock.now()
    db.session.flush()
    audit.record("lot.closed", "lot", lot.id, {"agreement": lot.agreement.reference, "number": lot.number},
                 actor=actor)


def reopen_lot(actor: User | None, lot: Lot) -> None:
    _require_team(actor)
    if lot.closed_at is None:
        raise ServiceError(f"{lot.label} is open to applications")
    lot.closed_at = None
    db.session.flush()
    audit.record("lot.reopened", "lot", lot.id, {"agreement": lot.agreement.reference, "number": lot.number},
                 actor=actor)


def delete_lot(actor: User | None, lot: Lot) -> None:
    """Delete a lot nobody is on, nobody has applied to and no competition uses."""
    from ..models import Competition

    _require_team(actor)
    if has_admissions(lot):
        raise ServiceError(f"Suppliers have been admitted to {lot.label}: it cannot be deleted (close it to new "
                           "applications instead)")
    if db.session.scalar(select(exists().where(ApplicationLot.lot_id == lot.id))):
        raise ServiceError(f"Suppliers have applied to {lot.label}: it cannot be deleted (close it to new "
                           "applications instead)")
    if db.session.scalar(select(exists().where(Competition.lot_id == lot.id))):
        raise ServiceError(f"A mini-competition has been run on {lot.label}: it cannot be deleted")
    agreement = lot.agreement
    data = {"agreement": agreement.reference, "number": lot.number, "title": lot.title}
    lot_id = lot.id
    db.session.delete(lot)
    db.session.flush()
    db.session.refresh(agreement, ["lots"])
    audit.record("lot.deleted", "lot", lot_id, data, actor=actor)
