"""The public OCDS endpoints, /ocds/releases.json and /ocds/records.json: anyone may read them;
they hold only what is published (nothing of a competition before its tender deadline, no
personal data), filtered by whole UK days."""
from __future__ import annotations

import base64
import json
from datetime import date, datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import select

from dps import clock
from dps.exports import Filters, ocds
from dps.extensions import db
from dps.models import Agreement, AuditEvent, Bid, Competition, Organisation, User
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


# Pages -------------------------------------------------------------------------------------------

def walk(client, url: str) -> list[dict]:
    """Every page from ``url`` on, following links.next to the last."""
    pages = []
    while url:
        response = client.get(url.removeprefix("http://dps.test"))
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        pages.append(response.get_json())
        url = pages[-1].get("links", {}).get("next")
        assert len(pages) < 100
    return pages


@pytest.mark.parametrize("size", [None, 3, 7])
@pytest.mark.parametrize("query", ["", "from=2020-04-01&to=2024-06-30", "to=2024-11-17&agreement=ccin-dps-2020"])
@pytest.mark.parametrize("kind", ["releases", "records"])
def test_following_links_next_gives_the_whole_package_once_in_pages(demo_app, monkeypatch, kind, query, size):
    from tests.test_ocds import export

    if size is not None:
        monkeypatch.setattr(ocds, "PAGE_SIZE", size)
    page_size = size or ocds.PAGE_SIZE
    filters = {k: v for k, v in (pair.split("=") for pair in query.split("&") if pair)}
    whole = export(demo_app, kind, Filters(date.fromisoformat(filters["from"]) if "from" in filters else None,
                                           date.fromisoformat(filters["to"]) if "to" in filters else None,
                                           filters.get("agreement")), public=True)[kind]
    pages = walk(demo_app.test_client(), f"/ocds/{kind}.json" + (f"?{query}" if query else ""))
    assert [item for page in pages for item in page[kind]] == whole
    assert len(pages) == -(-len(whole) // page_size) and all(len(page[kind]) <= page_size for page in pages)
    for number, page in enumerate(pages):
        validate_whole(page, kind)
        if number + 1 < len(pages):
            # The next page's absolute address keeps the period and the agreement.
            next_page = urlsplit(page["links"]["next"])
            assert (next_page.scheme, next_page.netloc, next_page.path) == ("http", "dps.test", f"/ocds/{kind}.json")
            assert {k: v for k, v in parse_qsl(next_page.query) if k != "after"} == {
                **filters, **({"agreement": filters["agreement"].upper()} if "agreement" in filters else {})}
            assert pages[number + 1]["uri"] == page["links"]["next"]
        else:
            assert "links" not in page


def cursor(*values) -> str:
    """A cursor made by hand, as someone editing the address could: base64url JSON."""
    text = json.dumps([{"t": v.isoformat()} if isinstance(v, datetime) else v for v in values])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


MOMENT = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)


BAD_CURSORS = [
    ("releases", "not-a-cursor"),
    ("releases", "%00"),
    ("releases", "x" * 5000),
    ("releases", cursor(1, 5)),                     # a records cursor
    ("releases", cursor(1, 5, MOMENT, 1, 0)),       # one value too many
    ("releases", cursor(2, 5, MOMENT, 1)),          # no such kind of process
    ("releases", cursor(1, -1, MOMENT, 1)),
    ("releases", cursor(1, 2**31, MOMENT, 1)),      # beyond the id column (32-bit on PostgreSQL)
    ("releases", cursor(1, 2**63, MOMENT, 1)),
    ("releases", cursor(1, 10**30, MOMENT, 1)),
    ("releases", cursor(True, 5, MOMENT, 1)),
    ("releases", cursor(1, 5, MOMENT, 0)),          # a page always ends after a release
    ("releases", cursor(1, 5, {"t": "0001-01-01T00:00:00+05:00"}, 1)),  # before year 1 in UTC
    ("releases", cursor(1, 5, {"t": "2024-05-01T09:00:00"}, 1)),        # no time zone
    ("releases", cursor(1, 5, {"t": "yesterday"}, 1)),
    ("releases", cursor(1, 5, "2024-05-01", 1)),
    ("records", cursor(1, 5, MOMENT, 1)),           # a releases cursor
    ("records", "not-a-cursor"),
    ("records", cursor(1, 2**31)),
    ("records", cursor(0, -3)),
    ("records", cursor(7, 1)),
    ("records", cursor(1.5, 1)),
]


@pytest.mark.parametrize("kind, after", BAD_CURSORS)
def test_a_bad_cursor_is_a_400_naming_the_parameter(demo_app, kind, after):
    response = demo_app.test_client().get(f"/ocds/{kind}.json?from=2024-01-01&after={after}")
    assert response.status_code == 400 and response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["parameter"] == "after" and "'after'" in body["error"] and "links.next" in body["error"]


def test_a_cursor_of_a_release_page_reads_on_from_there(demo_app):
    client = demo_app.test_client()
    first = get_json(client, ENDPOINTS[0])
    # The whole demo fits on a page: a cursor made from its 10th release gives the rest.
    assert "links" not in first and len(first["releases"]) > 10
    tenth = first["releases"][9]
    key = int(tenth["id"].rsplit("-", 1)[1]) if tenth["ocid"].endswith("CCIN-DPS-2020") else None
    with demo_app.app_context():
        agreement = db.session.scalar(select(Agreement.id).where(Agreement.reference == "CCIN-DPS-2020"))
    assert key is not None, "the demo's first ten releases are the DPS's"
    seen = sum(1 for r in first["releases"][:10] if r["ocid"] == tenth["ocid"] and r["date"] == tenth["date"])
    after = ocds.Position(ocds.DPS, agreement, clock.parse_london(tenth["date"]), seen).cursor()
    rest = get_json(client, f"{ENDPOINTS[0]}?after={after}")
    assert rest["releases"] == first["releases"][10:]
    assert rest["uri"] == f"http://dps.test/ocds/releases.json?after={after}"


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

