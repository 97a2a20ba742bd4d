"""More long lists, paginated by keyset (DESIGN 10; issue 10 item 3): a buyer's mini-competitions,
a competition's invited suppliers, a buyer's call-off contracts and a supplier's invitations;
and the audit log's organisation filter, a search instead of a list of every organisation.

For each list: the same number of queries with 5 rows as with 120; 50 to a page, and following
Next shows every row once, in order, Previous coming back the same way; where the page is
("Showing 51 to 100 of 120"); searches and filters kept from page to page; hand-made cursors
never a 500; and nobody sees another organisation's rows."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from html import unescape

import pytest
from sqlalchemy import event, select, text

from dps import audit, clock
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
    Invitation,
    Organisation,
)
from dps.pagination import PAGE_SIZE, encode_cursor
from tests.applying import add_suppliers, make_dps
from tests.conftest import Client, count_queries
from tests.pages import assert_survives, body, flat, link, query, walk

COMPETITIONS = "/buyer/competitions"
CALL_OFFS = "/buyer/call-offs"
INVITATIONS = "/supplier/competitions"
AUDIT = "/team/audit"
SUGGEST = "/team/audit/organisations"


def showing(response) -> tuple[int, int, int] | None:
    """(first, last, total) of "Showing 51 to 100 of 120 …", or None."""
    found = re.search(r"Showing ([\d,]+) to ([\d,]+) of ([\d,]+) ", body(response))
    return tuple(int(n.replace(",", "")) for n in found.groups()) if found else None


def assert_positions(pages: list[list], total: int, browser: Client, url: str) -> None:
    """Each page of ``url``, walking forwards, says where it is in the list of ``total``."""
    response, first = browser.get(url), 1
    for rows in pages:
        assert showing(response) == (first, first + len(rows) - 1, total)
        first += len(rows)
        following = link(response, "next")
        if following:
            response = browser.get(following)


# Building data quickly: rows written directly, in one transaction ----------------------------------

@dataclass
class Buyer:
    browser: Client
    user: dict
    organisation: int
    allocation: int


@pytest.fixture
def dps(app) -> dict:
    return make_dps(app)


@pytest.fixture
def builder(factory) -> dict:
    """The user direct rows name as their author (a foreign key needs one)."""
    return factory.user("supplier")


def add_allocation(app, organisation_id: int) -> int:
    with app.app_context():
        year = db.session.scalar(select(BudgetYear).where(BudgetYear.label == "2024/25"))
        if year is None:
            year = BudgetYear(label="2024/25", starts_on=date(2024, 4, 1), ends_on=date(2025, 3, 31))
            db.session.add(year)
            db.session.add(BudgetLine(year=year, programme="Policy Labs", total_pence=10_000_000_00,
                                      cap_per_call_off_pence=None, allocated_pence=0))
            db.session.flush()
        line = db.session.scalar(select(BudgetLine).where(BudgetLine.year_id == year.id))
        line.allocated_pence += 1_000_000_00
        allocation = Allocation(line=line, organisation_id=organisation_id, project_title="A funded project",
                                amount_pence=1_000_000_00, committed_pence=0)
        db.session.add(allocation)
        db.session.commit()
        return allocation.id


def signed_in_buyer(app, factory, signed_in, name: str) -> Buyer:
    council = factory.organisation(name=name)
    browser, user = signed_in("buyer", organisation_id=council)
    return Buyer(browser, user, council, add_allocation(app, council))


@pytest.fixture
def buyer(app, factory, signed_in, dps) -> Buyer:
    return signed_in_buyer(app, factory, signed_in, "Rochdale Borough Council")


@pytest.fixture
def other_buyer(app, factory, signed_in, dps) -> Buyer:
    return signed_in_buyer(app, factory, signed_in, "Kirklees Council")


def add_competitions(app, dps: dict, owner: Buyer, n: int, *, start: int = 0, title: str = "Review",
                     state=lambda i: "open") -> list[int]:
    """``n`` published competitions of ``owner`` on Lot 1, made an hour apart in pairs (so the id
    breaks ties); ``state(i)``: "open" (tenders due in 10 days), "closed" (due 5 days ago),
    "cancelled" or "draft"."""
    with app.app_context():
        now = clock.now()
        ids = []
        for i in range(start, start + n):
            kind = state(i)
            created = now - timedelta(days=20, hours=i // 2)
            deadline = now - timedelta(days=5) if kind == "closed" else now + timedelta(days=10)
            competition = Competition(
                reference=f"T-{owner.organisation}-{i:04d}", lot_id=dps["lot1"], buyer_organisation_id=owner.organisation,
                created_by_id=owner.user["id"], title=f"{title} {i:03d}", description="What we are buying.",
                estimated_value_pence=10_000_00, allocation_id=owner.allocation,
                clarification_deadline=deadline - timedelta(days=3), tender_deadline=deadline, standstill=False,
                created_at=created, published_at=None if kind == "draft" else created,
                cancelled_at=created if kind == "cancelled" else None,
                cancel_reason="No longer needed." if kind == "cancelled" else None)
            db.session.add(competition)
            db.session.flush()
            ids.append(competition.id)
        db.session.commit()
        return ids


def newest_first(app, model, ids: list[int]) -> list[int]:
    with app.app_context():
        rows = db.session.execute(select(model.id, model.created_at).where(model.id.in_(ids))).all()
    return [r.id for r in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)]


# A buyer's mini-competitions -----------------------------------------------------------------------

def competition_ids(response) -> list[int]:
    return [int(i) for i in re.findall(r'<a class="govuk-link" href="/buyer/competitions/(\d+)">', body(response))]


def test_competitions_cost_the_same_queries_at_5_and_120(app, buyer, dps):
    add_competitions(app, dps, buyer, 5)
    buyer.browser.get(COMPETITIONS)
    measured = {}
    for url in (COMPETITIONS, f"{COMPETITIONS}?q=review"):
        with count_queries(app) as few:
            assert len(competition_ids(buyer.browser.get(url))) == 5
        measured[url] = [few()]
    add_competitions(app, dps, buyer, 115, start=5)
    for url in measured:
        with count_queries(app) as many:
            response = buyer.browser.get(url)
        assert len(competition_ids(response)) == PAGE_SIZE and link(response, "next")
        with count_queries(app) as second:
            assert len(competition_ids(buyer.browser.get(link(response, "next")))) == PAGE_SIZE
        measured[url] += [many(), second()]
    for url, (few, many, second) in measured.items():
        assert few == many, url
        assert second <= many + 1, url  # the next page adds one EXISTS: is there a page before it?


def test_competitions_page_newest_first_saying_where_each_page_is(app, buyer, dps):
    ids = add_competitions(app, dps, buyer, 120)
    first = buyer.browser.get(COMPETITIONS)
    assert "Showing 1 to 50 of 120 mini-competitions, newest first" in body(first)
    pages = walk(buyer.browser, COMPETITIONS, competition_ids)
    assert [len(p) for p in pages] == [50, 50, 20]
    assert flat(pages) == newest_first(app, Competition, ids)
    assert_positions(pages, 120, buyer.browser, COMPETITIONS)
    # Coming back with Previous says the same.
    last = buyer.browser.get(link(buyer.browser.get(link(first, "next")), "next"))
    assert showing(last) == (101, 120, 120)
    assert showing(buyer.browser.get(link(last, "prev"))) == (51, 100, 120)


def test_a_short_list_is_counted_without_pages(app, buyer, dps):
    add_competitions(app, dps, buyer, 3)
    response = buyer.browser.get(COMPETITIONS)
    assert "3 mini-competitions, newest first" in body(response) and showing(response) is None
    assert '<nav class="govuk-pagination' not in body(response)


def test_competitions_search_is_counted_and_kept_across_pages(app, buyer, dps):
    reviews = add_competitions(app, dps, buyer, 70, title="Review")
    add_competitions(app, dps, buyer, 40, start=70, title="Prototype")
    add_competitions(app, dps, buyer, 1, start=200, title="100% renewable_energy")
    url = f"{COMPETITIONS}?q=REVIEW"
    first = buyer.browser.get(url)
    assert "Showing 1 to 50 of 70 mini-competitions whose title or reference contains “REVIEW”" in body(first)
    assert query(link(first, "next"))["q"] == ["REVIEW"]
    second = buyer.browser.get(link(first, "next"))
    assert query(link(second, "prev"))["q"] == ["REVIEW"]
    assert flat(walk(buyer.browser, url, competition_ids)) == newest_first(app, Competition, reviews)
    # By reference too; % and _ match only themselves.
    assert len(competition_ids(buyer.browser.get(f"{COMPETITIONS}?q=T-{buyer.organisation}-000"))) == 10
    assert len(competition_ids(buyer.browser.get(f"{COMPETITIONS}?q=%25"))) == 1
    assert len(competition_ids(buyer.browser.get(f"{COMPETITIONS}?q=_"))) == 1
    nothing = buyer.browser.get(f"{COMPETITIONS}?q=tendering")
    assert "None of your organisation’s mini-competitions has “tendering” in its title or reference" in body(nothing)
    # The search is a GET form, filled in with what was asked.
    assert '<form method="get" action="/buyer/competitions"' in body(first) and 'value="REVIEW"' in body(first)


def test_a_buyer_sees_only_its_own_organisations_competitions(app, buyer, other_buyer, dps):
    own = add_competitions(app, dps, buyer, 60, title="Ours")
    theirs = add_competitions(app, dps, other_buyer, 60, title="Theirs")
    assert flat(walk(buyer.browser, COMPETITIONS, competition_ids)) == newest_first(app, Competition, own)
    assert "Showing 1 to 50 of 60" in body(buyer.browser.get(COMPETITIONS))
    assert competition_ids(buyer.browser.get(f"{COMPETITIONS}?q=theirs")) == []
    # A cursor made from another organisation's row is a place in the list, nothing more.
    with app.app_context():
        row = db.session.get(Competition, theirs[10])
        cursor = encode_cursor((row.created_at, row.id))
    shown = competition_ids(buyer.browser.get(f"{COMPETITIONS}?after={cursor}"))
    assert shown and set(shown) <= set(own)
    assert buyer.browser.get(f"/buyer/competitions/{theirs[0]}").status_code == 404
    assert buyer.browser.get(f"/buyer/competitions/{theirs[0]}?after={cursor}").status_code == 404


def test_competitions_bad_parameters_never_500(app, buyer, dps):
    add_competitions(app, dps, buyer, 60)
    assert_survives(buyer.browser, COMPETITIONS, ("q=%00", "q=" + "x" * 5000, "q=%ED%A0%80", "q=a&before=x"))
    assert_survives(buyer.browser, f"{COMPETITIONS}?q=review")


def test_only_buyers_read_the_buyer_lists(signed_in, dps):
    for role in ("supplier", "dps_admin", "auditor"):
        browser, _ = signed_in(role, organisation_id=dps["body"] if role != "supplier" else None)
        for url in (COMPETITIONS, CALL_OFFS):
            assert browser.get(url).status_code == 403, (role, url)


# A competition's invited suppliers -----------------------------------------------------------------

def invite(app, competition_id: int, org_ids: list[int], *, opened=lambda i: False, submitted=lambda i: False) -> None:
    with app.app_context():
        competition = db.session.get(Competition, competition_id)
        for i, org_id in enumerate(org_ids):
            db.session.add(Invitation(competition_id=competition_id, organisation_id=org_id,
                                      invited_at=competition.published_at,
                                      first_opened_at=competition.published_at + timedelta(hours=1) if opened(i) else None))
            if submitted(i):
                db.session.add(Bid(competition_id=competition_id, organisation_id=org_id, state="submitted",
                                   price_pence=9_000_00, updated_at=clock.now(), submitted_at=clock.now(),
                                   receipt_reference=f"R-{competition_id}-{org_id}"))
        db.session.commit()


def invited_names(response) -> list[str]:
    html = body(response)
    section = html[html.index('id="invitations"'):html.index('id="clarifications"')]
    return [unescape(name).strip() for name in
            re.findall(r'<tr class="govuk-table__row">\s*<td class="govuk-table__cell">([^<]+)', section)]


def by_name(app, org_ids: list[int]) -> list[str]:
    with app.app_context():
        rows = db.session.execute(select(Organisation.id, Organisation.name).where(Organisation.id.in_(org_ids))).all()
    return [r.name for r in sorted(rows, key=lambda r: (r.name.lower(), r.id))]


def mixed_case(start: int, stop: int) -> list[str]:
    """Pairs of names that differ only in case (so the order falls back on the id)."""
    return [f"{'Supplier' if i % 2 else 'supplier'} {i // 2:03d}" for i in range(start, stop)]


def test_invited_suppliers_cost_the_same_queries_at_5_and_120(app, buyer, dps, builder):
    competition = add_competitions(app, dps, buyer, 1)[0]
    page = f"/buyer/competitions/{competition}"
    invite(app, competition, add_suppliers(app, dps, builder, mixed_case(0, 5)))
    buyer.browser.get(page)
    with count_queries(app) as few:
        assert len(invited_names(buyer.browser.get(page))) == 5
    invite(app, competition, add_suppliers(app, dps, builder, mixed_case(5, 120)), opened=lambda i: i % 2,
           submitted=lambda i: i % 5 == 0)
    with count_queries(app) as many:
        response = buyer.browser.get(page)
    assert len(invited_names(response)) == PAGE_SIZE and link(response, "next")
    with count_queries(app) as second:
        buyer.browser.get(link(response, "next"))
    assert few() == many()
    assert second() <= many() + 1


def test_invited_suppliers_page_by_name_with_their_counts(app, buyer, dps, builder):
    competition = add_competitions(app, dps, buyer, 1)[0]
    page = f"/buyer/competitions/{competition}"
    org_ids = add_suppliers(app, dps, builder, mixed_case(0, 120))
    invite(app, competition, org_ids, opened=lambda i: i % 3 == 0, submitted=lambda i: i % 10 == 0)
    removed = add_suppliers(app, dps, builder, ["Zed Removed Ltd"], status="removed")
    invite(app, competition, removed)
    first = buyer.browser.get(page)
    html = body(first)
    assert "121 suppliers were invited: 40 have opened the invitation and 12 have submitted a bid." in html
    assert "Showing 1 to 50 of 121 invited suppliers, by name" in html
    # The pages keep to the competition and come back to its invited suppliers.
    following = link(first, "next")
    assert following.startswith(f"{page}?after=") and following.endswith("#invitations")
    pages = walk(buyer.browser, page, invited_names)
    assert [len(p) for p in pages] == [50, 50, 21]
    assert flat(pages) == by_name(app, org_ids + removed)
    assert_positions(pages, 121, buyer.browser, page)
    last = body(buyer.browser.get(link(buyer.browser.get(following), "next")))
    assert "Zed Removed Ltd<br><span class=\"govuk-body-s\">No longer on the lot, so it cannot bid" in last


def test_invited_suppliers_bad_cursors_never_500_and_stay_in_the_competition(app, buyer, other_buyer, dps, builder):
    competition = add_competitions(app, dps, buyer, 1)[0]
    theirs = add_competitions(app, dps, other_buyer, 1)[0]
    invite(app, competition, add_suppliers(app, dps, builder, mixed_case(0, 60)))
    invite(app, theirs, add_suppliers(app, dps, builder, [f"Only theirs {i:02d}" for i in range(60)]))
    page = f"/buyer/competitions/{competition}"
    assert_survives(buyer.browser, page)
    # A cursor in the middle of the other competition's names shows this one's, after it.
    shown = invited_names(buyer.browser.get(f"{page}?after={encode_cursor(('only theirs 30', 0))}"))
    assert len(shown) == PAGE_SIZE and all(name.lower().startswith("supplier") for name in shown)
    # One past every name: no one, and the way back.
    response = buyer.browser.get(f"{page}?after={encode_cursor(('zzzz', 0))}")
    assert response.status_code == 200 and invited_names(response) == []
    assert "There are no more invited suppliers" in body(response) and link(response, "prev")


# A buyer's call-off contracts ----------------------------------------------------------------------

def add_call_offs(app, dps: dict, owner: Buyer, supplier_ids: list[int], n: int, *, start: int = 0) -> list[int]:
    """``n`` awarded competitions of ``owner``, each with its confirmed award and call-off, to the
    suppliers in turn; made an hour apart in pairs."""
    competitions = add_competitions(app, dps, owner, n, start=start, title="Contract", state=lambda i: "closed")
    with app.app_context():
        ids = []
        for i, competition_id in enumerate(competitions):
            competition = db.session.get(Competition, competition_id)
            supplier = supplier_ids[i % len(supplier_ids)]
            bid = Bid(competition_id=competition_id, organisation_id=supplier, state="submitted", price_pence=9_000_00,
                      updated_at=competition.created_at, submitted_at=competition.created_at, receipt_reference=f"R-{i}")
            db.session.add(bid)
            db.session.flush()
            award = Award(competition_id=competition_id, bid_id=bid.id, value_pence=9_000_00,
                          decided_at=competition.tender_deadline, decided_by_id=owner.user["id"],
                          confirmed_at=competition.tender_deadline)
            db.session.add(award)
            db.session.flush()
            call_off = CallOff(reference=f"{competition.reference}-C", competition_id=competition_id, award_id=award.id,
                               supplier_organisation_id=supplier, buyer_organisation_id=owner.organisation,
                               allocation_id=owner.allocation, value_pence=9_000_00, paid_pence=1_000_00 * (i % 3),
                               starts_on=date(2024, 6, 1), ends_on=date(2024, 12, 31),
                               created_at=competition.created_at)
            db.session.add(call_off)
            db.session.flush()
            ids.append(call_off.id)
        db.session.commit()
        return ids


def call_off_ids(response) -> list[int]:
    return [int(i) for i in re.findall(r'href="/buyer/call-offs/(\d+)"', body(response))]


def test_call_offs_cost_the_same_queries_at_5_and_120(app, buyer, dps, builder):
    suppliers = add_suppliers(app, dps, builder, ["Brightwater Research Ltd", "Co-op Futures CIC", "Tundra Gate Trust"])
    add_call_offs(app, dps, buyer, suppliers, 5)
    buyer.browser.get(CALL_OFFS)
    measured = {}
    for url in (CALL_OFFS, f"{CALL_OFFS}?q=contract"):
        with count_queries(app) as few:
            buyer.browser.get(url)
        measured[url] = [few()]
    add_call_offs(app, dps, buyer, suppliers, 115, start=5)
    for url in measured:
        with count_queries(app) as many:
            response = buyer.browser.get(url)
        assert len(call_off_ids(response)) == PAGE_SIZE and link(response, "next")
        with count_queries(app) as second:
            buyer.browser.get(link(response, "next"))
        measured[url] += [many(), second()]
    for url, (few, many, second) in measured.items():
        assert few == many, url
        assert second <= many + 1, url


def test_call_offs_page_newest_first_and_search_is_kept(app, buyer, other_buyer, dps, builder):
    suppliers = add_suppliers(app, dps, builder, ["Brightwater Research Ltd", "Co-op Futures CIC", "Tundra Gate Trust"])
    ids = add_call_offs(app, dps, buyer, suppliers, 120)
    theirs = add_call_offs(app, dps, other_buyer, suppliers, 30, start=500)
    first = buyer.browser.get(CALL_OFFS)
    assert "Showing 1 to 50 of 120 call-off contracts, newest first" in body(first)
    pages = walk(buyer.browser, CALL_OFFS, call_off_ids)
    assert flat(pages) == newest_first(app, CallOff, ids)
    assert not set(flat(pages)) & set(theirs), "another organisation's call-offs"
    assert_positions(pages, 120, buyer.browser, CALL_OFFS)

    # By the supplier's name, whatever its case: every third call-off.
    url = f"{CALL_OFFS}?q=CO-OP+futures"
    searched = buyer.browser.get(url)
    assert "40 call-off contracts whose reference, contract or supplier contains “CO-OP futures”" in body(searched)
    assert call_off_ids(searched) == newest_first(app, CallOff, ids[1::3])
    # By the contract's title and by reference; kept across pages.
    by_title = f"{CALL_OFFS}?q=contract+0"
    assert query(link(buyer.browser.get(by_title), "next"))["q"] == ["contract 0"]
    assert flat(walk(buyer.browser, by_title, call_off_ids)) == newest_first(app, CallOff, ids[:100])
    assert call_off_ids(buyer.browser.get(f"{CALL_OFFS}?q=T-{buyer.organisation}-0042-C")) == [ids[42]]
    assert call_off_ids(buyer.browser.get(f"{CALL_OFFS}?q=T-{other_buyer.organisation}-05")) == []
    assert buyer.browser.get(f"/buyer/call-offs/{theirs[0]}").status_code == 404


def test_call_offs_bad_parameters_never_500(app, buyer, dps, builder):
    add_call_offs(app, dps, buyer, add_suppliers(app, dps, builder, ["Brightwater Research Ltd"]), 60)
    assert_survives(buyer.browser, CALL_OFFS, ("q=%00", "q=" + "x" * 5000, "q=%ED%A0%80", "q=%25%5F"))
    assert_survives(buyer.browser, f"{CALL_OFFS}?q=brightwater")


def test_no_call_offs_says_how_they_come(app, buyer, dps):
    assert "They are created when an award is confirmed" in body(buyer.browser.get(CALL_OFFS))


# A supplier's invitations --------------------------------------------------------------------------

@dataclass
class Supplier:
    browser: Client
    organisation: int


@pytest.fixture
def supplier(app, signed_in, dps) -> Supplier:
    browser, user = signed_in("supplier")
    return Supplier(browser, user["organisation_id"])


def invitation_ids(app, supplier_org: int, competitions: list[int]) -> list[int]:
    """The competitions in the page's order: the latest invitation first (then the latest id)."""
    with app.app_context():
        rows = db.session.execute(select(Invitation.competition_id, Invitation.invited_at, Invitation.id)
                                  .where(Invitation.organisation_id == supplier_org,
                                         Invitation.competition_id.in_(competitions))).all()
    return [r.competition_id for r in sorted(rows, key=lambda r: (r.invited_at, r.id), reverse=True)]


def invited_to(response) -> list[int]:
    """The competitions on the page: opened ones are links, new ones have a View button."""
    return [int(i) for i in re.findall(r'/supplier/competitions/(\d+)(?:/view)?"', body(response))]


def state_of(i: int) -> str:
    return "closed" if i % 3 == 0 else "cancelled" if i % 7 == 0 else "open"


def add_invitations(app, dps, supplier: Supplier, owner: Buyer, n: int, *, start: int = 0) -> list[int]:
    competitions = add_competitions(app, dps, owner, n, start=start, state=state_of)
    with app.app_context():
        for i, competition_id in enumerate(competitions):
            competition = db.session.get(Competition, competition_id)
            db.session.add(Invitation(competition_id=competition_id, organisation_id=supplier.organisation,
                                      invited_at=competition.published_at,
                                      first_opened_at=competition.published_at if i % 2 else None))
            if i % 4 == 1:
                db.session.add(Bid(competition_id=competition_id, organisation_id=supplier.organisation, state="draft",
                                   price_pence=None, updated_at=clock.now()))
        db.session.commit()
    return competitions


def test_invitations_cost_the_same_queries_at_5_and_120(app, supplier, buyer, dps):
    add_invitations(app, dps, supplier, buyer, 5)
    supplier.browser.get(INVITATIONS)
    measured = {}
    for url in (INVITATIONS, f"{INVITATIONS}?show=open"):
        with count_queries(app) as few:
            supplier.browser.get(url)
        measured[url] = [few()]
    add_invitations(app, dps, supplier, buyer, 200, start=5)
    for url in measured:
        with count_queries(app) as many:
            response = supplier.browser.get(url)
        assert len(invited_to(response)) == PAGE_SIZE and link(response, "next")
        with count_queries(app) as second:
            supplier.browser.get(link(response, "next"))
        measured[url] += [many(), second()]
    for url, (few, many, second) in measured.items():
        assert few == many, url
        assert second <= many + 1, url


def test_invitations_page_the_latest_first_and_the_open_filter_is_kept(app, supplier, buyer, other_buyer, dps, builder):
    mine = add_invitations(app, dps, supplier, buyer, 80) + add_invitations(app, dps, supplier, other_buyer, 40, start=80)
    # Another supplier's invitations, to competitions this one was not invited to.
    others = add_competitions(app, dps, buyer, 30, start=300, title="Not for you")
    invite(app, others[0], add_suppliers(app, dps, builder, ["Someone Else Ltd"]))
    first = supplier.browser.get(INVITATIONS)
    assert "Showing 1 to 50 of 120 invitations, the latest first" in body(first)
    pages = walk(supplier.browser, INVITATIONS, invited_to)
    assert flat(pages) == invitation_ids(app, supplier.organisation, mine)
    assert_positions(pages, 120, supplier.browser, INVITATIONS)

    still_open = [c for i, c in enumerate(mine) if state_of(i) == "open"]  # mine[i] was made with index i
    url = f"{INVITATIONS}?show=open"
    open_first = supplier.browser.get(url)
    assert f"Showing 1 to 50 of {len(still_open)} invitations open for tenders" in body(open_first)
    assert query(link(open_first, "next"))["show"] == ["open"]
    assert query(link(supplier.browser.get(link(open_first, "next")), "prev"))["show"] == ["open"]
    opened = flat(walk(supplier.browser, url, invited_to))
    assert opened == invitation_ids(app, supplier.organisation, still_open)
    assert "(closed)" not in body(open_first) and "Cancelled" not in body(open_first)
    # Each row still reads as before: the buyer, the lot and the state of the bid.
    assert "Rochdale Borough Council" in body(first) and "Lot 1: Research and policy" in body(first)
    assert "Draft" in body(first) and "Not started" in body(first)


def test_a_supplier_sees_only_its_own_invitations(app, signed_in, supplier, buyer, dps, builder):
    mine = add_invitations(app, dps, supplier, buyer, 3)
    others = add_competitions(app, dps, buyer, 60, start=100, title="Not for you")
    for competition in others:
        invite(app, competition, add_suppliers(app, dps, builder, [f"Other {competition}"]))
    response = supplier.browser.get(INVITATIONS)
    assert sorted(invited_to(response)) == sorted(mine)
    assert "3 invitations, the latest first" in body(response) and "Not for you" not in body(response)
    with app.app_context():
        row = db.session.scalar(select(Invitation).where(Invitation.competition_id == others[5]))
        cursor = encode_cursor((row.invited_at, row.id))
    shown = invited_to(supplier.browser.get(f"{INVITATIONS}?after={cursor}"))
    assert set(shown) <= set(mine)
    assert supplier.browser.get(f"/supplier/competitions/{others[0]}").status_code == 404
    for role in ("buyer", "dps_admin", "auditor"):
        browser, _ = signed_in(role, organisation_id=dps["body"])
        assert browser.get(INVITATIONS).status_code == 403, role


def test_invitations_bad_parameters_never_500(app, supplier, buyer, dps):
    add_invitations(app, dps, supplier, buyer, 60)
    assert_survives(supplier.browser, INVITATIONS, ("show=everything", "show=open&show=all", "show=open&after=x"))
    assert_survives(supplier.browser, f"{INVITATIONS}?show=open")
    assert len(invited_to(supplier.browser.get(f"{INVITATIONS}?show=bogus"))) == PAGE_SIZE


def test_no_open_invitation_says_so(app, supplier, buyer, dps):
    add_invitations(app, dps, supplier, buyer, 1)  # i = 0: closed
    assert "None of your invitations is open for tenders now" in body(supplier.browser.get(f"{INVITATIONS}?show=open"))


# The plans: each page read off its index in page order ---------------------------------------------

def page_plan(app, is_postgres: bool, browser: Client, url: str) -> str:
    """The database's plan of the page query (the one with a LIMIT) that ``url`` runs."""
    with app.app_context():
        engine = db.engine
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if "LIMIT" in statement and "keyset_0" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        assert browser.get(url).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", record)
    statement, parameters = seen[0]
    with app.app_context():
        connection = db.session.connection()
        if is_postgres:
            # On tables this small the planner rightly prefers reading them whole or sorting a
            # handful of rows; switched off, the plan shows whether an index can serve the page.
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            connection.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
            connection.exec_driver_sql("SET LOCAL enable_sort = off")
            plan = "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters))
        else:
            plan = "\n".join(str(row[-1]) for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                                                 parameters))
        db.session.rollback()
    return plan


def test_each_list_is_read_off_its_index_without_sorting(app, is_postgres, buyer, supplier, dps, builder):
    suppliers = add_suppliers(app, dps, builder, ["Brightwater Research Ltd"])
    add_call_offs(app, dps, buyer, suppliers, 3)
    add_invitations(app, dps, supplier, buyer, 3, start=10)
    for browser, url, index in ((buyer.browser, COMPETITIONS, "ix_competitions_buyer_created"),
                                (buyer.browser, CALL_OFFS, "ix_call_offs_buyer_created"),
                                (supplier.browser, INVITATIONS, "ix_invitations_organisation_invited")):
        plan = page_plan(app, is_postgres, browser, url)
        assert index in plan, (url, plan)
        if is_postgres:
            assert not re.search(r"(^|->)\s*(Incremental )?Sort\s", plan, re.M), (url, plan)
        else:
            assert "TEMP B-TREE" not in plan, (url, plan)


# The audit log's organisation filter: a search ------------------------------------------------------

@pytest.fixture
def team(signed_in, factory) -> Client:
    browser, _ = signed_in("dps_admin", organisation_id=factory.organisation(name="Oldham Council"))
    return browser


def add_events(app, organisation_id: int, n: int = 1, action: str = "test.event") -> list[int]:
    with app.app_context():
        events = [audit.record(action, "thing", i + 1, {"n": i}, actor_label="tester", organisation_id=organisation_id)
                  for i in range(n)]
        db.session.commit()
        return [e.id for e in events]


def shown_events(response) -> list[int]:
    return [int(i) for i in re.findall(r'href="/team/audit/(\d+)"', body(response))]


def field_error(response) -> str | None:
    found = re.search(r'id="organisation-error"[^>]*>(.*?)</p>', body(response), re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", "", found.group(1))).split()) if found else None


def candidate_links(response) -> list[tuple[str, str]]:
    """(name, href) of the organisations offered to choose from."""
    html = body(response)
    if 'id="organisation-candidates"' not in html:
        return []
    part = html[html.index('id="organisation-candidates"'):]
    part = part[:part.index("</ul>")]
    return [(unescape(name), unescape(href)) for href, name in re.findall(r'<a class="govuk-link" href="([^"]+)">([^<]+)</a>', part)]


def test_an_exact_name_filters_the_log_whatever_its_case(app, team, factory):
    plymouth = factory.organisation(name="Plymouth City Council")
    factory.organisation(name="Plymouth Community Trust")
    mine = add_events(app, plymouth, 3)
    add_events(app, factory.organisation(name="Aberdeen City Council"), 2)
    response = team.get(f"{AUDIT}?organisation=plymouth+CITY+council")
    assert response.status_code == 200
    assert shown_events(response) == sorted(mine, reverse=True)
    html = body(response)
    # The box shows the name as recorded, and the page remembers which organisation it is.
    assert 'value="Plymouth City Council"' in html
    assert f'<input id="organisation_id" name="organisation_id" type="hidden" value="{plymouth}">' in html


def test_a_name_that_is_only_a_start_offers_the_organisations_to_choose(app, team, factory):
    plymouth = factory.organisation(name="Plymouth City Council")
    trust = factory.organisation(name="Plymouth Community Trust")
    factory.organisation(name="Aberdeen City Council")
    add_events(app, plymouth, 2)
    theirs = add_events(app, trust, 2, action="kept")
    response = team.get(f"{AUDIT}?organisation=plym&action=kept")
    assert response.status_code == 400
    html = body(response)
    assert "There is a problem" in html and '<a href="#organisation">' in html
    assert field_error(response) == (
        "Error: There is no organisation called “plym”: choose one whose name starts with it from the list below")
    assert not shown_events(response), "no rows for a filter that names no one organisation"
    offered = candidate_links(response)
    assert [name for name, _ in offered] == ["Plymouth City Council", "Plymouth Community Trust"]
    # Each is a link to the log filtered by it, the other filters kept.
    chosen = query(offered[1][1])
    assert chosen == {"organisation": ["Plymouth Community Trust"], "organisation_id": [str(trust)], "action": ["kept"]}
    picked = team.get(offered[1][1])
    assert picked.status_code == 200 and shown_events(picked) == sorted(theirs, reverse=True)


def test_a_name_nobody_has_says_so_by_the_field(app, team, factory):
    factory.organisation(name="Plymouth City Council")
    response = team.get(f"{AUDIT}?organisation=Nowhere+Borough")
    assert response.status_code == 400
    assert field_error(response) == (
        "Error: There is no organisation called “Nowhere Borough” or whose name starts with it: check the spelling")
    assert candidate_links(response) == []
    # % and _ are letters of a name, not wildcards.
    factory.organisation(name="100 Club")
    factory.organisation(name="Under score Ltd")
    assert candidate_links(team.get(f"{AUDIT}?organisation=100%25")) == []
    assert candidate_links(team.get(f"{AUDIT}?organisation=Under_")) == []
    factory.organisation(name="100% Local")
    assert team.get(f"{AUDIT}?organisation=100%25+local").status_code == 200
    assert [name for name, _ in candidate_links(team.get(f"{AUDIT}?organisation=100"))] == ["100 Club", "100% Local"]


def test_many_starts_offer_the_first_few_and_say_how_many(app, team, factory):
    for n in range(12):
        factory.organisation(name=f"Council of Place {n:02d}")
    response = team.get(f"{AUDIT}?organisation=council+of")
    assert field_error(response) == (
        "Error: There is no organisation called “council of”, and 12 names start with it: type more of the name, "
        "or choose one of the first 5 from the list below")
    assert [name for name, _ in candidate_links(response)] == [f"Council of Place {n:02d}" for n in range(5)]


def test_two_organisations_of_one_name_are_told_apart(app, team, factory):
    first = factory.organisation(kind="supplier", membership=None, name="Acme Consulting Ltd")
    second = factory.organisation(kind="supplier", membership=None, name="ACME Consulting Ltd")
    with app.app_context():
        db.session.get(Organisation, second).identifier_scheme = "GB-COH"
        db.session.get(Organisation, second).identifier_id = "01234567"
        db.session.commit()
    theirs = {first: add_events(app, first, 2), second: add_events(app, second, 3)}
    response = team.get(f"{AUDIT}?organisation=Acme+Consulting+Ltd")
    assert response.status_code == 400
    assert field_error(response) == "Error: 2 organisations are called “Acme Consulting Ltd”: choose which one from the list below"
    assert "The organisations of that name" in body(response) and "(Supplier, GB-COH-01234567)" in body(response)
    offered = candidate_links(response)
    assert [query(href)["organisation_id"] for _, href in offered] == [[str(first)], [str(second)]]
    for (_, href), org in zip(offered, (first, second)):
        picked = team.get(href)
        assert picked.status_code == 200 and shown_events(picked) == sorted(theirs[org], reverse=True)
        # Its pages keep the choice.
        assert f'name="organisation_id" type="hidden" value="{org}"' in body(picked)
    # A choice whose name has since been typed over is not used: the name is.
    with app.app_context():
        oldham = db.session.scalar(select(Organisation.id).where(Organisation.name == "Oldham Council"))
    retyped = team.get(f"{AUDIT}?organisation=Oldham+Council&organisation_id={first}")
    assert retyped.status_code == 200
    assert f'name="organisation_id" type="hidden" value="{oldham}"' in body(retyped)
    assert not set(shown_events(retyped)) & set(theirs[first])
    for bad in ("abc", "-1", "99999999999999999999", "9" * 5000, "%C2%B2", "1.5", "%00"):
        assert team.get(f"{AUDIT}?organisation=Acme+Consulting+Ltd&organisation_id={bad}").status_code == 400, bad


def test_the_filters_pages_keep_the_organisation(app, team, factory):
    kirklees = factory.organisation(name="Kirklees Council")
    events = add_events(app, kirklees, 60)
    first = team.get(f"{AUDIT}?organisation=Kirklees+Council")
    older = team.get(link_labelled(first, "Older events"))
    assert shown_events(first) + shown_events(older) == sorted(events, reverse=True)


def link_labelled(response, label: str) -> str:
    nav = re.search(r'<nav class="govuk-pagination.*?</nav>', body(response), re.S).group(0)
    return next(unescape(href) for href, inner in re.findall(r'<a [^>]*href="([^"]+)"[^>]*>(.*?)</a>', nav, re.S)
                if label in inner)


def test_the_log_page_does_not_grow_with_the_organisations(app, team, factory):
    add_events(app, factory.organisation(name="Plymouth City Council"), 3)
    before = len(body(team.get(AUDIT)))
    with app.app_context():
        now = clock.now()
        db.session.add_all(Organisation(name=f"Member Council {n:04d}", kind="council", created_at=now)
                           for n in range(300))
        db.session.commit()
    after = body(team.get(AUDIT))
    assert "Member Council" not in after
    assert len(after) == before


def test_bad_organisation_text_never_500(app, team, factory):
    factory.organisation(name="Plymouth City Council")
    for value in ("%00", "%ED%A0%80", "%25%25%5F", "+", "x" * 200):
        assert team.get(f"{AUDIT}?organisation={value}").status_code in (200, 400), value
    assert team.get(f"{AUDIT}?organisation=%20%20").status_code == 200  # spaces only: no filter
    too_long = team.get(f"{AUDIT}?organisation={'x' * 201}")
    assert too_long.status_code == 400
    assert field_error(too_long) == "Error: Enter an organisation’s name of 200 characters or fewer"


def test_the_box_is_enhanced_by_the_bundled_autocomplete_under_the_csp_nonce(app, team):
    response = team.get(AUDIT)
    html = body(response)
    nonce = response.headers["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    assert f'<script src="/static/build/accessible-autocomplete.min.js" nonce="{nonce}"></script>' in html
    assert f'<script type="module" src="/static/build/organisation-search.js" nonce="{nonce}"></script>' in html
    box = re.search(r'<input [^>]*name="organisation"[^>]*>', html).group(0)
    assert 'data-module="app-organisation-search"' in box and f'data-source="{SUGGEST}"' in box
    assert 'autocomplete="off"' in box
    # Nothing from elsewhere: every script is the service's own.
    assert not re.search(r'<script[^>]+src="(https?:)?//', html)


# The autocomplete's names: a small JSON route of the team's area -------------------------------------

@pytest.mark.parametrize("role, status", [("dps_admin", 200), ("auditor", 200), ("buyer", 403), ("supplier", 403)])
def test_only_the_team_and_auditors_get_the_names(app, factory, signed_in, role, status):
    factory.organisation(name="Plymouth City Council")
    org = factory.organisation() if role in ("dps_admin", "auditor", "buyer") else None
    browser, _ = signed_in(role, organisation_id=org)
    response = browser.get(f"{SUGGEST}?q=plym")
    assert response.status_code == status
    if status == 200:
        assert response.json == {"names": ["Plymouth City Council"]}
    else:
        assert "Plymouth" not in body(response)


def test_signed_out_visitors_get_no_names(app, client, factory):
    factory.organisation(name="Plymouth City Council")
    response = client.get(f"{SUGGEST}?q=plym")
    assert response.status_code == 302 and response.headers["Location"].startswith("/sign-in")


def test_names_start_with_what_is_typed_ten_at_most_by_name(app, team, factory):
    for n in range(14):
        factory.organisation(name=f"{'north' if n % 2 else 'North'} Place {n:02d}")
    factory.organisation(name="Place of the North")  # contains it, does not start with it
    factory.organisation(name="North_Side Trust")
    factory.organisation(name="Northwest 100% Co-op")
    names = team.get(f"{SUGGEST}?q=NORTH+").json["names"]
    assert names == [f"{'north' if n % 2 else 'North'} Place {n:02d}" for n in range(10)]
    assert team.get(f"{SUGGEST}?q=north_").json == {"names": ["North_Side Trust"]}
    assert team.get(f"{SUGGEST}?q=northwest+100%25").json == {"names": ["Northwest 100% Co-op"]}
    assert team.get(f"{SUGGEST}?q=north%25").json == {"names": []}
    for q in ("", "%20", "%00", "%ED%A0%80", "x" * 5000):
        response = team.get(f"{SUGGEST}?q={q}")
        assert response.status_code == 200 and response.json["names"] == [], q
    assert team.get(SUGGEST).json == {"names": []}


def test_the_names_route_reads_one_index_changes_nothing_and_is_get_only(app, team, factory, is_postgres):
    for n in range(5):
        factory.organisation(name=f"Place {n}")
    team.get(f"{SUGGEST}?q=pl")
    with count_queries(app) as few:
        team.get(f"{SUGGEST}?q=pl")
    with app.app_context():
        now = clock.now()
        db.session.add_all(Organisation(name=f"Place {n}", kind="council", created_at=now) for n in range(5, 200))
        db.session.commit()
        events = db.session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))
    with count_queries(app) as many:
        assert len(team.get(f"{SUGGEST}?q=pl").json["names"]) == 10
    assert few() == many()
    with app.app_context():
        assert db.session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1)) == events
    assert team.post(f"{SUGGEST}?q=pl").status_code == 405
    # The prefix is a range of the name index (no pass over every organisation).
    from dps.services import audit_log

    with app.app_context():
        statement = (select(Organisation.name).where(audit_log._starting_with("pl"))
                     .order_by(*audit_log._BY_NAME).limit(10))
        if is_postgres:
            db.session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = audit_log.explain(statement)
        db.session.rollback()
    assert "ix_organisations_name_lower" in plan, plan
    if is_postgres:
        assert "Index Cond" in plan and ">=" in plan, plan
    else:
        assert "<expr>>? AND <expr><?" in plan, plan
