"""The audit log page (/team/audit): who may read it, newest first 50 to a page with keyset links,
filters by date (UK whole days), organisation, object and action, data shown escaped, and a
fixed number of queries however long the log (issue 5 point 1; DESIGN 5)."""
from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, text

from dps import audit, clock
from dps.extensions import db
from dps.models import AuditEvent
from dps.services import audit_log
from tests.conftest import count_queries

PAGE = "/team/audit"


def body(response) -> str:
    return response.get_data(as_text=True)


def add_events(app, n: int, *, action: str = "test.event", object_type: str = "thing", organisation_id=None,
               at: str | None = None, data=None) -> list[int]:
    """``n`` events through audit.record, optionally at a given UK time."""
    with app.app_context():
        if at is not None:
            clock.set_simulated(clock.parse_london(at), frozen=True)
        events = [audit.record(action, object_type, i + 1, data if data is not None else {"n": i},
                               actor_label="tester", organisation_id=organisation_id) for i in range(n)]
        db.session.commit()  # the events are appended to the chain, and get their ids, at commit
        return [event.id for event in events]


def all_ids(app, *conditions) -> list[int]:
    """Every matching event id, newest first, straight from the database."""
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent.id).where(*conditions).order_by(AuditEvent.id.desc())))


def shown_ids(response) -> list[int]:
    return [int(i) for i in re.findall(r'href="/team/audit/(\d+)"', body(response))]


def link(response, label: str) -> str | None:
    """The href of the pagination link with this label (Newer events / Older events)."""
    nav = re.search(r'<nav class="govuk-pagination.*?</nav>', body(response), re.S)
    if nav is None:
        return None
    for href, inner in re.findall(r'<a [^>]*href="([^"]+)"[^>]*>((?:(?!</a>).)*)</a>', nav.group(0), re.S):
        if label in inner:
            return unescape(href)
    return None


@pytest.fixture
def team(signed_in, factory):
    browser, _ = signed_in("dps_admin", organisation_id=factory.organisation(name="Oldham Council"))
    return browser


# Who may read it ------------------------------------------------------------------------------

@pytest.mark.parametrize("role, status", [("dps_admin", 200), ("auditor", 200), ("buyer", 403), ("supplier", 403)])
def test_only_the_dps_team_and_auditors_read_the_log(app, factory, signed_in, role, status):
    add_events(app, 1)
    org = factory.organisation() if role in ("dps_admin", "auditor") else None
    browser, _ = signed_in(role, organisation_id=org)
    for url in (PAGE, f"{PAGE}/{all_ids(app)[-1]}", f"{PAGE}?action=test.event"):
        response = browser.get(url)
        assert response.status_code == status, (role, url)
        if status == 403:
            assert "test.event" not in body(response)


def test_signed_out_visitors_are_sent_to_sign_in(app, client):
    event_id = add_events(app, 1)[0]
    for url in (PAGE, f"{PAGE}/{event_id}"):
        response = client.get(url)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/sign-in?next=")


# Pages ----------------------------------------------------------------------------------------

def test_newest_first_fifty_a_page_with_older_and_newer_links(app, team):
    add_events(app, 120)
    expected = all_ids(app)  # includes the team member's own account and sign-in events
    assert len(expected) > 120

    first = team.get(PAGE)
    assert first.status_code == 200
    assert shown_ids(first) == expected[:50]
    assert link(first, "Newer events") is None, "the newest page has nothing newer"

    older = link(first, "Older events")
    assert parse_qs(urlsplit(older).query) == {"before": [str(expected[49])]}
    second = team.get(older)
    assert shown_ids(second) == expected[50:100]

    third = team.get(link(second, "Older events"))
    assert shown_ids(third) == expected[100:]
    assert link(third, "Older events") is None, "the oldest page has nothing older"

    # Back up: the newer link from the last page gives exactly the page before it.
    newer = link(third, "Newer events")
    assert parse_qs(urlsplit(newer).query) == {"after": [str(expected[100])]}
    back = team.get(newer)
    assert shown_ids(back) == expected[50:100]
    top = team.get(link(back, "Newer events"))
    assert shown_ids(top) == expected[:50]
    assert link(top, "Newer events") is None


def test_a_page_shows_time_who_organisation_action_object_and_data(app, team, factory):
    org = factory.organisation(name="Rochdale Borough Council")
    event_id = add_events(app, 1, action="budget_line.total_changed", object_type="budget_line",
                          organisation_id=org, at="2024-06-03T14:05:09",
                          data={"before": {"total_pence": 100}, "after": {"total_pence": 250}})[0]
    html = body(team.get(PAGE))
    row = html[html.index(f'href="/team/audit/{event_id}"'):]
    row = row[:row.index("</tr>")]
    assert "3 June 2024, 14:05:09 BST" in row
    assert "tester" in row and "Rochdale Borough Council" in row
    assert "budget_line.total_changed" in row and "budget_line 1" in row
    assert "Before and after" in row
    assert '&#34;total_pence&#34;: 250' in row or '"total_pence": 250' in row
    detail = body(team.get(f"{PAGE}/{event_id}"))
    with app.app_context():
        event = db.session.get(AuditEvent, event_id)
        assert event.hash in detail and event.prev_hash in detail
    assert "flask --app dps audit verify" in detail


def test_winter_times_are_shown_in_gmt(app, team):
    event_id = add_events(app, 1, at="2024-01-15T08:00:01")[0]
    html = body(team.get(f"{PAGE}/{event_id}"))
    assert "15 January 2024, 08:00:01 GMT" in html


def test_data_is_shown_escaped(app, team):
    add_events(app, 1, data={"name": "<script>alert('x')</script> & <b>bold</b>"})
    html = body(team.get(PAGE))
    assert "<script>alert" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(" in html and "&amp; &lt;b&gt;bold" in html


def test_an_unknown_event_is_not_found(app, team):
    assert team.get(f"{PAGE}/999999").status_code == 404


def test_the_page_says_how_to_check_the_chain_without_checking_it(app, team):
    add_events(app, 3)
    with count_queries(app) as queries:
        html = body(team.get(PAGE))
    assert "flask --app dps audit verify" in html
    # verify_chain would read every row: nothing here may read the log without a LIMIT.
    assert queries() < 15


# Filters --------------------------------------------------------------------------------------

def test_filter_by_action_organisation_and_object(app, team, factory):
    council = factory.organisation(name="Plymouth City Council")
    other = factory.organisation(name="Aberdeen City Council")
    add_events(app, 3, action="competition.published", object_type="competition", organisation_id=council)
    add_events(app, 2, action="bid.submitted", object_type="bid", organisation_id=other)
    add_events(app, 2, action="competition.cancelled", object_type="competition", organisation_id=other)

    published = team.get(f"{PAGE}?action=competition.published")
    assert shown_ids(published) == all_ids(app, AuditEvent.action == "competition.published")
    assert len(shown_ids(published)) == 3

    by_org = team.get(f"{PAGE}?organisation=Aberdeen+City+Council")
    assert shown_ids(by_org) == all_ids(app, AuditEvent.organisation_id == other)
    assert len(shown_ids(by_org)) == 4

    competition_2 = team.get(f"{PAGE}?object_type=competition&object_id=2")
    assert shown_ids(competition_2) == all_ids(app, AuditEvent.object_type == "competition",
                                               AuditEvent.object_id == "2")
    assert len(shown_ids(competition_2)) == 2  # published and cancelled, of two organisations

    both = team.get(f"{PAGE}?organisation=aberdeen+city+council&action=bid.submitted")  # any case
    assert len(shown_ids(both)) == 2
    assert team.get(f"{PAGE}?action=never.happened").status_code == 200
    assert "No events match these filters" in body(team.get(f"{PAGE}?action=never.happened"))


def test_the_choices_are_what_the_log_holds_and_the_organisation_is_typed(app, team, factory):
    zeta = factory.organisation(name="Zetland Council")
    alpha = factory.organisation(name="Arun District Council")
    factory.organisation(name="Never Acted Council")
    add_events(app, 1, action="zz.last", object_type="widget", organisation_id=zeta)
    add_events(app, 1, action="aa.first", object_type="gadget", organisation_id=alpha)
    html = body(team.get(PAGE))
    # No list of organisations: a text box (issue 10 item 3; the organisation search is tested
    # in test_lists_paginated_more.py).
    assert re.search(r'<input class="govuk-input"[^>]*name="organisation" type="text"', html)
    assert '<select class="govuk-select" id="organisation"' not in html and "Never Acted Council" not in html
    with app.app_context():
        expected = audit_log.choices()
    assert expected.actions == sorted(set(expected.actions)) and {"aa.first", "zz.last", "user.created"} <= set(expected.actions)
    assert {"widget", "gadget", "user"} <= set(expected.object_types)
    actions = html[html.index('name="action"'):]
    actions = actions[:actions.index("</select>")]
    assert actions.index("aa.first") < actions.index("zz.last")


def test_dates_are_uk_whole_days_both_ends_included(app, team):
    # 23:30 UTC on 31 May is 00:30 on 1 June in London (BST).
    before_midnight = add_events(app, 1, action="dated", at="2024-05-31T23:59:59")
    at_midnight = add_events(app, 1, action="dated", at="2024-06-01T00:00:00")
    end_of_day = add_events(app, 1, action="dated", at="2024-06-30T23:59:59")
    next_day = add_events(app, 1, action="dated", at="2024-07-01T00:00:00")

    june = team.get(f"{PAGE}?action=dated&date_from=1&date_from=6&date_from=2024&date_to=30&date_to=6&date_to=2024")
    assert june.status_code == 200, body(june)
    assert shown_ids(june) == end_of_day + at_midnight
    from_june = team.get(f"{PAGE}?action=dated&date_from=1&date_from=6&date_from=2024")
    assert shown_ids(from_june) == next_day + end_of_day + at_midnight
    to_may = team.get(f"{PAGE}?action=dated&date_to=31&date_to=5&date_to=2024")
    assert shown_ids(to_may) == before_midnight
    one_day = team.get(f"{PAGE}?action=dated&date_from=1&date_from=7&date_from=2024&date_to=1&date_to=7&date_to=2024")
    assert shown_ids(one_day) == next_day


def test_in_winter_a_uk_day_is_a_utc_day(app, team):
    # In GMT, London midnight is UTC midnight: 1 February starts at 00:00 UTC.
    late = add_events(app, 1, action="winter", at="2024-01-31T23:59:59")
    early = add_events(app, 1, action="winter", at="2024-02-01T00:00:00")
    february = team.get(f"{PAGE}?action=winter&date_from=1&date_from=2&date_from=2024")
    assert shown_ids(february) == early
    january = team.get(f"{PAGE}?action=winter&date_to=31&date_to=1&date_to=2024")
    assert shown_ids(january) == late


def test_pages_keep_the_filters(app, team, factory):
    org = factory.organisation(name="Kirklees Council")
    add_events(app, 60, action="kept", organisation_id=org, at="2024-06-03T10:00")
    add_events(app, 30, action="other", organisation_id=org, at="2024-06-03T10:00")
    query = "action=kept&organisation=Kirklees+Council&date_from=3&date_from=6&date_from=2024"
    first = team.get(f"{PAGE}?{query}")
    expected = all_ids(app, AuditEvent.action == "kept")
    assert shown_ids(first) == expected[:50]
    older = link(first, "Older events")
    params = parse_qs(urlsplit(older).query)
    assert params["action"] == ["kept"] and params["organisation"] == ["Kirklees Council"]
    assert params["date_from"] == ["3", "6", "2024"] and params["before"] == [str(expected[49])]
    second = team.get(older)
    assert shown_ids(second) == expected[50:]
    back = team.get(link(second, "Newer events"))
    assert shown_ids(back) == expected[:50]
    # The form shows the filters it was given.
    html = body(second)
    assert re.search(r'<option value="kept" selected', html)


@pytest.mark.parametrize("query, field, message", [
    ("date_from=31&date_from=2&date_from=2024", "date_from", "Enter a real date, like 27 6 2024"),
    ("date_to=1&date_to=&date_to=2024", "date_to", "Enter a real date, like 27 6 2024"),
    ("date_from=2&date_from=6&date_from=2024&date_to=1&date_to=6&date_to=2024", "date_to",
     "The ‘to’ date must be the same as or after the ‘from’ date"),
    ("object_id=12", "object_id", "Select the object type to search by object id"),
    ("organisation=abc", "organisation", "There is no organisation called “abc” or whose name starts with it: check the spelling"),
])
def test_bad_filters_are_refused_next_to_their_field(app, team, query, field, message):
    add_events(app, 2)
    response = team.get(f"{PAGE}?{query}")
    assert response.status_code == 400
    html = body(response)
    assert "There is a problem" in html and "<title>Error:" in html
    summary = html[html.index("govuk-error-summary"):]
    assert f'href="#{field}' in summary
    error = re.search(rf'id="{field}-error"[^>]*>(.*?)</p>', html, re.S)
    assert error and message in unescape(error.group(1)), html
    assert not shown_ids(response), "no rows are shown for a filter that could not be read"


def test_hand_made_page_links_give_a_page_never_a_500(app, team):
    add_events(app, 60)
    newest = shown_ids(team.get(PAGE))
    for value in ("9" * 30, "9" * 5000, "-5", "abc", "%00", "%C2%B2", ""):
        for key in ("before", "after"):
            response = team.get(f"{PAGE}?{key}={value}")
            assert response.status_code == 200, (key, value)
            assert shown_ids(response) == newest, (key, value)


def test_the_filter_form_is_get_and_changes_nothing(app, team):
    add_events(app, 3)
    html = body(team.get(PAGE))
    form = re.search(r'<form method="get" action="/team/audit"', html)
    assert form
    before = all_ids(app)
    team.get(f"{PAGE}?action=test.event")
    assert all_ids(app) == before, "reading the log wrote to it"
    assert team.post(PAGE, data={}).status_code == 405


# Cost -----------------------------------------------------------------------------------------

def test_queries_per_page_do_not_grow_with_the_log(app, team, factory):
    orgs = [factory.organisation(name=f"Council {n}") for n in range(3)]
    add_events(app, 5)

    def cost(url: str) -> int:
        with count_queries(app) as queries:
            assert team.get(url).status_code == 200
        return queries()

    urls = [PAGE, f"{PAGE}?action=test.event", f"{PAGE}?organisation=Council+0", f"{PAGE}?before=3", f"{PAGE}?after=2",
            f"{PAGE}?object_type=thing&object_id=1&date_from=1&date_from=1&date_from=2024"]
    few = [cost(url) for url in urls]
    for n, org in enumerate(orgs):
        add_events(app, 80, action=f"more.{n}", object_type=f"kind{n}", organisation_id=org)
    add_events(app, 80, action="test.event")
    many = [cost(url) for url in urls]
    assert many == few, f"queries grew with the log: {few} -> {many}"


def _plan(app, is_postgres: bool, filters, **keyset) -> str:
    with app.app_context():
        if is_postgres:
            # On a table this small the planner rightly prefers reading it all, or sorting a
            # handful of rows; switched off, the plan shows whether an index can serve the page.
            db.session.execute(text("SET LOCAL enable_seqscan = off"))
            db.session.execute(text("SET LOCAL enable_sort = off"))
        plan = audit_log.explain(audit_log.page_statement(filters, **keyset))
        db.session.rollback()
        return plan


@pytest.mark.parametrize("filters, index", [
    (audit_log.LogFilters(action="test.event"), "ix_audit_events_action"),
    (audit_log.LogFilters(organisation_id=1), "ix_audit_events_organisation"),
    (audit_log.LogFilters(object_type="thing", object_id="1"), "ix_audit_events_object"),
], ids=["action", "organisation", "object"])
@pytest.mark.parametrize("keyset", [{}, {"before": 15}, {"after": 5}], ids=["first", "before", "after"])
def test_each_filter_reads_its_index_in_id_order_without_sorting(app, is_postgres, filters, index, keyset):
    """The index ends in id, so the rows come out in page order: no sort of every matching row."""
    add_events(app, 20)
    plan = _plan(app, is_postgres, filters, **keyset)
    assert index in plan, plan
    if is_postgres:
        assert "Sort" not in plan and "Seq Scan on audit_events" not in plan, plan  # no sort of any kind
    else:
        assert "TEMP B-TREE" not in plan, plan


@pytest.mark.parametrize("keyset", ["first", "before", "after"])
def test_the_date_filter_reads_the_occurred_at_index_in_page_order(app, is_postgres, keyset):
    """A date-filtered page is in time order, read straight off the occurred_at index: no sort
    of every event in the period (PostgreSQL may sort events of one moment: Incremental Sort)."""
    from datetime import date

    ids = add_events(app, 20, at="2024-06-10T12:00")
    filters = audit_log.LogFilters(start=date(2024, 6, 1), end=date(2024, 6, 30))
    pivot = {"first": {}, "before": {"before": ids[10]}, "after": {"after": ids[5]}}[keyset]
    plan = _plan(app, is_postgres, filters, **pivot)
    assert "ix_audit_events_occurred_at" in plan, plan
    if is_postgres:
        assert "Seq Scan on audit_events" not in plan, plan
        assert not re.search(r"(^|->)\s*Sort\s+\(", plan, re.M), plan  # a full sort node
    else:
        assert "TEMP B-TREE" not in plan, plan


def test_with_a_clock_set_back_a_date_filtered_page_is_in_time_order(app, team):
    """A training sandbox restarted at an earlier date writes later ids with earlier times; a
    date filter still finds every event of its days, newest time first, and pages through them."""
    later = add_events(app, 30, action="sandbox", at="2024-06-20T10:00")
    earlier = add_events(app, 30, action="sandbox", at="2024-06-05T10:00")  # higher ids, earlier time
    query = "action=sandbox&date_from=1&date_from=6&date_from=2024&date_to=30&date_to=6&date_to=2024"
    first = team.get(f"{PAGE}?{query}")
    expected = sorted(later, reverse=True) + sorted(earlier, reverse=True)
    assert shown_ids(first) == expected[:50]
    second = team.get(link(first, "Older events"))
    assert shown_ids(second) == expected[50:]
    back = team.get(link(second, "Newer events"))
    assert shown_ids(back) == expected[:50]
    only_early = team.get(f"{PAGE}?action=sandbox&date_to=5&date_to=6&date_to=2024")
    assert shown_ids(only_early) == sorted(earlier, reverse=True)
