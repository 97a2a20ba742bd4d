"""Read-side rules about the DPS agreement: its period, whether it is open, and who is on it.

Nothing here writes. The period is held as two Europe/London dates (the agreement's first and last
day); every question about "is it open now" goes through ``window`` so the public pages, the
supplier pages and any later rule agree to the second, on both sides of a clock change.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

from sqlalchemy import func, select

from .. import clock
from ..extensions import db
from ..models import Admission, Agreement, Lot, Organisation

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

# Where the clock stands against the period.
NOT_YET_OPEN = "not_yet_open"
OPEN = "open"
CLOSED = "closed"


def current_agreement() -> Agreement | None:
    """The DPS this service runs. There is one; should a successor ever be added, the first stays
    the one the public pages describe until the code says otherwise."""
    return db.session.scalar(select(Agreement).order_by(Agreement.id).limit(1))


def _london_midnight(day: date) -> datetime:
    # Midnight always exists exactly once in Europe/London (the clocks change at 1am), so this
    # is never ambiguous.
    return datetime.combine(day, time.min, tzinfo=clock.LONDON).astimezone(clock.UTC)


def window(agreement: Agreement) -> tuple[datetime, datetime]:
    """The period as a half-open interval of aware UTC datetimes: [start, end).

    Starts at 00:00 Europe/London on starts_on and ends at 00:00 Europe/London on the day after
    ends_on, so the whole of the last day (in UK time, BST included) is inside.
    """
    return _london_midnight(agreement.starts_on), _london_midnight(agreement.ends_on + timedelta(days=1))


def phase(agreement: Agreement, at: datetime | None = None) -> str:
    """NOT_YET_OPEN, OPEN or CLOSED at ``at`` (default: the DPS clock's now)."""
    moment = at if at is not None else clock.now()
    start, end = window(agreement)
    if moment < start:
        return NOT_YET_OPEN
    if moment < end:
        return OPEN
    return CLOSED


def is_open(agreement: Agreement, at: datetime | None = None) -> bool:
    """Whether suppliers may apply to join (reg 34: at any time while the DPS is valid)."""
    return phase(agreement, at) == OPEN


def _long_date(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def status_text(agreement: Agreement, at: datetime | None = None) -> str:
    """One line for a status banner, e.g. 'Open to new suppliers until 31 March 2025'."""
    current = phase(agreement, at)
    if current == NOT_YET_OPEN:
        return f"Opens on {_long_date(agreement.starts_on)}"
    if current == OPEN:
        return f"Open to new suppliers until {_long_date(agreement.ends_on)}"
    # Named by its last day, as people say it ("closed on 31 March"), not by the midnight after.
    return f"Closed on {_long_date(agreement.ends_on)}"


def lots(agreement: Agreement) -> Sequence[Lot]:
    return db.session.scalars(select(Lot).where(Lot.agreement_id == agreement.id).order_by(Lot.number)).all()


def admitted_suppliers_by_lot(agreement: Agreement) -> list[tuple[Lot, list[Organisation]]]:
    """Every lot of the agreement, by number, with the suppliers admitted to it, by name.

    Only admissions in good standing count: a suspended or removed supplier is not "on the DPS"
    and is not invited to mini-competitions, so it is not listed. Two queries, however many lots
    and suppliers there are.
    """
    agreement_lots = lots(agreement)
    by_lot: dict[int, list[Organisation]] = {lot.id: [] for lot in agreement_lots}
    rows = db.session.execute(
        select(Admission.lot_id, Organisation)
        .join(Organisation, Organisation.id == Admission.organisation_id)
        .join(Lot, Lot.id == Admission.lot_id)
        .where(Lot.agreement_id == agreement.id, Admission.status == "admitted")
        # lower(): SQLite and PostgreSQL collate differently; this gives one order on both.
        .order_by(func.lower(Organisation.name), Organisation.id)
    )
    for lot_id, organisation in rows:
        by_lot[lot_id].append(organisation)
    return [(lot, by_lot[lot.id]) for lot in agreement_lots]
