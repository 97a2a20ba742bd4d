"""The long lists, paginated by keyset (DESIGN 10; issue 10 item 3): who is on an agreement
(public), the DPS team's suppliers, the applications queue and the accounts.

For each: the same number of queries with 5 rows as with 120; 50 to a page with Next, and
following Next shows every row once, in order, Previous coming back the same way; the counts;
searches and filters, kept from page to page; and hand-made addresses never a 500."""
from __future__ import annotations

import re
from datetime import date, timedelta
from html import unescape
from urllib.parse import quote

import pytest
from sqlalchemy import select

from dps import clock
from dps.extensions import db
from dps.models import Application, ApplicationLot, Organisation, RenewalRequest, User
from dps.pagination import PAGE_SIZE, decode_cursor, encode_cursor
from tests.applying import add_suppliers, make_agreement
from tests.conftest import count_queries
from tests.pages import BAD_CURSORS, assert_survives, body, flat, link, query, walk

VERSION = "ccin-sq-2020-04"
PUBLIC = "/agreements/CCIN-DPS-2020/suppliers"


# The cursor --------------------------------------------------------------------------------------

def test_a_cursor_is_opaque_url_safe_and_checked_on_the_way_back(app):
    from datetime import datetime, timezone

    key = ("o'brien & sons/100%", 7, date(2024, 6, 3), datetime(2024, 6, 3, 8, 0, tzinfo=timezone.utc))
    token = encode_cursor(key)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert decode_cursor(token, (str, int, date, datetime)) == key
    assert decode_cursor(token, (str, int, date)) is None, "wrong number of values"
    assert decode_cursor(token, (int, int, date, datetime)) is None, "wrong type"
    for bad in BAD_CURSORS:
        assert decode_cursor(bad, (str, int)) is None, bad
    # The longest key a list makes (two names of 200 characters, not ASCII) still goes through.
    longest = ("é" * 200, 2 ** 40, "€" * 200, 7)
    assert decode_cursor(encode_cursor(longest), (str, int, str, int)) == longest


# Building data quickly: rows written directly, in one transaction ----------------------------------

@pytest.fixture
def dps(app) -> dict:
    return make_agreement(app, lots=((1, "Research and policy", 0, 0, 0), (2, "Prototyping", 0, 0, 0),
                                     (3, "Training", 0, 0, 0)))


@pytest.fixture
def builder(factory) -> dict:
    """The user the direct rows name as their author (a foreign key needs one)."""
    return factory.user("supplier")


def mixed_case_names(start: int, stop: int, word: str = "Supplier") -> list[str]:
    """Pairs of names that differ only in case (so the order falls back on the id)."""
    return [f"{word if i % 2 else word.lower()} {i // 2:03d}" for i in range(start, stop)]


def expected_suppliers(app, ids: list[int]) -> list[str]:
    """The names of these organisations in the lists' order: lower(name), then id."""
    with app.app_context():
        rows = db.session.execute(select(Organisation.id, Organisation.name).where(Organisation.id.in_(ids))).all()
        return [name for _, name in sorted(rows, key=lambda r: (r.name.lower(), r.id))]


# Who is on an agreement (public) ---------------------------------------------------------------------

def public_names(response) -> list[str]:
    section = body(response).split('id="suppliers"', 1)
    if len(section) < 2:
        return []
    return [unescape(name) for name in re.findall(r'<th scope="row" class="govuk-table__header">([^<]+)</th>', section[1])]


def public_count(response) -> str | None:
    match = re.search(r"(\d+) suppliers? match", body(response))
    return match.group(1) if match else None


def test_public_list_costs_the_same_queries_at_5_and_120_suppliers(app, client, dps, builder):
    add_suppliers(app, dps, builder, mixed_case_names(0, 5), lots=(1, 2), legal_form="company")
    client.get(PUBLIC)  # the first request of an app also checks the schema
    measured = {}
    for url in (PUBLIC, f"{PUBLIC}?lot=1&q=supplier&legal_form=company"):
        with count_queries(app) as few:
            assert len(public_names(client.get(url))) == 5
        measured[url] = [few()]
    add_suppliers(app, dps, builder, mixed_case_names(5, 120), lots=(1, 2), legal_form="company")
    for url in (PUBLIC, f"{PUBLIC}?lot=1&q=supplier&legal_form=company"):
        with count_queries(app) as many:
            response = client.get(url)
        assert len(public_names(response)) == PAGE_SIZE and link(response, "next")
        measured[url].append(many())
        with count_queries(app) as second:
            assert client.get(link(response, "next")).status_code == 200
        measured[url].append(second())
    for url, (few, many, second) in measured.items():
        assert few == many, url
        assert second <= many + 1, url  # the next page adds one EXISTS: is there a page before it?


def test_public_list_pages_through_every_supplier_once_in_order(app, client, dps, builder):
    ids = add_suppliers(app, dps, builder, mixed_case_names(0, 120), lots=(1,))
    add_suppliers(app, dps, builder, ["Lot Two Only 001"], lots=(2,))
    first = client.get(PUBLIC)
    page = body(first)
    assert "121 suppliers are on the DPS" in page
    assert "120 suppliers on this lot" in page
    assert len(public_names(first)) == PAGE_SIZE
    assert query(link(first, "next"))["lot"] == ["1"]

    pages = walk(client, PUBLIC, public_names)
    assert [len(p) for p in pages] == [50, 50, 20]
    assert flat(pages) == expected_suppliers(app, ids)

    # Another lot, asked for by number; its links keep it.
    assert public_names(client.get(f"{PUBLIC}?lot=2")) == ["Lot Two Only 001"]


def test_public_search_and_filters_are_counted_and_kept_across_pages(app, client, dps, builder):
    def legal_form(i): return "co_operative" if i % 4 != 3 else "company"
    def size(i): return "micro" if i % 10 == 0 else "small"
    def vcse(i): return None if i % 13 == 0 else i % 6 != 5

    names = [f"Co op {i:03d}" for i in range(200)]
    add_suppliers(app, dps, builder, names, lots=(1,), legal_form=legal_form, size=size, is_vcse=vcse)
    add_suppliers(app, dps, builder, ["100% Local", "Under_score Ltd", "Plain Local Ltd", "CAPITAL TRADING"],
                  lots=(1,), legal_form="company")
    matching = [names[i] for i in range(200)
                if legal_form(i) == "co_operative" and size(i) == "small" and vcse(i) is True]
    assert len(matching) > 2 * PAGE_SIZE
    url = f"{PUBLIC}?lot=1&legal_form=co_operative&size=small&vcse=yes"
    first = client.get(url)
    assert public_count(first) == str(len(matching))
    assert "204 suppliers on this lot" in body(first)
    # The filters go along with the pages, both ways.
    following = query(link(first, "next"))
    assert {k: v for k, v in following.items() if k != "after"} == {
        "lot": ["1"], "legal_form": ["co_operative"], "size": ["small"], "vcse": ["yes"]}
    second = client.get(link(first, "next"))
    assert public_count(second) == str(len(matching))
    assert {k: v for k, v in query(link(second, "prev")).items() if k != "before"} == {
        "lot": ["1"], "legal_form": ["co_operative"], "size": ["small"], "vcse": ["yes"]}
    assert flat(walk(client, url, public_names)) == sorted(matching)

    # The name search: any case, anywhere in the name, and % and _ match only themselves.
    for q, expected in (("%", ["100% Local"]), ("_", ["Under_score Ltd"]), ("local", ["100% Local", "Plain Local Ltd"]),
                        ("capital trading", ["CAPITAL TRADING"]), ("co OP 11", [f"Co op {i}" for i in range(110, 120)])):
        response = client.get(f"{PUBLIC}?lot=1&q={quote(q)}")
        assert public_names(response) == expected, q
        assert public_count(response) == str(len(expected)), q
    assert "No supplier on this lot matches" in body(client.get(f"{PUBLIC}?lot=1&q=nobody+by+this+name"))

    # VCSE "no" is those that said no (not those that did not say); a search and a filter together.
    no = client.get(f"{PUBLIC}?lot=1&vcse=no&q=co+op")
    assert public_count(no) == str(sum(1 for i in range(200) if vcse(i) is False))
    # The search form is a GET form that works without JavaScript, filled in with what was asked.
    page = body(first)
    assert '<form method="get" action="/agreements/CCIN-DPS-2020/suppliers#suppliers"' in page
    assert '<input type="hidden" name="lot" value="1">' in page
    assert '<option value="co_operative" selected>' in page and '<option value="yes" selected>' in page


def test_public_list_never_shows_suspended_or_removed_suppliers(app, client, dps, builder):
    add_suppliers(app, dps, builder, mixed_case_names(0, 60), lots=(1,))
    add_suppliers(app, dps, builder, ["Suspended Partners"], lots=(1,), status="suspended")
    add_suppliers(app, dps, builder, ["Removed Trader"], lots=(1,), status="removed")
    pages = walk(client, PUBLIC, public_names)
    shown = flat(pages)
    assert len(shown) == 60
    assert "Suspended Partners" not in shown and "Removed Trader" not in shown
    page = body(client.get(PUBLIC))
    assert "60 suppliers are on the DPS" in page and "60 suppliers on this lot" in page
    for q in ("Suspended", "Removed"):
        response = client.get(f"{PUBLIC}?lot=1&q={q}")
        assert public_names(response) == [] and public_count(response) == "0"


def test_a_draft_agreements_suppliers_are_not_found(app, client, dps, builder):
    make_agreement(app, reference="CCIN-DRAFT-2024", lots=((1, "Draft lot", 0, 0, 0),), publish=False,
                   questionnaire_version=None)
    add_suppliers(app, {"agreement": dps["agreement"], "lot1": dps["lot1"]}, builder, ["On The Live One"])
    for url in ("/agreements/CCIN-DRAFT-2024/suppliers", "/agreements/CCIN-DRAFT-2024/suppliers?lot=1",
                "/agreements/CCIN-DRAFT-2024/suppliers?lot=1&q=x&after=abc"):
        assert client.get(url).status_code == 404, url


def test_public_list_bad_parameters_give_the_page_never_a_500(app, client, dps, builder):
    add_suppliers(app, dps, builder, mixed_case_names(0, 60), lots=(1,))
    # A lot the agreement does not have: the page says so, with the lots to choose from.
    for value in ("abc", "99", "0", "-1", "1.5", "99999999999999999999999", "%00", "%C2%B2", "%D9%A3", "1e3"):
        response = client.get(f"{PUBLIC}?lot={value}")
        assert response.status_code == 404, value
        assert "This agreement has no lot with that number" in body(response), value
        assert 'href="/agreements/CCIN-DPS-2020/suppliers?lot=1"' in body(response)
    # Unknown filter values are ignored; nonsense searches find nothing; bad cursors give the first page.
    for extra in ("legal_form=bogus", "size=enormous", "vcse=maybe", "legal_form=co_operative&legal_form=x"):
        response = client.get(f"{PUBLIC}?lot=1&{extra}")
        assert response.status_code == 200, extra
    assert len(public_names(client.get(f"{PUBLIC}?lot=1&size=enormous&vcse=maybe"))) == PAGE_SIZE
    assert_survives(client, f"{PUBLIC}?lot=1", ("q=%00", "q=" + "x" * 5000, "q=%25%25%5F", "q=%ED%A0%80",
                                                "lot=&q=a", "lot=1&lot=2"))
    # A well-formed cursor of a row that is gone still gives a page, not an error.
    gone = encode_cursor(("zzzz", 10 ** 9))
    response = client.get(f"{PUBLIC}?lot=1&after={gone}")
    assert response.status_code == 200 and "There are no more suppliers on this lot" in body(response)
    assert link(response, "prev")


# The DPS team's list of suppliers -------------------------------------------------------------------

@pytest.fixture
def team(signed_in, factory):
    browser, _ = signed_in("dps_admin", organisation_id=factory.organisation(name="Oldham Council"))
    return browser


def team_supplier_ids(response) -> list[int]:
    section = body(response).split('id="all"', 1)[1]
    return [int(i) for i in re.findall(r'href="/team/suppliers/(\d+)"', section)]


def overdue_renewals(app, org_ids: list[int], builder: dict) -> None:
    with app.app_context():
        today = clock.today_london()
        db.session.add_all(RenewalRequest(organisation_id=org_id, requested_at=clock.now() - timedelta(days=14),
                                          requested_by_id=builder["id"], due_on=today - timedelta(days=7))
                           for org_id in org_ids)
        for org in db.session.scalars(select(Organisation).where(Organisation.id.in_(org_ids))):
            org.identity_changed_at = clock.now()
        db.session.commit()


def ordered_ids(app, ids: list[int]) -> list[int]:
    with app.app_context():
        rows = db.session.execute(select(Organisation.id, Organisation.name).where(Organisation.id.in_(ids))).all()
        return [r.id for r in sorted(rows, key=lambda r: (r.name.lower(), r.id))]


def test_team_suppliers_costs_the_same_queries_at_5_and_120(app, team, dps, builder):
    ids = add_suppliers(app, dps, builder, mixed_case_names(0, 5), lots=(1, 2))
    overdue_renewals(app, ids[:2], builder)
    team.get("/team/suppliers")
    with count_queries(app) as few:
        assert len(team_supplier_ids(team.get("/team/suppliers"))) == 5
    ids += add_suppliers(app, dps, builder, mixed_case_names(5, 120), lots=(1, 2, 3))
    overdue_renewals(app, ids[5:60], builder)
    with count_queries(app) as many:
        response = team.get("/team/suppliers")
    assert len(team_supplier_ids(response)) == PAGE_SIZE and link(response, "next")
    with count_queries(app) as second:
        team.get(link(response, "next"))
    assert few() == many()
    assert second() <= many() + 1
    # The lists to act on show the longest waiting few, with their count and a way to all of them.
    page = body(response)
    assert "57 renewals are overdue. These are the 20 longest overdue" in page
    assert "57 suppliers’ changes are waiting" in page
    assert 'href="/team/suppliers?attention=renewal_overdue#all"' in page


def test_team_suppliers_pages_filters_and_search_are_kept(app, team, dps, builder):
    admitted = add_suppliers(app, dps, builder, mixed_case_names(0, 70), lots=(1,))
    suspended = add_suppliers(app, dps, builder, mixed_case_names(70, 130), lots=(2,), status="suspended")
    add_suppliers(app, dps, builder, ["Applicant Ltd"], lots=())  # on no lot: not in the list
    overdue_renewals(app, admitted[:55], builder)

    first = team.get("/team/suppliers")
    assert "130 suppliers, 50 to a page" in body(first)
    assert flat(walk(team, "/team/suppliers", team_supplier_ids)) == ordered_ids(app, admitted + suspended)

    by_status = "/team/suppliers?status=suspended"
    assert "60 suppliers with a lot suspended" in body(team.get(by_status))
    assert flat(walk(team, by_status, team_supplier_ids)) == ordered_ids(app, suspended)
    following = query(link(team.get(by_status), "next"))
    assert following["status"] == ["suspended"]

    attention = "/team/suppliers?attention=renewal_overdue"
    assert flat(walk(team, attention, team_supplier_ids)) == ordered_ids(app, admitted[:55])
    assert query(link(team.get(attention), "next"))["attention"] == ["renewal_overdue"]
    # "supplier 01": supplier 010 to 019, both cases: the 21st to 40th admitted, all with changed details.
    changed = team.get("/team/suppliers?attention=details_changed&q=SUPPLIER+01")
    assert team_supplier_ids(changed) == ordered_ids(app, admitted[20:40])
    assert "20 suppliers with details changed whose name contains “SUPPLIER 01”" in body(changed)

    searched = team.get("/team/suppliers?q=supplier+03&status=suspended")
    assert team_supplier_ids(searched) == ordered_ids(app, suspended[:10])
    assert "10 suppliers with a lot suspended whose name contains “supplier 03”" in body(searched)
    assert "Renewal overdue" in body(first)


def test_team_suppliers_bad_parameters_never_500(app, team, dps, builder):
    add_suppliers(app, dps, builder, mixed_case_names(0, 60), lots=(1,))
    for extra in ("status=bogus", "attention=everything", "status=admitted&status=removed", "q=%00"):
        response = team.get(f"/team/suppliers?{extra}")
        assert response.status_code == 200, extra
        assert len(team_supplier_ids(response)) == PAGE_SIZE, extra
    assert_survives(team, "/team/suppliers", ("q=" + "x" * 5000, "q=%ED%A0%80", "status=suspended&after=x"))


# The applications queue --------------------------------------------------------------------------------

def add_applications(app, dps: dict, builder: dict, n: int, *, start: int = 0, decided: bool = False) -> list[int]:
    """``n`` submitted applications, due on days around today (some overdue), some on the same day."""
    with app.app_context():
        now, today = clock.now(), clock.today_london()
        ids = []
        for i in range(start, start + n):
            org = Organisation(name=f"Applicant {i:03d}", kind="supplier", created_at=now)
            db.session.add(org)
            db.session.flush()
            application = Application(
                organisation_id=org.id, agreement_id=dps["agreement"], questionnaire_version=VERSION, created_at=now,
                created_by_id=builder["id"], updated_at=now, submitted_at=now - timedelta(days=i % 20),
                submitted_by_id=builder["id"], decision_due_on=today + timedelta(days=(i * 7) % 23 - 8),
                decided_at=now - timedelta(hours=i % 17) if decided else None)
            db.session.add(application)
            db.session.add(ApplicationLot(application=application, lot_id=dps["lot1"]))
            db.session.flush()
            ids.append(application.id)
        db.session.commit()
        return ids


def application_ids(response) -> list[int]:
    return [int(i) for i in re.findall(r'href="/team/applications/(\d+)"', body(response))]


def test_applications_cost_the_same_queries_at_5_and_120(app, team, dps, builder):
    add_applications(app, dps, builder, 5)
    add_applications(app, dps, builder, 5, start=500, decided=True)
    measured = {}
    team.get("/team/applications")
    for url in ("/team/applications", "/team/applications?show=decided"):
        with count_queries(app) as few:
            assert len(application_ids(team.get(url))) == 5
        measured[url] = [few()]
    add_applications(app, dps, builder, 115, start=5)
    add_applications(app, dps, builder, 115, start=505, decided=True)
    for url in measured:
        with count_queries(app) as many:
            response = team.get(url)
        assert len(application_ids(response)) == PAGE_SIZE and link(response, "next")
        measured[url].append(many())
    for url, (few, many) in measured.items():
        assert few == many, url


def test_the_queue_pages_by_due_date_then_id_keeping_the_overdue_flag(app, team, dps, builder):
    ids = add_applications(app, dps, builder, 120)
    with app.app_context():
        rows = db.session.execute(select(Application.id, Application.decision_due_on)
                                  .where(Application.id.in_(ids))).all()
    expected = [r.id for r in sorted(rows, key=lambda r: (r.decision_due_on, r.id))]
    first = team.get("/team/applications")
    assert "120 applications awaiting a decision, 50 to a page" in body(first)
    assert flat(walk(team, "/team/applications", application_ids)) == expected
    # The overdue come first (oldest due), each flagged; those due today say so.
    today = date(2024, 6, 3)
    overdue = sum(1 for r in rows if r.decision_due_on < today)
    assert 0 < overdue < PAGE_SIZE
    assert len(re.findall(r'govuk-tag--red">\s*Overdue\s*<', body(first))) == overdue
    due_today = sum(1 for r in rows if r.decision_due_on == today)
    assert len(re.findall(r'govuk-tag--orange">\s*Due today\s*<', body(first))) == due_today > 0


def test_decided_applications_page_latest_first_and_keep_the_filter(app, team, dps, builder):
    add_applications(app, dps, builder, 10)
    ids = add_applications(app, dps, builder, 120, start=200, decided=True)
    with app.app_context():
        rows = db.session.execute(select(Application.id, Application.decided_at).where(Application.id.in_(ids))).all()
    expected = [r.id for r in sorted(rows, key=lambda r: (r.decided_at, r.id), reverse=True)]
    first = team.get("/team/applications?show=decided")
    assert "120 applications decided" in body(first)
    assert query(link(first, "next"))["show"] == ["decided"]
    assert flat(walk(team, "/team/applications?show=decided", application_ids)) == expected


def test_applications_bad_parameters_never_500(app, team, dps, builder):
    add_applications(app, dps, builder, 60)
    assert_survives(team, "/team/applications", ("show=bogus", "show=decided&after=x"))
    assert_survives(team, "/team/applications?show=decided")


# Accounts ---------------------------------------------------------------------------------------------

def add_accounts(app, n: int, *, start: int = 0, orgs: int = 7) -> None:
    """``n`` accounts (invited: no password yet) spread over a few organisations and the roles."""
    roles = ("buyer", "supplier", "buyer", "auditor")
    with app.app_context():
        now = clock.now()
        organisations = []
        for k in range(orgs):
            org = Organisation(name=f"{'Account org' if k % 2 else 'account org'} {start + k:03d}", kind="council",
                               created_at=now)
            db.session.add(org)
            organisations.append(org)
        db.session.flush()
        for i in range(start, start + n):
            db.session.add(User(email=f"person{i:04d}@example.org", name=f"{'Person' if i % 3 else 'person'} {i % 40:03d}",
                                organisation_id=organisations[i % orgs].id, role=roles[i % 4], active=True,
                                session_version=1, created_at=now))
        db.session.commit()


def account_emails(response) -> list[str]:
    return re.findall(r'<span class="govuk-body-s">([^<]+@[^<]+)</span>', body(response))


def expected_emails(app, *conditions) -> list[str]:
    with app.app_context():
        rows = db.session.execute(select(User.id, User.name, User.email, Organisation.id.label("org_id"),
                                         Organisation.name.label("org_name"))
                                  .join(Organisation, Organisation.id == User.organisation_id).where(*conditions)).all()
    return [r.email for r in sorted(rows, key=lambda r: (r.org_name.lower(), r.org_id, r.name.lower(), r.id))]


def test_accounts_cost_the_same_queries_at_5_and_120(app, team):
    add_accounts(app, 5, orgs=3)
    team.get("/team/accounts")
    with count_queries(app) as few:
        assert len(account_emails(team.get("/team/accounts"))) == 6  # and the team member's own
    with count_queries(app) as few_role:
        team.get("/team/accounts?role=buyer")
    add_accounts(app, 115, start=5)
    with count_queries(app) as many:
        response = team.get("/team/accounts")
    assert len(account_emails(response)) == PAGE_SIZE and link(response, "next")
    with count_queries(app) as many_role:
        team.get("/team/accounts?role=buyer")
    assert few() == many() and few_role() == many_role()


def test_accounts_page_through_everyone_by_organisation_then_name(app, team):
    add_accounts(app, 120)
    assert "121 accounts, 50 to a page" in body(team.get("/team/accounts"))
    assert flat(walk(team, "/team/accounts", account_emails)) == expected_emails(app)


def test_accounts_role_filter_and_search_are_kept_across_pages(app, team):
    add_accounts(app, 240)
    url = "/team/accounts?role=buyer"
    first = team.get(url)
    assert "120 accounts: buyer, 50 to a page" in body(first)
    assert query(link(first, "next"))["role"] == ["buyer"]
    assert flat(walk(team, url, account_emails)) == expected_emails(app, User.role == "buyer")

    searched = "/team/accounts?role=buyer&q=PERSON+00"
    assert flat(walk(team, searched, account_emails)) == expected_emails(
        app, User.role == "buyer", User.name.ilike("%person 00%"))
    by_email = team.get("/team/accounts?q=person0123%40")
    assert account_emails(by_email) == ["person0123@example.org"]
    assert "1 account whose name or email contains" in body(by_email)


def test_accounts_bad_parameters_never_500(app, team):
    add_accounts(app, 60)
    for extra in ("role=emperor", "role=buyer&role=auditor", "q=%00", "q=_", "q=%25"):
        assert team.get(f"/team/accounts?{extra}").status_code == 200, extra
    assert_survives(team, "/team/accounts", ("q=" + "x" * 5000, "role=buyer&before=x"))
