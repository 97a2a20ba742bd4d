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

Streaming: the package envelope is written, then the releases one at a time, each validated
(``ocds_validate``) before it is written; memory holds one batch of competitions (or one stream of
admissions) at a time, never the list of releases. A record package holds, for each process, its
releases in a spooled temporary file until it is known whether one of them falls in the period,
and the compiled release of that one process.

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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import IO, Any
from urllib.parse import urlencode

from flask import current_app
from sqlalchemy import String, and_, cast, exists, select
from sqlalchemy.orm import joinedload, selectinload

from .. import clock
from ..extensions import db
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
from ..services import agreements as agreements_service
from ..services import installation
from ..services import sealed
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


@dataclass
class Process:
    """One contracting process: its ocid and a function that yields its releases by date."""

    ocid: str
    releases: Any  # Callable[[], Iterator[Dated]]


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


def _dps_releases(agreement: Agreement, public: bool) -> Iterator[Dated]:
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
            .where(Lot.agreement_id == agreement.id)
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
                   AuditEvent.occurred_at >= Admission.admitted_at)
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
                   ~logged)
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
    # The sealed gate's answers, asked once when the competition was loaded, so that a deadline
    # passing half-way through an export cannot give a release that says "no bids".
    unsealed: bool             # the tender deadline has passed: bid statistics and tenderers
    prices_readable: bool      # and the bids were opened: the DPS team and auditors may read prices


def _tender_status(c: Competition, at: datetime) -> str:
    if c.cancelled_at is not None and c.cancelled_at <= at:
        return "cancelled"
    if c.closed_without_award_at is not None and c.closed_without_award_at <= at:
        return "unsuccessful"
    if c.award is not None and c.award.confirmed_at is not None and c.award.confirmed_at <= at:
        return "complete"
    return "active"


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


def _transaction(invoice: Invoice, call_off: CallOff, public: bool) -> dict:
    return {"id": f"invoice-{invoice.id}", "date": iso(start_of(invoice.paid_on)),
            "value": value(invoice.amount_pence),
            "payer": org_ref(call_off.buyer, public), "payee": org_ref(call_off.supplier, public)}


def _competition_releases(data: _CompetitionData, public: bool) -> Iterator[Dated]:
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
    now = clock.now()
    call_off = data.call_off
    if call_off is not None:
        events.append((call_off.created_at, 6, "contract", str(call_off.id)))
        ends = end_of(call_off.ends_on) + timedelta(seconds=1)
        if now >= ends:
            events.append((ends, 8, "contractTermination", str(call_off.id)))
    events.sort()

    first_payment = _first_invoice_recorded_at(call_off)

    def fixed() -> Iterator[Dated]:
        for moment, order, tag, release_key in events:
            paid = first_payment is not None and first_payment <= moment
            yield Dated(moment, order, 0, _competition_state(data, ocid, tag, release_key, moment, public, paid))

    def implementations() -> Iterator[Dated]:
        if call_off is None or award is None:
            return
        rows = db.session.scalars(select(Invoice).where(Invoice.call_off_id == call_off.id)
                                  .order_by(Invoice.recorded_at, Invoice.id).execution_options(yield_per=500))
        for invoice in rows:
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


def _first_invoice_recorded_at(call_off: CallOff | None) -> datetime | None:
    if call_off is None:
        return None
    return db.session.scalar(select(Invoice.recorded_at).where(Invoice.call_off_id == call_off.id)
                             .order_by(Invoice.recorded_at, Invoice.id).limit(1))


def _competitions(public: bool, agreement: str | None = None) -> Iterator[_CompetitionData]:
    """Published competitions of published agreements (of the one whose reference is
    ``agreement``, if given) in id order, a batch at a time (keyset pagination)."""
    now = clock.now()
    last_id = 0
    while True:
        query = (select(Competition)
                 .join(Lot, Lot.id == Competition.lot_id)
                 .join(Agreement, Agreement.id == Lot.agreement_id)
                 .where(Competition.id > last_id, Competition.published_at.is_not(None),
                        Agreement.published_at.is_not(None))
                 .order_by(Competition.id).limit(BATCH)
                 .options(joinedload(Competition.lot).joinedload(Lot.agreement),
                          joinedload(Competition.buyer_organisation),
                          selectinload(Competition.criteria),
                          selectinload(Competition.award).joinedload(Award.bid).joinedload(Bid.organisation)))
        if agreement is not None:
            query = query.where(Agreement.reference == agreement)
        if public:
            # Nothing of a competition before its tender deadline.
            query = query.where(Competition.tender_deadline <= now)
        batch = db.session.scalars(query).all()
        if not batch:
            return
        last_id = batch[-1].id
        unsealed = {c.id for c in batch if not sealed.is_sealed(c)}
        bids: dict[int, list[Bid]] = {}
        if unsealed:
            for bid in db.session.scalars(select(Bid).where(Bid.competition_id.in_(sorted(unsealed)), Bid.state == "submitted")
                                          .options(joinedload(Bid.organisation))
                                          .order_by(Bid.competition_id, Bid.submitted_at, Bid.id)):
                bids.setdefault(bid.competition_id, []).append(bid)
        call_offs = {call_off.competition_id: call_off for call_off in db.session.scalars(
            select(CallOff).where(CallOff.competition_id.in_([c.id for c in batch]))
            .options(joinedload(CallOff.supplier), joinedload(CallOff.buyer)))}
        for c in batch:
            yield _CompetitionData(c, bids.get(c.id, []), call_offs.get(c.id), unsealed=c.id in unsealed,
                                   prices_readable=c.id in unsealed and c.opened_at is not None)


def processes(public: bool = False, agreement: str | None = None) -> Iterator[Process]:
    """Every contracting process: the DPS (each published agreement), then each published
    competition run under one. With ``agreement`` (a reference), that agreement's DPS process and
    its competitions only. A draft agreement is never a process, nor are its competitions."""
    query = (select(Agreement).where(Agreement.published_at.is_not(None)).order_by(Agreement.id)
             .options(selectinload(Agreement.lots), joinedload(Agreement.accountable_body)))
    if agreement is not None:
        query = query.where(Agreement.reference == agreement)
    for each in db.session.scalars(query).all():
        yield Process(dps_ocid(each), lambda a=each: _dps_releases(a, public))
    for data in _competitions(public, agreement):
        yield Process(competition_ocid(data.competition), lambda d=data: _competition_releases(d, public))


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


def _envelope(kind: str, filters: Filters, public: bool) -> dict:
    base = current_app.config["DPS_BASE_URL"]
    query = urlencode({k: v for k, v in filters.as_dict().items() if v})
    path = f"/ocds/{kind}.json" if public else f"/team/exports/{'ocds' if kind == 'releases' else 'records'}"
    body = installation.accountable_body()
    publisher = body.name if body is not None else "CCIN Dynamic Purchasing System"
    return {
        "uri": base + path + (f"?{query}" if query else ""),
        "version": OCDS_VERSION,
        "extensions": list(EXTENSION_URLS),
        "publisher": {"name": publisher},
        "license": LICENSE_URL,
        "publicationPolicy": base + "/agreements",
        "publishedDate": iso(clock.now()),
    }


def _of(filters: Filters) -> str:
    return f" of {filters.agreement}" if filters.agreement else ""


def _write_head(out: IO[bytes], envelope: dict, contents: str) -> None:
    head = _dumps(envelope)
    out.write(head[:-1] + (b"," if envelope else b"") + f'"{contents}":['.encode())


def write_release_package(filters: Filters, out: IO[bytes], progress: Progress = no_progress, *,
                          public: bool = False) -> int:
    """Stream a release package of every release dated inside ``filters``; return how many."""
    envelope = _envelope("releases", filters, public)
    validate_package_envelope(envelope)
    _write_head(out, envelope, "releases")
    written = 0
    for process in processes(public, filters.agreement):
        for dated in process.releases():
            if not filters.covers(dated.moment):
                continue
            validate_release(dated.release, f"releases[{written}]")
            out.write((b"," if written else b"") + _dumps(dated.release))
            written += 1
            progress(1)
    if written == 0:
        raise NothingToExport(f"There are no OCDS releases{_of(filters)} in this period")
    out.write(b"]}")
    return written


def write_record_package(filters: Filters, out: IO[bytes], progress: Progress = no_progress, *,
                         public: bool = False) -> int:
    """Stream a record package: a record for each process with a release inside ``filters``,
    holding its releases up to the end of the period and its compiled release."""
    envelope = _envelope("records", filters, public)
    validate_envelope(envelope, "records")
    _write_head(out, envelope, "records")
    records = 0
    for process in processes(public, filters.agreement):
        where = f"records[{records}]"
        validate_record_envelope({"ocid": process.ocid}, where)
        compiler = Compiler(process.ocid)
        inside = False
        count = 0
        with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as buffer:
            for dated in process.releases():
                if filters.end_utc is not None and dated.moment >= filters.end_utc:
                    break  # sorted by date: the rest are later still
                inside = inside or filters.covers(dated.moment)
                validate_release(dated.release, f"{where}.releases[{count}]")
                buffer.write((b"," if count else b"") + _dumps(dated.release))
                compiler.add(dated)
                count += 1
            if not inside:
                continue
            compiled = compiler.compiled()
            validate_release(compiled, f"{where}.compiledRelease")
            out.write((b"," if records else b"") + b'{"ocid":' + _dumps(process.ocid) + b',"releases":[')
            buffer.seek(0)
            shutil.copyfileobj(buffer, out)
            out.write(b'],"compiledRelease":' + _dumps(compiled) + b"}")
        records += 1
        progress(1)
    if records == 0:
        raise NothingToExport(f"There are no OCDS records{_of(filters)} with a release in this period")
    out.write(b"]}")
    return records


def write_package(kind: str, filters: Filters, out: IO[bytes], progress: Progress = no_progress, *,
                  public: bool = False) -> int:
    """``kind`` 'releases' or 'records' (the public endpoints call this with public=True)."""
    if kind == "releases":
        return write_release_package(filters, out, progress, public=public)
    if kind == "records":
        return write_record_package(filters, out, progress, public=public)
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
))
register(Export(
    name="records",
    title="OCDS record package",
    description="An OCDS 1.1.5 record, with its releases and compiled release, for each contracting process "
                "with a release in the period.",
    extension="json",
    media_type="application/json",
    write=_team_writer("records"),
))
