"""OCDS 1.1.5 release and record packages of the DPS and its mini-competitions (DESIGN 6).

The model:
- The DPS itself is one contracting process (ocid ``<prefix>-<agreement reference>``): a tender
  release when it opens (selective procedure, a dynamic purchasing system, its lots), an award
  release for each admission of a supplier to a lot, an awardUpdate with an amendment for each
  later change of that supplier's standing (suspended, removed: the award is cancelled,
  reinstated), and a tenderUpdate when the DPS period is over.
- Each published mini-competition is its own contracting process (ocid ``<prefix>-<competition
  reference>``) linked to the DPS by ``relatedProcesses`` (relationship "framework", scheme
  "ocid"): tender at publication, tenderCancellation, a tenderUpdate at the tender deadline with
  the bid statistics and details (only once the deadline has passed: dps.services.sealed; the
  bids' prices, for the DPS team and auditors, only once the buyer has opened them, the rule
  sealed.may_read applies to them on every page), the
  award (pending during standstill, active once confirmed), a tenderUpdate when closed without an
  award, the contract (the call-off), one implementation release per invoice recorded (its
  transaction) and a contractTermination when the call-off's term is over.

A competition's releases carry the process as it stood at the release's date, except that an
implementation release carries only its own transaction (the record's compiled release gathers
them), so no release grows with the number of invoices. Releases of the DPS are partial: each
carries its own award. Release ids are ``<ocid>-<tag>-<object id>``: deterministic, unique per
ocid, and the same whatever period is asked for.

Agreements: each published agreement is a DPS process of its own; a draft agreement, and every
competition on its lots, is never written. ``Filters.agreement`` (a reference) narrows a package
to that agreement's DPS process and the competitions run under it.

Reading: the period is applied in SQL. The DPS's admissions and changes of standing are read
dated inside it (a record package: dated before its end); the competitions are those with a
release inside it (``_with_a_release_in``, the SQL form of the releases a competition gives), read
in batches of ``BATCH`` by id, each batch with everything its releases need (lots, agreements,
buyers, criteria, awards with their bids and bidders, the bids at the deadline, call-offs with
both parties, the invoices in the period and each call-off's first payment) in a fixed number of
queries, whatever the number of competitions, call-offs or invoices.

Streaming: the package envelope is written, then the releases one at a time, each validated
(``ocds_validate``) before it is written; memory holds one batch of competitions (or one stream of
admissions) at a time, never the list of releases. A record package holds, for each process, its
releases in a spooled temporary file until it is known whether one of them falls in the period,
and the compiled release of that one process.

Pages (the public endpoints): a page holds at most ``PAGE_SIZE`` releases (or records) in the
order of the whole package, which is stable: the DPS of each agreement by id, then the
competitions by id, and inside a process its releases by date. A ``Position`` says where a page
ended, as an opaque cursor: the process and, in a release package, the date of the last release
and how many releases of that process at that date came before the next page (several can share
a date: one application admitted to three lots). The next page reads from there (in SQL, from that
date on) and skips those few, so following the pages from the first to the last gives every
release of the period once, each page costing the same few queries.

Public mode (``public=True``, the /ocds endpoints) holds only what is published anyway:
- nothing of a competition before its tender deadline. Once the deadline has passed the whole
  record appears, a cancellation before the deadline included (the invited suppliers were told;
  the record of the procurement is public once the tender stage is over);
- no bid prices of the bidders (commercially confidential; the award's value is public);
- no free-text reasons for a supplier's change of standing, for an award not to the best-ranked
  tender, for a cancellation or for closing without an award (they can name people and say
  things owed to the supplier, not the public);
- no sole trader's name (it is a person's name): the party says "Sole trader (name withheld)".
Neither mode writes personal data: no contact points, no people, no addresses of sole traders
and partnerships (which may be homes). Amounts are numbers of pounds (pence / 100, written in
Python's shortest exact form, e.g. 1234.5): read back and multiplied by 100 they give the pence.
"""
from __future__ import annotations

import heapq
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import IO, Any
from urllib.parse import urlencode

from flask import current_app
from sqlalchemy import String, and_, cast, exists, func, or_, select, true, union_all
from sqlalchemy.engine import Row
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.sql.elements import ColumnElement

from .. import clock
from ..extensions import db
from ..pagination import decode_cursor, encode_cursor
from ..models import (
    Admission,
    Agreement,
    AuditEvent,
    Award,
    Bid,
    CallOff,
    Competition,
    Invoice,
    Lot,
    Organisation,
)
from ..models.competitions import Stage
from ..services import agreements as agreements_service
from ..services import installation
from . import Export, Filters, NothingToExport, Progress, no_progress, register
from .ocds_validate import (
    EXTENSION_URLS,
    validate_package_envelope,
    validate_record_envelope,
    validate_release,
    validate_envelope,
)

OCDS_VERSION = "1.1"
LICENSE_URL = "https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/"
CURRENCY = "GBP"
# Competitions loaded per query: bounds memory whatever the number of competitions.
BATCH = 200
# Releases (or records) on a page of the public endpoints.
PAGE_SIZE = 100
# Process ids in a cursor: the id columns are 32-bit integers on PostgreSQL.
MAX_ID = 2**31 - 1
STANDING_ACTIONS = ("admission.suspended", "admission.removed", "admission.reinstated")
SOLE_TRADER_NAME = "Sole trader (name withheld)"
NO_ADDRESS_FORMS = ("sole_trader", "partnership")
CRITERION_KIND_LABELS = {"quality": "quality", "price": "price", "social_value": "social value"}


# Small conversions -------------------------------------------------------------------------------

def pounds(pence: int) -> float:
    """Pence to a JSON number of pounds. A double holds every whole number of pence below 2^53 / 100
    exactly enough that ``round(pounds(p) * 100) == p``, and ``repr`` writes the shortest such form."""
    return pence / 100


def value(pence: int) -> dict:
    return {"amount": pounds(pence), "currency": CURRENCY}


def iso(moment: datetime) -> str:
    """An RFC 3339 date-time in UK time with its offset, to the second."""
    return clock.to_london(moment).isoformat(timespec="seconds")


def start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=clock.LONDON).astimezone(clock.UTC)


def end_of(day: date) -> datetime:
    """The last second of a UK day (a period's inclusive end date)."""
    return start_of(day + timedelta(days=1)) - timedelta(seconds=1)


def prefix() -> str:
    return current_app.config["DPS_OCID_PREFIX"]


def dps_ocid(agreement: Agreement) -> str:
    return f"{prefix()}-{agreement.reference}"


def competition_ocid(competition: Competition) -> str:
    return f"{prefix()}-{competition.reference}"


def lot_id(lot: Lot) -> str:
    return f"lot-{lot.number}"


# Organisations ------------------------------------------------------------------------------------

def org_id(org: Organisation) -> str:
    """org-id.guide identifier when both scheme and number are known, else one of ours."""
    if org.identifier_scheme and org.identifier_id:
        return f"{org.identifier_scheme}-{org.identifier_id}"
    return f"{prefix()}-org-{org.id}"


def org_name(org: Organisation, public: bool) -> str:
    if public and org.legal_form == "sole_trader":
        return SOLE_TRADER_NAME
    return org.name


def org_ref(org: Organisation, public: bool) -> dict:
    return {"id": org_id(org), "name": org_name(org, public)}


def party(org: Organisation, roles: Iterable[str], public: bool) -> dict:
    """An organisation and its roles. No contact point, ever: those are people."""
    entry: dict[str, Any] = {"id": org_id(org), "name": org_name(org, public)}
    if org.identifier_scheme and org.identifier_id:
        entry["identifier"] = {"scheme": org.identifier_scheme, "id": org.identifier_id,
                               "legalName": org_name(org, public)}
    if org.legal_form not in NO_ADDRESS_FORMS and org.address_line_1 and org.town:
        address = {"streetAddress": ", ".join(p for p in (org.address_line_1, org.address_line_2) if p),
                   "locality": org.town, "countryName": "United Kingdom"}
        if org.postcode:
            address["postalCode"] = org.postcode
        entry["address"] = address
    entry["roles"] = sorted(set(roles), key=ROLE_ORDER.index)
    return entry


ROLE_ORDER = ["buyer", "procuringEntity", "tenderer", "supplier", "payer", "payee"]


class Parties:
    """Parties of one release, each organisation once with all its roles."""

    def __init__(self, public: bool):
        self.public = public
        self._orgs: dict[int, Organisation] = {}
        self._roles: dict[int, set[str]] = {}

    def add(self, org: Organisation, *roles: str) -> dict:
        self._orgs.setdefault(org.id, org)
        self._roles.setdefault(org.id, set()).update(roles)
        return org_ref(org, self.public)

    def as_list(self) -> list[dict]:
        return [party(self._orgs[i], self._roles[i], self.public) for i in self._orgs]


# Releases --------------------------------------------------------------------------------------

@dataclass(order=True)
class Dated:
    """A release with the moment that orders it (and filters it) inside its process."""

    moment: datetime
    order: int
    seq: int
    release: dict = field(compare=False)


def _release(ocid: str, tag: str, key: str, moment: datetime) -> dict:
    return {"ocid": ocid, "id": f"{ocid}-{tag}-{key}", "date": iso(moment), "tag": [tag],
            "initiationType": "tender", "language": "en"}


# The kinds of process, in the order a package gives them.
DPS, COMPETITION = 0, 1


@dataclass
class Process:
    """One contracting process: its place in a package (``kind``, DPS or COMPETITION, then ``key``,
    the agreement's or the competition's id), its ocid, and a function that yields its releases by
    date. ``releases(since)`` may leave out releases dated before ``since`` (a page that starts
    inside the process reads from there); the caller skips any it still gives."""

    kind: int
    key: int
    ocid: str
    releases: Callable[[datetime | None], Iterator[Dated]]


def _dated(column, since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    """``column`` inside [since, until), each bound left open when None."""
    conditions = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return conditions


def _later(since: datetime | None, resume: datetime | None) -> datetime | None:
    """The later of two lower bounds, either of which may be open (None)."""
    return max((m for m in (since, resume) if m is not None), default=None)


# The DPS ----------------------------------------------------------------------------------------

def _dps_tender(agreement: Agreement, status: str) -> dict:
    start, end = agreements_service.window(agreement)
    return {
        "id": agreement.reference,
        "title": agreement.title,
        "description": agreement.description or agreement.title,
        "status": status,
        "procuringEntity": None,  # filled in by the caller (needs Parties)
        "procurementMethod": "selective",
        "procurementMethodDetails": f"Dynamic purchasing system ({agreement.regime_label}): "
                                    "open to new suppliers throughout its period",
        "mainProcurementCategory": "services",
        "tenderPeriod": {"startDate": iso(start), "endDate": iso(end - timedelta(seconds=1))},
        "techniques": {"hasFrameworkAgreement": False, "hasDynamicPurchasingSystem": True,
                       "dynamicPurchasingSystem": {"type": "open"}},
        "lots": [{"id": lot_id(lot), "title": lot.title, "description": lot.description, "status": status}
                 for lot in agreement.lots],
    }


def _dps_releases(agreement: Agreement, public: bool, since: datetime | None = None,
                  until: datetime | None = None) -> Iterator[Dated]:
    """The DPS's releases by date; those read from the database (admissions and changes of
    standing) only if dated inside [since, until)."""
    ocid = dps_ocid(agreement)
    body = agreement.accountable_body
    now = clock.now()
    start, end = agreements_service.window(agreement)

    def skeleton(tag: str, key: str, moment: datetime) -> tuple[dict, Parties]:
        release = _release(ocid, tag, key, moment)
        parties = Parties(public)
        release["buyer"] = parties.add(body, "buyer", "procuringEntity")
        return release, parties

    def tender_release(tag: str, key: str, moment: datetime, status: str) -> dict:
        release, parties = skeleton(tag, key, moment)
        tender = _dps_tender(agreement, status)
        tender["procuringEntity"] = release["buyer"]
        release["tender"] = tender
        release["parties"] = parties.as_list()
        return release

    def opened() -> Iterator[Dated]:
        yield Dated(start, 0, 0, tender_release("tender", agreement.reference, start,
                                                "active" if now >= start else "planned"))
        if now >= end:
            closed = end - timedelta(seconds=1)
            yield Dated(closed, 9, 0, tender_release("tenderUpdate", "complete", closed, "complete"))

    def admissions() -> Iterator[Dated]:
        rows = db.session.execute(
            select(Admission, Organisation, Lot)
            .join(Organisation, Organisation.id == Admission.organisation_id)
            .join(Lot, Lot.id == Admission.lot_id)
            .where(Lot.agreement_id == agreement.id, *_dated(Admission.admitted_at, since, until))
            .order_by(Admission.admitted_at, Admission.id)
            .execution_options(yield_per=500))
        for admission, org, lot in rows:
            release, parties = skeleton("award", str(admission.id), admission.admitted_at)
            release["tender"] = {"id": agreement.reference}
            release["awards"] = [{
                "id": f"admission-{admission.id}",
                "title": f"Admission to Lot {lot.number}: {lot.title}",
                "status": "active",
                "date": iso(admission.admitted_at),
                "suppliers": [parties.add(org, "supplier")],
                "relatedLots": [lot_id(lot)],
            }]
            release["parties"] = parties.as_list()
            yield Dated(admission.admitted_at, 1, admission.id, release)

    def standing_release(admission_id: int, n: int, org: Organisation, lot: Lot, moment: datetime,
                         after: str, reason: str | None) -> Dated:
        release, parties = skeleton("awardUpdate", f"{admission_id}-{n}", moment)
        words = {"suspended": "Suspended from", "removed": "Removed from", "admitted": "Reinstated on"}[after]
        amendment = {"id": f"admission-{admission_id}-{n}", "date": iso(moment),
                     "description": f"{words} Lot {lot.number}: {lot.title}"}
        if reason and not public:
            amendment["rationale"] = reason
        release["tender"] = {"id": agreement.reference}
        release["awards"] = [{
            "id": f"admission-{admission_id}",
            "status": "cancelled" if after == "removed" else "active",
            "suppliers": [parties.add(org, "supplier")],
            "relatedLots": [lot_id(lot)],
            "amendments": [amendment],
        }]
        release["parties"] = parties.as_list()
        return Dated(moment, 2, admission_id * 1000 + n, release)

    def changes_logged() -> Iterator[Dated]:
        # The audit log holds each change of standing with its before, after and reason: the
        # admission row only its latest. Changes before the latest admission belong to an
        # earlier place on the lot (removed, then admitted again) and are not this award's.
        rows = db.session.execute(
            select(AuditEvent.id, AuditEvent.occurred_at, AuditEvent.data, Admission.id, Organisation, Lot)
            .join(Admission, and_(AuditEvent.object_type == "admission",
                                  AuditEvent.object_id == cast(Admission.id, String)))
            .join(Organisation, Organisation.id == Admission.organisation_id)
            .join(Lot, Lot.id == Admission.lot_id)
            .where(Lot.agreement_id == agreement.id, AuditEvent.action.in_(STANDING_ACTIONS),
                   AuditEvent.occurred_at >= Admission.admitted_at, *_dated(AuditEvent.occurred_at, since, until))
            .order_by(AuditEvent.occurred_at, AuditEvent.id)
            .execution_options(yield_per=500))
        for event_id, occurred_at, data, admission_id, org, lot in rows:
            after = (data.get("after") or {}).get("status") or "admitted"
            yield standing_release(admission_id, event_id, org, lot, occurred_at, after, data.get("reason"))

    def changes_unlogged() -> Iterator[Dated]:
        # A standing changed without a service (an import, the demo loader): the row says what
        # it is now and since when.
        logged = exists().where(AuditEvent.object_type == "admission",
                                AuditEvent.object_id == cast(Admission.id, String),
                                AuditEvent.action.in_(STANDING_ACTIONS),
                                AuditEvent.occurred_at >= Admission.admitted_at)
        rows = db.session.execute(
            select(Admission, Organisation, Lot)
            .join(Organisation, Organisation.id == Admission.organisation_id)
            .join(Lot, Lot.id == Admission.lot_id)
            .where(Lot.agreement_id == agreement.id, Admission.status_changed_at > Admission.admitted_at,
                   ~logged, *_dated(Admission.status_changed_at, since, until))
            .order_by(Admission.status_changed_at, Admission.id)
            .execution_options(yield_per=500))
        for admission, org, lot in rows:
            yield standing_release(admission.id, 0, org, lot, admission.status_changed_at, admission.status,
                                   admission.status_reason)

    return heapq.merge(opened(), admissions(), changes_logged(), changes_unlogged())


# Mini-competitions --------------------------------------------------------------------------------

@dataclass
class _CompetitionData:
    competition: Competition
    bids: list[Bid]            # submitted bids; empty while sealed
    call_off: CallOff | None
    invoices: list[Row]        # the call-off's invoices dated in the period read, by recorded_at, id
    first_payment: datetime | None  # when the call-off's first invoice was recorded (in any period)
    # The sealed gate's answers (dps.services.sealed.is_sealed: sealed until the tender deadline)
    # at the one moment the package is read, so that a deadline passing half-way through an
    # export cannot give a release that says "no bids".
    unsealed: bool             # the tender deadline has passed: bid statistics and tenderers
    prices_readable: bool      # and the bids were opened: the DPS team and auditors may read prices
    now: datetime              # that moment (a contract's end is released once it has come)


# The competition's stage as at a release's date, in OCDS's tender status codelist.
OCDS_TENDER_STATUS = {Stage.CANCELLED: "cancelled", Stage.NO_AWARD: "unsuccessful", Stage.AWARDED: "complete"}


def _tender_status(c: Competition, at: datetime) -> str:
    return OCDS_TENDER_STATUS.get(c.stage(at), "active")


def _bids_visible(data: _CompetitionData, at: datetime) -> bool:
    """Bid statistics and details: only once the deadline has passed (now: the sealed gate; and
    in the release, as at its date), and never for a competition cancelled before it."""
    c = data.competition
    if not data.unsealed or at < c.tender_deadline:
        return False
    return c.cancelled_at is None or c.cancelled_at >= c.tender_deadline


def _criteria_details(c: Competition) -> str:
    parts = [f"{crit.title} ({CRITERION_KIND_LABELS.get(crit.kind, crit.kind)}): {crit.weight}%" for crit in c.criteria]
    return "Award to the most economically advantageous tender on these weighted criteria: " + "; ".join(parts)


def _competition_state(data: _CompetitionData, ocid: str, tag: str, key: str, at: datetime, public: bool,
                       paid: bool) -> dict:
    """The process as it stood at ``at``."""
    c = data.competition
    agreement = c.lot.agreement
    release = _release(ocid, tag, key, at)
    parties = Parties(public)
    buyer_roles = ("buyer", "procuringEntity", "payer") if paid else ("buyer", "procuringEntity")
    release["buyer"] = parties.add(c.buyer_organisation, *buyer_roles)
    status = _tender_status(c, at)
    tender: dict[str, Any] = {
        "id": c.reference,
        "title": c.title,
        "description": c.description,
        "status": status,
        "procuringEntity": release["buyer"],
        "procurementMethod": "selective",
        "procurementMethodDetails": (f"Mini-competition among every supplier admitted to Lot {c.lot.number} of "
                                     f"the {agreement.title} ({agreement.regime_label})"),
        "mainProcurementCategory": "services",
        "value": value(c.estimated_value_pence),
        "tenderPeriod": {"startDate": iso(c.published_at), "endDate": iso(c.tender_deadline)},
        "enquiryPeriod": {"startDate": iso(c.published_at), "endDate": iso(c.clarification_deadline)},
        "awardCriteria": "ratedCriteria",
        "awardCriteriaDetails": _criteria_details(c),
        "competitive": True,
        "techniques": {"hasFrameworkAgreement": False, "hasDynamicPurchasingSystem": True},
        "lots": [{"id": lot_id(c.lot), "title": c.lot.title, "description": c.lot.description, "status": status}],
    }
    # The buyer's free-text reasons can name people or suppliers: not in public (as for standing).
    if c.cancelled_at is not None and c.cancelled_at <= at:
        tender["amendments"] = [_amendment("cancellation", c.cancelled_at, "The competition was cancelled",
                                           None if public else c.cancel_reason)]
    if c.closed_without_award_at is not None and c.closed_without_award_at <= at:
        tender["amendments"] = [_amendment("no-award", c.closed_without_award_at,
                                           "The competition was closed without an award",
                                           None if public else c.no_award_reason)]
    release["tender"] = tender
    release["relatedProcesses"] = _framework(agreement)

    bids_shown = _bids_visible(data, at)
    if bids_shown:
        details = []
        for bid in data.bids:
            detail: dict[str, Any] = {"id": f"bid-{bid.id}", "date": iso(bid.submitted_at), "status": "valid",
                                      "tenderers": [parties.add(bid.organisation, "tenderer")],
                                      "relatedLots": [lot_id(c.lot)]}
            # Prices: never in public; for the DPS team and auditors only once the bids are opened,
            # the sealed gate's rule for them on every page (dps.services.sealed.may_read).
            if not public and data.prices_readable and bid.price_pence is not None:
                detail["value"] = value(bid.price_pence)
            details.append(detail)
        release["bids"] = {
            "statistics": [{"id": "bids", "measure": "bids", "value": len(data.bids),
                            "date": iso(c.tender_deadline), "relatedLot": lot_id(c.lot)}],
            "details": details,
        }
    award = c.award
    if award is not None and award.decided_at <= at:
        confirmed = award.confirmed_at is not None and award.confirmed_at <= at
        roles = ("tenderer", "supplier", "payee") if paid else ("tenderer", "supplier")
        entry: dict[str, Any] = {
            "id": f"award-{award.id}",
            "title": f"Call-off: {c.title}",
            "status": "active" if confirmed else "pending",
            "date": iso(award.decided_at),
            "value": value(award.value_pence),
            "suppliers": [parties.add(award.bid.organisation, *roles)],
            "relatedLots": [lot_id(c.lot)],
        }
        notes = []
        if award.standstill_ends_at is not None and not confirmed:
            notes.append(f"Standstill period until {clock.fmt(award.standstill_ends_at)}.")
        if award.not_best_reason:
            notes.append("The award does not go to the best-ranked tender"
                         + ("." if public else f": {award.not_best_reason}"))
        if notes:
            entry["description"] = " ".join(notes)
        if bids_shown:
            entry["relatedBid"] = f"bid-{award.bid_id}"
        release["awards"] = [entry]
    call_off = data.call_off
    if call_off is not None and call_off.created_at <= at and award is not None:
        ends = end_of(call_off.ends_on)
        release["contracts"] = [{
            "id": call_off.reference,
            "awardID": f"award-{award.id}",
            "title": c.title,
            "status": "terminated" if at > ends else "active",
            "period": {"startDate": iso(start_of(call_off.starts_on)), "endDate": iso(ends)},
            "value": value(call_off.value_pence),
            "dateSigned": iso(call_off.created_at),
        }]
    release["parties"] = parties.as_list()
    return release


def _framework(agreement: Agreement) -> list[dict]:
    """The link from a mini-competition to the DPS it is run under."""
    return [{"id": "1", "relationship": ["framework"], "title": agreement.title, "scheme": "ocid",
             "identifier": dps_ocid(agreement)}]


def _amendment(key: str, moment: datetime, description: str, rationale: str | None) -> dict:
    amendment = {"id": key, "date": iso(moment), "description": description}
    if rationale:
        amendment["rationale"] = rationale
    return amendment


def _transaction(invoice: Row, call_off: CallOff, public: bool) -> dict:
    return {"id": f"invoice-{invoice.id}", "date": iso(start_of(invoice.paid_on)),
            "value": value(invoice.amount_pence),
            "payer": org_ref(call_off.buyer, public), "payee": org_ref(call_off.supplier, public)}


def _competition_releases(data: _CompetitionData, public: bool, since: datetime | None = None,
                          until: datetime | None = None) -> Iterator[Dated]:
    """The competition's releases by date: those dated inside [since, until) are made (its
    invoices were read from the period already)."""
    c = data.competition
    ocid = competition_ocid(c)
    key = str(c.id)
    events: list[tuple[datetime, int, str, str]] = [(c.published_at, 0, "tender", key)]
    if c.cancelled_at is not None:
        events.append((c.cancelled_at, 1, "tenderCancellation", key))
    if _bids_visible(data, c.tender_deadline):
        events.append((c.tender_deadline, 2, "tenderUpdate", f"{c.id}-bids"))
    if c.closed_without_award_at is not None:
        events.append((c.closed_without_award_at, 3, "tenderUpdate", f"{c.id}-unsuccessful"))
    award = c.award
    if award is not None:
        events.append((award.decided_at, 4, "award", str(award.id)))
        if award.confirmed_at is not None and award.confirmed_at > award.decided_at:
            events.append((award.confirmed_at, 5, "awardUpdate", f"{award.id}-confirmed"))
    call_off = data.call_off
    if call_off is not None:
        events.append((call_off.created_at, 6, "contract", str(call_off.id)))
        ends = end_of(call_off.ends_on) + timedelta(seconds=1)
        if data.now >= ends:
            events.append((ends, 8, "contractTermination", str(call_off.id)))
    events = sorted(event for event in events
                    if (since is None or event[0] >= since) and (until is None or event[0] < until))

    first_payment = data.first_payment

    def fixed() -> Iterator[Dated]:
        for moment, order, tag, release_key in events:
            paid = first_payment is not None and first_payment <= moment
            yield Dated(moment, order, 0, _competition_state(data, ocid, tag, release_key, moment, public, paid))

    def implementations() -> Iterator[Dated]:
        if call_off is None or award is None:
            return
        for invoice in data.invoices:
            release = _release(ocid, "implementation", str(invoice.id), invoice.recorded_at)
            parties = Parties(public)
            release["buyer"] = parties.add(call_off.buyer, "buyer", "procuringEntity", "payer")
            parties.add(call_off.supplier, "tenderer", "supplier", "payee")
            release["tender"] = {"id": c.reference}
            release["relatedProcesses"] = _framework(c.lot.agreement)
            release["contracts"] = [{"id": call_off.reference, "awardID": f"award-{award.id}",
                                     "implementation": {"transactions": [_transaction(invoice, call_off, public)]}}]
            release["parties"] = parties.as_list()
            yield Dated(invoice.recorded_at, 7, invoice.id, release)

    return heapq.merge(fixed(), implementations())


def _with_a_release_in(filters: Filters, now: datetime) -> ColumnElement[bool]:
    """Competitions with a release dated inside the period: the SQL form of the moments
    ``_competition_releases`` dates its releases at (publication, cancellation, the tender
    deadline once passed and not after a cancellation, closing without an award, the award and
    its confirmation, the call-off, its invoices, the end of its term once passed)."""
    since, until = filters.start_utc, filters.end_utc
    if since is None and until is None:
        return true()

    def inside(column) -> ColumnElement[bool]:
        return and_(*_dated(column, since, until))

    # The contract's end is dated at midnight (UK) after its last day, and only once it has come.
    ended = [CallOff.ends_on < clock.to_london(now).date()]
    if filters.start is not None:
        ended.append(CallOff.ends_on >= filters.start - timedelta(days=1))
    if filters.end is not None:
        ended.append(CallOff.ends_on < filters.end)
    own = select(Competition.id).where(or_(
        inside(Competition.published_at),
        inside(Competition.cancelled_at),
        and_(inside(Competition.tender_deadline), Competition.tender_deadline <= now,
             or_(Competition.cancelled_at.is_(None), Competition.cancelled_at >= Competition.tender_deadline)),
        inside(Competition.closed_without_award_at)))
    awards = select(Award.competition_id).where(or_(
        inside(Award.decided_at), and_(Award.confirmed_at > Award.decided_at, inside(Award.confirmed_at))))
    call_offs = select(CallOff.competition_id).where(or_(inside(CallOff.created_at), and_(*ended)))
    invoices = (select(CallOff.competition_id).join(Invoice, Invoice.call_off_id == CallOff.id)
                .where(inside(Invoice.recorded_at)))
    # One list of ids, each part a range of one table's dates (an index on each date reads just
    # the period), rather than one test per competition of the whole table.
    return Competition.id.in_(union_all(own, awards, call_offs, invoices))


def _selected(query, filters: Filters, now: datetime, *, public: bool):
    """``query`` (of Competition) narrowed to the competitions the package holds: published, of
    published agreements (of ``filters.agreement``, if given), with a release in the period."""
    query = (query.join(Lot, Lot.id == Competition.lot_id)
             .join(Agreement, Agreement.id == Lot.agreement_id)
             .where(Competition.published_at.is_not(None), Agreement.published_at.is_not(None),
                    _with_a_release_in(filters, now)))
    if filters.agreement is not None:
        query = query.where(Agreement.reference == filters.agreement)
    if public:
        # Nothing of a competition before its tender deadline.
        query = query.where(Competition.tender_deadline <= now)
    return query


def _published_agreements(filters: Filters):
    query = select(Agreement).where(Agreement.published_at.is_not(None))
    if filters.agreement is not None:
        query = query.where(Agreement.reference == filters.agreement)
    return query


def count_processes(filters: Filters) -> int:
    """How many contracting processes a team package of ``filters`` looks at (the DPS of each
    agreement, and each competition with a release in the period): what its progress counts to,
    one process at a time. Two COUNT queries."""
    now = clock.now()
    agreements = db.session.scalar(select(func.count()).select_from(_published_agreements(filters).subquery()))
    competitions = db.session.scalar(_selected(select(func.count(Competition.id)), filters, now, public=False))
    return agreements + competitions


def _competitions(filters: Filters, now: datetime, *, public: bool, history: bool, first_id: int = 0,
                  batch: int = BATCH) -> Iterator[_CompetitionData]:
    """Published competitions of published agreements (of ``filters.agreement``, if given) with a
    release in the period, as they stand at ``now``, from id ``first_id`` on, in id order, a
    batch at a time (keyset pagination). Each batch costs the same few queries whatever it holds.
    Invoices are those dated inside the period (``history``: dated before its end, for a record)."""
    since, until = (None if history else filters.start_utc), filters.end_utc
    last_id = first_id - 1
    while True:
        query = (_selected(select(Competition), filters, now, public=public)
                 .where(Competition.id > last_id)
                 .order_by(Competition.id).limit(batch)
                 .options(joinedload(Competition.lot).joinedload(Lot.agreement),
                          joinedload(Competition.buyer_organisation),
                          selectinload(Competition.criteria),
                          selectinload(Competition.award).joinedload(Award.bid).joinedload(Bid.organisation)))
        competitions = db.session.scalars(query).all()
        if not competitions:
            return
        # The sealed gate's rule (sealed.is_sealed) at the package's moment.
        unsealed = {c.id for c in competitions if c.tender_deadline <= now}
        bids: dict[int, list[Bid]] = {}
        if unsealed:
            for bid in db.session.scalars(select(Bid).where(Bid.competition_id.in_(sorted(unsealed)), Bid.state == "submitted")
                                          .options(joinedload(Bid.organisation))
                                          .order_by(Bid.competition_id, Bid.submitted_at, Bid.id)):
                bids.setdefault(bid.competition_id, []).append(bid)
        call_offs = {call_off.competition_id: call_off for call_off in db.session.scalars(
            select(CallOff).where(CallOff.competition_id.in_([c.id for c in competitions]))
            .options(joinedload(CallOff.supplier), joinedload(CallOff.buyer)))}
        invoices: dict[int, list[Row]] = {}
        first_payments: dict[int, datetime] = {}
        if call_offs:
            call_off_ids = sorted(call_off.id for call_off in call_offs.values())
            for invoice in db.session.execute(
                    select(Invoice.id, Invoice.call_off_id, Invoice.amount_pence, Invoice.paid_on, Invoice.recorded_at)
                    .where(Invoice.call_off_id.in_(call_off_ids), *_dated(Invoice.recorded_at, since, until))
                    .order_by(Invoice.call_off_id, Invoice.recorded_at, Invoice.id)):
                invoices.setdefault(invoice.call_off_id, []).append(invoice)
            first_payments = {call_off_id: first for call_off_id, first in db.session.execute(
                select(Invoice.call_off_id, func.min(Invoice.recorded_at))
                .where(Invoice.call_off_id.in_(call_off_ids)).group_by(Invoice.call_off_id))}
        for c in competitions:
            call_off = call_offs.get(c.id)
            yield _CompetitionData(c, bids.get(c.id, []), call_off,
                                   invoices.get(call_off.id, []) if call_off else [],
                                   first_payments.get(call_off.id) if call_off else None,
                                   unsealed=c.id in unsealed, prices_readable=c.id in unsealed and c.opened_at is not None,
                                   now=now)
        if len(competitions) < batch:
            return
        last_id = competitions[-1].id


def processes(filters: Filters = Filters(), *, public: bool = False, history: bool = False,
              start: tuple[int, int] = (DPS, 0), batch: int = BATCH) -> Iterator[Process]:
    """Every contracting process with releases to give, in the package's order: the DPS (each
    published agreement, by id), then each published competition run under one with a release in
    the period (by id). With ``filters.agreement`` (a reference), that agreement's DPS process and
    its competitions only. A draft agreement is never a process, nor are its competitions.

    The releases are those dated inside the period, or (``history``, for records) before its end.
    ``start``: (kind, key) of the first process wanted, for a page that begins there."""
    since, until = (None if history else filters.start_utc), filters.end_utc
    # One moment for the whole package (outside a request each clock.now() reads the clock's row).
    now = clock.now()
    kind, key = start
    if kind == DPS:
        query = (_published_agreements(filters).where(Agreement.id >= key).order_by(Agreement.id)
                 .options(selectinload(Agreement.lots), joinedload(Agreement.accountable_body)))
        for each in db.session.scalars(query).all():
            yield Process(DPS, each.id, dps_ocid(each),
                          lambda resume=None, a=each: _dps_releases(a, public, _later(since, resume), until))
    for data in _competitions(filters, now, public=public, history=history, batch=batch,
                              first_id=key if kind == COMPETITION else 0):
        yield Process(COMPETITION, data.competition.id, competition_ocid(data.competition),
                      lambda resume=None, d=data: _competition_releases(d, public, _later(since, resume), until))


# Compiling a record ---------------------------------------------------------------------------------

class Compiler:
    """The compiled release of one process, built release by release with OCDS merging: objects
    merge field by field; arrays of objects with ids merge by id (each array's ids are indexed
    once, so a contract with thousands of transactions compiles in linear time); any other value
    replaces the one before."""

    def __init__(self, ocid: str):
        self.ocid = ocid
        self.state: dict = {}
        self.last: datetime | None = None
        self._indexes: dict[int, tuple[list, dict[Any, dict]]] = {}

    def add(self, dated: Dated) -> None:
        release = {k: v for k, v in dated.release.items() if k not in ("id", "date", "tag")}
        self.state = self._merge(self.state, json.loads(json.dumps(release)))
        self.last = dated.moment

    def _merge(self, into: Any, new: Any) -> Any:
        if isinstance(new, dict):
            base = into if isinstance(into, dict) else {}
            for key, item in new.items():
                base[key] = self._merge(base.get(key), item)
            return base
        if isinstance(new, list) and new and all(isinstance(x, dict) and "id" in x for x in new):
            index = self._index(into)
            if index is None:
                return new
            for item in new:
                if item["id"] in index:
                    self._merge(index[item["id"]], item)
                else:
                    into.append(item)
                    index[item["id"]] = item
            return into
        return new

    def _index(self, into: Any) -> dict[Any, dict] | None:
        """The id index of a list in the state, built on first use. The list is kept with its
        index, so its id() cannot be reused by another list while the index exists."""
        if not isinstance(into, list):
            return None
        entry = self._indexes.get(id(into))
        if entry is not None and entry[0] is into:
            return entry[1]
        if not all(isinstance(x, dict) and "id" in x for x in into):
            return None
        index = {x["id"]: x for x in into}
        self._indexes[id(into)] = (into, index)
        return index

    def compiled(self) -> dict:
        return {"ocid": self.ocid, "id": f"{self.ocid}-compiled", "date": iso(self.last), "tag": ["compiled"],
                **{k: v for k, v in self.state.items() if k != "ocid"}}


# Writing packages --------------------------------------------------------------------------------

def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _address(kind: str, filters: Filters, *, public: bool, after: Position | None = None) -> str:
    """The absolute address of a package: the endpoint, the filters and (a page) its cursor."""
    params = {k: v for k, v in filters.as_dict().items() if v}
    if after is not None:
        params["after"] = after.cursor()
    path = f"/ocds/{kind}.json" if public else f"/team/exports/{'ocds' if kind == 'releases' else 'records'}"
    return current_app.config["DPS_BASE_URL"] + path + (f"?{urlencode(params)}" if params else "")


def _envelope(kind: str, filters: Filters, public: bool, after: Position | None = None) -> dict:
    base = current_app.config["DPS_BASE_URL"]
    body = installation.accountable_body()
    publisher = body.name if body is not None else "CCIN Dynamic Purchasing System"
    return {
        "uri": _address(kind, filters, public=public, after=after),
        "version": OCDS_VERSION,
        "extensions": list(EXTENSION_URLS),
        "publisher": {"name": publisher},
        "license": LICENSE_URL,
        "publicationPolicy": base + "/agreements",
        "publishedDate": iso(clock.now()),
    }


def _of(filters: Filters) -> str:
    return f" of {filters.agreement}" if filters.agreement else ""


def _nothing(contents: str, filters: Filters, after: Position | None) -> NothingToExport:
    if after is not None:
        return NothingToExport(f"There are no more OCDS {contents}{_of(filters)} in this period after the page "
                               "the 'after' cursor ends")
    if contents == "records":
        return NothingToExport(f"There are no OCDS records{_of(filters)} with a release in this period")
    return NothingToExport(f"There are no OCDS releases{_of(filters)} in this period")


def _write_head(out: IO[bytes], envelope: dict, contents: str) -> None:
    head = _dumps(envelope)
    out.write(head[:-1] + (b"," if envelope else b"") + f'"{contents}":['.encode())


def _write_tail(out: IO[bytes], envelope: dict, contents: str, filters: Filters, following: Position | None) -> None:
    """Close the list and the package, with the address of the next page if there is one. (The
    links come after the list: they are known once the page is.)"""
    out.write(b"]")
    if following is not None:
        links = {"next": _address(contents, filters, public=True, after=following)}
        validate_envelope({**envelope, "links": links}, contents)
        out.write(b',"links":' + _dumps(links))
    out.write(b"}")


# Pages ------------------------------------------------------------------------------------------

class BadCursor(ValueError):
    """An ``after`` cursor that is not one this service made for that kind of package."""


@dataclass(frozen=True)
class Position:
    """Where a page ended: a process (``kind``, ``key``) and, in a release package, the date of
    the page's last release and how many releases of that process at that date the pages so far
    have given (``seen``)."""

    kind: int
    key: int
    moment: datetime | None = None
    seen: int = 0

    def cursor(self) -> str:
        if self.moment is None:
            return encode_cursor([self.kind, self.key])
        return encode_cursor([self.kind, self.key, self.moment, self.seen])

    @classmethod
    def from_cursor(cls, contents: str, token: str) -> Position:
        """The position in ``token``, a cursor of a page of ``contents`` ('releases' or
        'records'). BadCursor unless it is one this service could have made: a cursor is read
        back from an address anyone can edit, so every value is checked before SQL sees it."""
        types = (int, int, datetime, int) if contents == "releases" else (int, int)
        values = decode_cursor(token, types)
        if values is None:
            raise BadCursor("is not a cursor of this package")
        kind, key, *rest = values
        if kind not in (DPS, COMPETITION) or not 0 <= key <= MAX_ID:
            raise BadCursor("names no process")
        if not rest:
            return cls(kind, key)
        moment, seen = rest
        try:
            moment = moment.astimezone(clock.UTC)
        except OverflowError:
            raise BadCursor("has a date out of range") from None
        if not 1 <= seen <= MAX_ID:
            raise BadCursor("has a count out of range")
        return cls(kind, key, moment, seen)


def _releases(filters: Filters, *, public: bool, after: Position | None, batch: int,
              progress: Progress = no_progress) -> Iterator[tuple[Position, Dated]]:
    """Each release dated in the period, in the package's order (after ``after``, if given),
    with the position of a page ending on it. ``progress`` counts each process looked at."""
    start = (after.kind, after.key) if after is not None else (DPS, 0)
    with closing(processes(filters, public=public, start=start, batch=batch)) as found:
        for process in found:
            progress(1)
            resumed = after is not None and (process.kind, process.key) == (after.kind, after.key)
            moment, seen = (after.moment, after.seen) if resumed else (None, 0)
            skip = seen
            with closing(process.releases(moment)) as releases:
                for dated in releases:
                    if not filters.covers(dated.moment):
                        continue
                    if resumed and dated.moment < after.moment:
                        continue  # on the pages before
                    if resumed and dated.moment == after.moment and skip:
                        skip -= 1
                        continue  # on the pages before, too
                    seen = seen + 1 if dated.moment == moment else 1
                    moment = dated.moment
                    yield Position(process.kind, process.key, moment, seen), dated


def _write_releases(filters: Filters, out: IO[bytes], progress: Progress, *, public: bool,
                    after: Position | None = None, limit: int | None = None) -> tuple[int, Position | None]:
    """Stream the releases dated inside ``filters`` (at most ``limit``, after ``after``); return
    how many, and the position of the last one if there are more."""
    envelope = _envelope("releases", filters, public, after)
    validate_package_envelope(envelope)
    _write_head(out, envelope, "releases")
    written, last, following = 0, None, None
    # A competition with a release in the period: limit + 1 competitions fill a page and say
    # whether there is another.
    batch = BATCH if limit is None else limit + 1
    with closing(_releases(filters, public=public, after=after, batch=batch, progress=progress)) as releases:
        for position, dated in releases:
            if written == limit:
                following = last
                break
            validate_release(dated.release, f"releases[{written}]")
            out.write((b"," if written else b"") + _dumps(dated.release))
            written += 1
            last = position
    if written == 0:
        raise _nothing("releases", filters, after)
    _write_tail(out, envelope, "releases", filters, following)
    return written, following


def _has_release_in(process: Process, filters: Filters) -> bool:
    with closing(process.releases(None)) as releases:
        for dated in releases:
            if filters.end_utc is not None and dated.moment >= filters.end_utc:
                return False
            if filters.covers(dated.moment):
                return True
    return False


def _write_records(filters: Filters, out: IO[bytes], progress: Progress, *, public: bool,
                   after: Position | None = None, limit: int | None = None) -> tuple[int, Position | None]:
    """Stream a record for each process with a release inside ``filters`` (at most ``limit``,
    after ``after``), holding its releases up to the end of the period and its compiled release;
    return how many, and the position of the last one if there are more."""
    envelope = _envelope("records", filters, public, after)
    validate_envelope(envelope, "records")
    _write_head(out, envelope, "records")
    records, last, following = 0, None, None
    start = (after.kind, after.key) if after is not None else (DPS, 0)
    batch = BATCH if limit is None else limit + 1
    with closing(processes(filters, public=public, history=True, start=start, batch=batch)) as found:
        for process in found:
            progress(1)
            if after is not None and (process.kind, process.key) == (after.kind, after.key):
                continue  # the last record of the page before
            if records == limit:
                if _has_release_in(process, filters):
                    following = last
                    break
                continue
            if _write_record(process, filters, out, records):
                records += 1
                last = Position(process.kind, process.key)
    if records == 0:
        raise _nothing("records", filters, after)
    _write_tail(out, envelope, "records", filters, following)
    return records, following


def _write_record(process: Process, filters: Filters, out: IO[bytes], index: int) -> bool:
    """Write the record of ``process`` (the package's ``index``-th) if one of its releases is
    inside the period; say whether it was."""
    where = f"records[{index}]"
    validate_record_envelope({"ocid": process.ocid}, where)
    compiler = Compiler(process.ocid)
    inside = False
    count = 0
    with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as buffer:
        with closing(process.releases(None)) as releases:
            for dated in releases:
                if filters.end_utc is not None and dated.moment >= filters.end_utc:
                    break  # sorted by date: the rest are later still
                inside = inside or filters.covers(dated.moment)
                validate_release(dated.release, f"{where}.releases[{count}]")
                buffer.write((b"," if count else b"") + _dumps(dated.release))
                compiler.add(dated)
                count += 1
        if not inside:
            return False
        compiled = compiler.compiled()
        validate_release(compiled, f"{where}.compiledRelease")
        out.write((b"," if index else b"") + b'{"ocid":' + _dumps(process.ocid) + b',"releases":[')
        buffer.seek(0)
        shutil.copyfileobj(buffer, out)
        out.write(b'],"compiledRelease":' + _dumps(compiled) + b"}")
    return True


def write_release_package(filters: Filters, out: IO[bytes], progress: Progress = no_progress, *,
                          public: bool = False) -> int:
    """Stream a release package of every release dated inside ``filters``; return how many."""
    return _write_releases(filters, out, progress, public=public)[0]


def write_record_package(filters: Filters, out: IO[bytes], progress: Progress = no_progress, *,
                         public: bool = False) -> int:
    """Stream a record package: a record for each process with a release inside ``filters``,
    holding its releases up to the end of the period and its compiled release."""
    return _write_records(filters, out, progress, public=public)[0]


def write_package(kind: str, filters: Filters, out: IO[bytes], progress: Progress = no_progress, *,
                  public: bool = False) -> int:
    """``kind`` 'releases' or 'records': the whole package (the team's exports)."""
    if kind == "releases":
        return write_release_package(filters, out, progress, public=public)
    if kind == "records":
        return write_record_package(filters, out, progress, public=public)
    raise ValueError(f"unknown OCDS package kind {kind!r}")


def write_page(kind: str, filters: Filters, out: IO[bytes], *, after: Position | None = None,
               size: int | None = None) -> Position | None:
    """A page of the public package ``kind``: at most ``size`` (default PAGE_SIZE) releases (or
    records) after ``after`` (None: the first page), with ``links.next`` the address of the next
    page if there is one. Returns the position the next page starts after (None: the last page)."""
    size = PAGE_SIZE if size is None else size
    if kind == "releases":
        return _write_releases(filters, out, no_progress, public=True, after=after, limit=size)[1]
    if kind == "records":
        return _write_records(filters, out, no_progress, public=True, after=after, limit=size)[1]
    raise ValueError(f"unknown OCDS package kind {kind!r}")


def _team_writer(kind: str):
    def write(filters: Filters, out: IO[bytes], progress: Progress) -> None:
        write_package(kind, filters, out, progress, public=False)
    return write


register(Export(
    name="ocds",
    title="OCDS release package",
    description="Every OCDS 1.1.5 release of the DPS (each agreement) and its mini-competitions dated in the "
                "period, validated against the schema with the lots, bids and techniques extensions.",
    extension="json",
    media_type="application/json",
    write=_team_writer("releases"),
    count=count_processes,
    unit="contracting processes",
))
register(Export(
    name="records",
    title="OCDS record package",
    description="An OCDS 1.1.5 record, with its releases and compiled release, for each contracting process "
                "with a release in the period.",
    extension="json",
    media_type="application/json",
    write=_team_writer("records"),
    count=count_processes,
    unit="contracting processes",
))
