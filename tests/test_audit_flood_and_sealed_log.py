"""The audit log cannot be flooded, and sealed means sealed in the log too (issue 14).

- A sealed bid document requested 50 times by one person gives one ``bid_content.refused`` event,
  and the count of 50 is recorded and shown on that event's page.
- Before the tender deadline the audit log page, the event page, the filters and the audit
  export's rows show a bid's events as "bid activity" on the competition, without who, which
  organisation, which bid or the data; from the deadline on, in full. ``audit verify`` passes
  throughout: only what is shown changes.
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from dps.extensions import db
from dps.models import AuditEvent, Competition, Organisation, SealedReadRefusal
from tests.conftest import set_clock
from tests.test_bids import browser_for
from tests.test_sealed_bids import _plant

BID_ACTIONS = ("bid.draft_saved", "bid.document_attached", "bid.submitted")
# How the log's table shows a sealed bid's event (the page's introduction names it too).
SEALED_CELL = '<td class="govuk-table__cell">bid activity</td>'


@pytest.fixture
def planted(app, factory):
    return _plant(app, factory)


def _refusals(app, user_id: int) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "bid_content.refused",
                                                           AuditEvent.actor_user_id == user_id)).all()
        db.session.expunge_all()
        return rows


def _verify(app) -> None:
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output


def test_a_sealed_bid_document_requested_50_times_gives_one_audit_event_with_the_count(app, planted):
    team = planted.world.team
    browser = browser_for(app, team)
    for _ in range(50):
        assert browser.get(f"/documents/{planted.document_id}").status_code == 404
    refusals = _refusals(app, team["id"])
    assert len(refusals) == 1
    with app.app_context():
        counts = db.session.scalars(select(SealedReadRefusal).where(SealedReadRefusal.user_id == team["id"])).all()
        assert [(c.competition_id, c.count) for c in counts] == [(planted.world.competition, 50)]
        assert refusals[0].data["refusal_count_id"] == counts[0].id
        assert counts[0].first_at <= counts[0].last_at
    page = browser.get(f"/team/audit/{refusals[0].id}").get_data(as_text=True)
    assert "Refused reads that hour" in page and "50 by this person for this competition" in page

    # Another person is counted apart (their own event), and so is the next hour.
    auditor = browser_for(app, planted.auditor)
    for _ in range(3):
        assert auditor.get(f"/documents/{planted.document_id}").status_code == 404
    assert len(_refusals(app, planted.auditor["id"])) == 1
    with app.app_context():
        competition = db.session.get(Competition, planted.world.competition)
        later = competition.tender_deadline - timedelta(minutes=5)
        assert later - timedelta(hours=1) > counts[0].hour  # the test's "now" is more than an hour before
    set_clock(app, later)
    assert browser.get(f"/documents/{planted.document_id}").status_code == 404
    assert len(_refusals(app, team["id"])) == 2
    _verify(app)


def _bid_events(app, organisation_id: int) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action.in_(BID_ACTIONS),
                                                           AuditEvent.organisation_id == organisation_id)
                                  .order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        return rows


def _export_rows(app) -> list[tuple]:
    from dps.exports import Filters
    from dps.exports.tables import audit_rows
    from dps.services.audit_log import seal_export_rows

    with app.app_context():
        return list(seal_export_rows(audit_rows(Filters())))


def test_before_the_deadline_the_log_and_the_export_hide_which_supplier_bids_and_after_they_show_it(app, planted):
    bidder_org = planted.world.suppliers[0].org
    with app.app_context():
        bidder_name = db.session.get(Organisation, bidder_org).name
        deadline = db.session.get(Competition, planted.world.competition).tender_deadline
    events = _bid_events(app, bidder_org)
    assert {e.action for e in events} == set(BID_ACTIONS)
    team = browser_for(app, planted.world.team)
    auditor = browser_for(app, planted.auditor)
    bidder_email = planted.bidder["email"]

    for browser in (team, auditor):
        page = browser.get("/team/audit").get_data(as_text=True)
        assert SEALED_CELL in page
        for action in BID_ACTIONS:  # (the action filter still offers them: it lists what the log holds)
            assert f"<code>{action}</code>" not in page
        for event in events:
            shown = browser.get(f"/team/audit/{event.id}")
            assert shown.status_code == 200
            body = shown.get_data(as_text=True)
            assert "bid activity" in body and f"competition {planted.world.competition}" in body
            for secret in (bidder_email, bidder_name, event.action, f"bid {planted.bid_id}", '"organisation_id"'):
                assert secret not in body, (event.action, secret)
        # Filters by organisation, action or object find nothing of the sealed bids.
        by_org = browser.get("/team/audit", query_string={"organisation": bidder_name}).get_data(as_text=True)
        assert SEALED_CELL not in by_org and "<code>bid.draft_saved</code>" not in by_org
        for action in BID_ACTIONS:
            found = browser.get("/team/audit", query_string={"action": action}).get_data(as_text=True)
            assert "No events match these filters." in found, action
        by_object = browser.get("/team/audit", query_string={"object_type": "bid", "object_id": str(planted.bid_id)})
        assert "No events match these filters." in by_object.get_data(as_text=True)

    sealed_ids = {e.id for e in events}
    before = {row[0]: row for row in _export_rows(app) if row[0] in sealed_ids}
    assert set(before) == sealed_ids
    for row in before.values():
        assert row[5] == "bid activity" and row[6] == "competition" and row[7] == str(planted.world.competition)
        assert bidder_email not in row and bidder_name not in row and row[9] is None
        assert bidder_email not in row[8] and str(bidder_org) not in json.loads(row[8]).values()
    _verify(app)

    set_clock(app, deadline + timedelta(minutes=1))
    page = team.get("/team/audit").get_data(as_text=True)
    for action in BID_ACTIONS:
        assert f"<code>{action}</code>" in page
    body = team.get(f"/team/audit/{events[0].id}").get_data(as_text=True)
    assert bidder_email in body and bidder_name in body and "bid activity" not in body
    by_org = team.get("/team/audit", query_string={"organisation": bidder_name}).get_data(as_text=True)
    assert "<code>bid.draft_saved</code>" in by_org
    after = {row[0]: row for row in _export_rows(app) if row[0] in sealed_ids}
    for event in events:
        row = after[event.id]
        assert row[5] == event.action and row[3] == bidder_email and row[4] == bidder_name
        assert row[6] == "bid" and row[7] == str(planted.bid_id)
    _verify(app)
