"""The one clock every rule reads (DESIGN 5): real time, or a simulated clock shared by every worker."""
from __future__ import annotations

import html as html_lib
import re
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from dps import clock
from dps.extensions import db
from dps.models import AuditEvent
from tests.conftest import DEFAULT_NOW, Factory, make_app, set_clock, sign_in

UTC = timezone.utc
BANNER_TEXT = "Training sandbox: the date is simulated"


def banner(page: str) -> str | None:
    """The text of the simulated-clock banner on a page, or None if there is none."""
    match = re.search(r'<div class="app-clock-banner"[^>]*>(.*?)</div>', page, re.S)
    if match is None:
        return None
    return " ".join(html_lib.unescape(match.group(1)).split())


def field_error(page: str, field: str) -> str | None:
    """The error message shown next to a form field (GOV.UK: ``<p id="<field>-error">``)."""
    match = re.search(rf'<p[^>]*id="{field}-error"[^>]*>(.*?)</p>', page, re.S)
    if match is None:
        return None
    text = re.sub(r"<[^>]+>", " ", match.group(1))
    return " ".join(html_lib.unescape(text).split())


def dispose(application) -> None:
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def real_time_app(database_url):
    application = make_app(database_url, DPS_CLOCK=None)
    yield application
    dispose(application)


@pytest.fixture
def team(signed_in, factory):
    """A client signed in as a member of the DPS team, and that user."""
    return signed_in("dps_admin", organisation_id=factory.organisation())


def simulated_now(application) -> datetime:
    with application.app_context():
        return clock.now()


# Real time ------------------------------------------------------------------------------------

def test_without_dps_clock_now_is_real_utc_time(real_time_app):
    with real_time_app.app_context():
        assert clock.is_simulated() is False
        before = datetime.now(UTC)
        now = clock.now()
        after = datetime.now(UTC)
    assert now.utcoffset() == timedelta(0), f"clock.now() must be aware UTC, got {now!r}"
    assert before <= now <= after, f"real-time clock.now() {now} is not between {before} and {after}"


def test_without_dps_clock_the_simulated_clock_cannot_be_set(real_time_app):
    with real_time_app.app_context():
        with pytest.raises(clock.ClockError, match="real time"):
            clock.set_simulated(clock.parse_london("2024-07-01T09:00"))


def test_without_dps_clock_no_page_shows_the_banner(real_time_app):
    factory = Factory(real_time_app)
    buyer = factory.user("buyer")
    browser = real_time_app.test_client()
    for path in ("/", "/sign-in"):
        response = browser.get(path)
        assert response.status_code == 200
        page = response.get_data(as_text=True)
        assert BANNER_TEXT not in page and banner(page) is None, f"{path} shows the simulated-clock banner on real time"
    assert sign_in(browser, buyer["email"]).status_code == 302
    response = browser.get("/buyer/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert BANNER_TEXT not in page and banner(page) is None, "a buyer page shows the simulated-clock banner on real time"


def test_clock_page_on_a_real_time_app_says_the_service_runs_on_real_time(real_time_app):
    factory = Factory(real_time_app)
    admin = factory.user("dps_admin", organisation_id=factory.organisation())
    browser = real_time_app.test_client()
    assert sign_in(browser, admin["email"]).status_code == 302
    response = browser.get("/team/clock")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "The service is running on real time" in page
    assert 'name="moment"' not in page, "a real-time service must not offer to move the clock"


# The banner -----------------------------------------------------------------------------------

def test_every_page_shows_the_banner_with_the_simulated_date(app, client, signed_in):
    expected = "It is 3 June 2024 at 9:00am here"
    for path in ("/", "/sign-in"):
        response = client.get(path)
        assert response.status_code == 200
        text = banner(response.get_data(as_text=True))
        assert text is not None, f"{path} has no simulated-clock banner"
        assert BANNER_TEXT in text and expected in text, f"{path} banner reads {text!r}"

    buyer_browser, _ = signed_in("buyer")
    response = buyer_browser.get("/buyer/")
    assert response.status_code == 200
    text = banner(response.get_data(as_text=True))
    assert text is not None and expected in text, f"buyer page banner reads {text!r}"

    response = client.get("/no-such-page")
    assert response.status_code == 404
    text = banner(response.get_data(as_text=True))
    assert text is not None and expected in text, f"error page banner reads {text!r}"


def test_banner_follows_the_simulated_clock_in_uk_time(app, client):
    # 14:30 UTC in December is 2:30pm in London (GMT); in August 14:30 UTC is 3:30pm (BST).
    set_clock(app, datetime(2024, 12, 25, 14, 30, tzinfo=UTC))
    assert "It is 25 December 2024 at 2:30pm here" in banner(client.get("/").get_data(as_text=True))
    set_clock(app, datetime(2024, 8, 1, 14, 30, tzinfo=UTC))
    assert "It is 1 August 2024 at 3:30pm here" in banner(client.get("/").get_data(as_text=True))


# Running, shared, restarted -----------------------------------------------------------------

def test_unfrozen_clock_runs_forward_from_the_set_moment(app):
    start = clock.parse_london("2024-06-03T09:00")
    set_clock(app, "2024-06-03T09:00", frozen=False)
    with app.app_context():
        first = clock.now()
        time.sleep(0.05)
        second = clock.now()
    assert second > first, f"the unfrozen clock did not move: {first} then {second}"
    assert second - first >= timedelta(milliseconds=50)
    assert start <= first < start + timedelta(seconds=5), f"{first} is not near the set moment {start}"
    assert second < start + timedelta(seconds=5)


def test_frozen_clock_stands_still(app):
    set_clock(app, "2024-06-03T09:00", frozen=True)
    with app.app_context():
        first = clock.now()
        time.sleep(0.02)
        second = clock.now()
    assert first == second == clock.parse_london("2024-06-03T09:00")


def test_two_app_instances_on_the_same_database_agree(app, database_url):
    other_worker = make_app(database_url)
    try:
        set_clock(app, "2024-09-10T10:00")
        assert simulated_now(other_worker) == clock.parse_london("2024-09-10T10:00")
        page = other_worker.test_client().get("/").get_data(as_text=True)
        assert "10 September 2024 at 10:00am" in banner(page)

        # Running: both read the same anchors, so they agree to within the time between reads.
        set_clock(app, "2024-09-11T15:00", frozen=False)
        one, two = simulated_now(app), simulated_now(other_worker)
        assert abs(two - one) < timedelta(seconds=2), f"workers disagree: {one} and {two}"
        assert one >= clock.parse_london("2024-09-11T15:00")
    finally:
        dispose(other_worker)


def test_changing_dps_clock_restarts_the_clock_from_the_new_value(app, database_url):
    set_clock(app, "2024-09-01T09:00")
    restarted = make_app(database_url, DPS_CLOCK="2025-01-10T12:00")
    try:
        page = restarted.test_client().get("/").get_data(as_text=True)
        assert "It is 10 January 2025 at midday here" in banner(page), banner(page)
        now = simulated_now(restarted)
        start = clock.parse_london("2025-01-10T12:00")
        assert start <= now < start + timedelta(seconds=5), f"restarted clock reads {now}, expected about {start}"
    finally:
        dispose(restarted)


# Moving the clock through the page ------------------------------------------------------------

def test_dps_team_moves_the_clock_forward_and_sees_the_new_date(app, team):
    browser, _ = team
    response = browser.submit("/team/clock", {"moment": "2024-07-01 09:00"})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Location"].endswith("/team/clock")
    page = browser.get("/team/clock").get_data(as_text=True)
    assert "The simulated clock now reads 1 July 2024 at 9:00am" in page
    assert "It is 1 July 2024 at 9:00am here" in banner(page)
    assert "It is 1 July 2024 at 9:00am here" in banner(browser.get("/").get_data(as_text=True))
    assert simulated_now(app) == clock.parse_london("2024-07-01T09:00")


def test_moving_the_clock_one_minute_on_is_allowed(app, team):
    browser, _ = team
    response = browser.submit("/team/clock", {"moment": "2024-06-03 09:01"})
    assert response.status_code == 302, field_error(response.get_data(as_text=True), "moment")
    assert simulated_now(app) == clock.parse_london("2024-06-03T09:01")


def test_moving_the_clock_back_or_to_the_same_moment_is_refused(app, team):
    browser, _ = team
    for moment in ("2024-06-03 09:00", "2024-06-03 08:59", "2024-06-01 09:00"):
        response = browser.submit("/team/clock", {"moment": moment})
        assert response.status_code == 400, f"{moment}: status {response.status_code}"
        error = field_error(response.get_data(as_text=True), "moment")
        assert error is not None and "must be later than the simulated time now" in error, f"{moment}: {error}"
        assert simulated_now(app) == clock.parse_london(DEFAULT_NOW), f"refused move to {moment} changed the clock"
    with app.app_context():
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "clock.moved")) is None


def test_garbage_or_empty_moment_is_refused_with_a_message_next_to_the_field(app, team):
    browser, _ = team
    cases = {
        "next tuesday": "Enter a date and time like 2024-04-15 09:00",
        "2024-13-01 09:00": "Enter a date and time like 2024-04-15 09:00",
        "01/07/2024 09:00": "Enter a date and time like 2024-04-15 09:00",
        "": "Enter the date and time to move the clock to",
    }
    for moment, message in cases.items():
        response = browser.submit("/team/clock", {"moment": moment})
        assert response.status_code == 400, f"{moment!r}: status {response.status_code}"
        error = field_error(response.get_data(as_text=True), "moment")
        assert error is not None and message in error, f"{moment!r}: {error}"
    assert simulated_now(app) == clock.parse_london(DEFAULT_NOW)


@pytest.mark.parametrize("role", ["buyer", "auditor"])
def test_only_the_dps_team_may_move_the_clock(app, signed_in, factory, role):
    kwargs = {"organisation_id": factory.organisation()} if role == "auditor" else {}
    browser, _ = signed_in(role, **kwargs)
    response = browser.submit("/team/clock", {"moment": "2024-07-01 09:00"}, page="/")
    assert response.status_code == 403
    assert simulated_now(app) == clock.parse_london(DEFAULT_NOW), f"a {role} moved the clock"


def test_moving_the_clock_writes_an_audit_event(app, team):
    browser, admin = team
    assert browser.submit("/team/clock", {"moment": "2024-07-01 09:00"}).status_code == 302
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "clock.moved")).all()
        assert len(events) == 1
        event = events[0]
        assert event.actor_user_id == admin["id"]
        assert event.object_type == "clock"
        assert datetime.fromisoformat(event.data["before"]) == clock.parse_london(DEFAULT_NOW)
        assert datetime.fromisoformat(event.data["after"]) == clock.parse_london("2024-07-01T09:00")


# Time zones and formats -----------------------------------------------------------------------

def test_parse_london_uses_bst_in_summer_and_gmt_in_winter():
    assert clock.parse_london("2024-06-03T09:00") == datetime(2024, 6, 3, 8, 0, tzinfo=UTC)
    assert clock.parse_london("2024-01-15T09:00") == datetime(2024, 1, 15, 9, 0, tzinfo=UTC)
    # The changes of 2024: clocks went forward on 31 March and back on 27 October.
    assert clock.parse_london("2024-03-31T00:30") == datetime(2024, 3, 31, 0, 30, tzinfo=UTC)
    assert clock.parse_london("2024-03-31T02:30") == datetime(2024, 3, 31, 1, 30, tzinfo=UTC)
    assert clock.parse_london("2024-10-27T03:00") == datetime(2024, 10, 27, 3, 0, tzinfo=UTC)


def test_parse_london_keeps_an_explicit_offset_and_returns_utc():
    moment = clock.parse_london("2024-06-03T09:00+00:00")
    assert moment == datetime(2024, 6, 3, 9, 0, tzinfo=UTC)
    assert moment.utcoffset() == timedelta(0)


def test_parse_london_refuses_garbage():
    with pytest.raises(clock.ClockError, match="Enter a date and time like 2024-04-15 09:00"):
        clock.parse_london("tomorrow morning")


@pytest.mark.parametrize(("wall_time", "expected"), [
    ("2024-06-03T12:00", "3 June 2024 at midday"),
    ("2024-06-03T00:00", "3 June 2024 at midnight"),
    ("2024-06-03T12:01", "3 June 2024 at 12:01pm"),
    ("2024-06-03T00:05", "3 June 2024 at 12:05am"),
    ("2024-06-03T09:05", "3 June 2024 at 9:05am"),
    ("2024-06-03T11:59", "3 June 2024 at 11:59am"),
    ("2024-06-03T13:00", "3 June 2024 at 1:00pm"),
    ("2024-06-03T23:59", "3 June 2024 at 11:59pm"),
])
def test_fmt_uses_gov_uk_times(wall_time, expected):
    assert clock.fmt(clock.parse_london(wall_time)) == expected


def test_fmt_shows_london_time_across_the_clock_change():
    assert clock.fmt(datetime(2024, 3, 31, 0, 59, tzinfo=UTC)) == "31 March 2024 at 12:59am"
    assert clock.fmt(datetime(2024, 3, 31, 1, 0, tzinfo=UTC)) == "31 March 2024 at 2:00am"
    assert clock.fmt(datetime(2024, 6, 30, 23, 30, tzinfo=UTC)) == "1 July 2024 at 12:30am"


def test_fmt_date_only_and_none():
    assert clock.fmt(clock.parse_london("2024-06-03T23:30"), with_time=False) == "3 June 2024"
    assert clock.fmt(None) == ""
