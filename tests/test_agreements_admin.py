"""The DPS team's agreement and lot pages: who may do what, each rule at its boundary, and what
suppliers and buyers are then told."""
from __future__ import annotations

import html
import re
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from dps import clock
from dps.extensions import db
from dps.models import Agreement, AuditEvent, Lot
from dps.services import ServiceError, agreements
from tests.applying import accountable_body, complete_draft, make_agreement, make_dps
from tests.conftest import count_queries, set_clock


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _field_error(response, field: str) -> str:
    match = re.search(rf'id="{field}-error"[^>]*>(.*?)</p>', response.get_data(as_text=True), re.S)
    assert match, f"no error by {field}"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).replace("Error:", "").strip()


def _form(body_id: int, **changes) -> dict:
    data = {"reference": "CCIN-DM-2025", "title": "CCIN Dynamic Market 2025 to 2029", "description": "",
            "regime": "pa2023_dynamic_market", "starts_on": ["1", "7", "2025"], "ends_on": ["30", "6", "2029"],
            "nation": "England", "accountable_body_id": str(body_id)}
    data.update(changes)
    return data


def _lot(**changes) -> dict:
    data = {"number": "1", "title": "Research", "description": "Research work.", "scope": "",
            "cpv_codes": "73000000-2", "selection_criteria": "Two case studies.",
            "public_liability_min_pence": "1000000", "professional_indemnity_min_pence": "0",
            "case_studies_required": "2"}
    data.update(changes)
    return data


@pytest.fixture
def team(app, signed_in):
    body = accountable_body(app)
    browser, _ = signed_in("dps_admin", organisation_id=body)
    browser.body_id = body
    return browser


# Who may do what -----------------------------------------------------------------------------------

def test_auditors_read_agreements_and_lots_but_change_nothing(app, signed_in):
    ids = make_dps(app)
    auditor, _ = signed_in("auditor", organisation_id=ids["body"])
    assert auditor.get("/team/agreements").status_code == 200
    page = _text(auditor.get(f"/team/agreements/{ids['agreement']}"))
    assert "Lot 1: Research and policy" in page and "Change the agreement" not in page and "Add a lot" not in page
    base = f"/team/agreements/{ids['agreement']}"
    for url in ("/team/agreements/new", f"{base}/edit", f"{base}/lots/new", f"{base}/lots/{ids['lot1']}/edit"):
        assert auditor.get(url).status_code == 403, url
    token = auditor.csrf_token("/team/agreements")
    for url in (f"{base}/publish", f"{base}/unpublish", f"{base}/lots/{ids['lot1']}/close",
                f"{base}/lots/{ids['lot1']}/delete", "/team/agreements/new"):
        assert auditor.post(url, data={"csrf_token": token}).status_code == 403, url


@pytest.mark.parametrize("role", ["buyer", "supplier"])
def test_buyers_and_suppliers_cannot_reach_the_agreement_pages(app, signed_in, role):
    ids = make_dps(app)
    browser, _ = signed_in(role)
    for url in ("/team/agreements", f"/team/agreements/{ids['agreement']}"):
        assert browser.get(url).status_code == 403


def test_a_lot_is_found_only_under_its_own_agreement_and_huge_ids_are_not_found(app, team):
    first = make_dps(app)
    second = make_agreement(app, reference="CCIN-DPS-2022", lots=((1, "Other", 0, 0, 0),), questionnaire_version="sq-2022")
    assert team.get(f"/team/agreements/{second['agreement']}/lots/{first['lot1']}/edit").status_code == 404
    assert team.get(f"/team/agreements/{2**31}").status_code == 404
    assert team.get(f"/team/agreements/{first['agreement']}/lots/{10**20}/edit").status_code == 404


# The regime and the period -------------------------------------------------------------------------

def test_the_regime_follows_the_day_the_procurement_act_took_effect(app, team):
    late = team.submit("/team/agreements/new", _form(team.body_id, regime="pcr2015_dps", starts_on=["24", "2", "2025"]))
    assert late.status_code == 400 and "must begin before 24 February 2025" in _field_error(late, "regime")
    early_market = team.submit("/team/agreements/new", _form(team.body_id, starts_on=["23", "2", "2025"]))
    assert "24 February 2025 at the earliest" in _field_error(early_market, "starts_on")
    assert team.submit("/team/agreements/new", _form(team.body_id, reference="CCIN-DPS-2025", regime="pcr2015_dps",
                                                     starts_on=["23", "2", "2025"])).status_code == 302
    assert team.submit("/team/agreements/new", _form(team.body_id, starts_on=["24", "2", "2025"])).status_code == 302


def test_a_dynamic_market_is_held_in_draft_but_cannot_be_published_yet(app, team):
    created = team.submit("/team/agreements/new", _form(team.body_id))
    agreement_id = int(created.headers["Location"].rsplit("/", 1)[1])
    assert team.submit(f"/team/agreements/{agreement_id}/lots/new", _lot()).status_code == 302
    page = _text(team.get(f"/team/agreements/{agreement_id}"))
    assert "Draft" in page and "dynamic market" in page.lower()
    assert "does not yet run a dynamic market's rules" in page
    refused = team.submit(f"/team/agreements/{agreement_id}/publish", page=f"/team/agreements/{agreement_id}")
    assert "cannot be published yet" in _text(team.get(refused.headers["Location"]))
    assert app.test_client().get("/agreements/CCIN-DM-2025").status_code == 404  # drafts are not public
    assert "CCIN-DM-2025" not in _text(app.test_client().get("/agreements"))


def test_period_regime_and_nation_are_fixed_once_a_supplier_has_applied(app, team, factory):
    ids = make_dps(app)
    edit = f"/team/agreements/{ids['agreement']}/edit"
    base = {"reference": "CCIN-DPS-2020", "title": "CCIN Dynamic Purchasing System", "description": "A DPS.",
            "regime": "pcr2015_dps", "starts_on": ["1", "4", "2020"], "ends_on": ["31", "3", "2025"],
            "nation": "England", "accountable_body_id": str(ids["body"])}
    # Nobody has applied: the period can still be put right.
    assert team.submit(edit, {**base, "ends_on": ["30", "4", "2025"]}).status_code == 302
    supplier = factory.user("supplier")
    complete_draft(app, supplier["id"], [ids["lot1"]])  # a draft is enough: the supplier applied on these terms
    for change, field in (({"ends_on": ["31", "3", "2025"]}, "ends_on"), ({"nation": "Wales"}, "nation"),
                          ({"starts_on": ["2", "4", "2020"]}, "starts_on")):
        refused = team.submit(edit, {**base, "ends_on": ["30", "4", "2025"], **change})
        assert refused.status_code == 400, change
        assert "1 supplier has applied to this agreement" in _field_error(refused, field)
    # A published agreement's reference names it in addresses and open data.
    renamed = team.submit(edit, {**base, "ends_on": ["30", "4", "2025"], "reference": "CCIN-DPS-2020-A"})
    assert "cannot change" in _field_error(renamed, "reference")
    # Its title and description are not terms: they may change.
    assert team.submit(edit, {**base, "ends_on": ["30", "4", "2025"], "title": "The CCIN DPS"}).status_code == 302
    with app.app_context():
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "agreement.updated")
                                   .order_by(AuditEvent.id.desc())).first()
        assert event.data == {"before": {"title": "CCIN Dynamic Purchasing System"}, "after": {"title": "The CCIN DPS"}}
        # ...and a published agreement suppliers applied to stays published.
        with pytest.raises(ServiceError, match="stays published"):
            agreements.unpublish_agreement(None, db.session.get(Agreement, ids["agreement"]))


def test_references_are_unique_and_typed_in_capitals(app, team):
    make_dps(app)
    clash = team.submit("/team/agreements/new", _form(team.body_id, reference="ccin-dps-2020"))
    assert clash.status_code == 400 and "already has the reference CCIN-DPS-2020" in _field_error(clash, "reference")
    assert team.submit("/team/agreements/new", _form(team.body_id, reference="ccin-dm-2025")).status_code == 302
    with app.app_context():
        assert db.session.scalar(select(Agreement.reference).where(Agreement.reference == "CCIN-DM-2025"))


# Lots -----------------------------------------------------------------------------------------------

def test_a_lot_no_one_is_on_can_be_deleted_and_one_applied_to_cannot(app, team, factory):
    ids = make_dps(app)
    base = f"/team/agreements/{ids['agreement']}/lots"
    deleted = team.submit(f"{base}/{ids['lot2']}/delete", page=f"/team/agreements/{ids['agreement']}")
    assert "Lot 2: Prototyping has been deleted" in _text(team.get(deleted.headers["Location"]))
    supplier = factory.user("supplier")
    complete_draft(app, supplier["id"], [ids["lot1"]])
    refused = team.submit(f"{base}/{ids['lot1']}/delete", page=f"/team/agreements/{ids['agreement']}")
    assert "Suppliers have applied to Lot 1" in _text(team.get(refused.headers["Location"]))
    with app.app_context():
        assert db.session.get(Lot, ids["lot1"]) is not None and db.session.get(Lot, ids["lot2"]) is None
        assert {e.action for e in db.session.scalars(select(AuditEvent))} >= {"lot.deleted"}


def test_a_lot_closed_to_applications_is_not_offered_and_is_refused(app, team, signed_in):
    ids = make_dps(app)
    closed = team.submit(f"/team/agreements/{ids['agreement']}/lots/{ids['lot2']}/close",
                         page=f"/team/agreements/{ids['agreement']}")
    assert "closed to new applications" in _text(team.get(closed.headers["Location"]))
    supplier, user = signed_in("supplier")
    started = supplier.submit("/supplier/applications/new", {"agreement": ids["agreement"]}, page="/supplier/")
    application = started.headers["Location"]
    choices = _text(supplier.get(f"{application}/lots"))
    assert "Research and policy" in choices and "Prototyping" not in choices
    refused = supplier.submit(f"{application}/lots", {"lots": [ids["lot2"]]}, page=f"{application}/lots")
    assert refused.status_code == 400
    # Reopened, it is offered again.
    team.submit(f"/team/agreements/{ids['agreement']}/lots/{ids['lot2']}/reopen", page=f"/team/agreements/{ids['agreement']}")
    assert "Prototyping" in _text(supplier.get(f"{application}/lots"))


def test_lot_amounts_and_numbers_are_checked_by_their_fields(app, team):
    ids = make_dps(app)
    new = f"/team/agreements/{ids['agreement']}/lots/new"
    taken = team.submit(new, _lot(number="2"))
    assert "already has a Lot 2" in _field_error(taken, "number")
    money = team.submit(new, _lot(number="3", public_liability_min_pence="lots"))
    assert money.status_code == 400 and "Enter an amount in pounds" in _field_error(money, "public_liability_min_pence")
    assert 'value="lots"' in money.get_data(as_text=True)  # what was typed stays
    assert team.submit(new, _lot(number="3", cpv_codes="73000000-2\n79315000-5, 79315000-5")).status_code == 302
    with app.app_context():
        lot = db.session.scalar(select(Lot).where(Lot.agreement_id == ids["agreement"], Lot.number == 3))
        assert lot.cpv_codes == ["73000000-2", "79315000-5"] and lot.public_liability_min_pence == 1_000_000_00


# After an agreement ends -----------------------------------------------------------------------------

def test_after_the_end_suppliers_are_refused_with_the_closing_date_and_buyers_cannot_start(app, signed_in, factory):
    ids = make_dps(app)
    set_clock(app, "2025-04-01T00:00")
    supplier, _ = signed_in("supplier")
    refused = supplier.submit("/supplier/applications/new", {"agreement": ids["agreement"]}, page="/supplier/")
    assert "closed on 31 March 2025" in _text(supplier.get(refused.headers["Location"]))
    with app.app_context():
        assert agreements.open_agreements() == []
        from dps.services import competitions

        assert competitions.open_lots() == []
        message = agreements.closed_message(db.session.get(Agreement, ids["agreement"]), "starting a mini-competition")
        assert message.startswith("CCIN Dynamic Purchasing System closed on 31 March 2025")
        assert "Call-offs already made run on" in message


def test_records_are_kept_three_years_after_the_agreement_ends(app, team):
    ids = make_dps(app)
    page = _text(team.get(f"/team/agreements/{ids['agreement']}"))
    assert "At least 31 March 2028" in page
    assert "At least 31 March 2028" in _text(app.test_client().get("/agreements/CCIN-DPS-2020"))
    with app.app_context():
        leap = Agreement(starts_on=date(2020, 4, 1), ends_on=date(2024, 2, 29), id=ids["agreement"])
        assert agreements.retention_until(leap) == date(2027, 2, 28)


def test_the_agreements_list_costs_the_same_queries_for_two_agreements_and_eight(app, team):
    make_dps(app)
    make_agreement(app, reference="CCIN-DPS-2021", questionnaire_version="sq-2021")
    team.get("/team/agreements")
    with count_queries(app) as few:
        assert team.get("/team/agreements").status_code == 200
    for n in range(6):
        make_agreement(app, reference=f"CCIN-X-{n}", questionnaire_version=f"sq-x-{n}", publish=n % 2 == 0)
    with count_queries(app) as many:
        page = _text(team.get("/team/agreements"))
    assert "CCIN-X-5" in page
    assert few() == many()
    assert re.search(r'<a class="govuk-link" href="/team/agreements/\d+">CCIN Dynamic Purchasing System</a>', page)


def test_the_public_list_shows_open_upcoming_and_closed_agreements_with_their_dates(app, client):
    make_dps(app)  # 2020 to 2025: open on 3 June 2024
    make_agreement(app, reference="CCIN-DPS-2019", title="The pilot DPS", starts_on=date(2018, 4, 1),
                   ends_on=date(2019, 3, 31), questionnaire_version="sq-2019")
    make_agreement(app, reference="CCIN-DPS-2026", title="The next DPS", starts_on=date(2024, 9, 1),
                   ends_on=date(2026, 3, 31), questionnaire_version="sq-2026")
    make_agreement(app, reference="CCIN-DRAFT", title="Not yet public", questionnaire_version="sq-draft", publish=False)
    page = _text(client.get("/agreements"))
    assert page.index("CCIN Dynamic Purchasing System") < page.index("The next DPS") < page.index("The pilot DPS")
    assert "Open to new suppliers until 31 March 2025" in page
    assert "Opens on 1 September 2024" in page and "Closed on 31 March 2019" in page
    assert "Not yet public" not in page
    assert client.get("/agreements/CCIN-DRAFT/suppliers").status_code == 404
    home = _text(client.get("/"))
    assert "The pilot DPS" in home and "Register as a supplier" in home
    set_clock(app, clock.parse_london("2026-04-01T00:00") + timedelta(0))
    assert "Register as a supplier" not in _text(client.get("/"))
