"""Suppliers' standing (suspend, remove, reinstate) and renewed self-declarations (PCR 2015 reg 34),
driven through the pages as the DPS team, an auditor and suppliers."""
from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from dps import clock, questionnaire
from dps.extensions import db
from dps.models import (
    Admission,
    Agreement,
    Application,
    ApplicationLot,
    AuditEvent,
    Lot,
    Organisation,
    RenewalRequest,
    User,
)
from dps.services import ServiceError, standing
from dps.services import suppliers as supplier_details
from tests.applying import make_agreement
from tests.conftest import count_queries, link_in, outbox, set_clock

VERSION = "ccin-sq-2020-04"
REQUESTED = "2024-05-24T10:00"  # a Friday; Monday 27 May 2024 is a bank holiday in England
DUE = date(2024, 6, 3)


def _text(response) -> str:
    return response.get_data(as_text=True)


def _dps(app) -> dict[str, int]:
    """The DPS (England's bank holidays) with two lots."""
    ids = make_agreement(app, lots=((1, "Research and policy", 0, 0, 2), (2, "Prototyping", 0, 0, 2)))
    return {"agreement": ids["agreement"], 1: ids["lot1"], 2: ids["lot2"]}


def _supplier(app, factory, dps: dict[str, int], name: str, lots: dict[int, str] | None = None) -> dict:
    """A supplier with one user, admitted through a decided application to ``lots`` (lot number ->
    status). No lots: a registered supplier that is not on the DPS."""
    org_id = factory.organisation(kind="supplier", membership=None, name=name)
    user = factory.user("supplier", organisation_id=org_id)
    admissions: dict[int, int] = {}
    if lots:
        with app.app_context():
            now = clock.now()
            application = Application(organisation_id=org_id, agreement_id=dps["agreement"],
                                      questionnaire_version=VERSION, created_at=now, created_by_id=user["id"],
                                      updated_at=now, submitted_at=now, submitted_by_id=user["id"], decided_at=now)
            db.session.add(application)
            for number, status in lots.items():
                decision = ApplicationLot(application=application, lot_id=dps[number], decision="admitted",
                                          decided_at=now)
                db.session.add(decision)
                db.session.flush()
                admission = Admission(organisation_id=org_id, lot_id=dps[number], application_lot_id=decision.id,
                                      admitted_at=now, status=status, status_changed_at=now,
                                      status_reason=None if status == "admitted" else "Set up by the test")
                db.session.add(admission)
                db.session.flush()
                admissions[number] = admission.id
            db.session.commit()
    return {"org": org_id, "user": user, "email": user["email"], "admissions": admissions, "name": name}


def _status(app, admission_id: int) -> str:
    with app.app_context():
        return db.session.get(Admission, admission_id).status


def _events(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        return events


def _requests(app) -> dict[int, RenewalRequest]:
    """Renewal requests by organisation id (each test makes at most one per organisation)."""
    with app.app_context():
        found = db.session.scalars(select(RenewalRequest).order_by(RenewalRequest.id)).all()
        db.session.expunge_all()
        return {r.organisation_id: r for r in found}


def _declaration(**overrides: str) -> dict[str, str]:
    """A declaration with every exclusion ground answered "no", except ``overrides``."""
    content = questionnaire.parse(questionnaire.shipped_text(VERSION))
    answers = {q.id: "no" for part in standing.declaration(content) for q in part.grounds}
    answers.update(overrides)
    return answers


def _standing_url(supplier: dict, lot: int, action: str) -> str:
    return f"/team/suppliers/{supplier['org']}/admissions/{supplier['admissions'][lot]}/{action}"


# Suspend, reinstate, remove ---------------------------------------------------------------------

def test_suspending_without_a_reason_is_refused_by_the_field_and_changes_nothing(app, factory, signed_in):
    dps = _dps(app)
    supplier = _supplier(app, factory, dps, "Brightwater Research Ltd", {1: "admitted"})
    team, _ = signed_in("dps_admin")
    page = f"/team/suppliers/{supplier['org']}"
    admission_id = supplier["admissions"][1]

    response = team.submit(_standing_url(supplier, 1, "suspend"), {"reason": "   "}, page=page)

    assert response.status_code == 400
    html = _text(response)
    assert "Enter the reason for suspending this supplier: they will read it" in html
    assert f'id="reason-{admission_id}-error"' in html  # by its reason box...
    assert f'href="#reason-{admission_id}"' in html  # ...and linked from the summary at the top
    assert _status(app, admission_id) == "admitted"
    assert outbox(app) == []
    assert _events(app, "admission.suspended") == []


def test_suspend_reinstate_and_remove_each_emailed_audited_and_shown_publicly(app, factory, signed_in, client):
    dps = _dps(app)
    supplier = _supplier(app, factory, dps, "Brightwater Research Ltd", {1: "admitted"})
    team, _ = signed_in("dps_admin")
    page = f"/team/suppliers/{supplier['org']}"
    admission_id = supplier["admissions"][1]
    assert "Brightwater Research Ltd" in _text(client.get("/agreements/CCIN-DPS-2020/suppliers"))

    response = team.submit(_standing_url(supplier, 1, "suspend"),
                           {"reason": "Did not renew its self-declaration"}, page=page)
    assert response.status_code == 302
    assert _status(app, admission_id) == "suspended"
    [message] = outbox(app)
    assert message.to_address == supplier["email"]
    assert "suspended" in message.subject
    assert "Did not renew its self-declaration" in message.body
    assert "Lot 1 (Research and policy)" in message.body
    assert "not be invited to new mini-competitions" in message.body
    assert "cannot submit bids" in message.body
    [event] = _events(app, "admission.suspended")
    assert event.data["before"] == {"status": "admitted"}
    assert event.data["after"] == {"status": "suspended"}
    assert event.data["reason"] == "Did not renew its self-declaration"
    # Not in good standing, so not listed as on the DPS.
    assert "Brightwater Research Ltd" not in _text(client.get("/agreements/CCIN-DPS-2020/suppliers"))
    assert "Suspended" in _text(team.get(page))

    response = team.submit(_standing_url(supplier, 1, "reinstate"), {"reason": ""}, page=page)
    assert response.status_code == 302
    assert _status(app, admission_id) == "admitted"
    assert "reinstated" in outbox(app)[-1].subject
    assert _events(app, "admission.reinstated")[0].data["after"] == {"status": "admitted"}
    assert "Brightwater Research Ltd" in _text(client.get("/agreements/CCIN-DPS-2020/suppliers"))

    response = team.submit(_standing_url(supplier, 1, "remove"), {"reason": "Convicted of fraud"}, page=page)
    assert response.status_code == 302
    assert _status(app, admission_id) == "removed"
    removal = outbox(app)[-1]
    assert "removed" in removal.subject and "Convicted of fraud" in removal.body and "apply again" in removal.body
    assert _events(app, "admission.removed")[0].data["before"] == {"status": "admitted"}
    assert "Brightwater Research Ltd" not in _text(client.get("/agreements/CCIN-DPS-2020/suppliers"))

    # Removal is final: the supplier must apply again.
    sent = len(outbox(app))
    for action in ("reinstate", "suspend", "remove"):
        response = team.submit(_standing_url(supplier, 1, action), {"reason": "Changed our minds"}, page=page)
        assert response.status_code == 400, action
        assert _status(app, admission_id) == "removed"
    assert "which is final: to return, it must apply again" in _text(
        team.submit(_standing_url(supplier, 1, "reinstate"), {"reason": ""}, page=page))
    assert len(outbox(app)) == sent


def test_a_suspended_supplier_can_be_removed(app, factory, signed_in):
    dps = _dps(app)
    supplier = _supplier(app, factory, dps, "Brightwater Research Ltd", {1: "suspended"})
    team, _ = signed_in("dps_admin")
    page = f"/team/suppliers/{supplier['org']}"

    assert team.submit(_standing_url(supplier, 1, "suspend"), {"reason": "Again"}, page=page).status_code == 400
    response = team.submit(_standing_url(supplier, 1, "remove"), {"reason": "Did not answer"}, page=page)

    assert response.status_code == 302
    assert _status(app, supplier["admissions"][1]) == "removed"
    assert _events(app, "admission.removed")[0].data["before"] == {"status": "suspended"}


def test_only_legal_changes_of_standing_and_only_by_the_team(app, factory):
    dps = _dps(app)
    supplier = _supplier(app, factory, dps, "Brightwater Research Ltd", {1: "admitted", 2: "suspended"})
    admin = factory.user("dps_admin")
    buyer = factory.user("buyer")
    with app.app_context():
        actor = db.session.get(User, admin["id"])
        admitted = db.session.get(Admission, supplier["admissions"][1])
        suspended = db.session.get(Admission, supplier["admissions"][2])
        with pytest.raises(ServiceError, match="only a suspended supplier can be reinstated"):
            standing.reinstate(admitted, actor)
        with pytest.raises(ServiceError, match="already suspended"):
            standing.suspend(suspended, actor, "A reason")
        with pytest.raises(ServiceError) as refused:
            standing.remove(admitted, actor, "")
        assert refused.value.field == "reason"
        with pytest.raises(ServiceError, match="Only the DPS team"):
            standing.suspend(admitted, db.session.get(User, buyer["id"]), "A reason")
        assert (admitted.status, suspended.status) == ("admitted", "suspended")


def test_auditors_see_the_pages_but_cannot_act(app, factory, signed_in):
    dps = _dps(app)
    supplier = _supplier(app, factory, dps, "Brightwater Research Ltd", {1: "admitted"})
    auditor, _ = signed_in("auditor")
    page = f"/team/suppliers/{supplier['org']}"

    listing = auditor.get("/team/suppliers")
    assert listing.status_code == 200
    assert "Brightwater Research Ltd" in _text(listing)
    assert "from every admitted supplier" not in _text(listing)
    detail = auditor.get(page)
    assert detail.status_code == 200
    assert 'name="reason"' not in _text(detail) and "Request a renewed self-declaration" not in _text(detail)

    for url in (_standing_url(supplier, 1, "suspend"), _standing_url(supplier, 1, "remove"),
                _standing_url(supplier, 1, "reinstate"), "/team/suppliers/request-renewals",
                f"/team/suppliers/{supplier['org']}/request-renewal",
                f"/team/suppliers/{supplier['org']}/identity-reviewed"):
        assert auditor.submit(url, {"reason": "An auditor's reason"}, page=page).status_code == 403, url
    assert _status(app, supplier["admissions"][1]) == "admitted"
    assert _requests(app) == {}


@pytest.mark.parametrize("role", ["supplier", "buyer"])
def test_suppliers_and_buyers_cannot_see_the_team_pages(app, factory, signed_in, role):
    dps = _dps(app)
    supplier = _supplier(app, factory, dps, "Brightwater Research Ltd", {1: "admitted"})
    browser, _ = signed_in(role)
    assert browser.get("/team/suppliers").status_code == 403
    assert browser.get(f"/team/suppliers/{supplier['org']}").status_code == 403


# The team's list --------------------------------------------------------------------------------

def test_the_list_filters_by_status_in_a_fixed_number_of_queries(app, factory, signed_in):
    dps = _dps(app)
    _supplier(app, factory, dps, "Admitted Ltd", {1: "admitted"})
    _supplier(app, factory, dps, "Suspended Ltd", {1: "suspended", 2: "admitted"})
    _supplier(app, factory, dps, "Removed Ltd", {2: "removed"})
    _supplier(app, factory, dps, "Applicant Ltd")
    team, _ = signed_in("dps_admin")

    everyone = _text(team.get("/team/suppliers"))
    assert all(name in everyone for name in ("Admitted Ltd", "Suspended Ltd", "Removed Ltd"))
    assert "Applicant Ltd" not in everyone  # not on any lot
    suspended = _text(team.get("/team/suppliers?status=suspended"))
    assert "Suspended Ltd" in suspended and "Admitted Ltd" not in suspended and "Removed Ltd" not in suspended
    removed = _text(team.get("/team/suppliers?status=removed"))
    assert "Removed Ltd" in removed and "Suspended Ltd" not in removed

    with count_queries(app) as few:
        team.get("/team/suppliers")
    for n in range(5):
        _supplier(app, factory, dps, f"More {n} Ltd", {1: "admitted", 2: "suspended"})
    with count_queries(app) as many:
        assert "More 4 Ltd" in _text(team.get("/team/suppliers"))
    assert many() == few()


def test_a_change_of_identity_is_listed_until_marked_reviewed(app, factory, signed_in):
    dps = _dps(app)
    supplier = _supplier(app, factory, dps, "Brightwater Research Ltd", {1: "admitted"})
    with app.app_context():
        supplier_details.update_details(db.session.get(Organisation, supplier["org"]),
                                        db.session.get(User, supplier["user"]["id"]), {"name": "Brightwater CIC"})
        db.session.commit()
    team, _ = signed_in("dps_admin")

    listing = _text(team.get("/team/suppliers"))
    to_review = listing.split("Details changed — review")[1].split("Suppliers and their standing")[0]
    assert "Brightwater CIC" in to_review
    detail = _text(team.get(f"/team/suppliers/{supplier['org']}"))
    assert "Legal name: was Brightwater Research Ltd, now Brightwater CIC" in detail

    response = team.submit(f"/team/suppliers/{supplier['org']}/identity-reviewed",
                           page=f"/team/suppliers/{supplier['org']}")
    assert response.status_code == 302
    with app.app_context():
        assert db.session.get(Organisation, supplier["org"]).identity_changed_at is None
    assert len(_events(app, "organisation.identity_change_acknowledged")) == 1
    assert "No changes of legal name or registration number to review" in _text(team.get("/team/suppliers"))


# Renewed self-declarations ------------------------------------------------------------------------

def test_renewals_are_asked_of_every_admitted_supplier_due_in_5_working_days(app, factory, signed_in):
    dps = _dps(app)
    admitted = _supplier(app, factory, dps, "Admitted Ltd", {1: "admitted"})
    partly_removed = _supplier(app, factory, dps, "Partly Removed Ltd", {1: "admitted", 2: "removed"})
    removed = _supplier(app, factory, dps, "Removed Ltd", {1: "removed"})
    suspended = _supplier(app, factory, dps, "Suspended Ltd", {1: "suspended"})
    applicant = _supplier(app, factory, dps, "Applicant Ltd")
    team, _ = signed_in("dps_admin")
    set_clock(app, REQUESTED)

    response = team.submit("/team/suppliers/request-renewals", page="/team/suppliers")

    assert response.status_code == 302
    requests = _requests(app)
    assert set(requests) == {admitted["org"], partly_removed["org"]}
    assert {r.due_on for r in requests.values()} == {DUE}  # Tue 28 May ... Mon 3 June: 27 May is a holiday
    messages = outbox(app)
    assert sorted(m.to_address for m in messages) == sorted([admitted["email"], partly_removed["email"]])
    org_of = {admitted["email"]: admitted["org"], partly_removed["email"]: partly_removed["org"]}
    for message in messages:
        request = requests[org_of[message.to_address]]
        assert link_in(message.body) == f"/supplier/renewals/{request.id}"
        assert "3 June 2024" in message.subject and "3 June 2024" in message.body
    assert len(_events(app, "renewal.requested")) == 2
    assert all(s["email"] not in {m.to_address for m in messages} for s in (removed, suspended, applicant))

    # Asked again while the first requests are open: nobody is asked twice.
    team.submit("/team/suppliers/request-renewals", page="/team/suppliers")
    assert len(_requests(app)) == 2 and len(outbox(app)) == 2


def test_one_supplier_can_be_asked_once_at_a_time(app, factory, signed_in):
    dps = _dps(app)
    supplier = _supplier(app, factory, dps, "Brightwater Research Ltd", {1: "admitted"})
    applicant = _supplier(app, factory, dps, "Applicant Ltd")
    team, _ = signed_in("dps_admin")
    set_clock(app, REQUESTED)
    page = f"/team/suppliers/{supplier['org']}"

    response = team.submit(f"{page}/request-renewal", page=page)
    assert response.status_code == 302
    assert "due by 3 June 2024" in _text(team.get(page))
    again = team.submit(f"{page}/request-renewal", page=page, follow_redirects=True)
    assert "already been asked: its declaration is due by 3 June 2024" in _text(again)
    # One that has only registered has not come to the DPS team at all: not found.
    refused = team.submit(f"/team/suppliers/{applicant['org']}/request-renewal", page=page)
    assert refused.status_code == 404
    assert team.get(f"/team/suppliers/{applicant['org']}").status_code == 404
    assert list(_requests(app)) == [supplier["org"]]


def test_a_supplier_cannot_open_another_organisations_renewal(app, factory, signed_in):
    dps = _dps(app)
    mine = _supplier(app, factory, dps, "Mine Ltd", {1: "admitted"})
    theirs = _supplier(app, factory, dps, "Theirs Ltd", {1: "admitted"})
    team, _ = signed_in("dps_admin")
    team.submit("/team/suppliers/request-renewals", page="/team/suppliers")
    requests = _requests(app)
    browser, _ = signed_in("supplier", organisation_id=mine["org"])

    assert browser.get(f"/supplier/renewals/{requests[mine['org']].id}").status_code == 200
    assert browser.get(f"/supplier/renewals/{requests[theirs['org']].id}").status_code == 404
    response = browser.submit(f"/supplier/renewals/{requests[theirs['org']].id}", _declaration(),
                              page="/supplier/renewals")
    assert response.status_code == 404
    assert _requests(app)[theirs["org"]].responded_at is None


def test_answered_on_the_due_day_is_in_time_and_unanswered_the_day_after_is_overdue(app, factory, signed_in):
    dps = _dps(app)
    prompt = _supplier(app, factory, dps, "Prompt Ltd", {1: "admitted"})
    slow = _supplier(app, factory, dps, "Slow Ltd", {1: "admitted"})
    team, _ = signed_in("dps_admin")
    set_clock(app, REQUESTED)
    team.submit("/team/suppliers/request-renewals", page="/team/suppliers")
    requests = _requests(app)
    prompt_browser, _ = signed_in("supplier", organisation_id=prompt["org"])
    slow_browser, _ = signed_in("supplier", organisation_id=slow["org"])
    url = f"/supplier/renewals/{requests[prompt['org']].id}"

    set_clock(app, "2024-06-03T17:30")  # the due day, late in the afternoon
    form = _text(prompt_browser.get(url))
    assert "Answer by 3 June 2024" in form
    assert "Non-payment of tax or social security contributions" in form  # built from the questionnaire
    response = prompt_browser.submit(url, _declaration())
    assert response.status_code == 302
    assert "Declaration sent" in _text(prompt_browser.get(response.headers["Location"]))
    with app.app_context():
        answered = db.session.get(RenewalRequest, requests[prompt["org"]].id)
        assert standing.renewal_status(answered) == standing.ANSWERED
        assert answered.response["version"] == VERSION
        assert answered.response["answers"]["fraud"] == "no"
    assert _events(app, "renewal.answered")[0].data["late"] is False
    assert "No renewed self-declarations are overdue" in _text(team.get("/team/suppliers"))

    set_clock(app, "2024-06-04T09:00")
    listing = _text(team.get("/team/suppliers"))
    overdue = listing.split("Renewals overdue — consider suspension")[1].split("Details changed — review")[0]
    assert f'href="/team/suppliers/{slow["org"]}">Slow Ltd</a>' in overdue and "Prompt Ltd" not in overdue
    assert "Renewal overdue" in listing
    with app.app_context():
        assert [r.organisation_id for r in standing.overdue_renewals()] == [slow["org"]]
    assert "Overdue" in _text(team.get(f"/team/suppliers/{slow['org']}"))
    assert "may suspend your place" in _text(slow_browser.get(f"/supplier/renewals/{requests[slow['org']].id}"))

    # Still accepted after the due date, and recorded as late.
    response = slow_browser.submit(f"/supplier/renewals/{requests[slow['org']].id}", _declaration())
    assert response.status_code == 302
    assert "Answered late" in _text(team.get(f"/team/suppliers/{slow['org']}"))
    assert _events(app, "renewal.answered")[1].data["late"] is True
    with app.app_context():
        assert standing.renewal_status(db.session.get(RenewalRequest, requests[slow["org"]].id)) == "answered late"
        assert standing.overdue_renewals() == []
    # Nothing was declared, so the team was not emailed.
    assert not [m for m in outbox(app) if "exclusion ground" in m.subject]
    # A declaration is sent once.
    assert slow_browser.get(f"/supplier/renewals/{requests[slow['org']].id}").status_code == 200
    with app.app_context():
        request = db.session.get(RenewalRequest, requests[slow["org"]].id)
        with pytest.raises(ServiceError, match="already been sent"):
            standing.respond_to_renewal(request, db.session.get(User, slow["user"]["id"]), _declaration())


def test_a_yes_to_a_mandatory_exclusion_is_emailed_to_the_team(app, factory, signed_in):
    dps = _dps(app)
    supplier = _supplier(app, factory, dps, "Brightwater Research Ltd", {1: "admitted"})
    team, admin = signed_in("dps_admin")
    team.submit("/team/suppliers/request-renewals", page="/team/suppliers")
    request = _requests(app)[supplier["org"]]
    browser, _ = signed_in("supplier", organisation_id=supplier["org"])

    response = browser.submit(f"/supplier/renewals/{request.id}", _declaration(
        fraud="yes", mandatory_self_cleaning="A director was convicted in 2023 and has left; we repaid the council."))

    assert response.status_code == 302
    [alert] = [m for m in outbox(app) if m.to_address == admin["email"]]
    assert alert.subject == "Brightwater Research Ltd declared an exclusion ground"
    assert "Fraud, including fraud affecting public funds (mandatory exclusion ground)" in alert.body
    assert "It explained what it has done about them" in alert.body
    assert link_in(alert.body) == f"/team/suppliers/{supplier['org']}"
    assert _events(app, "renewal.answered")[0].data["declared"] == ["fraud"]
    detail = _text(team.get(f"/team/suppliers/{supplier['org']}"))
    assert "Answered yes to 1 exclusion ground." in detail
    assert "we repaid the council" in detail


def test_a_missing_yes_or_no_is_refused_by_its_field(app, factory, signed_in):
    dps = _dps(app)
    supplier = _supplier(app, factory, dps, "Brightwater Research Ltd", {1: "admitted"})
    team, _ = signed_in("dps_admin")
    team.submit("/team/suppliers/request-renewals", page="/team/suppliers")
    request = _requests(app)[supplier["org"]]
    browser, user = signed_in("supplier", organisation_id=supplier["org"])
    answers = _declaration()
    del answers["bribery"]

    response = browser.submit(f"/supplier/renewals/{request.id}", answers)

    assert response.status_code == 400
    html = _text(response)
    assert "Select yes or no for “Bribery (Bribery Act 2010)”" in html
    assert 'href="#bribery"' in html
    assert _requests(app)[supplier["org"]].responded_at is None
    # The rule holds in the service too, whatever the form lets through.
    other = factory.user("supplier")
    with app.app_context():
        renewal = db.session.get(RenewalRequest, request.id)
        with pytest.raises(ServiceError) as refused:
            standing.respond_to_renewal(renewal, db.session.get(User, user["id"]), {**answers, "fraud": "maybe"})
        assert refused.value.field in ("bribery", "fraud")
        with pytest.raises(ServiceError, match="your own organisation"):
            standing.respond_to_renewal(renewal, db.session.get(User, other["id"]), _declaration())


def test_a_supplier_sees_its_requests(app, factory, signed_in):
    dps = _dps(app)
    supplier = _supplier(app, factory, dps, "Brightwater Research Ltd", {1: "admitted"})
    browser, _ = signed_in("supplier", organisation_id=supplier["org"])
    assert "has not asked you" in _text(browser.get("/supplier/renewals"))
    team, _ = signed_in("dps_admin")
    set_clock(app, REQUESTED)
    team.submit("/team/suppliers/request-renewals", page="/team/suppliers")
    request = _requests(app)[supplier["org"]]

    listing = _text(browser.get("/supplier/renewals"))
    assert f'href="/supplier/renewals/{request.id}"' in listing
    assert "3 June 2024" in listing and "To answer" in listing


def test_a_supplier_removed_from_every_lot_is_not_listed_for_suspension(app, factory, signed_in):
    dps = _dps(app)
    gone = _supplier(app, factory, dps, "Gone Ltd", {1: "admitted"})
    still = _supplier(app, factory, dps, "Still Here Ltd", {1: "admitted"})
    team, _ = signed_in("dps_admin")
    set_clock(app, REQUESTED)
    team.submit("/team/suppliers/request-renewals", page="/team/suppliers")
    team.submit(_standing_url(gone, 1, "remove"), {"reason": "Ceased trading."}, page=f"/team/suppliers/{gone['org']}")
    set_clock(app, "2024-06-04T09:00")  # both requests are now overdue
    with app.app_context():
        assert [r.organisation_id for r in standing.overdue_renewals()] == [still["org"]]


def test_the_supplier_dashboard_says_a_renewal_is_waiting(app, factory, signed_in):
    dps = _dps(app)
    supplier = _supplier(app, factory, dps, "Asked Ltd", {1: "admitted"})
    team, _ = signed_in("dps_admin")
    set_clock(app, REQUESTED)
    team.submit("/team/suppliers/request-renewals", page="/team/suppliers")
    browser, _ = signed_in("supplier", organisation_id=supplier["org"])
    page = _text(browser.get("/supplier/"))
    request_id = _requests(app)[supplier["org"]].id
    assert "renew your self-declaration by 3 June 2024" in page and f'href="/supplier/renewals/{request_id}"' in page
    browser.submit(f"/supplier/renewals/{request_id}", _declaration())
    assert "Renew your self-declaration" not in _text(browser.get("/supplier/"))
