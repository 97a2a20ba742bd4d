"""The public OCDS endpoints, /ocds/releases.json and /ocds/records.json: anyone may read them;
they hold only what is published (nothing of a competition before its tender deadline, no
personal data), filtered by whole UK days."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from dps import clock
from dps.exports import ocds
from dps.extensions import db
from dps.models import AuditEvent, Bid, Competition, Organisation, User
from tests.conftest import set_clock
from tests.test_ocds import DEMO_CLOCK, demo_app, validate_whole  # noqa: F401  (demo_app: a fixture)

ENDPOINTS = ("/ocds/releases.json", "/ocds/records.json")


def get_json(client, url: str, status: int = 200) -> dict:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.content_type == "application/json"
    return response.get_json()


def releases_of(package: dict) -> list[dict]:
    if "releases" in package:
        return package["releases"]
    return [r for record in package["records"] for r in (*record["releases"], record["compiledRelease"])]


@pytest.mark.parametrize("url", ENDPOINTS)
def test_anyone_can_read_a_valid_package_served_from_a_finished_file(demo_app, url):
    client = demo_app.test_client()
    response = client.get(url)
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"].startswith("public, max-age=")
    assert response.headers["Content-Disposition"] == f'inline; filename="ccin-dps-{url[6:-5]}-all.json"'
    assert int(response.headers["Content-Length"]) == len(response.get_data())
    package = response.get_json()
    validate_whole(package, "releases" if "releases" in url else "records")
    assert package["uri"] == "http://dps.test" + url
    with demo_app.app_context():
        # Reading is not an audit event: anyone could fill the log.
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action.like("export%"))) is None


@pytest.mark.parametrize("url", ENDPOINTS)
def test_no_email_address_or_persons_name_appears(demo_app, url):
    text = demo_app.test_client().get(url).get_data(as_text=True)
    with demo_app.app_context():
        people = db.session.execute(select(User.name, User.email)).all()
        contacts = db.session.execute(select(Organisation.contact_name, Organisation.contact_email,
                                             Organisation.contact_phone)).all()
        sole_traders = db.session.scalars(select(Organisation.name).where(Organisation.legal_form == "sole_trader")).all()
    assert len(people) > 20 and sole_traders
    needles = {value for row in (*people, *contacts) for value in row if value}
    assert [needle for needle in needles if needle in text] == []
    assert "@" not in text.replace("http://", "").replace("https://", "")
    assert "contactPoint" not in text
    for name in sole_traders:  # a sole trader's business name is the person's own
        assert name not in text
    assert ocds.SOLE_TRADER_NAME in text


def test_nothing_of_a_competition_is_public_before_its_tender_deadline(demo_app):
    client = demo_app.test_client()
    with demo_app.app_context():
        now = clock.parse_london(DEMO_CLOCK)
        future = db.session.scalars(select(Competition.reference).where(Competition.tender_deadline > now)).all()
        closed = db.session.scalars(select(Competition).where(Competition.opened_at.is_(None),
                                                              Competition.cancelled_at.is_(None),
                                                              Competition.published_at.is_not(None),
                                                              Competition.tender_deadline <= now)).first()
        reference, deadline = closed.reference, closed.tender_deadline
        bids = db.session.scalars(select(Bid).where(Bid.competition_id == closed.id, Bid.state == "submitted")).all()
        # Prices other than the estimated value (which the tender publishes anyway).
        prices = [b.price_pence for b in bids if b.price_pence != closed.estimated_value_pence]
    assert future, "the demo has a competition still open for tenders"
    for url in ENDPOINTS:
        text = client.get(url).get_data(as_text=True)
        assert all(ref not in text for ref in future)
    try:
        set_clock(demo_app, deadline - timedelta(seconds=1))
        for url in ENDPOINTS:
            assert reference not in client.get(url).get_data(as_text=True)
        set_clock(demo_app, deadline)
        package = get_json(client, ENDPOINTS[0])
        mine = [r for r in package["releases"] if r["tender"]["id"] == reference]
        assert [r["tag"] for r in mine] == [["tender"], ["tenderUpdate"]]
        assert mine[1]["bids"]["statistics"][0]["value"] == len(bids) >= 2
        # Who bid, and when, is public after the deadline; the losing prices are not.
        assert len(mine[1]["bids"]["details"]) == len(bids)
        assert all("value" not in detail for detail in mine[1]["bids"]["details"])
        text = json.dumps(mine)
        assert prices and all(str(ocds.pounds(price)) not in text for price in prices)
    finally:
        set_clock(demo_app, DEMO_CLOCK)


@pytest.mark.parametrize("query, parameter", [
    ("from=2024-13-01", "from"),
    ("from=1/4/2024", "from"),
    ("to=2024-04-1", "to"),
    ("to=yesterday", "to"),
    ("from=2024-05-01&to=2024-04-30", "to"),
    ("to=9999-12-31", "to"),
    ("from=0001-01-01", "from"),
])
def test_a_bad_date_is_a_400_saying_which_parameter_and_the_format(demo_app, query, parameter):
    for url in ENDPOINTS:
        body = get_json(demo_app.test_client(), f"{url}?{query}", 400)
        assert body["parameter"] == parameter
        assert f"'{parameter}'" in body["error"]
        if "2024-05-01" in query:
            continue
        if query.endswith(("9999-12-31", "0001-01-01")):
            assert "must be a date between 2000-01-01 and 2099-12-31" in body["error"]
        else:
            assert "YYYY-MM-DD" in body["error"]


def test_a_period_with_nothing_in_it_is_a_404(demo_app):
    for url in ENDPOINTS:
        body = get_json(demo_app.test_client(), f"{url}?to=2020-03-31", 404)
        assert "no OCDS" in body["error"]


def test_an_export_that_fails_validation_is_a_500_naming_the_field(demo_app, monkeypatch):
    monkeypatch.setattr(ocds, "pounds", lambda p: f"{p / 100:.2f}")
    # (Alembic's logging set-up in the test session disables existing loggers, so caplog sees nothing.)
    logged = []
    monkeypatch.setattr(demo_app.logger, "error", lambda message, *args: logged.append(message % args))
    for url in ENDPOINTS:
        body = get_json(demo_app.test_client(), url, 500)
        assert ".value.amount: '" in body["error"] and "is not of type 'number'" in body["error"]
        assert "releases[" in body["error"] and "ocid 'ocds-ccindps-CCIN-MC-" in body["error"]
    assert len(logged) == 2 and all("failed validation" in m and ".value.amount" in m for m in logged)


# Filters at the boundaries of UK days (a fresh database: runs after the demo tests) -------------

def test_buyers_reasons_for_cancelling_or_not_awarding_stay_out_of_the_public_data(demo_app):
    from tests.test_ocds import export

    with demo_app.app_context():
        reasons = [reason for row in db.session.execute(select(Competition.cancel_reason, Competition.no_award_reason))
                   for reason in row if reason]
    assert len(reasons) >= 2, "the demo has a cancelled competition and one closed without an award"
    team = json.dumps(export(demo_app, "releases"), ensure_ascii=False)
    assert all(reason in team for reason in reasons), "the team's export keeps them (so the search works)"
    for url in ENDPOINTS:
        public = demo_app.test_client().get(url).get_data(as_text=True)
        assert not any(reason in public or json.dumps(reason)[1:-1] in public for reason in reasons), url


def test_periods_are_whole_uk_days_at_both_ends(app, factory):
    from tests.applying import make_dps
    from tests.test_evaluation import make_allocation, make_competition

    dps = make_dps(app)
    council_id = factory.organisation(name="Rochdale Borough Council")
    creator_id = factory.user("buyer", organisation_id=council_id)["id"]
    competition = make_competition(app, lot_id=dps["lot1"], buyer_organisation_id=council_id, creator_id=creator_id,
                                   allocation_id=make_allocation(app, council_id, amount_pence=20_000_00))
    with app.app_context():
        c = db.session.get(Competition, competition)
        # 23:30 UTC on 1 June is 00:30 on 2 June in UK summer time.
        c.published_at = clock.parse_london("2024-06-02T00:30")
        db.session.commit()
        reference = c.reference
    set_clock(app, "2024-06-14T12:00")  # the tender deadline: the competition is public from now
    client = app.test_client()

    def ids(query: str) -> set[str]:
        response = client.get(f"/ocds/releases.json?{query}")
        if response.status_code == 404:
            return set()
        assert response.status_code == 200, response.get_data(as_text=True)
        return {r["id"] for r in response.get_json()["releases"]}

    tender = f"ocds-ccindps-{reference}-tender-{competition}"
    assert tender in ids("from=2024-06-02&to=2024-06-02")
    assert tender in ids("from=2024-06-02")
    assert tender not in ids("to=2024-06-01")  # though it is 1 June in UTC
    assert tender not in ids("from=2024-06-03")
    # The DPS opened at midnight UK time on 1 April 2020 (23:00 UTC on 31 March).
    opened = "ocds-ccindps-CCIN-DPS-2020-tender-CCIN-DPS-2020"
    assert opened in ids("from=2020-04-01&to=2020-04-01")
    assert ids("to=2020-03-31") == set()
    # A record is in when one of its releases is, with its history up to the end of the period.
    response = client.get("/ocds/records.json?from=2024-06-14&to=2024-06-14")
    assert response.status_code == 200
    [record] = response.get_json()["records"]
    assert record["ocid"] == f"ocds-ccindps-{reference}"
    assert [r["tag"] for r in record["releases"]] == [["tender"], ["tenderUpdate"]]

