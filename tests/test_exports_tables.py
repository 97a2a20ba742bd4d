"""The tabular reports (DESIGN 2 "Transparency duties", DESIGN 6): Transparency Code tenders and
contracts for a quarter, the contracts register, the Contracts Finder due list, award notices by
quarter (reg 50) and the audit log, taken through the export registry as CSV and as one XLSX
workbook, and read back the way an auditor's tools would (the csv module; the workbook's XML)."""
from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from datetime import date, timedelta
from decimal import Decimal
from xml.etree import ElementTree

import pytest
from sqlalchemy import func, select

from dps import audit, clock
from dps.exports import REGISTRY, Filters, get, tables, xlsxout
from dps.extensions import db
from dps.models import (
    Allocation,
    AuditEvent,
    Award,
    Bid,
    BudgetLine,
    BudgetYear,
    CallOff,
    Competition,
    Organisation,
)
from tests.applying import make_agreement, make_dps
from tests.conftest import count_queries, demo_application, set_clock

NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
Q1_2024 = Filters(date(2024, 1, 1), date(2024, 3, 31))


# Building the records -------------------------------------------------------------------------

class Records:
    """Competitions and call-offs with the dates, values and parties a test chooses, as the award
    pages leave them (a submitted bid, a confirmed award, the call-off, its budget commitment)."""

    def __init__(self, app, factory):
        self.app = app
        self.dps = make_dps(app)
        self.factory = factory
        self.creator = factory.user("buyer", organisation_id=self.organisation("Barking & Dagenham Council"))
        self.n = 0
        self.suppliers = 0
        with app.app_context():
            year = BudgetYear(label="2023/24", starts_on=date(2023, 4, 1), ends_on=date(2024, 3, 31))
            line = BudgetLine(year=year, programme="Policy Labs", total_pence=10_000_000_00,
                              cap_per_call_off_pence=None, allocated_pence=10_000_000_00)
            allocation = Allocation(line=line, organisation_id=self.creator["organisation_id"],
                                    project_title="Community wealth building lab", amount_pence=10_000_000_00,
                                    committed_pence=0)
            db.session.add_all([year, line, allocation])
            db.session.commit()
            self.allocation = allocation.id

    def organisation(self, name: str, **fields) -> int:
        with self.app.app_context():
            org = db.session.scalar(select(Organisation).where(Organisation.name == name))
            if org is None:
                kind = fields.pop("kind", "council")
                org = Organisation(name=name, kind=kind, membership="full" if kind == "council" else None,
                                   nation="England", created_at=clock.now(),
                                   contracting_authority=None if kind == "supplier" else kind == "council", **fields)
                db.session.add(org)
                db.session.commit()
            return org.id

    def supplier(self, name: str, *, legal_form: str = "co_operative", size: str = "small", vcse: bool = True,
                 registration: str | None = "", scheme: str | None = "GB-MPR") -> int:
        """A supplier; without a registration number given, a unique one is made up."""
        self.suppliers += 1
        if registration == "":
            registration = f"RS{900000 + self.suppliers}"
        return self.organisation(name, kind="supplier", legal_form=legal_form, size=size, is_vcse=vcse,
                                 registration_number=registration, identifier_scheme=scheme,
                                 identifier_id=registration, address_line_1="4 Mill Lane", address_line_2="Unit 2",
                                 town="Oldham", postcode="OL1 1AA")

    def competition(self, *, published: str | None, value_pence: int, title: str = "Community wealth review",
                    buyer: str = "Barking & Dagenham Council", description: str = "A review of the evidence.",
                    deadline_days: int = 14, lot_id: int | None = None) -> str:
        """A competition on ``lot_id`` (default: Lot 1 of the DPS made for the records)."""
        self.n += 1
        reference = f"CCIN-MC-T-{self.n:04d}"
        buyer_id = self.organisation(buyer)
        with self.app.app_context():
            published_at = clock.parse_london(published) if published else None
            deadline = (published_at or clock.now()) + timedelta(days=deadline_days)
            db.session.add(Competition(
                reference=reference, lot_id=lot_id or self.dps["lot1"], buyer_organisation_id=buyer_id,
                created_by_id=self.creator["id"], title=title, description=description,
                estimated_value_pence=value_pence, allocation_id=self.allocation,
                clarification_deadline=deadline - timedelta(days=4), tender_deadline=deadline, standstill=False,
                standstill_days=10, created_at=(published_at or clock.now()) - timedelta(days=1),
                published_at=published_at))
            db.session.commit()
        return reference

    def call_off(self, *, created: str, value_pence: int, supplier: str = "O'Brien & Daughters Co-operative Ltd",
                 buyer: str = "Barking & Dagenham Council", title: str = "Community wealth review",
                 irrecoverable_vat_pence: int = 0, paid_pence: int = 0, not_best_reason: str | None = None,
                 standstill: bool = False, estimate_pence: int | None = None, lot_id: int | None = None) -> str:
        """A call-off entered into at ``created`` (UK wall time), from a competition published 30
        days before the award with an estimated value of ``estimate_pence`` (default: the value)."""
        supplier_id = self.supplier(supplier) if not self._exists(supplier) else self.organisation(supplier)
        confirmed_at = clock.parse_london(created)
        decided_at = confirmed_at - timedelta(days=10 if standstill else 0)
        published = clock.to_london(decided_at - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
        reference = self.competition(published=published, value_pence=estimate_pence or value_pence, title=title,
                                     buyer=buyer, lot_id=lot_id)
        with self.app.app_context():
            competition = db.session.scalar(select(Competition).where(Competition.reference == reference))
            bid = Bid(competition_id=competition.id, organisation_id=supplier_id, state="submitted",
                      price_pence=value_pence, updated_at=competition.tender_deadline - timedelta(days=1),
                      submitted_at=competition.tender_deadline - timedelta(days=1), receipt_reference=f"R-{reference}")
            db.session.add(bid)
            db.session.flush()
            award = Award(competition_id=competition.id, bid_id=bid.id, value_pence=value_pence,
                          not_best_reason=not_best_reason, decided_at=decided_at, decided_by_id=self.creator["id"],
                          standstill_ends_at=confirmed_at if standstill else None, confirmed_at=confirmed_at)
            db.session.add(award)
            db.session.flush()
            starts_on = clock.to_london(confirmed_at).date() + timedelta(days=1)
            db.session.add(CallOff(
                reference=f"{reference}-C", competition_id=competition.id, award_id=award.id,
                supplier_organisation_id=supplier_id, buyer_organisation_id=competition.buyer_organisation_id,
                allocation_id=self.allocation, value_pence=value_pence, paid_pence=paid_pence,
                irrecoverable_vat_pence=irrecoverable_vat_pence, starts_on=starts_on,
                ends_on=starts_on + timedelta(days=364), created_at=confirmed_at))
            allocation = db.session.get(Allocation, self.allocation)
            allocation.committed_pence += value_pence
            db.session.flush()
            audit.record("call_off.created", "call_off", f"{reference}-C",
                         {"value_pence": value_pence, "committed_pence": allocation.committed_pence},
                         actor_label="test records", organisation_id=competition.buyer_organisation_id)
            db.session.commit()
        return f"{reference}-C"

    def _exists(self, name: str) -> bool:
        with self.app.app_context():
            return db.session.scalar(select(func.count()).where(Organisation.name == name)) > 0


@pytest.fixture
def records(app, factory) -> Records:
    return Records(app, factory)


# Reading exports back -------------------------------------------------------------------------

def take(app, name: str, filters: Filters = Filters()) -> tuple[bytes, int]:
    """Run an export as the CLI and the web do: write(filters, out, progress). Returns the bytes
    and the total the progress callback was given."""
    done: list[int] = []
    out = io.BytesIO()
    with app.app_context():
        get(name).write(filters, out, done.append)
    return out.getvalue(), sum(done)


def read_csv(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(b"\xef\xbb\xbf"), "UTF-8 with a byte order mark, for Excel"
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def csv_rows(app, name: str, filters: Filters = Filters()) -> list[dict[str, str]]:
    data, progressed = take(app, name, filters)
    rows = read_csv(data)
    assert progressed == len(rows)
    with app.app_context():
        assert get(name).count(filters) == len(rows)
    return rows


def excel_money(text: str) -> Decimal:
    """An amount cell as a spreadsheet reads it: the double nearest the text, shown to the
    penny. (xlsxwriter writes 17 significant digits, "0.07000000000000001" for £0.07, which is the
    same double as 0.07: what Excel and any reader get back is exactly 0.07.)"""
    return Decimal(repr(float(text)))


def excel_date(serial: str) -> date:
    return date(1899, 12, 30) + timedelta(days=int(Decimal(serial)))


def read_xlsx(data: bytes) -> dict[str, list[list[tuple[str, str]]]]:
    """Sheet name -> rows -> cells as (type, text): ('s', text) for strings, ('n', digits) for
    numbers. Any formula or hyperlink fails the test."""
    book = zipfile.ZipFile(io.BytesIO(data))
    names = book.namelist()
    assert not any("externalLink" in n for n in names)
    shared: list[str] = []
    if "xl/sharedStrings.xml" in names:
        root = ElementTree.fromstring(book.read("xl/sharedStrings.xml"))
        shared = [_unescape("".join(t.text or "" for t in si.iter(f"{{{NS['m']}}}t")))
                  for si in root.findall("m:si", NS)]
    workbook = ElementTree.fromstring(book.read("xl/workbook.xml"))
    rels = ElementTree.fromstring(book.read("xl/_rels/workbook.xml.rels"))
    targets = {r.get("Id"): r.get("Target") for r in rels}
    sheets = {}
    for sheet in workbook.find("m:sheets", NS):
        path = "xl/" + targets[sheet.get(REL_NS)].removeprefix("/xl/")
        xml = book.read(path)
        root = ElementTree.fromstring(xml)
        assert root.findall(".//m:f", NS) == [], "no formulas"
        assert root.find("m:hyperlinks", NS) is None, "no links"
        rows = []
        for row in root.find("m:sheetData", NS):
            cells = []
            for cell in row:
                kind = cell.get("t")
                index = _column_index(cell.get("r"))
                while len(cells) < index:
                    cells.append(("", ""))
                if kind == "inlineStr":
                    cells.append(("s", _unescape("".join(t.text or "" for t in cell.iter(f"{{{NS['m']}}}t")))))
                elif kind == "s":
                    cells.append(("s", shared[int(cell.find("m:v", NS).text)]))
                else:
                    assert kind in (None, "n"), f"unexpected cell type {kind}"
                    cells.append(("n", cell.find("m:v", NS).text))
            rows.append(cells)
        sheets[sheet.get("name")] = rows
    return sheets


def _unescape(text: str) -> str:
    """OOXML writes characters XML cannot hold as _xHHHH_ (and a literal "_x" as _x005F_x)."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)


def _column_index(reference: str) -> int:
    letters = re.match(r"[A-Z]+", reference).group(0)
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - 64
    return index - 1


# Transparency Code: a quarter -----------------------------------------------------------------

def test_a_quarters_transparency_csvs_list_exactly_the_tenders_and_contracts_over_5000(app, records):
    # Q1 2024 starts in GMT and ends in BST (the clocks went forward on 31 March 2024 at 1am).
    inside_tenders = [  # in order of publication
        records.competition(published="2024-01-01T00:00", value_pence=5_000_01),   # first moment, a penny over
        records.competition(published="2024-02-15T10:00", value_pence=50_000_00),
        records.competition(published="2024-03-31T23:59:59", value_pence=9_000_00),  # last second, BST
    ]
    records.competition(published="2024-02-15T10:00", value_pence=5_000_00)       # exactly £5,000: not over
    records.competition(published="2023-12-31T23:59:59", value_pence=9_000_00)    # the quarter before
    records.competition(published="2024-04-01T00:00", value_pence=9_000_00)       # the quarter after (BST)
    records.competition(published=None, value_pence=90_000_00)                    # a draft: never invited
    # (Their own competitions were estimated under £5,000, so the tenders list leaves them out.)
    inside_contracts = [
        records.call_off(created="2024-01-01T00:00", value_pence=5_000_01, estimate_pence=4_000_00),
        records.call_off(created="2024-03-31T23:59:59", value_pence=12_345_67, estimate_pence=4_000_00),
    ]
    records.call_off(created="2024-02-01T12:00", value_pence=5_000_00, estimate_pence=4_000_00)
    records.call_off(created="2023-12-31T23:59:59", value_pence=9_000_00, estimate_pence=4_000_00)
    records.call_off(created="2024-04-01T00:00", value_pence=9_000_00, estimate_pence=4_000_00)

    tenders = csv_rows(app, "transparency-tenders", Q1_2024)
    assert [r["Reference"] for r in tenders] == inside_tenders
    contracts = csv_rows(app, "transparency-contracts", Q1_2024)
    assert [r["Reference"] for r in contracts] == inside_contracts
    # The day before and the day after are the neighbouring quarters' business, one each side.
    assert len(csv_rows(app, "transparency-tenders", Filters(date(2023, 12, 31), date(2024, 4, 1)))) == 5
    assert len(csv_rows(app, "transparency-contracts", Filters(date(2023, 12, 31), date(2024, 4, 1)))) == 4


def test_the_transparency_columns_and_their_values(app, records):
    records.supplier("O'Brien & Daughters Co-operative Ltd", registration="RS012345")
    records.supplier("Ada Lovelace Consulting", legal_form="sole_trader", size="micro", vcse=False,
                     registration=None, scheme=None)
    records.supplier("Northern Policy Ltd", legal_form="company", size="large", vcse=False,
                     registration="09876543", scheme="GB-COH")
    tender = records.competition(published="2024-02-01T10:00", value_pence=12_000_00, title="Food poverty review",
                                 description="Evidence & options, with residents' voices.")
    co_op = records.call_off(created="2024-02-20T15:00", value_pence=12_000_00, irrecoverable_vat_pence=2_000_00,
                             title="Food poverty review")
    sole = records.call_off(created="2024-02-21T15:00", value_pence=6_000_00, supplier="Ada Lovelace Consulting")
    large = records.call_off(created="2024-02-22T15:00", value_pence=7_000_00, supplier="Northern Policy Ltd")

    tenders = {r["Reference"]: r for r in csv_rows(app, "transparency-tenders", Q1_2024)}
    assert list(tenders[tender]) == ["Reference", "Title", "Description", "Department", "Start date", "End date",
                                     "Review date", "Estimated value", "Lot", "Status", "Agreement reference"]
    assert tenders[tender] == {
        "Reference": tender, "Title": "Food poverty review", "Description": "Evidence & options, with residents' voices.",
        "Department": "Barking & Dagenham Council", "Start date": "2024-02-01", "End date": "2024-02-15",
        "Review date": "", "Estimated value": "12000.00", "Lot": "Lot 1: Research and policy",
        "Status": "Tenders closed: bids not opened", "Agreement reference": "CCIN-DPS-2020"}
    assert "no review date" in get("transparency-tenders").description.lower()
    # The competitions of the call-offs were awarded; their status says so.
    assert {r["Status"] for r in tenders.values() if r["Reference"] != tender} == {"Awarded"}

    contracts = {r["Reference"]: r for r in csv_rows(app, "transparency-contracts", Q1_2024)}
    assert contracts[co_op] == {
        "Reference": co_op, "Title": "Food poverty review", "Department": "Barking & Dagenham Council",
        "Description": "A review of the evidence.", "Supplier name": "O'Brien & Daughters Co-operative Ltd",
        "Supplier registration number": "RS012345", "Supplier identifier (org-id)": "GB-MPR-RS012345",
        "Supplier address": "4 Mill Lane, Unit 2, Oldham, OL1 1AA", "Total value (including VAT)": "12000.00",
        "Irrecoverable VAT": "2000.00", "Start date": "2024-02-21", "End date": "2025-02-19", "Review date": "",
        "Procurement route": "Mini-competition under the DPS (tender)", "SME": "Yes", "VCSE": "Yes",
        "Agreement reference": "CCIN-DPS-2020"}
    # A sole trader's address may be their home: left out. A large company is not an SME.
    assert contracts[sole]["Supplier address"] == "" and contracts[sole]["Supplier identifier (org-id)"] == ""
    assert (contracts[sole]["SME"], contracts[sole]["VCSE"]) == ("Yes", "No")
    assert contracts[large]["Supplier address"] == "4 Mill Lane, Unit 2, Oldham, OL1 1AA"
    assert (contracts[large]["SME"], contracts[large]["Supplier identifier (org-id)"]) == ("No", "GB-COH-09876543")
    assert "review date" in get("transparency-contracts").description.lower()


def test_tender_status_follows_the_clock_and_the_award(app, records):
    open_one = records.competition(published="2024-05-30T10:00", value_pence=8_000_00)  # deadline 13 June 2024
    rows = {r["Reference"]: r["Status"] for r in csv_rows(app, "transparency-tenders")}
    assert rows[open_one] == "Open for tenders"  # now is 3 June 2024
    with app.app_context():
        competition = db.session.scalar(select(Competition).where(Competition.reference == open_one))
        competition.cancelled_at, competition.cancel_reason = clock.now(), "The need has gone."
        db.session.commit()
    assert {r["Reference"]: r["Status"] for r in csv_rows(app, "transparency-tenders")}[open_one] == "Cancelled"


# Contracts register ---------------------------------------------------------------------------

def test_the_contracts_register_lists_every_call_off_and_adds_up_to_the_budget_commitments(app, records):
    first = records.call_off(created="2023-05-02T09:00", value_pence=1_234_56, paid_pence=1_000_00,
                             irrecoverable_vat_pence=1)
    second = records.call_off(created="2023-09-12T16:30", value_pence=19_999_99, standstill=True,
                              not_best_reason="Best social value for the borough.")
    records.call_off(created="2024-01-05T11:00", value_pence=1)
    rows = csv_rows(app, "contracts")
    assert len(rows) == 3
    total = sum(Decimal(r["Value (including VAT)"]) for r in rows)
    with app.app_context():
        committed = db.session.scalar(select(func.sum(Allocation.committed_pence)))
    assert total * 100 == committed == 1_234_56 + 19_999_99 + 1
    by_ref = {r["Reference"]: r for r in rows}
    assert list(rows[0])[:2] == ["Agreement", "Reference"] and {r["Agreement"] for r in rows} == {"CCIN-DPS-2020"}
    assert (by_ref[first]["Paid to date"], by_ref[first]["Remaining"]) == ("1000.00", "234.56")
    assert by_ref[first]["Irrecoverable VAT"] == "0.01"
    assert (by_ref[first]["Budget year"], by_ref[first]["Programme"], by_ref[first]["Project"]) == (
        "2023/24", "Policy Labs", "Community wealth building lab")
    assert by_ref[first]["Competition reference"] == first.removesuffix("-C")
    assert by_ref[first]["Date confirmed (UK time)"] == "2023-05-02T09:00:00+01:00"
    assert (by_ref[first]["Standstill used"], by_ref[first]["Not awarded to the best-ranked bid"]) == ("No", "No")
    assert by_ref[second]["Date awarded (UK time)"] == "2023-09-02T16:30:00+01:00"
    assert by_ref[second]["Standstill used"] == "Yes"
    assert by_ref[second]["Not awarded to the best-ranked bid"] == "Yes"
    assert by_ref[second]["Why not the best-ranked bid"] == "Best social value for the borough."
    # A period: only the call-offs entered into inside it.
    one_day = Filters(date(2023, 9, 12), date(2023, 9, 12))
    assert [r["Reference"] for r in csv_rows(app, "contracts", one_day)] == [second]


# Contracts Finder -----------------------------------------------------------------------------

def test_contracts_finder_lists_awards_at_or_above_the_threshold_in_force_on_their_day(app, records):
    due = {
        # Up to and including 20 December 2022: £25,000 (compared with the value including VAT).
        records.call_off(created="2022-12-20T23:59:59", value_pence=25_000_00): ("2022-12-20", "£25,000", "2023-03-20"),
        records.call_off(created="2022-12-20T10:00", value_pence=29_000_00): ("2022-12-20", "£25,000", "2023-03-20"),
        # From 21 December 2022: £30,000 including VAT.
        records.call_off(created="2022-12-21T00:00", value_pence=30_000_00): ("2022-12-21", "£30,000", "2023-03-21"),
        records.call_off(created="2023-07-01T00:30", value_pence=45_000_00): ("2023-07-01", "£30,000", "2023-09-29"),
    }
    records.call_off(created="2022-12-20T12:00", value_pence=24_999_99)  # a penny under the old threshold
    records.call_off(created="2022-12-21T00:00", value_pence=29_999_99)  # a penny under the new one
    records.call_off(created="2022-12-21T09:00", value_pence=29_000_00)  # due the day before, not on the day
    # 1 July 2023 00:30 BST is still 30 June in UTC: the UK date counts.
    rows = csv_rows(app, "contracts-finder")
    assert {r["Reference"] for r in rows} == set(due)
    for row in rows:
        entered, threshold, publish_by = due[row["Reference"]]
        assert row["Date entered into"] == entered
        assert row["Threshold applied"].startswith(threshold)
        assert row["Publish by"] == publish_by
        assert row["Agreement"] == "CCIN-DPS-2020"
    assert "just under" in get("contracts-finder").description


def test_contracts_finder_threshold_function_changes_on_21_december_2022():
    assert tables.contracts_finder_threshold(date(2022, 12, 20)) == 25_000_00
    assert tables.contracts_finder_threshold(date(2022, 12, 21)) == 30_000_00


# Award notices (reg 50) -----------------------------------------------------------------------

def test_award_notices_are_grouped_by_uk_quarter_with_their_send_by_dates(app, records):
    late_q4 = records.call_off(created="2023-12-31T23:59:59", value_pence=2_000_00)
    q1_end = records.call_off(created="2023-03-31T23:30", value_pence=1_000_00)     # BST: 22:30 UTC
    q2_start = records.call_off(created="2023-04-01T00:30", value_pence=1_500_00)   # still 31 March in UTC
    q2_end = records.call_off(created="2023-06-30T12:00", value_pence=3_000_00)
    q1_2024 = records.call_off(created="2024-01-01T00:00", value_pence=4_000_00)
    rows = csv_rows(app, "award-notices")
    assert [(r["Quarter"], r["Send by"], r["Reference"], r["Date entered into"]) for r in rows] == [
        ("2023 Q1 (Jan–Mar)", "2023-04-30", q1_end, "2023-03-31"),
        ("2023 Q2 (Apr–Jun)", "2023-07-30", q2_start, "2023-04-01"),
        ("2023 Q2 (Apr–Jun)", "2023-07-30", q2_end, "2023-06-30"),
        ("2023 Q4 (Oct–Dec)", "2024-01-30", late_q4, "2023-12-31"),
        ("2024 Q1 (Jan–Mar)", "2024-04-30", q1_2024, "2024-01-01"),
    ]
    assert rows[0]["Value (including VAT)"] == "1000.00"
    assert {r["Agreement"] for r in rows} == {"CCIN-DPS-2020"}
    assert tables.award_notice_send_by(date(2023, 8, 15)) == date(2023, 10, 30)


# The audit log --------------------------------------------------------------------------------

def test_the_audit_log_csv_has_every_event_of_the_period_in_chain_order(app, records, monkeypatch):
    for day in range(1, 5):
        records.call_off(created=f"2024-02-0{day}T10:00", value_pence=6_000_00)
    # Small fetches, so the stream crosses several fetch boundaries.
    monkeypatch.setattr(tables, "YIELD_PER", 3)
    rows = csv_rows(app, "audit")
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        expected = [(str(e.id), e.action, e.hash, e.prev_hash) for e in events]
        first = events[0]
        organisation = db.session.get(Organisation, first.organisation_id).name if first.organisation_id else ""
    assert len(expected) > 3
    assert [(r["Id"], r["Action"], r["Hash"], r["Previous hash"]) for r in rows] == expected
    assert rows[0]["Time (UK)"] == clock.to_london(first.occurred_at).isoformat(timespec="seconds")
    assert rows[0]["Time (UTC)"] == first.occurred_at.isoformat(timespec="seconds")
    assert rows[0]["Time (UK)"].endswith("+01:00") and rows[0]["Time (UTC)"].endswith("+00:00")  # June 2024
    assert rows[0]["Organisation"] == organisation and rows[0]["Actor"] == first.actor_label
    assert json.loads(rows[0]["Data"]) == first.data
    assert rows[0]["Data"] == json.dumps(first.data, sort_keys=True, ensure_ascii=False)
    # The period, by UK day: the events so far are at "now", 3 June 2024 9am.
    assert csv_rows(app, "audit", Filters(date(2024, 6, 2), date(2024, 6, 2))) == []
    assert len(csv_rows(app, "audit", Filters(date(2024, 6, 3), date(2024, 6, 3)))) == len(expected)
    set_clock(app, "2024-06-04T00:00")  # 23:00 UTC on 3 June
    with app.app_context():
        audit.record("test.midnight", "test", 1, {"note": "=1+1 & Môn"}, actor_label="test")
        db.session.commit()
    assert [r["Action"] for r in csv_rows(app, "audit", Filters(date(2024, 6, 4)))] == ["test.midnight"]
    assert len(csv_rows(app, "audit", Filters(None, date(2024, 6, 3)))) == len(expected)
    last = csv_rows(app, "audit")[-1]
    assert (last["Time (UK)"], last["Time (UTC)"]) == ("2024-06-04T00:00:00+01:00", "2024-06-03T23:00:00+00:00")
    assert json.loads(last["Data"]) == {"note": "=1+1 & Môn"}


# Queries do not grow with rows ----------------------------------------------------------------

def test_the_number_of_queries_does_not_grow_with_the_number_of_rows(app, records):
    # A second agreement, so that taken for one agreement the exports leave rows out.
    second = make_agreement(app, reference="CCIN-DPS-2023", title="A second DPS", starts_on=date(2023, 1, 1),
                            ends_on=date(2027, 12, 31), questionnaire_version="sq-second",
                            lots=((1, "Research", 0, 0, 0),))

    def queries(count: int) -> dict[tuple[str, str | None], int]:
        for i in range(count):
            records.call_off(created=f"2024-02-{1 + i % 28:02d}T10:00", value_pence=31_000_00 + i,
                             supplier=f"Supplier {i % 5}", lot_id=second["lot1"] if i % 2 else None)
        result = {}
        for name in ("transparency-tenders", "transparency-contracts", "contracts", "contracts-finder",
                     "award-notices", "audit", "xlsx"):
            for agreement in (None, "CCIN-DPS-2020", "CCIN-DPS-2023"):
                with app.app_context():
                    export = get(name)
                    with count_queries(app) as n:
                        export.write(Filters(agreement=agreement), io.BytesIO(), lambda _: None)
                        result[name, agreement] = n()
        return result

    few = queries(3)
    many = queries(27)  # 30 in all
    assert few == many, (few, many)


# The workbook ---------------------------------------------------------------------------------

def test_the_workbook_has_a_sheet_per_report_with_the_same_rows_as_the_csvs(app, records):
    records.competition(published="2024-02-01T10:00", value_pence=12_000_00)
    records.call_off(created="2024-02-20T15:00", value_pence=1_234_56, irrecoverable_vat_pence=1,
                     supplier="O'Brien & Daughters Co-operative Ltd", buyer="Ynys Môn / Isle of Anglesey County Council")
    records.call_off(created="2022-12-21T10:00", value_pence=30_000_00, buyer="Comhairle nan Eilean Siar")
    data, progressed = take(app, "xlsx")
    sheets = read_xlsx(data)
    assert list(sheets) == [t.sheet for t in tables.TABLES]
    assert all(len(name) <= 31 for name in sheets)
    with app.app_context():
        assert get("xlsx").count(Filters()) == progressed == sum(len(rows) - 1 for rows in sheets.values())
    for table in tables.TABLES:
        rows = sheets[table.sheet]
        assert [text for _, text in rows[0]] == table.headings
        assert len(rows) - 1 == len(csv_rows(app, table.name))
    register = sheets["Contracts register"]
    heading = [text for _, text in register[0]]
    anglesey = next(r for r in register[1:] if r[heading.index("Buyer")][1].startswith("Ynys"))
    assert anglesey[heading.index("Buyer")] == ("s", "Ynys Môn / Isle of Anglesey County Council")
    assert anglesey[heading.index("Supplier")] == ("s", "O'Brien & Daughters Co-operative Ltd")
    kind, value = anglesey[heading.index("Value (including VAT)")]
    assert kind == "n" and excel_money(value) == Decimal("1234.56")
    assert excel_money(anglesey[heading.index("Irrecoverable VAT")][1]) == Decimal("0.01")
    assert excel_date(anglesey[heading.index("Start date")][1]) == date(2024, 2, 21)
    assert anglesey[heading.index("Standstill used")] == ("s", "No")
    # Money is formatted in pounds: the workbook's styles hold the £ format.
    styles = zipfile.ZipFile(io.BytesIO(data)).read("xl/styles.xml").decode("utf-8")
    assert "£#,##0.00" in styles


def test_a_sheet_that_reaches_excels_row_limit_continues_on_another(app, records, monkeypatch):
    for day in range(1, 8):
        records.call_off(created=f"2024-02-0{day}T10:00", value_pence=6_000_00)
    monkeypatch.setattr(xlsxout, "SHEET_ROW_LIMIT", 4)  # a header and 3 rows per sheet
    with app.app_context():
        events = db.session.scalar(select(func.count(AuditEvent.id)))
    sheets = read_xlsx(take(app, "xlsx")[0])
    parts = [name for name in sheets if name.startswith("Audit log")]
    assert parts[:2] == ["Audit log", "Audit log (2)"] and len(parts) == -(-events // 3)
    ids = [int(row[0][1]) for name in parts for row in sheets[name][1:]]
    assert len(ids) == events and ids == sorted(ids)
    assert all(sheets[name][0][0] == ("s", "Id") for name in parts)


def test_every_table_report_is_registered_as_a_csv_for_the_dps_team_and_auditors():
    for table in tables.TABLES:
        export = REGISTRY[table.name]
        assert (export.extension, export.media_type) == ("csv", "text/csv; charset=utf-8")
        assert export.count is table.count and export.title == table.title
        assert export.audience == ("dps_admin", "auditor")
    xlsx = REGISTRY["xlsx"]
    assert xlsx.title == "All reports (Excel workbook)"
    assert xlsx.media_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert xlsx.filename(Q1_2024) == "ccin-dps-xlsx-2024-01-01_to_2024-03-31.xlsx"


# The demo data --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_app(database_template, tmp_path_factory):
    """One demo load for the module (it takes seconds): these tests only read it."""
    with demo_application(database_template, tmp_path_factory) as application:
        yield application


def test_the_demo_contracts_register_equals_the_budget_commitments(demo_app):
    rows = csv_rows(demo_app, "contracts")
    with demo_app.app_context():
        committed = db.session.scalar(select(func.sum(Allocation.committed_pence)))
        call_offs = db.session.scalar(select(func.count(CallOff.id)))
        paid = db.session.scalar(select(func.sum(CallOff.paid_pence)))
    assert len(rows) == call_offs > 0
    assert sum(Decimal(r["Value (including VAT)"]) for r in rows) * 100 == committed
    assert sum(Decimal(r["Paid to date"]) for r in rows) * 100 == paid
    # Every demo buyer is a real council or the network: names with ampersands and apostrophes
    # come through as they are.
    with demo_app.app_context():
        names = set(db.session.scalars(
            select(Organisation.name).join(CallOff, CallOff.buyer_organisation_id == Organisation.id)))
    assert {r["Buyer"] for r in rows} == names


def test_every_demo_export_writes_as_many_rows_as_it_counts(demo_app):
    for table in tables.TABLES:
        rows = csv_rows(demo_app, table.name)
        assert all(len(r) == len(table.columns) for r in rows)
    data, progressed = take(demo_app, "xlsx")
    sheets = read_xlsx(data)
    assert progressed == sum(len(rows) - 1 for rows in sheets.values())
