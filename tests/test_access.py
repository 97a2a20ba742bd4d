"""Who may see what: a role gate on each blueprint (403) and object checks by organisation (404)."""
from __future__ import annotations

import pytest

from dps import clock
from dps.extensions import db
from dps.models import Allocation, BudgetLine, BudgetYear
from tests.conftest import count_queries

PAGES = {
    "supplier": ["/supplier/", "/supplier/colleagues"],
    "buyer": ["/buyer/", "/buyer/colleagues"],
    "dps_admin": ["/team/", "/team/accounts", "/team/accounts/new-buyer", "/team/clock"],
}
# Which roles may open each page.
ALLOWED = {
    "/supplier/": {"supplier"},
    "/supplier/colleagues": {"supplier"},
    "/buyer/": {"buyer"},
    "/buyer/colleagues": {"buyer"},
    "/team/": {"dps_admin", "auditor"},
    "/team/accounts": {"dps_admin"},
    "/team/accounts/new-buyer": {"dps_admin"},
    "/team/clock": {"dps_admin"},
}


@pytest.mark.parametrize("role", ["supplier", "buyer", "dps_admin", "auditor"])
def test_each_role_sees_its_pages_and_is_refused_the_others(role, factory, signed_in):
    org = factory.organisation() if role in ("dps_admin", "auditor") else None
    browser, _ = signed_in(role, organisation_id=org)
    for url, roles in ALLOWED.items():
        response = browser.get(url)
        if role in roles:
            assert response.status_code == 200, url
        else:
            assert response.status_code == 403, url
            assert "You cannot see this page" in response.get_data(as_text=True)


def test_signed_out_visitors_are_sent_to_sign_in(client):
    for url in ALLOWED:
        response = client.get(url)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/sign-in?next=")
    # ...and the public pages stay public.
    for url in ("/", "/sign-in", "/forgotten-password", "/supplier/sign-up"):
        assert client.get(url).status_code == 200


def test_auditors_cannot_act(factory, signed_in):
    browser, _ = signed_in("auditor", organisation_id=factory.organisation())
    target = factory.user("buyer")
    assert browser.submit(f"/team/accounts/{target['id']}/deactivate", page="/team/").status_code == 403
    assert browser.submit("/team/clock", {"moment": "2024-07-01 09:00"}, page="/team/").status_code == 403


def _allocation(app, organisation_id: int, title: str) -> int:
    with app.app_context():
        year = db.session.scalar(db.select(BudgetYear)) or BudgetYear(
            label="2024/25", starts_on=clock.parse_london("2024-04-01T00:00").date(),
            ends_on=clock.parse_london("2025-03-31T12:00").date())
        line = db.session.scalar(db.select(BudgetLine)) or BudgetLine(
            year=year, programme="Policy Labs", total_pence=1_000_000_00, cap_per_call_off_pence=20_000_00,
            allocated_pence=0)
        line.allocated_pence += 20_000_00
        allocation = Allocation(line=line, organisation_id=organisation_id, project_title=title,
                                amount_pence=20_000_00, committed_pence=0)
        db.session.add(allocation)
        db.session.commit()
        return allocation.id


def test_a_buyer_sees_only_its_own_organisations_allocations(app, signed_in):
    oldham, oldham_user = signed_in("buyer")
    plymouth, plymouth_user = signed_in("buyer")
    mine = _allocation(app, oldham_user["organisation_id"], "Community wealth building lab")
    theirs = _allocation(app, plymouth_user["organisation_id"], "Plymouth food lab")

    dashboard = oldham.get("/buyer/").get_data(as_text=True)
    assert "Community wealth building lab" in dashboard and "Plymouth food lab" not in dashboard
    assert oldham.get(f"/buyer/allocations/{mine}").status_code == 200
    # Another organisation's object is simply not found: its existence is not confirmed.
    other = oldham.get(f"/buyer/allocations/{theirs}")
    assert other.status_code == 404 and "Plymouth food lab" not in other.get_data(as_text=True)
    assert oldham.get("/buyer/allocations/999999").status_code == 404
    assert plymouth.get(f"/buyer/allocations/{theirs}").status_code == 200


def test_buyer_dashboard_queries_do_not_grow_with_allocations(app, signed_in):
    browser, user = signed_in("buyer")
    _allocation(app, user["organisation_id"], "First")
    browser.get("/buyer/")
    with count_queries(app) as few:
        browser.get("/buyer/")
    for n in range(5):
        _allocation(app, user["organisation_id"], f"More {n}")
    with count_queries(app) as many:
        browser.get("/buyer/")
    assert many() == few()
    assert few() <= 8


def test_a_member_that_cannot_buy_is_told_why(factory, signed_in):
    """A buyer whose organisation has since become an Affiliate sees why it cannot buy."""
    from dps.models import Organisation

    browser, user = signed_in("buyer")
    app = browser.application
    with app.app_context():
        db.session.get(Organisation, user["organisation_id"]).membership = "affiliate"
        db.session.commit()
    page = browser.get("/buyer/").get_data(as_text=True)
    assert "only Full and Associate Members may buy from the DPS" in page


def test_security_headers_on_every_page(client):
    response = client.get("/sign-in")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    # The one inline script carries the nonce the policy allows.
    nonce = response.headers["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    assert f'nonce="{nonce}"' in response.get_data(as_text=True)
