"""The network budget (issue 12 and 13): financial years, budget lines with caps per call-off,
allocations to members' funded projects, and the dashboard, driven through the pages as the DPS
team and as an auditor. No level is ever exceeded, even by many allocations at once."""
from __future__ import annotations

import html
import re
import threading
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from dps import clock
from dps.extensions import db
from dps.models import (
    Allocation,
    AuditEvent,
    Award,
    Bid,
    BudgetLine,
    BudgetYear,
    CallOff,
    Competition,
    Lot,
    Organisation,
    User,
)
from dps.services import ServiceError
from dps.services import budget
from tests.applying import make_dps
from tests.conftest import count_queries


def _text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def _field_error(response, field: str) -> str:
    """The error message shown by ``field`` (GOV.UK puts it in an element with id <field>-error)."""
    match = re.search(rf'id="{field}-error"[^>]*>(.*?)</p>', response.get_data(as_text=True), re.S)
    assert match, f"no error by {field}"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).replace("Error:", "").strip()


@pytest.fixture
def team(signed_in):
    return signed_in("dps_admin")[0]


@pytest.fixture
def council(factory) -> int:
    return factory.organisation("council", "full", name="Plymouth City Council")


def _year(client, start_year: int = 2023) -> int:
    response = client.submit("/team/budget/years", {"start_year": str(start_year)}, page="/team/budget")
    assert response.status_code == 302, _text(response)
    return int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])


def _line(client, year_id: int, programme: str, total: str, cap: str = "") -> int:
    response = client.submit(f"/team/budget/{year_id}/lines",
                             {"programme": programme, "total": total, "cap_per_call_off": cap},
                             page=f"/team/budget/{year_id}")
    assert response.status_code == 302, _text(response)
    return _line_id(client.application, year_id, programme)


def _line_id(app, year_id: int, programme: str) -> int:
    with app.app_context():
        return db.session.scalar(select(BudgetLine.id).where(BudgetLine.year_id == year_id,
                                                             BudgetLine.programme == programme))


def _allocate(client, year_id: int, line_id: int, org_id: int, amount: str, title: str = "Community energy lab"):
    return client.submit(f"/team/budget/{year_id}/allocations",
                         {"line": str(line_id), "organisation": str(org_id), "project_title": title, "amount": amount},
                         page=f"/team/budget/{year_id}")


def _line_state(app, line_id: int) -> tuple[int, int, int]:
    """(total, allocated counter, sum of the line's allocations) in pence."""
    with app.app_context():
        line = db.session.get(BudgetLine, line_id)
        rows = db.session.scalar(select(func.coalesce(func.sum(Allocation.amount_pence), 0))
                                 .where(Allocation.line_id == line_id))
        return line.total_pence, line.allocated_pence, int(rows)


# Years and lines ------------------------------------------------------------------------------

def test_the_team_creates_a_year_and_lines_with_caps(app, team):
    year_id = _year(team, 2023)
    labs = _line(team, year_id, "Policy Labs", "80,000", "20,000")
    prototypes = _line(team, year_id, "Policy Prototypes", "£10,000.00", "2000")
    network = _line(team, year_id, "Network commissioning", "120000")

    with app.app_context():
        year = db.session.get(BudgetYear, year_id)
        assert (year.label, year.starts_on, year.ends_on) == ("2023/24", date(2023, 4, 1), date(2024, 3, 31))
        caps = {line.programme: (line.total_pence, line.cap_per_call_off_pence, line.allocated_pence)
                for line in year.lines}
        assert caps == {"Policy Labs": (80_000_00, 20_000_00, 0), "Policy Prototypes": (10_000_00, 2_000_00, 0),
                        "Network commissioning": (120_000_00, None, 0)}
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.action.like("budget_%"))
                                    .order_by(AuditEvent.id)).all()
        assert [e.action for e in events] == ["budget_year.created"] + ["budget_line.created"] * 3
        assert events[1].data["after"]["cap_per_call_off_pence"] == 20_000_00
        assert events[1].data["before"] is None

    page = _text(team.get(f"/team/budget/{year_id}"))
    assert "1 April 2023 to 31 March 2024" in page
    assert "£20,000.00" in page and "£2,000.00" in page and "No cap" in page
    assert {labs, prototypes, network} == {_line_id(app, year_id, p) for p in
                                           ("Policy Labs", "Policy Prototypes", "Network commissioning")}


def test_a_duplicate_year_or_line_is_refused_by_its_field(app, team):
    year_id = _year(team, 2024)
    refused = team.submit("/team/budget/years", {"start_year": "2024"}, page="/team/budget")
    assert refused.status_code == 400
    assert _field_error(refused, "start_year") == "The financial year 2024/25 already exists"
    assert 'value="2024"' in refused.get_data(as_text=True)

    _line(team, year_id, "Policy Labs", "60000", "20000")
    refused = team.submit(f"/team/budget/{year_id}/lines",
                          {"programme": " policy  labs ", "total": "1000", "cap_per_call_off": ""},
                          page=f"/team/budget/{year_id}")
    assert refused.status_code == 400
    assert _field_error(refused, "programme") == "2024/25 already has a Policy Labs line"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(BudgetYear)) == 1
        assert db.session.scalar(select(func.count()).select_from(BudgetLine)) == 1

    # The same programme in another year is a different line.
    other = _year(team, 2025)
    _line(team, other, "Policy Labs", "60000", "20000")


def test_money_and_years_are_checked_and_kept(team):
    refused = team.submit("/team/budget/years", {"start_year": "24/25"}, page="/team/budget")
    assert refused.status_code == 400
    assert _field_error(refused, "start_year") == "Enter the year as 4 digits, like 2025"

    year_id = _year(team, 2024)
    refused = team.submit(f"/team/budget/{year_id}/lines",
                          {"programme": "Policy Labs", "total": "ten thousand", "cap_per_call_off": "0"},
                          page=f"/team/budget/{year_id}")
    assert refused.status_code == 400
    assert _field_error(refused, "total") == "Enter an amount in pounds, like 5000000 or 1,250.50"
    assert 'value="ten thousand"' in refused.get_data(as_text=True)
    assert 'value="Policy Labs"' in refused.get_data(as_text=True)

    refused = team.submit(f"/team/budget/{year_id}/lines",
                          {"programme": "Policy Labs", "total": "10000", "cap_per_call_off": "0"},
                          page=f"/team/budget/{year_id}")
    assert refused.status_code == 400
    assert _field_error(refused, "cap_per_call_off").startswith("Enter a cap of more than £0")


# Allocations ----------------------------------------------------------------------------------

def test_the_team_allocates_to_a_council_and_the_buyer_sees_it(app, team, council, factory, signed_in):
    year_id = _year(team, 2023)
    labs = _line(team, year_id, "Policy Labs", "80000", "20000")

    done = _allocate(team, year_id, labs, council, "20,000", "Co-operative place-making lab")
    assert done.status_code == 302
    page = _text(team.get(done.headers["Location"]))
    assert "£20,000.00 allocated to Plymouth City Council for “Co-operative place-making lab”" in page
    assert "more than the cap" not in page

    # More than the cap per call-off is allowed (a project may have several call-offs), and said.
    bigger = _allocate(team, year_id, labs, council, "25000", "Community energy lab")
    assert bigger.status_code == 302
    assert "more than the cap per call-off of £20,000.00" in _text(team.get(bigger.headers["Location"]))
    assert _line_state(app, labs) == (80_000_00, 45_000_00, 45_000_00)

    with app.app_context():
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "allocation.created")
                                   .order_by(AuditEvent.id.desc())).first()
        assert event.data["after"]["amount_pence"] == 25_000_00
        assert event.data["line_allocated_pence"] == {"before": 20_000_00, "after": 45_000_00}

    buyer, _ = signed_in("buyer", organisation_id=council)
    assert "Community energy lab" in _text(buyer.get("/buyer/"))


@pytest.mark.parametrize("kind, membership, reason", [
    ("council", "affiliate", "is an Affiliate Member"),
    ("opposition_group", "full", "is not a contracting authority"),
    ("supplier", None, "is a supplier"),
])
def test_only_organisations_that_may_buy_can_hold_an_allocation(app, team, factory, kind, membership, reason):
    org = factory.organisation(kind, membership, name="Somewhere")
    year_id = _year(team, 2023)
    labs = _line(team, year_id, "Policy Labs", "80000", "20000")
    refused = _allocate(team, year_id, labs, org, "10000")
    assert refused.status_code == 400
    message = _field_error(refused, "organisation")
    assert reason in message and message.endswith("It cannot receive an allocation.")
    assert 'value="Community energy lab"' in refused.get_data(as_text=True)
    assert _line_state(app, labs) == (80_000_00, 0, 0)


def test_the_network_itself_can_hold_an_allocation(app, team, factory):
    network = factory.organisation("network", None, name="Co-operative Councils' Innovation Network")
    year_id = _year(team, 2023)
    line = _line(team, year_id, "Network commissioning", "120000")
    assert _allocate(team, year_id, line, network, "50000", "Community food initiatives").status_code == 302
    assert _line_state(app, line) == (120_000_00, 50_000_00, 50_000_00)


def test_a_line_is_never_over_allocated_and_the_message_says_what_is_left(app, team, council):
    year_id = _year(team, 2024)
    line = _line(team, year_id, "Policy Prototypes", "5,000", "2000")
    assert _allocate(team, year_id, line, council, "3000").status_code == 302

    refused = _allocate(team, year_id, line, council, "2,000.01")
    assert refused.status_code == 400
    assert _field_error(refused, "amount") == ("There is not enough left to allocate on Policy Prototypes 2024/25: "
                                               "£2,000.00 is left, and you asked for £2,000.01")
    assert 'value="2,000.01"' in refused.get_data(as_text=True)

    assert _allocate(team, year_id, line, council, "2000").status_code == 302  # exactly what is left
    refused = _allocate(team, year_id, line, council, "0.01")
    assert refused.status_code == 400
    assert "£0.00 is left" in _field_error(refused, "amount")
    assert _line_state(app, line) == (5_000_00, 5_000_00, 5_000_00)


def test_a_line_total_is_never_lowered_below_what_is_allocated(app, team, council):
    year_id = _year(team, 2024)
    line = _line(team, year_id, "Policy Labs", "60000", "20000")
    _allocate(team, year_id, line, council, "45000")

    refused = team.submit(f"/team/budget/lines/{line}/total", {"total": "44,999.99"}, page=f"/team/budget/lines/{line}")
    assert refused.status_code == 400
    assert _field_error(refused, "total") == ("£45,000.00 is already allocated from this line. Enter a total of "
                                              "£45,000.00 or more, or reduce allocations first")
    assert _line_state(app, line) == (60_000_00, 45_000_00, 45_000_00)

    done = team.submit(f"/team/budget/lines/{line}/total", {"total": "45000"}, page=f"/team/budget/lines/{line}")
    assert done.status_code == 302
    assert "is now £45,000.00 (it was £60,000.00)" in _text(team.get(done.headers["Location"]))
    assert _line_state(app, line) == (45_000_00, 45_000_00, 45_000_00)
    with app.app_context():
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "budget_line.total_changed")).one()
        assert (event.data["before"], event.data["after"]) == ({"total_pence": 60_000_00}, {"total_pence": 45_000_00})


def test_an_allocation_changes_within_its_commitments_and_its_line(app, team, council):
    year_id = _year(team, 2024)
    line = _line(team, year_id, "Policy Labs", "50000", "20000")
    _allocate(team, year_id, line, council, "20000", "First lab")
    _allocate(team, year_id, line, council, "20000", "Second lab")
    with app.app_context():
        first = db.session.scalar(select(Allocation).where(Allocation.project_title == "First lab"))
        first.committed_pence = 15_000_00  # as an award confirmed against it would have done
        db.session.commit()
        first_id = first.id
    url = f"/team/budget/allocations/{first_id}/amount"
    page = f"/team/budget/allocations/{first_id}"

    refused = team.submit(url, {"amount": "14999.99"}, page=page)
    assert refused.status_code == 400
    assert _field_error(refused, "amount") == ("£15,000.00 of this allocation is already committed to call-offs. "
                                               "Enter an amount of £15,000.00 or more")
    refused = team.submit(url, {"amount": "30000.01"}, page=page)
    assert refused.status_code == 400
    assert "£10,000.00 is left" in _field_error(refused, "amount")
    assert _line_state(app, line) == (50_000_00, 40_000_00, 40_000_00)

    assert team.submit(url, {"amount": "30000"}, page=page).status_code == 302  # takes the last £10,000
    assert _line_state(app, line) == (50_000_00, 50_000_00, 50_000_00)
    assert team.submit(url, {"amount": "15000"}, page=page).status_code == 302  # gives £15,000 back
    assert _line_state(app, line) == (50_000_00, 35_000_00, 35_000_00)
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "allocation.amount_changed")
                                    .order_by(AuditEvent.id)).all()
        assert [(e.data["before"]["amount_pence"], e.data["after"]["amount_pence"]) for e in events] == [
            (20_000_00, 30_000_00), (30_000_00, 15_000_00)]


# The dashboard --------------------------------------------------------------------------------

def _call_off(app, allocation_id: int, value_pence: int, paid_pence: int, n: int) -> None:
    """A confirmed call-off charged to an allocation, as the award slice makes it, committing its
    value and having been paid ``paid_pence``."""
    with app.app_context():
        allocation = db.session.get(Allocation, allocation_id)
        lot_id = db.session.scalar(select(func.min(Lot.id)))
        buyer = db.session.scalar(select(User).where(User.role == "dps_admin"))
        supplier = Organisation(name=f"Supplier {n} Ltd", kind="supplier", created_at=clock.now())
        db.session.add(supplier)
        now = clock.now()
        competition = Competition(
            reference=f"CCIN-TEST-{n}", lot_id=lot_id, buyer_organisation_id=allocation.organisation_id,
            created_by_id=buyer.id, title=f"Project {n}", description="A mini-competition.",
            estimated_value_pence=value_pence, allocation_id=allocation.id,
            clarification_deadline=now - timedelta(days=20), tender_deadline=now - timedelta(days=10),
            standstill=False, standstill_days=0, price_formula="lowest_price_ratio", created_at=now - timedelta(days=30))
        db.session.add(competition)
        db.session.flush()
        bid = Bid(competition_id=competition.id, organisation_id=supplier.id, state="submitted",
                  updated_at=now - timedelta(days=11), submitted_at=now - timedelta(days=11))
        db.session.add(bid)
        db.session.flush()
        award = Award(competition_id=competition.id, bid_id=bid.id, value_pence=value_pence,
                      decided_at=now - timedelta(days=5), decided_by_id=buyer.id, confirmed_at=now)
        db.session.add(award)
        db.session.flush()
        db.session.add(CallOff(reference=f"CCIN-CO-{n}", competition_id=competition.id, award_id=award.id,
                               supplier_organisation_id=supplier.id, buyer_organisation_id=allocation.organisation_id,
                               allocation_id=allocation.id, value_pence=value_pence, paid_pence=paid_pence,
                               starts_on=date(2024, 6, 10), ends_on=date(2025, 3, 31), created_at=now))
        allocation.committed_pence += value_pence
        db.session.commit()


def _money(pence: int) -> str:
    return f"£{pence // 100:,}.{pence % 100:02d}"


def test_the_dashboard_adds_up(app, team, council, factory):
    make_dps(app)
    other = factory.organisation("council", "associate", name="Kirklees Council")
    year_id = _year(team, 2024)
    labs = _line(team, year_id, "Policy Labs", "60000", "20000")
    prototypes = _line(team, year_id, "Policy Prototypes", "10000", "2000")
    _allocate(team, year_id, labs, council, "20000", "Lab A")
    _allocate(team, year_id, labs, other, "15000.50", "Lab B")
    _allocate(team, year_id, prototypes, council, "2000", "Prototype A")
    with app.app_context():
        ids = dict(db.session.execute(select(Allocation.project_title, Allocation.id)).all())
    _call_off(app, ids["Lab A"], 12_000_00, 4_000_00, 1)
    _call_off(app, ids["Lab A"], 8_000_00, 8_000_00, 2)
    _call_off(app, ids["Lab B"], 5_000_25, 0, 3)
    _call_off(app, ids["Prototype A"], 1_500_00, 1_499_99, 4)

    with app.app_context():
        summary = budget.dashboard(db.session.get(BudgetYear, year_id))[0]
        for line in summary.lines:
            rows = db.session.scalars(select(Allocation).where(Allocation.line_id == line.id)).all()
            paid = db.session.scalar(select(func.coalesce(func.sum(CallOff.paid_pence), 0))
                                     .join(Allocation, CallOff.allocation_id == Allocation.id)
                                     .where(Allocation.line_id == line.id))
            assert line.figures.allocated == sum(a.amount_pence for a in rows)
            assert line.figures.committed == sum(a.committed_pence for a in rows)
            assert line.figures.paid == paid
            assert line.figures.remaining == line.figures.total - line.figures.allocated
            assert line.figures.uncommitted == line.figures.allocated - line.figures.committed
        by_name = {line.programme: line.figures for line in summary.lines}
        assert (by_name["Policy Labs"].allocated, by_name["Policy Labs"].committed, by_name["Policy Labs"].paid) == (
            35_000_50, 25_000_25, 12_000_00)
        assert (by_name["Policy Prototypes"].committed, by_name["Policy Prototypes"].paid) == (1_500_00, 1_499_99)
        totals = summary.totals
        assert (totals.total, totals.allocated, totals.committed, totals.paid) == (
            70_000_00, 37_000_50, 26_500_25, 13_499_99)
        assert totals.remaining == 32_999_50 and totals.uncommitted == 10_500_25

    page = _text(team.get("/team/budget"))
    for amount in (70_000_00, 37_000_50, 26_500_25, 13_499_99, 32_999_50, 10_500_25, 24_999_50):
        assert _money(amount) in page, _money(amount)
    # The chart: inline SVG with presentation attributes only (the CSP forbids inline styles),
    # and its text alternative.
    svg = re.search(r"<svg.*?</svg>", page, re.S).group(0)
    assert 'role="img"' in svg and "<title" in svg and "style=" not in svg and "<script" not in svg
    assert ("Policy Labs: £60,000.00 in all; committed to call-offs £25,000.25; allocated, not yet committed "
            "£10,000.25; not yet allocated £24,999.50.") in page

    allocation_page = _text(team.get(f"/team/budget/allocations/{ids['Lab A']}"))
    assert "CCIN-CO-1" in allocation_page and "CCIN-CO-2" in allocation_page and "£12,000.00" in allocation_page


def test_a_buyer_sees_its_own_organisations_funding_with_what_is_paid(app, team, council, factory, signed_in):
    make_dps(app)
    other = factory.organisation("council", "full", name="Kirklees Council")
    year_id = _year(team, 2024)
    labs = _line(team, year_id, "Policy Labs", "60000", "20000")
    _allocate(team, year_id, labs, council, "20000", "Our lab")
    _allocate(team, year_id, labs, other, "20000", "Their lab")
    with app.app_context():
        ours = db.session.scalar(select(Allocation.id).where(Allocation.project_title == "Our lab"))
    _call_off(app, ours, 12_000_00, 3_000_00, 1)

    buyer, _ = signed_in("buyer", organisation_id=council)
    assert 'href="/buyer/budget"' in _text(buyer.get("/buyer/"))
    page = _text(buyer.get("/buyer/budget"))
    assert "Our lab" in page and "Their lab" not in page
    assert ("Our lab: £20,000.00 in all; paid £3,000.00; committed, not yet paid £9,000.00; "
            "not yet committed £8,000.00.") in page
    assert "style=" not in re.search(r"<svg.*?</svg>", page, re.S).group(0)


def test_the_chart_bars_fill_their_width_without_gaps():
    from dps.views.team_budget import CHART_WIDTH, TEAM_KEYS, stacked_bars

    chart = stacked_bars("c", "Test", TEAM_KEYS, [("A", (1, 1, 1)), ("B", (0, 0, 0)), ("C", (0, 5, 0))])
    first, empty, one = chart.bars
    assert first.segments[0].x == 0
    for left, right in zip(first.segments, first.segments[1:]):
        assert round(left.x + left.width, 1) == right.x
    assert round(first.segments[-1].x + first.segments[-1].width, 1) == CHART_WIDTH
    assert empty.segments == () and empty.text == "B: no money."
    assert [(s.x, s.width) for s in one.segments] == [(0.0, CHART_WIDTH)]


def test_the_dashboard_query_count_does_not_grow(app, team, council):
    year_id = _year(team, 2023)
    line = _line(team, year_id, "Policy Labs", "80000", "20000")
    _allocate(team, year_id, line, council, "1000")
    with count_queries(app) as few:
        assert team.get("/team/budget").status_code == 200
    with count_queries(app) as few_year:
        assert team.get(f"/team/budget/{year_id}").status_code == 200

    for start in (2021, 2022):
        other = _year(team, start)
        for n in range(3):
            more = _line(team, other, f"Programme {n}", "10000", "1000")
            for m in range(3):
                _allocate(team, other, more, council, "100", f"Project {n}.{m}")
    for m in range(5):
        _allocate(team, year_id, line, council, "100", f"Extra {m}")
        more = _line(team, year_id, f"Extra line {m}", "1000")
        _allocate(team, year_id, more, council, "100", f"Extra project {m}")
    with count_queries(app) as many:
        assert "Programme 2" in _text(team.get("/team/budget"))
    with count_queries(app) as many_year:
        assert "Extra 4" in _text(team.get(f"/team/budget/{year_id}"))
    assert many() == few()
    assert many_year() == few_year()


# Who may do what ------------------------------------------------------------------------------

def test_an_auditor_reads_the_budget_but_cannot_change_it(app, team, council, signed_in):
    year_id = _year(team, 2023)
    line = _line(team, year_id, "Policy Labs", "80000", "20000")
    _allocate(team, year_id, line, council, "1000", "Audited lab")
    with app.app_context():
        allocation_id = db.session.scalar(select(Allocation.id))

    auditor, _ = signed_in("auditor")
    dashboard = _text(auditor.get("/team/budget"))
    assert "2023/24" in dashboard and 'href="/team/budget"' in dashboard  # in the navigation
    assert "Add a financial year" not in dashboard
    for url in (f"/team/budget/{year_id}", f"/team/budget/lines/{line}", f"/team/budget/allocations/{allocation_id}"):
        page = auditor.get(url)
        assert page.status_code == 200 and 'action="/team/budget' not in _text(page), url

    token = auditor.csrf_token("/team/budget")
    for url, data in (
        ("/team/budget/years", {"start_year": "2024"}),
        (f"/team/budget/{year_id}/lines", {"programme": "More", "total": "1"}),
        (f"/team/budget/{year_id}/allocations", {"line": line, "organisation": council, "project_title": "X",
                                                 "amount": "1"}),
        (f"/team/budget/lines/{line}/total", {"total": "1"}),
        (f"/team/budget/allocations/{allocation_id}/amount", {"amount": "1"}),
    ):
        assert auditor.post(url, data={**data, "csrf_token": token}).status_code == 403, url
    assert _line_state(app, line) == (80_000_00, 1_000_00, 1_000_00)


def test_buyers_and_suppliers_cannot_see_the_team_budget(signed_in):
    for role in ("buyer", "supplier"):
        client, _ = signed_in(role)
        assert client.get("/team/budget").status_code == 403


def test_an_unknown_year_line_or_allocation_is_not_found(team):
    for url in ("/team/budget/999", "/team/budget/lines/999", "/team/budget/allocations/999"):
        assert team.get(url).status_code == 404


# Concurrency ----------------------------------------------------------------------------------

def test_concurrent_allocations_never_exceed_the_line(app, factory, council):
    """10 allocations of £1,000 at once against a line with £5,000 left: at most 5 succeed, and
    the line's allocated total is exactly the sum of its allocations (DESIGN 5)."""
    admin = factory.user("dps_admin")
    with app.app_context():
        year = BudgetYear(label="2024/25", starts_on=date(2024, 4, 1), ends_on=date(2025, 3, 31))
        db.session.add(year)
        db.session.flush()
        line = BudgetLine(year_id=year.id, programme="Policy Labs", total_pence=8_000_00,
                          cap_per_call_off_pence=20_000_00, allocated_pence=0)
        db.session.add(line)
        db.session.flush()
        line_id = line.id
        budget.allocate(db.session.get(User, admin["id"]), line, db.session.get(Organisation, council),
                        "Already funded", 3_000_00)
        db.session.commit()

    start = threading.Barrier(10)
    outcomes: list[str] = []
    lock = threading.Lock()

    def allocate(n: int) -> None:
        with app.app_context():
            try:
                start.wait()
                budget.allocate(db.session.get(User, admin["id"]), db.session.get(BudgetLine, line_id),
                                db.session.get(Organisation, council), f"Concurrent project {n}", 1_000_00)
                db.session.commit()
                result = "allocated"
            except ServiceError as exc:
                db.session.rollback()
                result = exc.message
            finally:
                db.session.remove()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=allocate, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(outcomes) == 10, outcomes
    assert outcomes.count("allocated") == 5, outcomes
    assert all("is left" in o for o in outcomes if o != "allocated"), outcomes

    total, allocated, rows = _line_state(app, line_id)
    assert rows <= total
    assert rows == allocated == 8_000_00
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Allocation).where(Allocation.line_id == line_id)) == 6
