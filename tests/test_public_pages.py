"""The public pages about the DPS: what it is, its period, its lots, and who is on it. No sign-in."""
from __future__ import annotations

from datetime import date, datetime, timezone

from dps import clock
from dps.extensions import db
from dps.models import Admission, Agreement, Application, ApplicationLot, Lot, Organisation
from dps.services import agreements
from tests.applying import make_agreement
from tests.conftest import count_queries, set_clock

UTC = timezone.utc
PUBLISHED = datetime(2020, 1, 6, 9, 0, tzinfo=UTC)
SIGN_UP = 'href="/supplier/sign-up"'
LOTS = (
    (1, "Research, evaluation and policy development", 1_000_000_00, 1_000_000_00, 2),
    (2, "Prototyping, service design and implementation", 2_000_000_00, 1_000_000_00, 1),
    (3, "Capacity building, training and facilitation", 0, 0, 0),
)


def _dps(app) -> int:
    """The CCIN DPS as it was set up: 1 April 2020 to 31 March 2025, three lots."""
    return make_agreement(app, title="CCIN Dynamic Purchasing System 2020 to 2025",
                          description="An open list of pre-qualified suppliers for co-operative policy work.",
                          lots=LOTS)["agreement"]


def _supplier(app, factory, name: str, lots: tuple[int, ...] = (1,), *, legal_form: str = "company",
              size: str = "small", is_vcse: bool | None = False, status: str = "admitted") -> int:
    """A supplier admitted to ``lots`` through a decided application, then given ``status``."""
    org_id = factory.organisation(kind="supplier", membership=None, name=name)
    user = factory.user("supplier", organisation_id=org_id)
    with app.app_context():
        now = clock.now()
        org = db.session.get(Organisation, org_id)
        org.legal_form, org.size, org.is_vcse = legal_form, size, is_vcse
        agreement = db.session.scalar(db.select(Agreement))
        application = Application(
            organisation_id=org_id, agreement_id=agreement.id, questionnaire_version="ccin-sq-2020-04",
            created_at=now, created_by_id=user["id"], updated_at=now, submitted_at=now,
            submitted_by_id=user["id"], decided_at=now)
        db.session.add(application)
        for number in lots:
            lot = db.session.scalar(db.select(Lot).where(Lot.agreement_id == agreement.id, Lot.number == number))
            decision = ApplicationLot(application=application, lot_id=lot.id, decision="admitted", decided_at=now)
            db.session.add(decision)
            db.session.flush()
            db.session.add(Admission(
                organisation_id=org_id, lot_id=lot.id, application_lot_id=decision.id, admitted_at=now,
                status=status, status_changed_at=now,
                status_reason=None if status == "admitted" else "Did not renew its self-declaration"))
        db.session.commit()
    return org_id


def _text(response) -> str:
    return response.get_data(as_text=True)


# The period ------------------------------------------------------------------------------------


def test_window_runs_from_london_midnight_to_london_midnight_after_the_last_day():
    agreement = Agreement(starts_on=date(2020, 4, 1), ends_on=date(2025, 3, 31), published_at=PUBLISHED)
    start, end = agreements.window(agreement)
    # Both ends fall in BST: the clocks went forward on 29 March 2020 and on 30 March 2025, so
    # each London midnight is 23:00 UTC the day before. A UTC-midnight rule would be an hour out.
    assert start == datetime(2020, 3, 31, 23, 0, tzinfo=UTC)
    assert end == datetime(2025, 3, 31, 23, 0, tzinfo=UTC)
    assert start.tzinfo is not None and end.tzinfo is not None


def test_a_period_ending_in_summer_closes_at_london_midnight():
    agreement = Agreement(starts_on=date(2023, 1, 1), ends_on=date(2024, 6, 30), published_at=PUBLISHED)
    start, end = agreements.window(agreement)
    assert start == datetime(2023, 1, 1, 0, 0, tzinfo=UTC)  # GMT
    assert end == datetime(2024, 6, 30, 23, 0, tzinfo=UTC)  # BST
    assert agreements.is_open(agreement, datetime(2024, 6, 30, 22, 59, 59, tzinfo=UTC))
    assert not agreements.is_open(agreement, datetime(2024, 6, 30, 23, 0, tzinfo=UTC))
    assert agreements.status_text(agreement, datetime(2024, 7, 1, 12, 0, tzinfo=UTC)) == "Closed on 30 June 2024"


def test_is_open_and_status_text_at_each_edge_of_the_period():
    agreement = Agreement(starts_on=date(2020, 4, 1), ends_on=date(2025, 3, 31), published_at=PUBLISHED)
    last_second = clock.parse_london("2025-03-31T23:59:59")
    first_closed = clock.parse_london("2025-04-01T00:00")
    assert agreements.is_open(agreement, last_second)
    assert not agreements.is_open(agreement, first_closed)
    assert agreements.status_text(agreement, last_second) == "Open to new suppliers until 31 March 2025"
    assert agreements.status_text(agreement, first_closed) == "Closed on 31 March 2025"

    before = clock.parse_london("2020-03-31T23:59:59")
    first_open = clock.parse_london("2020-04-01T00:00")
    assert not agreements.is_open(agreement, before)
    assert agreements.is_open(agreement, first_open)
    assert agreements.status_text(agreement, before) == "Opens on 1 April 2020"


def test_is_open_reads_the_dps_clock(app):
    agreement_id = _dps(app)
    set_clock(app, "2025-03-31T23:59")
    with app.app_context():
        assert agreements.is_open(db.session.get(Agreement, agreement_id))
    set_clock(app, "2025-04-01T00:00")
    with app.app_context():
        assert not agreements.is_open(db.session.get(Agreement, agreement_id))


def test_a_draft_is_never_open_and_the_stages_follow_publication_and_the_period():
    agreement = Agreement(starts_on=date(2020, 4, 1), ends_on=date(2025, 3, 31))
    inside = clock.parse_london("2022-06-01T12:00")
    assert agreement.stage(inside) == "draft" and not agreements.is_open(agreement, inside)
    agreement.published_at = PUBLISHED
    assert agreement.stage(clock.parse_london("2020-03-31T23:59:59")) == "upcoming"
    assert agreement.stage(inside) == "open"
    assert agreement.stage(clock.parse_london("2025-04-01T00:00")) == "closed"


# The pages, as an anonymous visitor ------------------------------------------------------------


def test_the_pages_are_public(app, client):
    _dps(app)
    about = client.get("/agreements/CCIN-DPS-2020")
    assert about.status_code == 200
    page = _text(about)
    assert "CCIN Dynamic Purchasing System 2020 to 2025" in page
    assert "1 April 2020 to 31 March 2025" in page
    assert "Oldham Council" in page
    assert "Public Contracts Regulations 2015, regulation 34" in page
    assert "no charge to suppliers" in page.lower()
    assert "Open to new suppliers until 31 March 2025" in page
    for number, title, *_ in LOTS:
        assert f'href="/agreements/CCIN-DPS-2020/lots/{number}"' in page
        assert f"Lot {number}: {title}" in page
    assert 'href="/agreements/CCIN-DPS-2020/suppliers"' in page
    assert SIGN_UP in page

    for url in ("/agreements/CCIN-DPS-2020/lots/1", "/agreements/CCIN-DPS-2020/suppliers"):
        assert client.get(url).status_code == 200, url


def test_a_lot_shows_its_selection_criteria(app, client):
    _dps(app)
    page = _text(client.get("/agreements/CCIN-DPS-2020/lots/2"))
    assert "Prototyping, service design and implementation" in page
    assert "What lot 2 covers." in page
    assert "Criteria for lot 2." in page and "A second paragraph for lot 2." in page
    assert "At least £5,000,000.00, required by law" in page  # employer's liability
    assert "At least £2,000,000.00" in page  # public liability
    assert "At least £1,000,000.00" in page  # professional indemnity
    assert "1 case study required" in page
    assert SIGN_UP in page

    page = _text(client.get("/agreements/CCIN-DPS-2020/lots/1"))
    assert "2 case studies required" in page

    page = _text(client.get("/agreements/CCIN-DPS-2020/lots/3"))
    assert "No minimum for this lot" in page
    assert "None required" in page


def test_an_unknown_lot_is_not_found(app, client):
    _dps(app)
    assert client.get("/agreements/CCIN-DPS-2020/lots/4").status_code == 404
    assert client.get("/agreements/CCIN-DPS-2020/lots/0").status_code == 404
    assert client.get("/agreements/CCIN-DPS-2020/lots/one").status_code == 404


def test_without_an_agreement_the_dps_pages_are_not_found(client):
    for url in ("/agreements/CCIN-DPS-2020", "/agreements/CCIN-DPS-2020/lots/1", "/agreements/CCIN-DPS-2020/suppliers"):
        assert client.get(url).status_code == 404, url
    assert client.get("/").status_code == 200


# Open and closed, by the clock -----------------------------------------------------------------


def test_open_on_the_last_minute_of_31_march_2025(app, client):
    _dps(app)
    set_clock(app, "2025-03-31T23:59")
    for url in ("/agreements/CCIN-DPS-2020", "/agreements/CCIN-DPS-2020/lots/1"):
        page = _text(client.get(url))
        assert "closed on" not in page.lower(), url
        assert SIGN_UP in page, url
    assert "Open to new suppliers until 31 March 2025" in _text(client.get("/agreements/CCIN-DPS-2020"))
    assert "closed on" not in _text(client.get("/agreements/CCIN-DPS-2020/suppliers")).lower()


def test_closed_from_midnight_on_1_april_2025(app, client, factory):
    _dps(app)
    _supplier(app, factory, "Co-operative Futures", legal_form="co_operative")
    set_clock(app, "2025-04-01T00:00")
    for url in ("/agreements/CCIN-DPS-2020", "/agreements/CCIN-DPS-2020/lots/1", "/agreements/CCIN-DPS-2020/suppliers"):
        response = client.get(url)
        assert response.status_code == 200, url
        page = _text(response)
        assert "CCIN Dynamic Purchasing System 2020 to 2025 closed on 31 March 2025" in page, url
        assert "govuk-notification-banner" in page, url
        assert SIGN_UP not in page, url
    assert "Closed on 31 March 2025" in _text(client.get("/agreements/CCIN-DPS-2020"))
    # Who was admitted is still a matter of public record after the period.
    assert "Co-operative Futures" in _text(client.get("/agreements/CCIN-DPS-2020/suppliers"))
    # The home page reads the same rule.
    home = _text(client.get("/"))
    assert "Closed on 31 March 2025" in home and SIGN_UP not in home


def test_before_the_period_the_pages_say_when_it_opens(app, client):
    _dps(app)
    set_clock(app, "2020-03-31T23:59")
    page = _text(client.get("/agreements/CCIN-DPS-2020"))
    assert "opens on 1 April 2020" in page
    assert "Opens on 1 April 2020" in page
    assert SIGN_UP not in page
    assert "opens on 1 April 2020" in _text(client.get("/agreements/CCIN-DPS-2020/lots/1"))

    set_clock(app, "2020-04-01T00:00")
    page = _text(client.get("/agreements/CCIN-DPS-2020"))
    assert "Open to new suppliers until 31 March 2025" in page
    assert SIGN_UP in page


# Who is on the DPS ----------------------------------------------------------------------------


def test_who_is_on_lists_admitted_suppliers_with_their_details(app, client, factory):
    _dps(app)
    _supplier(app, factory, "Zebra Research CIC", (1, 2), legal_form="cic", size="micro", is_vcse=True)
    _supplier(app, factory, "Aardvark Consulting Ltd", (1,), legal_form="company", size="medium", is_vcse=False)
    _supplier(app, factory, "Meadow Co-operative", (2,), legal_form="co_operative", size="small", is_vcse=True)
    _supplier(app, factory, "Suspended Partners", (1,), legal_form="partnership", status="suspended")
    _supplier(app, factory, "Removed Trader", (2,), legal_form="sole_trader", status="removed")

    # The page shows the lots with their counts, then one lot's suppliers (the first, unless asked).
    response = client.get("/agreements/CCIN-DPS-2020/suppliers")
    assert response.status_code == 200
    page = _text(response)
    assert "Who is on the DPS" in page
    assert "Suspended Partners" not in page
    assert "Removed Trader" not in page
    assert "3 suppliers are on the DPS" in page

    # The lots, each with its count; the old anchors (#lot-1) land on the lot's link.
    summary = page.split('id="lot-')
    assert [part.split("</tr>")[0].split('numeric">')[1].split("<")[0] for part in summary[1:4]] == ["2", "2", "0"]
    assert 'href="/agreements/CCIN-DPS-2020/suppliers?lot=2"' in summary[2]

    lot1 = page.split('id="suppliers"')[1]
    assert "2 suppliers on this lot" in lot1
    assert lot1.index("Aardvark Consulting Ltd") < lot1.index("Zebra Research CIC")
    assert "Meadow Co-operative" not in lot1
    assert "Community interest company (CIC)" in lot1 and "Micro" in lot1
    assert "Company" in lot1 and "Medium" in lot1

    lot2 = _text(client.get("/agreements/CCIN-DPS-2020/suppliers?lot=2")).split('id="suppliers"')[1]
    assert "2 suppliers on this lot" in lot2
    assert "Co-operative society" in lot2 and "Small" in lot2
    assert "Aardvark Consulting Ltd" not in lot2 and "Removed Trader" not in lot2
    lot3 = _text(client.get("/agreements/CCIN-DPS-2020/suppliers?lot=3")).split('id="suppliers"')[1]
    assert "There are no suppliers on this lot." in lot3
    assert "<table" not in lot3

    # Accessible tables: a caption, column headers with scope, each row headed by the supplier.
    assert '<caption class="govuk-table__caption govuk-visually-hidden">Suppliers on lot 1</caption>' in page
    assert lot1.count('scope="col"') == 4
    assert '<th scope="row" class="govuk-table__header">Aardvark Consulting Ltd</th>' in page
    # VCSE yes/no, in the row of each supplier.
    aardvark_row = lot1.split("Aardvark Consulting Ltd")[1].split("</tr>")[0]
    zebra_row = lot1.split("Zebra Research CIC")[1].split("</tr>")[0]
    assert ">No<" in aardvark_row and ">Yes<" in zebra_row


def test_every_lot_says_so_when_it_has_no_suppliers(app, client):
    _dps(app)
    for number, *_ in LOTS:
        page = _text(client.get(f"/agreements/CCIN-DPS-2020/suppliers?lot={number}"))
        assert "There are no suppliers on this lot." in page
        assert "0 suppliers are on the DPS" in page


def test_supplier_names_are_escaped(app, client, factory):
    _dps(app)
    _supplier(app, factory, "<script>alert(1)</script> Ltd")
    page = _text(client.get("/agreements/CCIN-DPS-2020/suppliers"))
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Ltd" in page


def test_each_lot_counts_and_lists_its_suppliers_in_good_standing_by_name(app, factory):
    agreement_id = _dps(app)
    _supplier(app, factory, "beta works", (2, 1))
    _supplier(app, factory, "Alpha Collective", (2,))
    _supplier(app, factory, "Gamma Ltd", (1,), status="suspended")
    with app.app_context():
        agreement = db.session.get(Agreement, agreement_id)
        counted = agreements.lots_with_counts(agreement)
        assert [(lot.number, n) for lot, n in counted] == [(1, 1), (2, 2), (3, 0)]
        assert agreements.supplier_count(agreement) == 2
        assert [[org.name for org in agreements.suppliers_on_lot(lot).rows] for lot, _ in counted] == [
            ["beta works"],
            ["Alpha Collective", "beta works"],
            [],
        ]


def test_who_is_on_takes_the_same_number_of_queries_however_many_suppliers(app, client, factory):
    _dps(app)
    for n in range(2):
        _supplier(app, factory, f"Supplier {n:02d}", (1, 2))
    client.get("/agreements/CCIN-DPS-2020/suppliers")  # the first request of an app also checks the schema
    with count_queries(app) as few:
        page = _text(client.get("/agreements/CCIN-DPS-2020/suppliers"))
    assert "Supplier 01" in page

    for n in range(2, 10):
        _supplier(app, factory, f"Supplier {n:02d}", (1, 2, 3))
    with count_queries(app) as many:
        page = _text(client.get("/agreements/CCIN-DPS-2020/suppliers"))
    assert "Supplier 09" in page
    assert "10 suppliers are on the DPS" in page
    assert many() == few()


def test_every_legal_form_and_size_has_a_label():
    from dps.models.organisations import LEGAL_FORMS, SIZES

    assert set(agreements.LEGAL_FORM_LABELS) == set(LEGAL_FORMS)
    assert set(agreements.SIZE_LABELS) == set(SIZES)
