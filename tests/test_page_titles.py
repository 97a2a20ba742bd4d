"""Issue 16 item 6: a page's <title> says what the page is, for the person looking at it: which
application and in what state, which filter a list shows, and no "Assess" for the auditor, who
only reads."""
from __future__ import annotations

import re
from html import unescape

import pytest

from tests.applying import make_dps
from tests.conftest import DEMO_PASSWORD, demo_application, sign_in

SERVICE = " – "


def title(response) -> str:
    assert response.status_code == 200, response.request.path
    found = re.search(r"<title[^>]*>(.*?)</title>", response.get_data(as_text=True), re.S)
    assert found
    text = " ".join(unescape(found.group(1)).split())
    return text.split(SERVICE)[0]


@pytest.fixture(scope="module")
def demo(database_template, tmp_path_factory):
    with demo_application(database_template, tmp_path_factory) as application:
        yield application


def browser_for(demo, email: str):
    browser = demo.test_client()
    assert sign_in(browser, email, DEMO_PASSWORD).status_code == 302
    return browser


def _application_id(demo, organisation: str) -> int:
    from dps.extensions import db
    from dps.models import Application, Organisation

    with demo.app_context():
        return db.session.query(Application.id).join(Organisation, Application.organisation_id == Organisation.id) \
            .filter(Organisation.name == organisation).order_by(Application.id.desc()).first()[0]


def test_a_suppliers_application_is_titled_by_its_agreement_and_state(demo):
    decided = browser_for(demo, "amara@brightwater.example.org")
    app_id = _application_id(demo, "Brightwater Co-operative Research Ltd")
    assert title(decided.get(f"/supplier/applications/{app_id}")) == "Your application to CCIN-DPS-2020: decided"

    from dps.extensions import db
    from dps.models import Application, User

    with demo.app_context():
        submitted = db.session.query(Application).filter(Application.submitted_at.isnot(None),
                                                         Application.decided_at.is_(None)).first()
        email = db.session.query(User.email).filter(User.organisation_id == submitted.organisation_id).first()[0]
        submitted_id = submitted.id
    browser = browser_for(demo, email)
    assert title(browser.get(f"/supplier/applications/{submitted_id}")) == \
        "Your application to CCIN-DPS-2020: being assessed"


def test_the_team_assesses_and_the_auditor_reads(demo):
    app_id = _application_id(demo, "Marcus Bell Facilitation")
    team = browser_for(demo, "team@dps.example.org")
    auditor = browser_for(demo, "auditor@dps.example.org")
    assert title(team.get(f"/team/applications/{app_id}")) == "Assess Marcus Bell Facilitation"
    seen = title(auditor.get(f"/team/applications/{app_id}"))
    assert seen == "Application from Marcus Bell Facilitation"
    assert "Assess" not in seen


@pytest.mark.parametrize("url,expected", [
    ("/team/suppliers", "Suppliers"),
    ("/team/suppliers?status=suspended", "Suppliers: suspended"),
    ("/team/suppliers?status=admitted", "Suppliers: admitted"),
    ("/team/suppliers?attention=renewal_overdue", "Suppliers: with a renewal overdue"),
    ("/team/suppliers?q=co-operative", "Suppliers: name contains “co-operative”"),
    ("/team/applications", "Applications awaiting a decision"),
    ("/team/applications?show=decided", "Applications decided"),
    ("/team/accounts", "Accounts"),
    ("/team/accounts?role=buyer", "Buyer accounts"),
    ("/team/accounts?role=auditor&q=auditor", "Auditor accounts: name or email contains “auditor”"),
    ("/team/members", "Member organisations"),
    ("/team/members?tier=full", "Member organisations: Full Members"),
    ("/team/members?status=left", "Member organisations: members that have left"),
])
def test_each_filter_of_a_list_has_its_own_title(demo, url, expected):
    # The auditor reads the same lists (not the accounts, which only the DPS team manages).
    readers = ("team@dps.example.org",) if url.startswith("/team/accounts") else (
        "team@dps.example.org", "auditor@dps.example.org")
    for email in readers:
        assert title(browser_for(demo, email).get(url)) == expected, (email, url)


def test_the_buyers_and_suppliers_lists_say_their_filter(demo):
    buyer = browser_for(demo, "buyer@oldham.example.org")
    assert title(buyer.get("/buyer/competitions")) == "Mini-competitions"
    assert title(buyer.get("/buyer/competitions?q=evaluation")) == "Mini-competitions: title or reference contains “evaluation”"
    supplier = browser_for(demo, "amara@brightwater.example.org")
    assert title(supplier.get("/supplier/competitions")) == "Invitations to tender"
    assert title(supplier.get("/supplier/competitions?show=open")) == "Invitations to tender: open for tenders"


def test_the_audit_log_says_when_it_is_filtered(demo):
    team = browser_for(demo, "team@dps.example.org")
    assert title(team.get("/team/audit")) == "Audit log"
    assert title(team.get("/team/audit?action=applications.submitted")) == "Audit log: matching events"


# Last in the module (on PostgreSQL the function-scoped app empties the demo's database).
def test_a_draft_application_says_it_is_a_draft(app, signed_in):
    dps = make_dps(app)
    supplier, _ = signed_in("supplier")
    started = supplier.submit("/supplier/applications/new", {"agreement": dps["agreement"]}, page="/supplier/")
    assert started.status_code == 302
    assert title(supplier.get(started.headers["Location"])) == "Your application to CCIN-DPS-2020: draft"
