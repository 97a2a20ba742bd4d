"""Exports by agreement (issue 9, item 2): with two published agreements and a draft side by side,
each export taken for one agreement holds only that agreement's rows and says so in its
Agreement column; taken for all it holds both published ones; a draft's records never appear
anywhere. The exports page, the command line and the public OCDS feeds take the agreement and
refuse a reference that names no published agreement."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import date

import pytest
from sqlalchemy import select

from dps import clock
from dps.exports import Filters, get, tables, xlsxout
from dps.exports import ocds
from dps.extensions import db
from dps.models import Admission, Application, ApplicationLot, Organisation
from tests.applying import make_agreement
from tests.conftest import count_queries
from tests.test_export_delivery import period, taken_events
from tests.test_export_delivery import take as take_from_web
from tests.test_exports_tables import Records, csv_rows, read_csv, read_xlsx
from tests.test_exports_tables import take as take_export

FIRST = "CCIN-DPS-2020"
SECOND = "CCIN-DPS-2023"
DRAFT = "CCIN-DPS-DRAFT"
AGREEMENT_COLUMN = {"transparency-tenders": "Agreement reference", "transparency-contracts": "Agreement reference",
                    "contracts": "Agreement", "contracts-finder": "Agreement", "award-notices": "Agreement"}
# Words only the draft's records hold: none may appear in any export.
DRAFT_WORDS = (DRAFT, "A draft purchasing system", "Draft secret review", "Draft Supplier Ltd", "Draft lot")


@dataclass
class World:
    records: Records
    ids: dict[str, dict]           # agreement reference -> make_agreement's ids
    call_offs: dict[str, str]      # agreement reference -> its call-off's reference
    competitions: dict[str, str]   # agreement reference -> its competition's reference (the call-off's)
    open_tenders: dict[str, str]   # agreement reference -> a competition still open for tenders


def admit(app, factory, agreement_id: int, lot_id: int, name: str, version: str) -> int:
    """A supplier admitted to ``lot_id``, with the application that admitted it."""
    user = factory.user("supplier")
    with app.app_context():
        org = db.session.get(Organisation, user["organisation_id"])
        org.name, org.legal_form = name, "company"
        now = clock.now()
        application = Application(organisation_id=org.id, agreement_id=agreement_id, questionnaire_version=version,
                                  created_by_id=user["id"], created_at=now, updated_at=now, submitted_at=now,
                                  decided_at=now)
        decision = ApplicationLot(lot_id=lot_id, decision="admitted", decided_at=now)
        application.lots.append(decision)
        db.session.add(application)
        db.session.flush()
        db.session.add(Admission(organisation_id=org.id, lot_id=lot_id, application_lot_id=decision.id,
                                 admitted_at=now, status="admitted", status_changed_at=now))
        db.session.commit()
        return org.id


@pytest.fixture
def world(app, factory) -> World:
    records = Records(app, factory)  # the first agreement, CCIN-DPS-2020, with its lots 1 and 2
    ids = {FIRST: records.dps}
    ids[SECOND] = make_agreement(app, reference=SECOND, title="CCIN Social Value DPS", starts_on=date(2023, 1, 1),
                                 ends_on=date(2027, 12, 31), questionnaire_version="sq-second",
                                 lots=((1, "Social value measurement", 0, 0, 1), (2, "Evaluation", 0, 0, 1)))
    # A draft with a lot, and (as no service would allow, to prove nothing leaks) an admission,
    # a competition and a call-off on it.
    ids[DRAFT] = make_agreement(app, reference=DRAFT, title="A draft purchasing system", starts_on=date(2024, 1, 1),
                                ends_on=date(2024, 12, 31), questionnaire_version=None, publish=False,
                                lots=((1, "Draft lot", 0, 0, 0),))
    admit(app, factory, ids[FIRST]["agreement"], ids[FIRST]["lot1"], "Alpha Research Ltd", "ccin-sq-2020-04")
    admit(app, factory, ids[SECOND]["agreement"], ids[SECOND]["lot1"], "Beta Measures Ltd", "sq-second")
    admit(app, factory, ids[DRAFT]["agreement"], ids[DRAFT]["lot1"], "Draft Supplier Ltd", "ccin-sq-2020-04")
    call_offs = {
        FIRST: records.call_off(created="2024-02-10T10:00", value_pence=40_000_00, title="Alpha review",
                                supplier="Alpha Research Ltd", lot_id=ids[FIRST]["lot1"]),
        SECOND: records.call_off(created="2024-02-12T10:00", value_pence=45_000_00, title="Beta review",
                                 supplier="Beta Measures Ltd", lot_id=ids[SECOND]["lot1"]),
        DRAFT: records.call_off(created="2024-02-14T10:00", value_pence=50_000_00, title="Draft secret review",
                                supplier="Draft Supplier Ltd", lot_id=ids[DRAFT]["lot1"]),
    }
    open_tenders = {
        ref: records.competition(published="2024-05-30T10:00", value_pence=9_000_00, title=f"Open on {ref}",
                                 lot_id=ids[ref]["lot1"])
        for ref in (FIRST, SECOND)}
    records.competition(published="2024-05-30T10:00", value_pence=9_000_00, title="Draft secret review",
                        lot_id=ids[DRAFT]["lot1"])
    return World(records, ids, call_offs, {ref: c.removesuffix("-C") for ref, c in call_offs.items()}, open_tenders)


def no_draft(text: str) -> None:
    leaked = [word for word in DRAFT_WORDS if word in text]
    assert leaked == [], leaked


def csv_text(app, name: str, filters: Filters) -> str:
    return take_export(app, name, filters)[0].decode("utf-8-sig")


# Filters ------------------------------------------------------------------------------------------

def test_the_filters_carry_the_agreement_into_the_audit_event_and_the_file_name():
    q1 = Filters(date(2024, 1, 1), date(2024, 3, 31), "ccin-dps-2023 ")
    assert q1.agreement == SECOND
    assert q1.as_dict() == {"from": "2024-01-01", "to": "2024-03-31", "agreement": SECOND}
    assert q1.label() == "ccin-dps-2023_2024-01-01_to_2024-03-31"
    assert Filters(agreement=SECOND).label() == "ccin-dps-2023_all"
    assert Filters(agreement="").agreement is None and Filters().as_dict()["agreement"] is None
    assert get("contracts").filename(q1) == "ccin-dps-contracts-ccin-dps-2023_2024-01-01_to_2024-03-31.csv"
    # The audit log is one chain: it is always taken whole, and named and recorded so.
    audit = get("audit")
    assert not audit.by_agreement and audit.applicable(q1) == Filters(date(2024, 1, 1), date(2024, 3, 31))
    assert audit.filename(q1) == "ccin-dps-audit-2024-01-01_to_2024-03-31.csv"
    assert all(get(name).by_agreement for name in (*AGREEMENT_COLUMN, "ocds", "records", "xlsx"))


# The tables ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(AGREEMENT_COLUMN))
def test_each_report_for_one_agreement_holds_only_its_rows_and_says_so(app, world, name):
    column = AGREEMENT_COLUMN[name]
    everything = csv_rows(app, name)
    assert {r[column] for r in everything} == {FIRST, SECOND}
    for reference in (FIRST, SECOND):
        rows = csv_rows(app, name, Filters(agreement=reference))  # csv_rows also checks count() agrees
        assert rows and {r[column] for r in rows} == {reference}
        assert rows == [r for r in everything if r[column] == reference], "the same rows, in the same order"
        mine = {world.call_offs[reference], world.competitions[reference]}
        assert {r["Reference"] for r in rows} & mine
        others = {world.call_offs[other] for other in world.call_offs if other != reference}
        assert not {r["Reference"] for r in rows} & others
    for filters in (Filters(), Filters(agreement=FIRST), Filters(agreement=SECOND)):
        no_draft(csv_text(app, name, filters))
    # Asked for the draft (as no page or command would let anyone), or an unknown reference: nothing.
    assert csv_rows(app, name, Filters(agreement=DRAFT)) == []
    assert csv_rows(app, name, Filters(agreement="NO-SUCH-AGREEMENT")) == []


def test_the_transparency_reports_keep_the_codes_columns_with_the_agreement_last(app, world):
    tenders = read_csv(take_export(app, "transparency-tenders", Filters())[0])
    assert list(tenders[0]) == ["Reference", "Title", "Description", "Department", "Start date", "End date",
                                "Review date", "Estimated value", "Lot", "Status", "Agreement reference"]
    contracts = read_csv(take_export(app, "transparency-contracts", Filters())[0])
    assert list(contracts[0]) == [
        "Reference", "Title", "Department", "Description", "Supplier name", "Supplier registration number",
        "Supplier identifier (org-id)", "Supplier address", "Total value (including VAT)", "Irrecoverable VAT",
        "Start date", "End date", "Review date", "Procurement route", "SME", "VCSE", "Agreement reference"]
    by_ref = {r["Reference"]: r for r in tenders}
    assert by_ref[world.open_tenders[SECOND]]["Agreement reference"] == SECOND
    assert by_ref[world.open_tenders[SECOND]]["Lot"] == "Lot 1: Social value measurement"
    for name in ("contracts", "contracts-finder", "award-notices"):
        assert tables.table(name).headings[0] == "Agreement"


def test_award_notices_are_a_batch_per_agreement(app, world):
    world.records.call_off(created="2024-01-05T10:00", value_pence=6_000_00, lot_id=world.ids[SECOND]["lot1"])
    rows = csv_rows(app, "award-notices")
    assert [(r["Agreement"], r["Date entered into"]) for r in rows] == [
        (FIRST, "2024-02-10"), (SECOND, "2024-01-05"), (SECOND, "2024-02-12")]


def test_the_contracts_register_of_each_agreement_adds_up_to_the_whole(app, world):
    from decimal import Decimal

    def total(filters: Filters) -> Decimal:
        return sum(Decimal(r["Value (including VAT)"]) for r in csv_rows(app, "contracts", filters))

    assert total(Filters(agreement=FIRST)) == Decimal("40000.00")
    assert total(Filters(agreement=SECOND)) == Decimal("45000.00")
    assert total(Filters()) == total(Filters(agreement=FIRST)) + total(Filters(agreement=SECOND))


def test_the_audit_log_is_whole_whichever_agreement_is_asked_for(app, world):
    whole = csv_rows(app, "audit")
    assert csv_rows(app, "audit", Filters(agreement=SECOND)) == whole
    # It holds the draft's own events: the log is the record of everything, drafts included.
    assert any(DRAFT in r["Data"] for r in whole)


def test_the_workbook_for_one_agreement_has_its_rows_and_leaves_the_audit_log_out(app, world):
    sheets = read_xlsx(take_export(app, "xlsx", Filters())[0])
    assert list(sheets) == [t.sheet for t in tables.TABLES]
    for reference in (FIRST, SECOND):
        filters = Filters(agreement=reference)
        data, progressed = take_export(app, "xlsx", filters)
        mine = read_xlsx(data)
        assert list(mine) == [t.sheet for t in tables.TABLES if t.name != "audit"]
        with app.app_context():
            assert get("xlsx").count(filters) == progressed == sum(len(rows) - 1 for rows in mine.values())
        for table in tables.TABLES:
            if table.name == "audit":
                continue
            heading = [text for _, text in mine[table.sheet][0]]
            column = heading.index(AGREEMENT_COLUMN[table.name])
            assert {row[column] for row in mine[table.sheet][1:]} == {("s", reference)}, table.name
            assert len(mine[table.sheet]) - 1 == len(csv_rows(app, table.name, filters))
        strings = json.dumps(mine)
        no_draft(strings)
        assert (world.call_offs[FIRST] in strings) == (reference == FIRST)
    no_draft(json.dumps({k: v for k, v in sheets.items() if k != "Audit log"}))


def test_query_counts_do_not_depend_on_the_agreement_or_its_size(app, world):
    def queries(filters: Filters) -> dict[str, int]:
        result = {}
        for name in (*AGREEMENT_COLUMN, "xlsx"):
            with app.app_context(), count_queries(app) as n:
                get(name).write(filters, io.BytesIO(), lambda _: None)
                result[name] = n()
        return result

    before = queries(Filters(agreement=SECOND))
    for day in range(1, 9):
        world.records.call_off(created=f"2024-03-0{day}T10:00", value_pence=35_000_00 + day,
                               lot_id=world.ids[SECOND]["lot1"], supplier=f"Supplier {day % 3}")
    assert queries(Filters(agreement=SECOND)) == before
    # The xlsx for one agreement leaves out the audit log: fewer queries than the whole workbook.
    everything = queries(Filters())
    assert {k: v for k, v in everything.items() if k != "xlsx"} == {k: v for k, v in before.items() if k != "xlsx"}


# OCDS ---------------------------------------------------------------------------------------------

def ocds_package(app, kind: str, filters: Filters = Filters(), public: bool = False) -> dict:
    with app.app_context():
        out = io.BytesIO()
        ocds.write_package(kind, filters, out, public=public)
        db.session.rollback()
    return json.loads(out.getvalue())


def ocids(package: dict) -> set[str]:
    items = package["releases"] if "releases" in package else package["records"]
    return {item["ocid"] for item in items}


def expected_ocids(world: World, reference: str, public: bool) -> set[str]:
    found = {f"ocds-ccindps-{reference}", f"ocds-ccindps-{world.competitions[reference]}"}
    if not public:  # still open for tenders: in the team's export only
        found.add(f"ocds-ccindps-{world.open_tenders[reference]}")
    return found


@pytest.mark.parametrize("public", [False, True])
@pytest.mark.parametrize("kind", ["releases", "records"])
def test_ocds_for_one_agreement_holds_its_dps_process_and_its_competitions(app, world, kind, public):
    whole = ocds_package(app, kind, public=public)
    assert ocids(whole) == expected_ocids(world, FIRST, public) | expected_ocids(world, SECOND, public)
    no_draft(json.dumps(whole, ensure_ascii=False))
    for reference in (FIRST, SECOND):
        package = ocds_package(app, kind, Filters(agreement=reference), public=public)
        assert ocids(package) == expected_ocids(world, reference, public)
        assert package["uri"].endswith(f"?agreement={reference}")
        text = json.dumps(package, ensure_ascii=False)
        no_draft(text)
        # Every competition links to its own agreement's DPS process.
        releases = package["releases"] if kind == "releases" else [
            r for record in package["records"] for r in record["releases"]]
        links = {p["identifier"] for r in releases for p in r.get("relatedProcesses", [])}
        assert links == {f"ocds-ccindps-{reference}"}
    with pytest.raises(ocds.NothingToExport, match=f"of {DRAFT}"):
        ocds_package(app, kind, Filters(agreement=DRAFT), public=public)


# The exports page ----------------------------------------------------------------------------------

def test_the_page_offers_all_agreements_and_each_published_one(app, world, signed_in):
    team, _ = signed_in("dps_admin")
    body = team.get("/team/exports").get_data(as_text=True)
    assert '<select class="govuk-select' in body and 'name="agreement"' in body
    assert '<option value="" selected>All agreements</option>' in body
    assert f'<option value="{FIRST}">{FIRST}: CCIN Dynamic Purchasing System</option>' in body
    assert f'<option value="{SECOND}">{SECOND}: CCIN Social Value DPS</option>' in body
    no_draft(body)
    assert "The audit log is one chain for the whole service" in body
    # ?agreement= chooses one (a shortcut), and the quarter links keep it.
    body = team.get(f"/team/exports?agreement={SECOND.lower()}").get_data(as_text=True)
    assert f'<option value="{SECOND}" selected>' in body
    assert f"/team/exports?quarter=2024-Q2&amp;agreement={SECOND}" in body
    assert '<option value="" selected>' not in team.get(f"/team/exports?agreement={FIRST}").get_data(as_text=True)
    assert '<option value="" selected>' in team.get(f"/team/exports?agreement={DRAFT}").get_data(as_text=True)


def test_the_page_takes_a_fixed_number_of_queries_however_many_agreements(app, world, signed_in):
    team, _ = signed_in("dps_admin")
    team.get("/team/exports")
    with count_queries(app) as n:
        assert team.get("/team/exports").status_code == 200
    few = n()
    make_agreement(app, reference="CCIN-DPS-2024", title="Another", questionnaire_version="sq-third",
                   starts_on=date(2024, 1, 1), ends_on=date(2028, 12, 31), lots=((1, "One", 0, 0, 0),))
    with count_queries(app) as n:
        body = team.get("/team/exports").get_data(as_text=True)
    assert n() == few <= 8 and "CCIN-DPS-2024: Another" in body


@pytest.mark.parametrize("reference", ["NO-SUCH-AGREEMENT", DRAFT, "<script>"])
def test_an_agreement_not_offered_is_a_field_error(app, world, signed_in, reference):
    team, _ = signed_in("dps_admin")
    response = take_from_web(team, "contracts", {**period("1 1 2024", "31 3 2024"), "agreement": reference})
    assert response.status_code == 400
    assert "Content-Disposition" not in response.headers
    body = response.get_data(as_text=True)
    assert 'href="#agreement"' in body and 'id="agreement-error"' in body
    assert "Choose an agreement from the list, or All agreements" in body
    assert "<script>" not in body
    assert taken_events(app) == []


def test_the_team_takes_an_export_for_one_agreement_and_it_is_recorded(app, world, signed_in):
    team, _ = signed_in("auditor")
    response = take_from_web(team, "contracts", {**period("1 1 2024", "31 3 2024"), "agreement": SECOND})
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    assert 'filename="ccin-dps-contracts-ccin-dps-2023_2024-01-01_to_2024-03-31.csv"' in \
        response.headers["Content-Disposition"]
    rows = read_csv(response.get_data())
    assert [(r["Agreement"], r["Reference"]) for r in rows] == [(SECOND, world.call_offs[SECOND])]
    [event] = taken_events(app)
    assert event.data["filters"] == {"from": "2024-01-01", "to": "2024-03-31", "agreement": SECOND}

    # "All agreements" is the default.
    response = take_from_web(team, "contracts", period("1 1 2024", "31 3 2024"))
    assert {r["Agreement"] for r in read_csv(response.get_data())} == {FIRST, SECOND}
    assert taken_events(app)[-1].data["filters"]["agreement"] is None

    # The audit log is taken whole, and recorded as whole, whichever agreement is chosen.
    response = take_from_web(team, "audit", {**period(), "agreement": SECOND})
    assert response.status_code == 200
    assert 'filename="ccin-dps-audit-all.csv"' in response.headers["Content-Disposition"]
    assert any(FIRST in r["Data"] for r in read_csv(response.get_data()))
    assert taken_events(app)[-1].data["filters"] == {"from": None, "to": None, "agreement": None}


def test_an_agreement_with_nothing_in_the_period_says_so_by_the_period(app, world, signed_in):
    team, _ = signed_in("dps_admin")
    response = take_from_web(team, "ocds", {**period("1 1 2020", "31 12 2020"), "agreement": SECOND})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert f"There are no OCDS releases of {SECOND} in this period: choose another period or agreement" in body
    assert f'<option value="{SECOND}" selected>' in body, "the agreement chosen is kept"
    assert taken_events(app) == []


# The command line ----------------------------------------------------------------------------------

def run(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def test_the_command_line_takes_an_export_for_one_agreement(app, world, tmp_path):
    out = tmp_path / "contracts.csv"
    result = run(app, "export", "contracts", "--agreement", SECOND.lower(), "--quarter", "2024-Q1", "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = read_csv(out.read_bytes())
    assert [(r["Agreement"], r["Reference"]) for r in rows] == [(SECOND, world.call_offs[SECOND])]
    [event] = taken_events(app)
    assert event.data["filters"] == {"from": "2024-01-01", "to": "2024-03-31", "agreement": SECOND}

    out = tmp_path / "releases.json"
    result = run(app, "export", "ocds", "--agreement", FIRST, "--out", str(out))
    assert result.exit_code == 0, result.output
    package = json.loads(out.read_bytes())
    assert ocids(package) == expected_ocids(world, FIRST, public=False)

    out = tmp_path / "tenders.csv"
    result = run(app, "export", "transparency", "--report", "tenders", "--agreement", FIRST, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert {r["Agreement reference"] for r in read_csv(out.read_bytes())} == {FIRST}


@pytest.mark.parametrize("kind, reference, message", [
    ("contracts", "NO-SUCH-AGREEMENT", "'NO-SUCH-AGREEMENT' is not an agreement's reference. "
                                       f"Published agreements: {SECOND}, {FIRST}"),
    ("xlsx", DRAFT, f"'{DRAFT}' is a draft, and drafts are never exported"),
    ("audit", FIRST, "the audit export cannot be taken for one agreement"),
])
def test_the_command_line_refuses_an_agreement_it_cannot_export(app, world, tmp_path, kind, reference, message):
    out = tmp_path / "x"
    result = run(app, "export", kind, "--agreement", reference, "--out", str(out))
    assert result.exit_code == 2, result.output
    assert "--agreement" in result.stderr
    assert message in " ".join(result.stderr.split())
    assert not out.exists() and taken_events(app) == []


def test_the_command_lines_help_names_the_option(app):
    text = " ".join(run(app, "export", "--help").output.split())
    assert "--agreement REFERENCE" in text and "Not for audit" in text


# The public feeds ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["releases", "records"])
def test_the_public_feeds_take_an_agreement(app, world, kind):
    client = app.test_client()
    url = f"/ocds/{kind}.json"
    response = client.get(f"{url}?agreement={SECOND.lower()}")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    package = response.get_json()
    assert ocids(package) == expected_ocids(world, SECOND, public=True)
    assert package["uri"] == f"http://dps.test{url}?agreement={SECOND}"
    assert response.headers["Content-Disposition"] == f'inline; filename="ccin-dps-{kind}-ccin-dps-2023_all.json"'
    no_draft(response.get_data(as_text=True))
    # With a period too; and an empty parameter is every agreement.
    response = client.get(f"{url}?from=2024-02-01&to=2024-02-29&agreement={FIRST}")
    assert response.status_code == 200
    assert f"ocds-ccindps-{world.competitions[FIRST]}" in ocids(response.get_json())
    everything = client.get(f"{url}?agreement=").get_json()
    assert ocids(everything) == expected_ocids(world, FIRST, True) | expected_ocids(world, SECOND, True)


@pytest.mark.parametrize("reference", ["NO-SUCH-AGREEMENT", DRAFT, DRAFT.lower(), "x" * 80])
def test_the_public_feeds_refuse_an_agreement_that_is_not_published(app, world, reference):
    for url in ("/ocds/releases.json", "/ocds/records.json"):
        response = app.test_client().get(f"{url}?agreement={reference}")
        assert response.status_code == 404
        assert response.content_type == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        body = response.get_json()
        assert body["parameter"] == "agreement"
        assert "'agreement' parameter must be the reference of a published agreement" in body["error"]
        # A draft reads exactly like an agreement that does not exist.
        assert body["error"] == ("The 'agreement' parameter must be the reference of a published agreement, like "
                                 f"CCIN-DPS-2020: no published agreement has the reference {reference[:50]!r}")


def test_a_bad_date_is_still_a_400_before_the_agreement_is_looked_at(app, world):
    body = app.test_client().get("/ocds/releases.json?from=2024-13-01&agreement=NOPE").get_json()
    assert body["parameter"] == "from"
