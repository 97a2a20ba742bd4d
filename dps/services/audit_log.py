"""Reading the audit log: the DPS team's and auditors' page (DESIGN 5, issue 5 point 1).

The log grows without end (a million rows is the design figure), so every read here is shaped
to use an index and read only the rows it shows:

- A page is ``WHERE <filters> [AND id < :before | id > :after] ORDER BY id LIMIT 51``: keyset
  pagination, never OFFSET (an OFFSET reads and throws away every row before the page). The
  links carry the id of the event the next page starts from.
- Each filter has an index ending in id (migration 0004): organisation (organisation_id, id),
  action (action, id), object (object_type, object_id, id), so "newest first, older than this
  id" is one index range read backwards. The action filter is an exact match, not a prefix:
  a prefix (``competition.%``) spans many actions, so the rows would no longer come out of the
  index in id order and the database would have to sort every matching row to find the newest 50.
- Dates are London whole days, turned into occurred_at bounds (``dps.exports.Filters``, the same
  rule as the exports), and a date-filtered page is ordered by (occurred_at, id), so that it is
  read straight off the occurred_at index range rather than sorting every event of the period
  (``_order``). scripts/benchmark_audit_log.py prints the plans and timings at a million rows.
- The choices offered (actions, object types, organisations present in the log) are read with
  a "skip scan" (a recursive query that jumps from one distinct value to the next in the
  index), so they cost one index probe per distinct value, not a pass over the log.

Nothing here runs verify_chain: it reads every row. ``flask --app dps audit verify`` does that.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Select, and_, exists, or_, select, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable

from .. import clock
from ..exports import Filters
from ..extensions import db
from ..models import AuditEvent, Organisation

PAGE_SIZE = 50


@dataclass(frozen=True)
class LogFilters:
    start: date | None = None
    end: date | None = None
    organisation_id: int | None = None
    object_type: str | None = None
    object_id: str | None = None
    action: str | None = None

    @property
    def by_time(self) -> bool:
        return self.start is not None or self.end is not None

    def conditions(self) -> list:
        """The WHERE clauses, each one an index can answer (see the module docstring)."""
        period = Filters(self.start, self.end)
        found = []
        if period.start_utc is not None:
            found.append(AuditEvent.occurred_at >= period.start_utc)
        if period.end_utc is not None:
            found.append(AuditEvent.occurred_at < period.end_utc)
        if self.organisation_id is not None:
            found.append(AuditEvent.organisation_id == self.organisation_id)
        if self.object_type:
            found.append(AuditEvent.object_type == self.object_type)
            if self.object_id:
                found.append(AuditEvent.object_id == self.object_id)
        if self.action:
            found.append(AuditEvent.action == self.action)
        return found


@dataclass
class LogRow:
    event: AuditEvent
    organisation_name: str | None

    @property
    def when(self) -> str:
        return exact_time(self.event.occurred_at)

    @property
    def data_json(self) -> str:
        """The event's data, pretty-printed (the template escapes it)."""
        return json.dumps(self.event.data, indent=2, sort_keys=True, ensure_ascii=False)

    @property
    def has_before_after(self) -> bool:
        data = self.event.data
        return isinstance(data, dict) and ("before" in data or "after" in data)


@dataclass
class LogPage:
    rows: list[LogRow]
    # The id to pass as ``after`` for the newer page, or None if there are no newer rows.
    newer_after: int | None = None
    # The id to pass as ``before`` for the older page, or None if there are no older rows.
    older_before: int | None = None


@dataclass
class Choices:
    actions: list[str] = field(default_factory=list)
    object_types: list[str] = field(default_factory=list)
    organisations: list[tuple[int, str]] = field(default_factory=list)


def exact_time(moment: datetime | None) -> str:
    """'3 June 2024, 09:00:05 BST': the log is read to the second, in UK time, saying which."""
    if moment is None:
        return ""
    local = clock.to_london(moment)
    return f"{local.day} {local:%B %Y}, {local:%H:%M:%S} {local.tzname()}"


def _order(filters: LogFilters, newest_first: bool) -> list:
    """Id order; with a date filter, time order (occurred_at, then id).

    A date filter is a range of the occurred_at index, and that index holds its rows in time
    order (on SQLite with the id after it; on PostgreSQL the database sorts only events of the
    same microsecond). Ordering by time lets the page be read straight off that range instead of
    sorting every event of the period by id. Times follow ids unless the clock was set back
    (a training sandbox restarted at an earlier DPS_CLOCK): then the date-filtered view is in
    time order, which is what a date filter asks for."""
    columns = [AuditEvent.occurred_at, AuditEvent.id] if filters.by_time else [AuditEvent.id]
    return [c.desc() if newest_first else c.asc() for c in columns]


def _beyond(filters: LogFilters, pivot: tuple[datetime, int], older: bool):
    """Events older (or newer) than ``pivot`` = (occurred_at, id) in the page's order."""
    at, event_id = pivot
    if not filters.by_time:
        return AuditEvent.id < event_id if older else AuditEvent.id > event_id
    if older:  # the first term is the index range; the second breaks ties within one moment
        return and_(AuditEvent.occurred_at <= at, or_(AuditEvent.occurred_at < at, AuditEvent.id < event_id))
    return and_(AuditEvent.occurred_at >= at, or_(AuditEvent.occurred_at > at, AuditEvent.id > event_id))


def _pivot(filters: LogFilters, event_id: int | None) -> tuple[datetime, int] | None:
    """Where a page starts. Id order needs only the id; time order needs that event's time too
    (one primary key lookup). An id that names no event gives the newest page."""
    if event_id is None:
        return None
    if not filters.by_time:
        return (None, event_id)
    at = db.session.scalar(select(AuditEvent.occurred_at).where(AuditEvent.id == event_id))
    return None if at is None else (at, event_id)


def page_statement(filters: LogFilters, *, before: int | None = None, after: int | None = None,
                   size: int = PAGE_SIZE) -> Select:
    """The query ``page`` runs for these arguments (the benchmark and the tests EXPLAIN it)."""
    if after is not None and (pivot := _pivot(filters, after)) is not None:
        return _statement(filters, after=pivot, size=size)
    return _statement(filters, before=_pivot(filters, before), size=size)


def _statement(filters: LogFilters, *, before: tuple | None = None, after: tuple | None = None,
               size: int = PAGE_SIZE) -> Select:
    """``before``/``after`` are pivots, (occurred_at, id): with ``after`` it reads upwards from
    there, oldest first; otherwise downwards, newest first."""
    stmt = (select(AuditEvent, Organisation.name)
            .outerjoin(Organisation, Organisation.id == AuditEvent.organisation_id)
            .where(*filters.conditions()))
    if after is not None:
        return stmt.where(_beyond(filters, after, older=False)).order_by(*_order(filters, False)).limit(size + 1)
    if before is not None:
        stmt = stmt.where(_beyond(filters, before, older=True))
    return stmt.order_by(*_order(filters, True)).limit(size + 1)


def page(filters: LogFilters, *, before: int | None = None, after: int | None = None,
         size: int = PAGE_SIZE) -> LogPage:
    """One page of events matching ``filters``, newest first.

    ``before``: the page of events older than that event; ``after``: the page of events newer
    than it (the page just above). Neither: the newest events. At most three queries, whatever
    the size of the log: where the page starts (date filters only), the page, and whether
    anything lies on the other side of it."""
    conditions = filters.conditions()

    def key(row: LogRow) -> tuple[datetime, int]:
        return (row.event.occurred_at, row.event.id)

    def beyond_exists(row: LogRow, older: bool) -> bool:
        return bool(db.session.scalar(select(exists().where(*conditions, _beyond(filters, key(row), older)))))

    if after is not None:
        pivot = _pivot(filters, after)
        if pivot is not None:
            found = db.session.execute(_statement(filters, after=pivot, size=size)).all()
            rows = [LogRow(event, name) for event, name in reversed(found[:size])]
            if not rows:
                return LogPage(rows)
            return LogPage(rows, newer_after=rows[0].event.id if len(found) > size else None,
                           older_before=rows[-1].event.id if beyond_exists(rows[-1], older=True) else None)
        before = None

    pivot = _pivot(filters, before)
    found = db.session.execute(_statement(filters, before=pivot, size=size)).all()
    rows = [LogRow(event, name) for event, name in found[:size]]
    result = LogPage(rows, older_before=rows[-1].event.id if len(found) > size else None)
    if pivot is not None and rows and beyond_exists(rows[0], older=False):
        result.newer_after = rows[0].event.id
    return result


class _Explain(Executable, ClauseElement):
    """EXPLAIN of a statement, its parameters bound as in the real query."""

    inherit_cache = False

    def __init__(self, statement: Select, prefix: str):
        self.statement = statement
        self.prefix = prefix


@compiles(_Explain)
def _compile_explain(element: _Explain, compiler, **kw) -> str:
    return f"{element.prefix} {compiler.process(element.statement, **kw)}"


def explain(statement: Select) -> str:
    """The database's plan for ``statement``, as text (PostgreSQL EXPLAIN, SQLite EXPLAIN QUERY
    PLAN). For the tests and the benchmark: is each page an index scan?"""
    if db.session.get_bind().dialect.name == "postgresql":
        return "\n".join(row[0] for row in db.session.execute(_Explain(statement, "EXPLAIN")))
    return "\n".join(str(row[-1]) for row in db.session.execute(_Explain(statement, "EXPLAIN QUERY PLAN")))


# A skip scan, written once for each indexed column: from the smallest value, jump to the next
# larger one through the index until there is none. One index probe per distinct value.
_DISTINCT = """
WITH RECURSIVE present(value) AS (
    SELECT (SELECT {col} FROM audit_events WHERE {col} IS NOT NULL ORDER BY {col} LIMIT 1)
    UNION ALL
    SELECT (SELECT {col} FROM audit_events WHERE {col} > present.value ORDER BY {col} LIMIT 1)
    FROM present WHERE present.value IS NOT NULL
)
SELECT value FROM present WHERE value IS NOT NULL
"""


def _distinct(column: str) -> list:
    assert column in ("action", "object_type")  # never user input
    return sorted(db.session.scalars(text(_DISTINCT.format(col=column))))


def choices() -> Choices:
    """What the filter form offers: only values present in the log. Three queries."""
    organisations = [(org_id, name) for org_id, name in db.session.execute(text(
        _DISTINCT.format(col="organisation_id").replace(
            "SELECT value FROM present WHERE value IS NOT NULL",
            "SELECT organisations.id, organisations.name FROM organisations "
            "JOIN present ON organisations.id = present.value ORDER BY organisations.name, organisations.id")))]
    return Choices(actions=_distinct("action"), object_types=_distinct("object_type"),
                   organisations=organisations)


def event(event_id: int) -> LogRow | None:
    found = db.session.execute(
        select(AuditEvent, Organisation.name)
        .outerjoin(Organisation, Organisation.id == AuditEvent.organisation_id)
        .where(AuditEvent.id == event_id)).first()
    return LogRow(*found) if found else None
