"""OCDS at scale (DESIGN 10, issue 10): a page of the public endpoints and the team's OCDS export
cost the same number of queries whatever the number of call-offs, invoices and bids, and pages of
releases that share a date still give each release once."""
from __future__ import annotations

import io
import json
from datetime import date

import pytest
from sqlalchemy import select

from dps import clock
from dps.exports import Filters, ocds
from dps.extensions import db
from dps.models import CallOff, Invoice
from tests.applying import make_dps
from tests.conftest import count_queries, sign_in
from tests.test_competitions import admit
from tests.test_export_delivery import period
from tests.test_exports_tables import Records

PERIOD = "from=2024-03-01&to=2024-05-31"
INVOICES_PER_CALL_OFF = 2


def add_call_offs(records: Records, how_many: int) -> None:
    """``how_many`` more call-offs entered into in April and May 2024 (each from a competition with
    a bid, published in March or April), each with two invoices paid in May."""
    for _ in range(how_many):
        n = records.n + 1
        reference = records.call_off(created=f"2024-{4 + n % 2:02d}-{1 + n % 28:02d}T10:00", value_pence=1_000_00 + n,
                                     supplier=f"Supplier {n} Co-operative Ltd")
        with records.app.app_context():
            call_off = db.session.scalar(select(CallOff).where(CallOff.reference == reference))
            for i in range(INVOICES_PER_CALL_OFF):
                paid_on = date(2024, 5, 20 + i)
                db.session.add(Invoice(call_off_id=call_off.id, supplier_reference=f"INV-{n}-{i}", amount_pence=100_00,
                                       paid_on=paid_on, recorded_by_id=records.creator["id"],
                                       recorded_at=clock.parse_london(f"{paid_on.isoformat()}T12:00")))
            call_off.paid_pence = INVOICES_PER_CALL_OFF * 100_00
            db.session.commit()


@pytest.fixture
def records(app, factory) -> Records:
    return Records(app, factory)


def public_page(app, url: str) -> tuple[int, dict]:
    client = app.test_client()
    client.get("/ocds/releases.json?to=2020-03-31")  # the app's first request also checks the schema's version
    with count_queries(app) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return queries(), response.get_json()


@pytest.mark.parametrize("kind", ["releases", "records"])
def test_a_public_page_costs_the_same_queries_with_ten_times_the_call_offs(app, records, kind):
    url = f"/ocds/{kind}.json?{PERIOD}"
    add_call_offs(records, 3)
    few, small = public_page(app, url)
    add_call_offs(records, 27)
    many, large = public_page(app, url)
    # Each call-off's competition gives a tender, its bids at the deadline, the award, the
    # contract and a release for each invoice: 6 releases, so 30 of them fill a page.
    if kind == "releases":
        assert (len(small["releases"]), len(large["releases"])) == (18, ocds.PAGE_SIZE)
        assert "links" not in small and large["links"]["next"].startswith(f"http://dps.test/ocds/releases.json?{PERIOD}&after=")
    else:
        assert (len(small["records"]), len(large["records"])) == (3, 30)
        assert sum(len(r["releases"]) for r in large["records"]) == 180
    assert many == few


def team_export(app, browser) -> tuple[int, dict]:
    token = browser.csrf_token("/team/exports")
    data = {**period("1 3 2024", "31 5 2024"), "csrf_token": token}
    with count_queries(app) as queries:
        response = browser.post("/team/exports/ocds", data=data)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    return queries(), response.get_json()


def test_the_team_ocds_export_costs_the_same_queries_with_ten_times_the_call_offs(app, records, factory):
    team = factory.user("dps_admin")
    browser = app.test_client()
    sign_in(browser, team["email"])
    add_call_offs(records, 3)
    few, small = team_export(app, browser)
    add_call_offs(records, 27)
    many, large = team_export(app, browser)
    assert (len(small["releases"]), len(large["releases"])) == (18, 180)
    tags = [r["tag"][0] for r in large["releases"]]
    assert tags.count("implementation") == 30 * INVOICES_PER_CALL_OFF and tags.count("contract") == 30
    assert many == few


def test_pages_of_releases_at_one_moment_give_each_once(app, factory, monkeypatch):
    # Admissions decided together share their moment to the microsecond (the clock is frozen
    # here): a page can end inside such a run, and the next must go on from inside it.
    dps = make_dps(app)
    for n in range(11):
        admit(app, factory, dps["agreement"], dps["lot1" if n % 2 else "lot2"], f"Supplier {n} Ltd",
              f"bids{n}@supplier{n}.example.org")
    monkeypatch.setattr(ocds, "PAGE_SIZE", 4)
    client = app.test_client()
    url, pages, ids = "/ocds/releases.json?from=2024-06-03", [], []
    while url:
        response = client.get(url.removeprefix("http://dps.test"))
        assert response.status_code == 200, response.get_data(as_text=True)
        package = response.get_json()
        pages.append(package)
        ids += [r["id"] for r in package["releases"]]
        url = package.get("links", {}).get("next")
    moments = {r["date"] for page in pages for r in page["releases"]}
    assert len(moments) == 1 and [len(p["releases"]) for p in pages] == [4, 4, 3]
    with app.app_context():
        out = io.BytesIO()
        ocds.write_package("releases", Filters(date(2024, 6, 3)), out, public=True)
    whole = [r["id"] for r in json.loads(out.getvalue())["releases"]]
    assert ids == whole and len(set(ids)) == 11


def test_a_cursor_past_the_last_process_is_a_404_not_an_error(app, records):
    add_call_offs(records, 1)
    after = ocds.Position(ocds.COMPETITION, ocds.MAX_ID, clock.parse_london("2024-05-01T00:00"), 1).cursor()
    response = app.test_client().get(f"/ocds/releases.json?{PERIOD}&after={after}")
    assert response.status_code == 404
    assert "no more OCDS releases" in response.get_json()["error"]
