"""The network budget: financial years, budget lines and allocations to members' funded projects.

Levels nest: a line's allocations never add up to more than its total, and an allocation's
call-offs never commit more than its amount. No level may be exceeded even when many people act
at once on many processes (DESIGN 5), so every change to a running total is one conditional
UPDATE whose WHERE clause states the limit, checked by its row count. A read-check-write would
overspend: two requests can both read "£5,000 left" before either writes. The CHECK constraints
on budget_lines and allocations are the last line of defence if a rule here were ever wrong.

The dashboard is computed with GROUP BY in a fixed number of queries, however many lines and
allocations there are, and always from the rows themselves (the sum of allocations), not from
the running totals alone.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import contains_eager, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from .. import audit
from ..extensions import db
from ..models import Allocation, BudgetLine, BudgetYear, CallOff, Organisation, User
from ..filters import money
from . import ServiceError
from .accounts import buyer_ineligibility

log = logging.getLogger(__name__)

# Financial years run 1 April to 31 March. Labels are "2024/25", so a year must have 4 digits.
FIRST_START_YEAR, LAST_START_YEAR = 2000, 2099
PROGRAMME_LIMIT = 100  # budget_lines.programme
PROJECT_TITLE_LIMIT = 200  # allocations.project_title


def year_label(start_year: int) -> str:
    """2024 -> "2024/25"."""
    return f"{start_year}/{(start_year + 1) % 100:02d}"


def _require_team(actor: User) -> None:
    # Views already refuse auditors; this keeps the rule true for any other caller (CLI, jobs).
    if actor.role != "dps_admin":
        raise ServiceError("Only the DPS team can change the network budget")


def _one_line(text: str | None) -> str:
    """Trim and collapse white space, so "Policy  Labs " and "Policy Labs" are one programme."""
    return re.sub(r"\s+", " ", text or "").strip()


def _has_control_characters(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def _insert(obj: object, duplicate_message: str, field_name: str) -> None:
    """Add and flush ``obj`` inside a savepoint, so that losing a race to a UNIQUE constraint
    (two people creating the same year at once) is a message by the field, not an error page."""
    try:
        with db.session.begin_nested():
            db.session.add(obj)
    except IntegrityError:
        raise ServiceError(duplicate_message, field=field_name) from None


# Years and lines --------------------------------------------------------------------------------

def create_year(actor: User, start_year: int) -> BudgetYear:
    """The financial year 1 April ``start_year`` to 31 March the year after."""
    _require_team(actor)
    if not FIRST_START_YEAR <= start_year <= LAST_START_YEAR:
        raise ServiceError(f"Enter a year from {FIRST_START_YEAR} to {LAST_START_YEAR}", field="start_year")
    label = year_label(start_year)
    duplicate = f"The financial year {label} already exists"
    starts_on = date(start_year, 4, 1)
    if db.session.scalar(select(BudgetYear.id).where(BudgetYear.starts_on == starts_on)) is not None:
        raise ServiceError(duplicate, field="start_year")
    year = BudgetYear(label=label, starts_on=starts_on, ends_on=date(start_year + 1, 3, 31))
    _insert(year, duplicate, "start_year")
    audit.record("budget_year.created", "budget_year", year.id, {
        "before": None,
        "after": {"label": year.label, "starts_on": year.starts_on.isoformat(), "ends_on": year.ends_on.isoformat()},
    }, actor=actor)
    return year


def create_line(actor: User, year: BudgetYear, programme: str, total_pence: int,
                cap_per_call_off_pence: int | None) -> BudgetLine:
    """A programme's money in ``year``. ``cap_per_call_off_pence`` None: call-offs are not capped."""
    _require_team(actor)
    programme = _one_line(programme)
    if not programme:
        raise ServiceError("Enter the name of the programme", field="programme")
    if len(programme) > PROGRAMME_LIMIT:
        raise ServiceError(f"Programme must be {PROGRAMME_LIMIT} characters or fewer", field="programme")
    if _has_control_characters(programme):
        raise ServiceError("Programme must be on one line, without special characters", field="programme")
    if total_pence <= 0:
        raise ServiceError("Enter a total of more than £0", field="total")
    if cap_per_call_off_pence is not None and cap_per_call_off_pence <= 0:
        raise ServiceError("Enter a cap of more than £0, or leave it empty if call-offs have no cap",
                           field="cap_per_call_off")
    # Case-insensitive, so "Policy labs" is not a second Policy Labs line; the database's UNIQUE
    # constraint (exact text) still settles a race between two identical requests.
    taken = db.session.scalar(select(BudgetLine.programme).where(
        BudgetLine.year_id == year.id, func.lower(BudgetLine.programme) == programme.lower()))
    if taken is not None:
        raise ServiceError(f"{year.label} already has a {taken} line", field="programme")
    duplicate = f"{year.label} already has a {programme} line"
    line = BudgetLine(year_id=year.id, programme=programme, total_pence=total_pence,
                      cap_per_call_off_pence=cap_per_call_off_pence, allocated_pence=0)
    _insert(line, duplicate, "programme")
    audit.record("budget_line.created", "budget_line", line.id, {
        "year": year.label,
        "before": None,
        "after": {"programme": programme, "total_pence": total_pence,
                  "cap_per_call_off_pence": cap_per_call_off_pence, "allocated_pence": 0},
    }, actor=actor)
    return line


def _lock(model: type, object_id: int):
    """Load a row afresh and, on PostgreSQL, lock it until the transaction ends, so the "before"
    the audit log records is the value really replaced. (SQLite: every transaction already holds
    the write lock from BEGIN IMMEDIATE.) The conditional UPDATEs still enforce the limits."""
    return db.session.scalars(
        select(model).where(model.id == object_id).with_for_update().execution_options(populate_existing=True)
    ).one()


def change_line_total(actor: User, line: BudgetLine, total_pence: int) -> BudgetLine:
    """Raise or lower a line's total, never below what is already allocated from it."""
    _require_team(actor)
    if total_pence < 0:
        raise ServiceError("Enter a total of £0 or more", field="total")
    line = _lock(BudgetLine, line.id)
    before = line.total_pence
    changed = db.session.execute(
        update(BudgetLine)
        .where(BudgetLine.id == line.id, BudgetLine.allocated_pence <= total_pence)
        .values(total_pence=total_pence)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(line)
    if changed != 1:
        raise ServiceError(f"{money(line.allocated_pence)} is already allocated from this line. "
                           f"Enter a total of {money(line.allocated_pence)} or more, or reduce allocations first",
                           field="total")
    audit.record("budget_line.total_changed", "budget_line", line.id, {
        "year_id": line.year_id,
        "programme": line.programme,
        "before": {"total_pence": before},
        "after": {"total_pence": line.total_pence},
        "allocated_pence": line.allocated_pence,
    }, actor=actor)
    return line


# Allocations ------------------------------------------------------------------------------------

def cap_hint(line: BudgetLine) -> str | None:
    """What to tell someone allocating more than a call-off may be worth, or None."""
    if line.cap_per_call_off_pence is None:
        return None
    return (f"Each {line.programme} call-off is capped at {money(line.cap_per_call_off_pence)}. "
            "An allocation can be larger, because a project may have several call-offs.")


def _not_enough_left(line: BudgetLine, amount_pence: int) -> ServiceError:
    left = line.total_pence - line.allocated_pence
    return ServiceError(f"There is not enough left to allocate on {line.programme} {line.year.label}: "
                        f"{money(left)} is left, and you asked for {money(amount_pence)}", field="amount")


def _take_from_line(line: BudgetLine, amount_pence: int) -> None:
    """Add ``amount_pence`` to the line's allocated total, never past its total: one conditional
    UPDATE checked by its row count (DESIGN 5). ``line`` is refreshed either way."""
    taken = db.session.execute(
        update(BudgetLine)
        .where(BudgetLine.id == line.id, BudgetLine.allocated_pence + amount_pence <= BudgetLine.total_pence)
        .values(allocated_pence=BudgetLine.allocated_pence + amount_pence)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(line)
    if taken != 1:
        raise _not_enough_left(line, amount_pence)


def _check_project_title(title: str) -> str:
    title = _one_line(title)
    if not title:
        raise ServiceError("Enter the title of the funded project", field="project_title")
    if len(title) > PROJECT_TITLE_LIMIT:
        raise ServiceError(f"Project title must be {PROJECT_TITLE_LIMIT} characters or fewer", field="project_title")
    if _has_control_characters(title):
        raise ServiceError("Project title must be on one line, without special characters", field="project_title")
    return title


def allocate(actor: User, line: BudgetLine, organisation: Organisation, project_title: str,
             amount_pence: int) -> Allocation:
    """Allocate money from ``line`` to a funded project of ``organisation``.

    Only organisations that may buy from the DPS (Full and Associate Members that are contracting
    authorities, and the network) can hold an allocation: it is spent through their call-offs.
    An allocation may be more than the line's cap per call-off (see ``cap_hint``).
    """
    _require_team(actor)
    reason = buyer_ineligibility(organisation)
    if reason:
        raise ServiceError(f"{reason} It cannot receive an allocation.", field="organisation")
    title = _check_project_title(project_title)
    if amount_pence <= 0:
        raise ServiceError("Enter an amount of more than £0", field="amount")
    _take_from_line(line, amount_pence)
    allocation = Allocation(line_id=line.id, organisation_id=organisation.id, project_title=title,
                            amount_pence=amount_pence, committed_pence=0)
    db.session.add(allocation)
    db.session.flush()
    # The line's total after this UPDATE, read while holding its row lock: exact, not a guess.
    audit.record("allocation.created", "allocation", allocation.id, {
        "line_id": line.id,
        "year": line.year.label,
        "programme": line.programme,
        "organisation_id": organisation.id,
        "before": None,
        "after": {"project_title": title, "amount_pence": amount_pence, "committed_pence": 0},
        "line_allocated_pence": {"before": line.allocated_pence - amount_pence, "after": line.allocated_pence},
    }, actor=actor)
    return allocation


def change_allocation(actor: User, allocation: Allocation, amount_pence: int) -> Allocation:
    """Change an allocation's amount: never below what its call-offs have committed, and never
    taking its line past the line's total."""
    _require_team(actor)
    if amount_pence <= 0:
        raise ServiceError("Enter an amount of more than £0", field="amount")
    allocation = _lock(Allocation, allocation.id)
    before = allocation.amount_pence
    line = allocation.line
    # The allocation first: the guard on amount_pence means the line moves by exactly the
    # difference from the amount really replaced, even if another change slipped in meanwhile.
    changed = db.session.execute(
        update(Allocation)
        .where(Allocation.id == allocation.id, Allocation.amount_pence == before,
               Allocation.committed_pence <= amount_pence)
        .values(amount_pence=amount_pence)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(allocation)
    if changed != 1:
        if allocation.committed_pence > amount_pence:
            raise ServiceError(f"{money(allocation.committed_pence)} of this allocation is already committed to "
                               f"call-offs. Enter an amount of {money(allocation.committed_pence)} or more",
                               field="amount")
        raise ServiceError("Someone changed this allocation at the same time. Check its amount and try again",
                           field="amount")
    difference = amount_pence - before
    if difference > 0:
        _take_from_line(line, difference)
    elif difference < 0:
        # Giving money back can only lower the line's allocated total, which stays >= 0 because
        # this allocation's own amount was part of it.
        db.session.execute(
            update(BudgetLine).where(BudgetLine.id == line.id)
            .values(allocated_pence=BudgetLine.allocated_pence + difference)
            .execution_options(synchronize_session=False))
        db.session.refresh(line)
    audit.record("allocation.amount_changed", "allocation", allocation.id, {
        "line_id": line.id,
        "organisation_id": allocation.organisation_id,
        "project_title": allocation.project_title,
        "before": {"amount_pence": before},
        "after": {"amount_pence": allocation.amount_pence},
        "committed_pence": allocation.committed_pence,
        "line_allocated_pence": {"before": line.allocated_pence - difference, "after": line.allocated_pence},
    }, actor=actor)
    return allocation


# Call-offs charged to an allocation --------------------------------------------------------------

def _not_enough_in(project_title: str, left_pence: int, amount_pence: int, field_name: str | None) -> ServiceError:
    return ServiceError(f"There is not enough left in “{project_title}”: {money(left_pence)} remains, "
                        f"and this call-off needs {money(amount_pence)}", field=field_name)


def check_call_off(allocation: Allocation, amount_pence: int, *, field_name: str | None = "value") -> None:
    """The one guard on a call-off's value: never over its line's cap per call-off, never more
    than the allocation has left. Called when the award is decided, so no letter promises what
    the budget cannot pay; ServiceError names ``field_name``.

    The cap is checked only here. A line's cap is fixed when the line is made and an award's
    value when it is decided, so what passes here still passes at confirmation; what may have
    changed by then is what is left, which ``commit_to_budget`` settles."""
    line = allocation.line
    cap = line.cap_per_call_off_pence
    if cap is not None and amount_pence > cap:
        raise ServiceError(f"{line.programme} call-offs are capped at {money(cap)} each", field=field_name)
    left = allocation.amount_pence - allocation.committed_pence
    if amount_pence > left:
        raise _not_enough_in(allocation.project_title, left, amount_pence, field_name)


def commit_to_budget(allocation_id: int, amount_pence: int) -> int:
    """Commit ``amount_pence`` of an allocation, never past its amount, even with many awards
    confirmed at the same moment: one conditional UPDATE, checked by what it returns (DESIGN 5).
    The CHECK constraint on allocations is the last line of defence. Returns the allocation's
    committed amount after it.

    The UPDATE takes the allocation's row lock, which every other confirmation charged to it
    waits for until this transaction ends: callers make it their last change before commit."""
    committed = db.session.execute(
        update(Allocation)
        .where(Allocation.id == allocation_id, Allocation.committed_pence + amount_pence <= Allocation.amount_pence)
        .values(committed_pence=Allocation.committed_pence + amount_pence)
        .returning(Allocation.committed_pence)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if committed is None:
        title, amount, committed = db.session.execute(
            select(Allocation.project_title, Allocation.amount_pence, Allocation.committed_pence)
            .where(Allocation.id == allocation_id)).one()
        raise _not_enough_in(title, amount - committed, amount_pence, None)
    allocation = db.session.identity_map.get(db.session.identity_key(Allocation, allocation_id))
    if allocation is not None:  # already loaded: show it the committed amount, without a query
        set_committed_value(allocation, "committed_pence", committed)
    return committed


# The dashboard ----------------------------------------------------------------------------------

@dataclass
class Figures:
    """Money at one level (a line, or a year's lines together), all in pence."""

    total: int = 0
    allocated: int = 0
    committed: int = 0
    paid: int = 0

    @property
    def remaining(self) -> int:
        """Left to allocate."""
        return self.total - self.allocated

    @property
    def uncommitted(self) -> int:
        """Allocated, but not yet committed to call-offs."""
        return self.allocated - self.committed

    def add(self, other: "Figures") -> None:
        self.total += other.total
        self.allocated += other.allocated
        self.committed += other.committed
        self.paid += other.paid


@dataclass
class LineSummary:
    id: int
    programme: str
    cap_per_call_off_pence: int | None
    allocation_count: int
    figures: Figures


@dataclass
class YearSummary:
    id: int
    label: str
    starts_on: date
    ends_on: date
    lines: list[LineSummary] = field(default_factory=list)
    totals: Figures = field(default_factory=Figures)


def dashboard(year: BudgetYear | None = None) -> list[YearSummary]:
    """Every year (latest first), or only ``year``, with each line's total, allocated, committed
    and paid money. Three queries, whatever the number of years, lines and allocations."""
    years_stmt = select(BudgetYear).order_by(BudgetYear.starts_on.desc())
    if year is not None:
        years_stmt = years_stmt.where(BudgetYear.id == year.id)
    summaries = {y.id: YearSummary(y.id, y.label, y.starts_on, y.ends_on) for y in db.session.scalars(years_stmt)}
    if not summaries:
        return []

    # Allocations per line (amounts and commitments), then payments per line: two separate
    # GROUP BYs, because joining call-offs into the first would count an allocation once per
    # call-off.
    lines_stmt = (
        select(BudgetLine.id, BudgetLine.year_id, BudgetLine.programme, BudgetLine.total_pence,
               BudgetLine.cap_per_call_off_pence, BudgetLine.allocated_pence,
               func.coalesce(func.sum(Allocation.amount_pence), 0),
               func.coalesce(func.sum(Allocation.committed_pence), 0),
               func.count(Allocation.id))
        .outerjoin(Allocation, Allocation.line_id == BudgetLine.id)
        .where(BudgetLine.year_id.in_(summaries))
        .group_by(BudgetLine.id, BudgetLine.year_id, BudgetLine.programme, BudgetLine.total_pence,
                  BudgetLine.cap_per_call_off_pence, BudgetLine.allocated_pence)
        .order_by(BudgetLine.programme)
    )
    paid_stmt = (
        select(Allocation.line_id, func.coalesce(func.sum(CallOff.paid_pence), 0))
        .join(CallOff, CallOff.allocation_id == Allocation.id)
        .join(BudgetLine, BudgetLine.id == Allocation.line_id)
        .where(BudgetLine.year_id.in_(summaries))
        .group_by(Allocation.line_id)
    )
    paid = {line_id: int(amount) for line_id, amount in db.session.execute(paid_stmt)}
    for (line_id, year_id, programme, total, cap, counter, allocated, committed,
         count) in db.session.execute(lines_stmt):
        if counter != allocated:
            # The running total guards the limit; the rows are the truth. They always agree unless
            # something wrote to the database around the services.
            log.error("Budget line %s: allocated_pence is %s but its allocations add up to %s",
                      line_id, counter, allocated)
        figures = Figures(total=int(total), allocated=int(allocated), committed=int(committed),
                          paid=paid.get(line_id, 0))
        summary = summaries[year_id]
        summary.lines.append(LineSummary(line_id, programme, cap, int(count), figures))
        summary.totals.add(figures)
    return list(summaries.values())


@dataclass
class AllocationRow:
    allocation: Allocation
    paid_pence: int


def allocations_of(*, year: BudgetYear | None = None, line: BudgetLine | None = None,
                   organisation_id: int | None = None) -> list[AllocationRow]:
    """Allocations with the money paid on their call-offs, in one query, by year, programme and
    organisation. Narrow it to a year, a line or an organisation."""
    paid = (
        select(CallOff.allocation_id, func.sum(CallOff.paid_pence).label("paid"))
        .group_by(CallOff.allocation_id)
        .subquery()
    )
    stmt = (
        select(Allocation, func.coalesce(paid.c.paid, 0))
        .join(Allocation.line).join(BudgetLine.year).join(Allocation.organisation)
        .outerjoin(paid, paid.c.allocation_id == Allocation.id)
        .options(contains_eager(Allocation.organisation), contains_eager(Allocation.line).contains_eager(BudgetLine.year))
        .order_by(BudgetYear.starts_on.desc(), BudgetLine.programme, Organisation.name, Allocation.project_title,
                  Allocation.id)
    )
    if year is not None:
        stmt = stmt.where(BudgetLine.year_id == year.id)
    if line is not None:
        stmt = stmt.where(Allocation.line_id == line.id)
    if organisation_id is not None:
        stmt = stmt.where(Allocation.organisation_id == organisation_id)
    return [AllocationRow(allocation, int(amount)) for allocation, amount in db.session.execute(stmt)]


def call_offs_of(allocation: Allocation) -> list[CallOff]:
    """The call-offs charged to ``allocation``, oldest first, with their suppliers."""
    return list(db.session.scalars(
        select(CallOff).where(CallOff.allocation_id == allocation.id)
        .options(joinedload(CallOff.supplier)).order_by(CallOff.created_at, CallOff.id)))


def eligible_recipients() -> list[Organisation]:
    """Organisations that may hold an allocation, by name: those that may buy from the DPS."""
    candidates = db.session.scalars(
        select(Organisation).where(Organisation.kind != "supplier").order_by(Organisation.name))
    return [org for org in candidates if buyer_ineligibility(org) is None]
