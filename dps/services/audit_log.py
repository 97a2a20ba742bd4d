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
- The choices offered (actions and object types present in the log) are read with a "skip
  scan" (a recursive query that jumps from one distinct value to the next in the index), so they
  cost one index probe per distinct value, not a pass over the log.
- The organisation is typed, not chosen from a list (at national scale there are over ten
  thousand): ``find_organisation`` resolves the name, ``suggest_organisations`` feeds the
  page's autocomplete, both off the organisations' name index (``_starting_with``).

Nothing here runs verify_chain: it reads every row. ``flask --app dps audit verify`` does that.

Sealed means sealed in the log too (issue 14): before a competition's tender deadline, the
events of its bids (``bid.draft_saved``, ``bid.document_attached``, ``bid.document_detached``,
``bid.submitted``, ``bid.withdrawn``: every event whose object is a bid) are shown here and in the
audit export as "bid activity" on the competition, without who, which organisation, which bid,
the IP address or the data; filters by organisation, action or object leave them out (a filter
that found them would say which supplier is bidding). From the deadline on they are shown in
full. Only what is shown changes: the stored rows, their hashes and ``audit verify`` do not.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Select, String, and_, cast, exists, func, literal, not_, or_, select, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable

from .. import clock
from ..exports import Filters
from ..extensions import db
from ..models import AuditEvent, Bid, Competition, Organisation
from ..pagination import count

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
        if self.organisation_id is not None or self.object_type or self.action:
            # Which supplier is bidding is sealed: a filter must not find a sealed bid's events.
            found.append(not_(and_(AuditEvent.object_type == BID_OBJECT,
                                   AuditEvent.object_id.in_(_sealed_bid_object_ids()))))
        return found


# Sealed bid events ---------------------------------------------------------------------------

BID_OBJECT = "bid"
SEALED_ACTION = "bid activity"
SEALED_NOTE = "Sealed until the tender deadline: who, which bid and the details are shown from then on."


def _sealed_bids_statement(bid_ids=None) -> Select:
    """(bid id, competition id) of the bids whose competition's tender deadline is still to come."""
    stmt = (select(Bid.id, Bid.competition_id).join(Competition, Competition.id == Bid.competition_id)
            .where(Competition.tender_deadline > clock.now()))
    return stmt if bid_ids is None else stmt.where(Bid.id.in_(bid_ids))


def _sealed_bid_object_ids():
    """The object ids (text) of audit events of sealed bids, as a subquery."""
    return (select(cast(Bid.id, String)).join(Competition, Competition.id == Bid.competition_id)
            .where(Competition.tender_deadline > clock.now()))


def sealed_bids() -> dict[str, int]:
    """Every sealed bid: its id as an audit event's object id, and its competition's id. Bids of
    competitions still open for tenders only, so small whatever the size of the log."""
    return {str(bid_id): competition_id for bid_id, competition_id in db.session.execute(_sealed_bids_statement())}


def _sealed_among(events: list[AuditEvent]) -> dict[str, int]:
    """Of these events' bids, the sealed ones (one query, none when no event is a bid's)."""
    ids = {int(e.object_id) for e in events
           if e.object_type == BID_OBJECT and e.object_id and e.object_id.isascii() and e.object_id.isdigit()
           and len(e.object_id) <= 18}
    if not ids:
        return {}
    return {str(bid_id): competition_id for bid_id, competition_id in db.session.execute(_sealed_bids_statement(ids))}


@dataclass
class LogRow:
    event: AuditEvent
    organisation_name: str | None
    # The competition of the sealed bid the event is of (None: shown in full).
    sealed_competition_id: int | None = None

    @property
    def sealed(self) -> bool:
        return self.sealed_competition_id is not None

    @property
    def when(self) -> str:
        return exact_time(self.event.occurred_at)

    @property
    def who(self) -> str:
        return "Sealed" if self.sealed else self.event.actor_label

    @property
    def organisation(self) -> str | None:
        return None if self.sealed else self.organisation_name

    @property
    def action(self) -> str:
        return SEALED_ACTION if self.sealed else self.event.action

    @property
    def object_label(self) -> str:
        if self.sealed:
            return f"competition {self.sealed_competition_id}"
        e = self.event
        return e.object_type + (f" {e.object_id}" if e.object_id is not None else "")

    @property
    def ip_address(self) -> str | None:
        return None if self.sealed else self.event.ip_address

    @property
    def data(self) -> dict:
        return {} if self.sealed else self.event.data

    @property
    def data_json(self) -> str:
        """The event's data, pretty-printed (the template escapes it)."""
        return json.dumps(self.data, indent=2, sort_keys=True, ensure_ascii=False)

    @property
    def has_before_after(self) -> bool:
        data = self.data
        return isinstance(data, dict) and ("before" in data or "after" in data)


def _rows(found) -> list[LogRow]:
    """LogRows of (event, organisation name) pairs, sealed bid events marked (one query)."""
    pairs = list(found)
    sealed = _sealed_among([event for event, _name in pairs])
    return [LogRow(event, name, sealed.get(event.object_id) if event.object_type == BID_OBJECT else None)
            for event, name in pairs]


# The audit export's columns, by position (dps.exports.tables.AUDIT_COLUMNS): what a sealed bid
# event's row shows instead.
_EXPORT_ACTOR, _EXPORT_ORGANISATION, _EXPORT_ACTION, _EXPORT_OBJECT_TYPE, _EXPORT_OBJECT_ID = 3, 4, 5, 6, 7
_EXPORT_DATA, _EXPORT_IP = 8, 9


def seal_export_rows(rows):
    """The audit export's rows (``dps.exports.tables.audit_rows``), each sealed bid event's shown
    as bid activity on its competition: no actor, organisation, bid, data or IP address. The
    sealed bids are read once, before the first row; the rows stream on in constant memory. The
    id, times and hashes stay (the chain's order and links can still be followed; the hash of a
    sealed row can be recomputed from the full export taken after the deadline)."""
    sealed = None
    for row in rows:
        if sealed is None:
            sealed = sealed_bids()
        competition_id = sealed.get(row[_EXPORT_OBJECT_ID]) if row[_EXPORT_OBJECT_TYPE] == BID_OBJECT else None
        if competition_id is None:
            yield row
            continue
        shown = list(row)
        shown[_EXPORT_ACTOR] = "Sealed"
        shown[_EXPORT_ORGANISATION] = None
        shown[_EXPORT_ACTION] = SEALED_ACTION
        shown[_EXPORT_OBJECT_TYPE] = "competition"
        shown[_EXPORT_OBJECT_ID] = str(competition_id)
        shown[_EXPORT_DATA] = json.dumps({"note": SEALED_NOTE}, ensure_ascii=False)
        shown[_EXPORT_IP] = None
        yield tuple(shown)


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
            rows = _rows(reversed(found[:size]))
            if not rows:
                return LogPage(rows)
            return LogPage(rows, newer_after=rows[0].event.id if len(found) > size else None,
                           older_before=rows[-1].event.id if beyond_exists(rows[-1], older=True) else None)
        before = None

    pivot = _pivot(filters, before)
    found = db.session.execute(_statement(filters, before=pivot, size=size)).all()
    rows = _rows(found[:size])
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
    """What the filter form offers: only values present in the log. Two queries."""
    return Choices(actions=_distinct("action"), object_types=_distinct("object_type"))


# The organisation filter: a name typed in ------------------------------------------------------
#
# Both lookups read ix_organisations_name_lower (lower(name), id): a whole name is an equality on
# it, the start of a name a range of it, and either way only the rows shown are read.

# Names sent to the autocomplete; organisations offered to pick from when a name is not exact.
SUGGESTIONS = 10
CANDIDATES = 5
# Every string that starts with p sorts from p to p + the last code point, in the code point
# order of SQLite and of PostgreSQL's C and C.UTF-8 collations. LIKE keeps the match exact in
# any other collation (where the range might also leave a name out).
_LAST_CODE_POINT = "\U0010ffff"


@dataclass(frozen=True)
class OrganisationMatch:
    id: int
    name: str
    kind: str
    identifier_scheme: str | None
    identifier_id: str | None

    @property
    def identifier(self) -> str | None:
        """The org-id.guide identifier, like GB-COH-01234567, to tell same-named ones apart."""
        if self.identifier_scheme and self.identifier_id:
            return f"{self.identifier_scheme}-{self.identifier_id}"
        return None


@dataclass(frozen=True)
class OrganisationLookup:
    """What a typed name found: the one organisation it names, or else the first CANDIDATES of
    those it might mean and how many there are. ``same_name``: the candidates are all called
    exactly what was typed (names are not unique)."""

    found: OrganisationMatch | None = None
    candidates: list[OrganisationMatch] = field(default_factory=list)
    count: int = 0
    same_name: bool = False


_MATCH_COLUMNS = (Organisation.id, Organisation.name, Organisation.kind, Organisation.identifier_scheme,
                  Organisation.identifier_id)
_BY_NAME = (func.lower(Organisation.name), Organisation.id)


def _called(name: str):
    """The organisation's name is ``name``, whatever the case of either."""
    return func.lower(Organisation.name) == func.lower(literal(name))


def _starting_with(prefix: str):
    """The organisation's name starts with ``prefix``, whatever the case; ``%`` and ``_`` in it
    match only themselves. A range of the name index, then LIKE on what the range holds."""
    lowered, start = func.lower(Organisation.name, type_=String), func.lower(literal(prefix), type_=String)
    escaped = prefix.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return and_(lowered >= start, lowered < start.concat(_LAST_CODE_POINT),
                lowered.like(func.lower(literal(escaped + "%")), escape="/"))


def suggest_organisations(prefix: str) -> list[str]:
    """The names, by name, of up to SUGGESTIONS organisations whose names start with ``prefix``:
    what the organisation filter's autocomplete offers. One read of the name index."""
    if not prefix:
        return []
    names = db.session.scalars(select(Organisation.name).where(_starting_with(prefix))
                               .order_by(*_BY_NAME).limit(SUGGESTIONS))
    return list(dict.fromkeys(names))  # two organisations of one name: offered once, told apart on the page


def find_organisation(name: str, chosen_id: int | None = None) -> OrganisationLookup:
    """The organisation a filter names: the one picked on the page (``chosen_id``) while the
    name still is its name; else the one called ``name``, whatever the case; else the
    candidates, those called that (when several are) or whose names start with it. At most four
    queries (a pick, the name, its start and their count), each a read of an index."""
    if chosen_id is not None:
        picked = db.session.execute(select(*_MATCH_COLUMNS).where(Organisation.id == chosen_id, _called(name))).first()
        if picked is not None:
            return OrganisationLookup(found=OrganisationMatch(*picked))
    called = [OrganisationMatch(*row) for row in db.session.execute(
        select(*_MATCH_COLUMNS).where(_called(name)).order_by(Organisation.id).limit(CANDIDATES + 1))]
    if len(called) == 1:
        return OrganisationLookup(found=called[0])
    if called:
        how_many = len(called) if len(called) <= CANDIDATES else count(select(Organisation.id).where(_called(name)))
        return OrganisationLookup(candidates=called[:CANDIDATES], count=how_many, same_name=True)
    starting = select(*_MATCH_COLUMNS).where(_starting_with(name))
    candidates = [OrganisationMatch(*row) for row in db.session.execute(starting.order_by(*_BY_NAME).limit(CANDIDATES))]
    how_many = len(candidates) if len(candidates) < CANDIDATES else count(starting)
    return OrganisationLookup(candidates=candidates, count=how_many)


def event(event_id: int) -> LogRow | None:
    found = db.session.execute(
        select(AuditEvent, Organisation.name)
        .outerjoin(Organisation, Organisation.id == AuditEvent.organisation_id)
        .where(AuditEvent.id == event_id)).first()
    return _rows([tuple(found)])[0] if found else None
