"""The tabular reports (DESIGN 2 "Transparency duties", DESIGN 6): what a council's transparency
officer publishes each quarter, the contracts register, the Contracts Finder due list, the
quarterly award notices (reg 50) and the audit log.

Each report is a ``Table``: column headings with a kind (text, money, date, datetime, int, bool)
and a ``rows(filters)`` generator of plain values (pence, dates, aware datetimes), which
``csvout`` writes as CSV and ``xlsxout`` as one sheet of a workbook (``cells`` converts and
neutralises each value). Rows come from one query per table that selects only the columns it
needs (no object per row, so nothing is loaded lazily, one query whatever the number of rows),
executed as Core and streamed ``yield_per`` rows at a time (a server-side cursor on PostgreSQL),
the audit log's too. Memory stays flat however long the table.

Periods (``Filters``) are whole days in Europe/London, both ends inclusive. Each table says in
its description which date the period applies to.

Agreements: every row but the audit log's belongs to one agreement (competition -> lot ->
agreement) and says which, by its reference: an "Agreement" column, or for the Transparency Code
reports, whose columns follow the Code's published layout, an "Agreement reference" column
after all of the Code's. Only published agreements are ever read (a draft's lots could hold
test competitions); ``Filters.agreement`` narrows them to one, in the same query (a join on
the agreement, so still one query per table). The audit log is one hash chain for the whole
service and is always exported whole (``Table.by_agreement`` False).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache, partial
from typing import Any, Callable, Iterator

from sqlalchemy import DateTime, Dialect, Row, Select, String, Text, and_, cast, func, or_, select, type_coerce
from sqlalchemy.orm import aliased
from sqlalchemy.types import TypeDecorator, TypeEngine

from .. import clock
from ..extensions import db
from ..models import (
    Agreement,
    Allocation,
    AuditEvent,
    Award,
    BudgetLine,
    BudgetYear,
    CallOff,
    Competition,
    Lot,
    Organisation,
)
from ..models.competitions import STAGE_LABELS, Stage
from ..services.audit_log import seal_export_rows
from . import LONDON, Export, Filters, register
from .cells import KINDS, utc_iso
from .csvout import write_table

YIELD_PER = 1000
# Local Government Transparency Code 2015: tenders and contracts "over £5,000" (strictly).
TRANSPARENCY_OVER_PENCE = 5_000_00
# Contracts Finder: £25,000 excluding VAT up to and including 20 December 2022; from 21 December
# 2022 (PPN 11/20 and the Public Procurement (Agreement on Government Procurement) (Thresholds)
# (Amendment) Regulations 2021) £30,000 including VAT.
CONTRACTS_FINDER_CHANGE_DAY = date(2022, 12, 21)
CONTRACTS_FINDER_OLD_PENCE = 25_000_00
CONTRACTS_FINDER_NEW_PENCE = 30_000_00
CONTRACTS_FINDER_PUBLISH_DAYS = 90
# Reg 50(4): award notices of call-offs under a DPS may be grouped quarterly and sent within 30
# days of the end of each quarter.
AWARD_NOTICE_DAYS = 30
QUARTER_MONTHS = {1: "Jan–Mar", 2: "Apr–Jun", 3: "Jul–Sep", 4: "Oct–Dec"}
PROCUREMENT_ROUTE = "Mini-competition under the DPS (tender)"
SME_SIZES = ("micro", "small", "medium")
# Where a supplier's registered address may be someone's home, the public reports leave it out.
ADDRESS_WITHHELD_FORMS = ("sole_trader", "partnership")
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"


@dataclass(frozen=True)
class Column:
    heading: str
    kind: str = "text"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown column kind {self.kind!r}")


@dataclass(frozen=True)
class Table:
    name: str                  # the export's name: what the CLI and the web call it
    title: str
    description: str
    sheet: str                 # its sheet in the workbook (Excel allows 31 characters)
    columns: tuple[Column, ...]
    rows: Callable[[Filters], Iterator[tuple]]
    count: Callable[[Filters], int]
    # False: the table cannot be split by agreement and is always whole (the audit log).
    by_agreement: bool = True

    def __post_init__(self) -> None:
        if not 0 < len(self.sheet) <= 31:
            raise ValueError(f"sheet name {self.sheet!r} must be 1 to 31 characters")

    @property
    def headings(self) -> list[str]:
        return [c.heading for c in self.columns]


# Helpers --------------------------------------------------------------------------------------

def _within(column, filters: Filters) -> list:
    """The period as conditions on a UTC timestamp column: [start_utc, end_utc)."""
    clauses = []
    if filters.start_utc is not None:
        clauses.append(column >= filters.start_utc)
    if filters.end_utc is not None:
        clauses.append(column < filters.end_utc)
    return clauses


def _stream(statement: Select) -> Iterator[Row]:
    """Rows of ``statement``, fetched YIELD_PER at a time (a server-side cursor on PostgreSQL).

    Executed as Core on the session's connection (in its transaction): the rows are plain tuples
    of the columns, with none of the ORM's work for each row."""
    result = db.session.connection().execute(statement.execution_options(yield_per=YIELD_PER))
    try:
        yield from result
    finally:
        result.close()


def _count(statement: Select) -> int:
    return db.session.scalar(select(func.count()).select_from(statement.order_by(None).subquery())) or 0


class _Moment(TypeDecorator):
    """A UTCDateTime column as an export reads it: the same aware UTC datetimes, for less.

    UTCDateTime reads a moment through the driver's datetime, then ``datetime.replace`` to make
    it aware (on SQLite, which stores naive UTC text); at a million rows that is a second of the
    audit log's export. Here SQLite's text is read with its offset added, which is one C call,
    ``fromisoformat('2024-06-03 08:00:00.000000+00:00')``; PostgreSQL's aware datetimes are put in
    UTC as UTCDateTime does. For reading only: ``_moment(column)`` in a select list."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine:
        # SQLite: the stored text itself, unparsed.
        return dialect.type_descriptor(String() if dialect.name == "sqlite" else self.impl)

    def process_bind_param(self, value, dialect):
        raise TypeError("_Moment is for reading moments only; compare with the column itself")

    def process_result_value(self, value, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return datetime.fromisoformat(value + "+00:00")
        return value.astimezone(timezone.utc)


def _moment(column) -> Any:
    return type_coerce(column, _Moment())


def london_day(moment: datetime) -> date:
    return moment.astimezone(LONDON).date()


def _identifier(scheme: str | None, identifier: str | None) -> str | None:
    """org-id.guide form: GB-COH-01234567."""
    if scheme and identifier:
        return f"{scheme}-{identifier}"
    return None


def _address(legal_form: str | None, *parts: str | None) -> str | None:
    if legal_form in ADDRESS_WITHHELD_FORMS:
        return None
    return ", ".join(p.strip() for p in parts if p and p.strip()) or None


def _sme(size: str | None) -> bool | None:
    return None if size is None else size in SME_SIZES


def _lot(number: int, title: str) -> str:
    return f"Lot {number}: {title}"


def quarter_of(day: date) -> tuple[int, int]:
    return day.year, (day.month - 1) // 3 + 1


def quarter_label(year: int, quarter: int) -> str:
    """'2023 Q2 (Apr–Jun)': calendar quarters, as reg 50 groups them."""
    return f"{year} Q{quarter} ({QUARTER_MONTHS[quarter]})"


def quarter_end(year: int, quarter: int) -> date:
    if quarter == 4:
        return date(year, 12, 31)
    return date(year, 3 * quarter + 1, 1) - timedelta(days=1)


def award_notice_send_by(day: date) -> date:
    """The last day to send the award notice of a call-off entered into on ``day``."""
    return quarter_end(*quarter_of(day)) + timedelta(days=AWARD_NOTICE_DAYS)


def contracts_finder_threshold(day: date) -> int:
    """The threshold in force on ``day`` (London date the contract was entered into), in pence."""
    return CONTRACTS_FINDER_OLD_PENCE if day < CONTRACTS_FINDER_CHANGE_DAY else CONTRACTS_FINDER_NEW_PENCE


def _threshold_label(day: date) -> str:
    if day < CONTRACTS_FINDER_CHANGE_DAY:
        return "£25,000 excluding VAT (to 20 December 2022), compared with the value including VAT"
    return "£30,000 including VAT (from 21 December 2022)"


# Statuses of a published competition, as the buyer's pages name them.
Buyer = aliased(Organisation, name="buyer")
Supplier = aliased(Organisation, name="supplier")


def _of_agreement(filters: Filters) -> list:
    """Published agreements only (never a draft's), and only the one asked for if one was.
    Conditions on ``Agreement``, which the query joins through the competition's lot."""
    clauses = [Agreement.published_at.is_not(None)]
    if filters.agreement is not None:
        clauses.append(Agreement.reference == filters.agreement)
    return clauses


def _call_offs(*columns, filters: Filters, order_by: tuple = ()) -> Select:
    """Call-offs entered into (created: the award confirmed) inside the period, with their
    competition, its lot and agreement, buyer and supplier joined, oldest first (after
    ``order_by``, if given)."""
    return (select(*columns)
            .select_from(CallOff)
            .join(Competition, Competition.id == CallOff.competition_id)
            .join(Lot, Lot.id == Competition.lot_id)
            .join(Agreement, Agreement.id == Lot.agreement_id)
            .join(Buyer, Buyer.id == CallOff.buyer_organisation_id)
            .join(Supplier, Supplier.id == CallOff.supplier_organisation_id)
            .where(*_within(CallOff.created_at, filters), *_of_agreement(filters))
            .order_by(*order_by, CallOff.created_at, CallOff.id))


# Transparency Code: invitations to tender over £5,000 --------------------------------------------

TENDER_COLUMNS = (
    Column("Reference"), Column("Title"), Column("Description"), Column("Department"),
    Column("Start date", "date"), Column("End date", "date"), Column("Review date", "date"),
    Column("Estimated value", "money"), Column("Lot"), Column("Status"),
    # Not one of the Code's columns: after all of them, so the Code's layout is unchanged.
    Column("Agreement reference"),
)


def _tenders(filters: Filters, now: datetime) -> Select:
    # The status is the competition's stage (Competition.stage_at: the lifecycle's SQL form).
    return (select(Competition.reference, Competition.title, Competition.description, Buyer.name,
                   _moment(Competition.published_at), _moment(Competition.tender_deadline),
                   Competition.estimated_value_pence, Lot.number, Lot.title, Competition.stage_at(now),
                   Agreement.reference)
            .select_from(Competition)
            .join(Buyer, Buyer.id == Competition.buyer_organisation_id)
            .join(Lot, Lot.id == Competition.lot_id)
            .join(Agreement, Agreement.id == Lot.agreement_id)
            .where(Competition.published_at.is_not(None),
                   Competition.estimated_value_pence > TRANSPARENCY_OVER_PENCE,
                   *_within(Competition.published_at, filters), *_of_agreement(filters))
            .order_by(Competition.published_at, Competition.id))


def tender_rows(filters: Filters) -> Iterator[tuple]:
    for (reference, title, description, buyer, published_at, deadline, value, lot_number, lot_title,
         stage, agreement) in _stream(_tenders(filters, clock.now())):
        yield (reference, title, description, buyer, london_day(published_at), london_day(deadline), None,
               value, _lot(lot_number, lot_title), STAGE_LABELS[Stage(stage)].buyer, agreement)


TRANSPARENCY_TENDERS = Table(
    name="transparency-tenders",
    title="Transparency Code: invitations to tender over £5,000",
    description=("Local Government Transparency Code 2015, quarterly: every mini-competition published in the "
                 "period (by its publication date, UK time) with an estimated value over £5,000 including VAT. "
                 "Start date is the date it was published, end date the tender deadline. No review date is "
                 "recorded for a mini-competition, so that column is empty. The last column, after the Code's, is the "
                 "reference of the agreement the mini-competition was run under."),
    sheet="Transparency tenders",
    columns=TENDER_COLUMNS,
    rows=tender_rows,
    count=lambda filters: _count(_tenders(filters, clock.now())),
)


# Transparency Code: contracts over £5,000 ------------------------------------------------------

CONTRACT_COLUMNS = (
    Column("Reference"), Column("Title"), Column("Department"), Column("Description"),
    Column("Supplier name"), Column("Supplier registration number"), Column("Supplier identifier (org-id)"),
    Column("Supplier address"), Column("Total value (including VAT)", "money"),
    Column("Irrecoverable VAT", "money"), Column("Start date", "date"), Column("End date", "date"),
    Column("Review date", "date"), Column("Procurement route"), Column("SME", "bool"), Column("VCSE", "bool"),
    # Not one of the Code's columns: after all of them, so the Code's layout is unchanged.
    Column("Agreement reference"),
)


def _contracts(filters: Filters) -> Select:
    return _call_offs(
        CallOff.reference, Competition.title, Buyer.name, Competition.description, Supplier.name,
        Supplier.registration_number, Supplier.identifier_scheme, Supplier.identifier_id, Supplier.legal_form,
        Supplier.address_line_1, Supplier.address_line_2, Supplier.town, Supplier.postcode,
        CallOff.value_pence, CallOff.irrecoverable_vat_pence, CallOff.starts_on, CallOff.ends_on,
        Supplier.size, Supplier.is_vcse, Agreement.reference, filters=filters,
    ).where(CallOff.value_pence > TRANSPARENCY_OVER_PENCE)


def contract_rows(filters: Filters) -> Iterator[tuple]:
    for (reference, title, buyer, description, supplier, registration, scheme, identifier, legal_form,
         line_1, line_2, town, postcode, value, irrecoverable_vat, starts_on, ends_on, size,
         vcse, agreement) in _stream(_contracts(filters)):
        yield (reference, title, buyer, description, supplier, registration, _identifier(scheme, identifier),
               _address(legal_form, line_1, line_2, town, postcode), value, irrecoverable_vat, starts_on,
               ends_on, None, PROCUREMENT_ROUTE, _sme(size), vcse, agreement)


TRANSPARENCY_CONTRACTS = Table(
    name="transparency-contracts",
    title="Transparency Code: contracts over £5,000",
    description=("Local Government Transparency Code 2015, quarterly: every call-off contract entered into in the "
                 "period (the day its award was confirmed, UK time) worth over £5,000 including VAT. All came "
                 "from a tender (a mini-competition), none from a quote. The supplier's address is left out for "
                 "sole traders and partnerships, where it may be a home. No review date is recorded for a "
                 "call-off, so that column is empty. The last column, after the Code's, is the reference of the "
                 "agreement the call-off was made under."),
    sheet="Transparency contracts",
    columns=CONTRACT_COLUMNS,
    rows=contract_rows,
    count=lambda filters: _count(_contracts(filters)),
)


# The contracts register ------------------------------------------------------------------------

REGISTER_COLUMNS = (
    Column("Agreement"), Column("Reference"), Column("Competition reference"), Column("Title"), Column("Buyer"),
    Column("Supplier"), Column("Lot"), Column("Budget year"), Column("Programme"), Column("Project"),
    Column("Value (including VAT)", "money"), Column("Irrecoverable VAT", "money"),
    Column("Paid to date", "money"), Column("Remaining", "money"),
    Column("Start date", "date"), Column("End date", "date"),
    Column("Date awarded (UK time)", "datetime"), Column("Date confirmed (UK time)", "datetime"),
    Column("Standstill used", "bool"), Column("Not awarded to the best-ranked bid", "bool"),
    Column("Why not the best-ranked bid"),
)


def _register(filters: Filters) -> Select:
    return (_call_offs(
        Agreement.reference, CallOff.reference, Competition.reference, Competition.title, Buyer.name,
        Supplier.name, Lot.number, Lot.title, BudgetYear.label, BudgetLine.programme, Allocation.project_title,
        CallOff.value_pence, CallOff.irrecoverable_vat_pence, CallOff.paid_pence, CallOff.starts_on,
        CallOff.ends_on, _moment(Award.decided_at), _moment(CallOff.created_at),
        Award.standstill_ends_at.is_not(None), Award.not_best_reason, filters=filters)
        .join(Award, Award.id == CallOff.award_id)
        .join(Allocation, Allocation.id == CallOff.allocation_id)
        .join(BudgetLine, BudgetLine.id == Allocation.line_id)
        .join(BudgetYear, BudgetYear.id == BudgetLine.year_id))


def register_rows(filters: Filters) -> Iterator[tuple]:
    for (agreement, reference, competition_reference, title, buyer, supplier, lot_number, lot_title, year,
         programme, project, value, irrecoverable_vat, paid, starts_on, ends_on, decided_at, created_at,
         standstill_used, not_best_reason) in _stream(_register(filters)):
        yield (agreement, reference, competition_reference, title, buyer, supplier, _lot(lot_number, lot_title),
               year, programme, project, value, irrecoverable_vat, paid, value - paid, starts_on, ends_on, decided_at,
               created_at, standstill_used, not_best_reason is not None, not_best_reason)


CONTRACTS_REGISTER = Table(
    name="contracts",
    title="Contracts register",
    description=("Every call-off contract entered into in the period (the day its award was confirmed, UK time), "
                 "with the agreement it was made under, the budget it is charged to, what has been paid and what "
                 "remains. Taken for all agreements, its values add up to the budget's commitments."),
    sheet="Contracts register",
    columns=REGISTER_COLUMNS,
    rows=register_rows,
    count=lambda filters: _count(_register(filters)),
)


# Contracts Finder due list ---------------------------------------------------------------------

FINDER_COLUMNS = (
    Column("Agreement"), Column("Reference"), Column("Title"), Column("Buyer"), Column("Supplier"),
    Column("Value (including VAT)", "money"), Column("Date entered into", "date"), Column("Threshold applied"),
    Column("Publish by", "date"),
)


def _change_moment() -> datetime:
    return datetime.combine(CONTRACTS_FINDER_CHANGE_DAY, time(0), LONDON)


def _finder(filters: Filters) -> Select:
    change = _change_moment()
    return _call_offs(
        Agreement.reference, CallOff.reference, Competition.title, Buyer.name, Supplier.name, CallOff.value_pence,
        _moment(CallOff.created_at), filters=filters,
    ).where(or_(and_(CallOff.created_at < change, CallOff.value_pence >= CONTRACTS_FINDER_OLD_PENCE),
                and_(CallOff.created_at >= change, CallOff.value_pence >= CONTRACTS_FINDER_NEW_PENCE)))


def finder_rows(filters: Filters) -> Iterator[tuple]:
    for agreement, reference, title, buyer, supplier, value, created_at in _stream(_finder(filters)):
        day = london_day(created_at)
        yield (agreement, reference, title, buyer, supplier, value, day, _threshold_label(day),
               day + timedelta(days=CONTRACTS_FINDER_PUBLISH_DAYS))


CONTRACTS_FINDER = Table(
    name="contracts-finder",
    title="Contracts Finder: awards due for publication",
    description=("Call-off contracts entered into in the period at or above the Contracts Finder threshold in force "
                 "on that day (UK time): £25,000 excluding VAT up to 20 December 2022, £30,000 including VAT "
                 "from 21 December 2022. Values are recorded including VAT, so before 21 December 2022 the list "
                 "compares the value including VAT with £25,000: it lists every contract that might be due, and "
                 "can include one whose value excluding VAT is just under £25,000. Each must be published "
                 "within 90 days of the day it was entered into."),
    sheet="Contracts Finder due",
    columns=FINDER_COLUMNS,
    rows=finder_rows,
    count=lambda filters: _count(_finder(filters)),
)


# Award notices, grouped quarterly (reg 50) -----------------------------------------------------

NOTICE_COLUMNS = (
    Column("Agreement"), Column("Quarter"), Column("Send by", "date"), Column("Reference"), Column("Title"),
    Column("Buyer"), Column("Supplier"), Column("Value (including VAT)", "money"), Column("Date entered into", "date"),
)


def _notices(filters: Filters) -> Select:
    # Each agreement's notices are its own batch (reg 50(4) groups the call-offs under one DPS):
    # by agreement, then by the moment each was entered into, so by quarter and then date.
    return _call_offs(Agreement.reference, CallOff.reference, Competition.title, Buyer.name, Supplier.name,
                      CallOff.value_pence, _moment(CallOff.created_at), filters=filters,
                      order_by=(Agreement.reference,))


@lru_cache(maxsize=4096)
def _notice_batch(day: date) -> tuple[str, date]:
    """The quarter a call-off entered into on ``day`` is notified in, and its send-by date (the
    same for every call-off of the day: worked out once a day, not once a row)."""
    return quarter_label(*quarter_of(day)), award_notice_send_by(day)


def notice_rows(filters: Filters) -> Iterator[tuple]:
    for agreement, reference, title, buyer, supplier, value, created_at in _stream(_notices(filters)):
        day = london_day(created_at)
        yield (agreement, *_notice_batch(day), reference, title, buyer, supplier, value, day)


AWARD_NOTICES = Table(
    name="award-notices",
    title="Award notices by quarter (regulation 50)",
    description=("Every call-off contract entered into in the period, grouped by the calendar quarter of the day it "
                 "was entered into (UK time). Award notices of call-offs under a DPS may be sent in quarterly "
                 "batches, within 30 days of the end of each quarter: the send-by date. Each agreement's call-offs "
                 "are a batch of their own, listed agreement by agreement."),
    sheet="Award notices",
    columns=NOTICE_COLUMNS,
    rows=notice_rows,
    count=lambda filters: _count(_notices(filters)),
)


# The audit log ---------------------------------------------------------------------------------

AUDIT_COLUMNS = (
    Column("Id", "int"), Column("Time (UK)", "datetime"), Column("Time (UTC)"), Column("Actor"),
    Column("Organisation"), Column("Action"), Column("Object type"), Column("Object id"), Column("Data"),
    Column("IP address"), Column("Previous hash"), Column("Hash"),
)


# An event's data is read as the JSON text stored and decoded here, with one decoder and one
# encoder for every row (json.loads and json.dumps make one a call).
_decoder = json.JSONDecoder()
_encode_data = json.JSONEncoder(sort_keys=True, ensure_ascii=False, check_circular=False, default=str).encode


def _data_json(stored: str) -> str:
    """The Data column: the event's data with its keys sorted and its letters as they are."""
    try:  # as json.dumps stored it: no white space around it to skip
        data, end = _decoder.raw_decode(stored)
    except json.JSONDecodeError:
        end = None
    if end != len(stored):  # anything else is decoded in full (or refused, saying why)
        data = _decoder.decode(stored)
    return _encode_data(data)


def _audit(filters: Filters) -> Select:
    return (select(AuditEvent.id, _moment(AuditEvent.occurred_at), AuditEvent.actor_label, Organisation.name,
                   AuditEvent.action, AuditEvent.object_type, AuditEvent.object_id, cast(AuditEvent.data, Text),
                   AuditEvent.ip_address, AuditEvent.prev_hash, AuditEvent.hash)
            .select_from(AuditEvent)
            .outerjoin(Organisation, Organisation.id == AuditEvent.organisation_id)
            .where(*_within(AuditEvent.occurred_at, filters)))


def audit_rows(filters: Filters) -> Iterator[tuple]:
    """In id order, the chain's order: one query, streamed."""
    for (event_id, occurred_at, actor, organisation, action, object_type, object_id, data, ip_address,
         prev_hash, hash_) in _stream(_audit(filters).order_by(AuditEvent.id)):
        yield (event_id, occurred_at, utc_iso(occurred_at), actor, organisation, action, object_type, object_id,
               _data_json(data), ip_address, prev_hash, hash_)


AUDIT_LOG = Table(
    name="audit",
    title="Audit log",
    description=("Every recorded change in the period (by the time it happened, UK time), in the order of the hash "
                 "chain, with each row's previous hash and hash so the chain can be checked again outside the "
                 "service. The chain is one for the whole service, so this export always holds every agreement's "
                 "events (and those of no agreement), whichever agreement is chosen."),
    sheet="Audit log",
    columns=AUDIT_COLUMNS,
    # Before a competition's deadline its bids' events are "bid activity" (DESIGN 5, issue 14).
    rows=lambda filters: seal_export_rows(audit_rows(filters)),
    count=lambda filters: _count(_audit(filters)),
    by_agreement=False,
)


TABLES: tuple[Table, ...] = (TRANSPARENCY_TENDERS, TRANSPARENCY_CONTRACTS, CONTRACTS_REGISTER, CONTRACTS_FINDER,
                             AWARD_NOTICES, AUDIT_LOG)


def table(name: str) -> Table:
    return next(t for t in TABLES if t.name == name)


def _register_csv(t: Table) -> Export:
    return register(Export(name=t.name, title=t.title, description=t.description, extension="csv",
                           media_type=CSV_MEDIA_TYPE, write=partial(write_table, t), count=t.count,
                           by_agreement=t.by_agreement))


for _table in TABLES:
    _register_csv(_table)
