"""Buyers' mini-competitions, driven through the pages as each role: who may buy, creating one
(criteria, deadlines, budget, panel), publishing to every admitted supplier, clarifications,
what the buyer sees before the deadline, and cancelling."""
from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import date, timedelta

import pytest
from sqlalchemy import event, select

from dps import clock
from dps.extensions import db
from dps.models import (
    Admission,
    Allocation,
    Application,
    ApplicationLot,
    AuditEvent,
    Bid,
    BidAnswer,
    BudgetLine,
    BudgetYear,
    Clarification,
    Competition,
    CompetitionDocument,
    Criterion,
    Invitation,
    Organisation,
    PanelMember,
)
from tests.applying import make_dps, upload
from tests.conftest import outbox, set_clock, sign_in

QUESTION_A = "Can Brightwater Research bring in a subcontractor for the survey fieldwork?"


def text(response) -> str:
    return response.get_data(as_text=True)


def competition_id_from(response) -> int:
    return int(re.search(r"/buyer/competitions/(\d+)", response.headers["Location"]).group(1))


@pytest.fixture
def dps(app):
    return make_dps(app)


def admit(app, factory, agreement_id: int, lot_id: int, name: str, email: str, status: str = "admitted") -> dict:
    """A supplier with an account, admitted to ``lot_id`` (then suspended or removed if asked)."""
    user = factory.user("supplier", email=email)
    with app.app_context():
        org = db.session.get(Organisation, user["organisation_id"])
        org.name = name
        now = clock.now()
        application = Application(organisation_id=org.id, agreement_id=agreement_id,
                                  questionnaire_version="ccin-sq-2020-04", created_by_id=user["id"], created_at=now,
                                  updated_at=now, submitted_at=now, decided_at=now)
        decision = ApplicationLot(lot_id=lot_id, decision="admitted", decided_at=now)
        application.lots.append(decision)
        db.session.add(application)
        db.session.flush()
        db.session.add(Admission(organisation_id=org.id, lot_id=lot_id, application_lot_id=decision.id,
                                 admitted_at=now, status=status, status_changed_at=now,
                                 status_reason=None if status == "admitted" else "Insurance has lapsed."))
        db.session.commit()
    return user


def allocation(app, organisation_id: int, project: str = "Community wealth building review",
               programme: str = "Policy Labs", amount_pence: int = 20_000_00, start_year: int = 2024) -> int:
    """An allocation of the budget of the financial year starting in April ``start_year`` (2024/25
    unless told; year and line made on first use)."""
    label = f"{start_year}/{(start_year + 1) % 100:02d}"
    with app.app_context():
        year = db.session.scalar(select(BudgetYear).where(BudgetYear.label == label))
        if year is None:
            year = BudgetYear(label=label, starts_on=date(start_year, 4, 1), ends_on=date(start_year + 1, 3, 31))
            db.session.add(year)
        line = db.session.scalar(select(BudgetLine).where(BudgetLine.programme == programme,
                                                          BudgetLine.year_id == year.id))
        if line is None:
            line = BudgetLine(year=year, programme=programme, total_pence=200_000_00,
                              cap_per_call_off_pence=20_000_00, allocated_pence=0)
            db.session.add(line)
        line.allocated_pence += amount_pence
        item = Allocation(line=line, organisation_id=organisation_id, project_title=project,
                          amount_pence=amount_pence, committed_pence=0)
        db.session.add(item)
        db.session.commit()
        return item.id


@pytest.fixture
def buyer(app, factory, signed_in, dps):
    """A buyer of a Full Member council with an allocation, signed in."""
    council = factory.organisation(name="Rochdale Borough Council")
    browser, user = signed_in("buyer", organisation_id=council, name="Priya Shah", email="priya@rochdale.example.org")
    user["allocation"] = allocation(app, council)
    return browser, user


@pytest.fixture
def suppliers(app, factory, dps):
    """Two admitted to Lot 1; one suspended from it, one removed from it; one admitted to Lot 2 only."""
    def add(name: str, email: str, lot: str = "lot1", status: str = "admitted") -> dict:
        return admit(app, factory, dps["agreement"], dps[lot], name, email, status)

    return {
        "a": add("Brightwater Research Ltd", "amara@brightwater.example.org"),
        "b": add("Co-op Futures CIC", "ben@coopfutures.example.org"),
        "suspended": add("Halted Consulting Ltd", "hal@halted.example.org", status="suspended"),
        "removed": add("Gone Analytics Ltd", "gail@gone.example.org", status="removed"),
        "other_lot": add("Prototype Works Ltd", "pat@prototype.example.org", lot="lot2"),
    }


def form_data(lot_id: int, allocation_id: int, **changes) -> dict:
    """What a buyer types for a sound competition (it is Monday 3 June 2024 at 9am)."""
    data = {
        "lot": str(lot_id), "title": "Community wealth building review",
        "description": "A review of our anchor institutions' spending, with recommendations.",
        "estimated_value": "15,000", "allocation": str(allocation_id),
        "clarification_deadline": ["10", "6", "2024"], "clarification_deadline_time": "5:00pm",
        "tender_deadline": ["17", "6", "2024"], "tender_deadline_time": "12:00",
        "price_formula": "lowest_price_ratio", "price_weight": "40",
        "quality_1_title": "Approach and method", "quality_1_description": "How you will do the review.",
        "quality_1_weight": "50", "quality_1_word_limit": "1000",
        "social_value_title": "Social value", "social_value_weight": "10", "social_value_word_limit": "500",
    }
    data.update(changes)
    return data


def create(browser, data: dict) -> int:
    response = browser.submit("/buyer/competitions/new", data)
    assert response.status_code == 302, text(response)
    return competition_id_from(response)


def publish(browser, competition_id: int):
    page = f"/buyer/competitions/{competition_id}"
    response = browser.submit(f"{page}/publish", page=page)
    assert response.status_code == 302, text(response)
    return response


@contextmanager
def statements(app):
    """The SQL run inside the block, to show what a page never even reads."""
    with app.app_context():
        engine = db.engine
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement.lower())

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


# Who may buy ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, reason", [
    ({"membership": "affiliate"}, "is an Affiliate Member: only Full and Associate Members may buy from the DPS"),
    ({"kind": "opposition_group", "contracting_authority": False}, "is not a contracting authority, so it cannot award contracts under the DPS"),
])
def test_affiliates_and_opposition_groups_are_told_why_they_cannot_buy(app, factory, signed_in, dps, change, reason):
    org_id = factory.organisation(name="Labour Group of Anytown")
    browser, user = signed_in("buyer", organisation_id=org_id)
    # The account was made while the organisation could buy; its standing has changed since.
    with app.app_context():
        org = db.session.get(Organisation, org_id)
        for key, value in change.items():
            setattr(org, key, value)
        db.session.commit()

    listing = browser.get("/buyer/competitions")
    assert listing.status_code == 200
    assert "You cannot run mini-competitions" in text(listing) and reason in text(listing)
    # The banner's markup is rendered, not shown as text.
    assert '<p class="govuk-notification-banner__heading">You cannot run mini-competitions</p>' in text(listing)
    assert "Create a mini-competition" not in text(listing)

    new = browser.get("/buyer/competitions/new")
    assert new.status_code == 403 and reason in text(new) and 'name="title"' not in text(new)
    refused = browser.submit("/buyer/competitions/new", form_data(dps["lot1"], allocation(app, org_id)),
                             page="/buyer/competitions")
    assert refused.status_code == 403
    with app.app_context():
        assert db.session.scalar(select(Competition.id)) is None


def test_a_draft_cannot_be_published_once_the_organisation_can_no_longer_buy(app, buyer, dps, suppliers):
    browser, user = buyer
    competition_id = create(browser, form_data(dps["lot1"], user["allocation"], panel=[str(user["id"])]))
    with app.app_context():
        db.session.get(Organisation, user["organisation_id"]).membership = "affiliate"
        db.session.commit()
    page = f"/buyer/competitions/{competition_id}"
    refused = browser.submit(f"{page}/publish", page=page)
    assert refused.status_code == 400 and "is an Affiliate Member" in text(refused)
    with app.app_context():
        assert db.session.scalar(select(Invitation.id)) is None


def test_suppliers_and_the_dps_team_cannot_reach_the_buyer_pages(signed_in, dps):
    supplier, _ = signed_in("supplier")
    assert supplier.get("/buyer/competitions").status_code == 403
    team, _ = signed_in("dps_admin", organisation_id=dps["body"])
    assert team.get("/buyer/competitions/new").status_code == 403


# Creating ------------------------------------------------------------------------------------------

def test_creating_a_competition_checks_the_criteria_by_their_field_and_keeps_what_was_typed(app, buyer, dps):
    browser, user = buyer
    page = text(browser.get("/buyer/competitions/new"))
    # The allocation is offered with its project, programme, year and what is left.
    assert "Community wealth building review, Policy Labs 2024/25: £20,000.00 left" in page
    assert "£214,904.00" in page  # the services threshold, in the standstill hint
    assert "13 June 2024 at 9:00am" in page  # the earliest tender deadline if published now
    # The creator is on the panel unless they untick themselves.
    assert re.search(rf'value="{user["id"]}"[^>]*checked', page)

    refused = browser.submit("/buyer/competitions/new", form_data(dps["lot1"], user["allocation"], price_weight="39",
                                                                  panel=[str(user["id"])]))
    assert refused.status_code == 400
    body = text(refused)
    assert "The weights must add up to 100%: they add up to 99%" in body
    assert 'href="#criteria"' in body and 'id="criteria"' in body
    assert 'value="Community wealth building review"' in body and 'value="39"' in body and 'value="15,000"' in body

    missing = browser.submit("/buyer/competitions/new", form_data(
        dps["lot1"], user["allocation"], title="", estimated_value="fifteen grand", quality_1_title="",
        clarification_deadline_time="9", panel=[]))
    assert missing.status_code == 400
    body = text(missing)
    for message, field in (("Enter the title of the competition", "title"),
                           ("Enter an amount in pounds", "estimated_value"),
                           ("Enter the title of quality criterion 1", "quality_1_title"),
                           ("Enter a time like 9:00am or 17:30", "clarification_deadline_time"),
                           ("Choose at least one person for the evaluation panel", "panel")):
        assert message in body and f'href="#{field}"' in body, message
    with app.app_context():
        assert db.session.scalar(select(Competition.id)) is None

    competition_id = create(browser, form_data(dps["lot1"], user["allocation"], panel=[str(user["id"])]))
    with app.app_context():
        competition = db.session.get(Competition, competition_id)
        assert competition.stage(clock.now()) == "draft" and competition.buyer_organisation_id == user["organisation_id"]
        assert competition.estimated_value_pence == 15_000_00 and competition.allocation_id == user["allocation"]
        assert clock.fmt(competition.clarification_deadline) == "10 June 2024 at 5:00pm"
        assert clock.fmt(competition.tender_deadline) == "17 June 2024 at midday"
        # Below the services threshold, so no standstill unless the buyer asks for one.
        assert competition.standstill is False
        assert [(c.kind, c.title, c.weight, c.word_limit) for c in competition.criteria] == [
            ("price", "Price", 40, None), ("quality", "Approach and method", 50, 1000),
            ("social_value", "Social value", 10, 500)]
        assert [m.user_id for m in db.session.scalars(select(PanelMember))] == [user["id"]]
    page = text(browser.get(f"/buyer/competitions/{competition_id}"))
    assert "Community wealth building review" in page and "£15,000.00" in page and "Draft" in page
    assert "17 June 2024 at midday" in page and "Approach and method" in page and "Priya Shah" in page
    assert "Social value is weighted" not in page
    listing = text(browser.get("/buyer/competitions"))
    assert "Community wealth building review" in listing and "17 June 2024 at midday" in listing


def test_the_tender_deadline_must_be_at_least_10_days_after_publication(app, buyer, dps):
    browser, user = buyer
    # Now is 3 June 2024 at 9:00am: 13 June at 8:00am is 9 days and 23 hours away.
    short = browser.submit("/buyer/competitions/new", form_data(
        dps["lot1"], user["allocation"], tender_deadline=["13", "6", "2024"], tender_deadline_time="8:00am",
        panel=[str(user["id"])]))
    assert short.status_code == 400
    body = text(short)
    assert ("The tender deadline must be at least 10 days after the invitation is sent (PCR 2015 reg 34): "
            "if published now, no earlier than 13 June 2024 at 9:00am") in body
    assert 'href="#tender_deadline-day"' in body  # a date's error links to its Day box
    competition_id = create(browser, form_data(dps["lot1"], user["allocation"], tender_deadline=["13", "6", "2024"],
                                               tender_deadline_time="9:00am", panel=[str(user["id"])]))
    with app.app_context():
        competition = db.session.get(Competition, competition_id)
        assert competition.tender_deadline - clock.now() == timedelta(days=10)


def test_a_high_value_competition_has_a_standstill_by_default_and_the_buyer_can_choose(app, buyer, dps):
    browser, user = buyer
    with app.app_context():
        # A line with no cap per call-off, so a call-off at the services threshold can be charged to it.
        db.session.get(Allocation, user["allocation"]).line.cap_per_call_off_pence = None
        db.session.commit()
    above = create(browser, form_data(dps["lot1"], user["allocation"], estimated_value="214,904",
                                      panel=[str(user["id"])]))
    chosen = create(browser, form_data(dps["lot1"], user["allocation"], standstill="yes", panel=[str(user["id"])]))
    with app.app_context():
        assert db.session.get(Competition, above).standstill is True
        assert db.session.get(Competition, chosen).standstill is True


def test_little_weight_on_social_value_is_warned_about_after_saving_and_on_the_page(app, buyer, dps):
    browser, user = buyer
    response = browser.submit("/buyer/competitions/new", form_data(
        dps["lot1"], user["allocation"], quality_1_weight="55", social_value_weight="5", panel=[str(user["id"])]),
        follow_redirects=True)
    assert response.status_code == 200
    warning = "Social value is weighted 5%. The network expects at least 10%"
    assert warning in text(response)
    competition_id = int(re.search(r"/buyer/competitions/(\d+)/publish", text(response)).group(1))
    assert warning in text(browser.get(f"/buyer/competitions/{competition_id}"))


def test_a_buyer_cannot_see_another_organisations_competition_nor_charge_its_allocation(app, buyer, dps, factory,
                                                                                       signed_in, suppliers):
    browser, user = buyer
    competition_id = create(browser, form_data(dps["lot1"], user["allocation"], panel=[str(user["id"])]))
    neighbour = factory.organisation(name="Stockport Council")
    other, other_user = signed_in("buyer", organisation_id=neighbour)
    theirs = allocation(app, neighbour, project="Stockport food plan")

    page = f"/buyer/competitions/{competition_id}"
    assert other.get(page).status_code == 404
    for action in ("publish", "cancel"):
        assert other.submit(f"{page}/{action}", {"reason": "Not ours"}, page="/buyer/competitions").status_code == 404
    assert "Community wealth building review" not in text(other.get("/buyer/competitions"))
    with app.app_context():
        assert db.session.get(Competition, competition_id).stage(clock.now()) == "draft"

    # The allocation list offers only the buyer's own; a hand-made request for another's is refused.
    assert "Stockport food plan" not in text(browser.get("/buyer/competitions/new"))
    refused = browser.submit("/buyer/competitions/new", form_data(dps["lot1"], theirs, panel=[str(user["id"])]))
    assert refused.status_code == 400
    assert "Choose one of your organisation&#39;s allocations" in text(refused)
    assert 'href="#allocation"' in text(refused)
    # Nor can a buyer put someone of another organisation on the panel.
    foreign = browser.submit("/buyer/competitions/new", form_data(dps["lot1"], user["allocation"],
                                                                  panel=[str(other_user["id"])]))
    assert foreign.status_code == 400
    with app.app_context():
        assert db.session.scalars(select(Competition.allocation_id)).all() == [user["allocation"]]


def test_a_network_buyer_can_charge_the_networks_allocation(app, factory, signed_in, dps):
    network = factory.organisation(kind="network", membership=None, name="Co-operative Councils' Innovation Network")
    browser, user = signed_in("buyer", organisation_id=network)
    research = allocation(app, network, project="Network research and evaluation", programme="Network commissioning")
    assert "Network research and evaluation" in text(browser.get("/buyer/competitions/new"))
    competition_id = create(browser, form_data(dps["lot1"], research, panel=[str(user["id"])]))
    with app.app_context():
        competition = db.session.get(Competition, competition_id)
        assert competition.allocation_id == research and competition.buyer_organisation_id == network


def test_the_panel_is_chosen_from_the_buyers_colleagues(app, buyer, dps, factory):
    browser, user = buyer
    colleague = factory.user("buyer", organisation_id=user["organisation_id"], name="Tom Evans")
    assert "Tom Evans" in text(browser.get("/buyer/competitions/new"))
    competition_id = create(browser, form_data(dps["lot1"], user["allocation"],
                                               panel=[str(user["id"]), str(colleague["id"])]))
    with app.app_context():
        assert sorted(db.session.scalars(select(PanelMember.user_id).where(
            PanelMember.competition_id == competition_id))) == sorted([user["id"], colleague["id"]])
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "competition.created")) is not None
    page = text(browser.get(f"/buyer/competitions/{competition_id}"))
    assert "Tom Evans" in page and "Priya Shah" in page


# Specification documents ---------------------------------------------------------------------------

def test_specification_documents_are_added_while_draft(app, buyer, dps, suppliers):
    browser, user = buyer
    competition_id = create(browser, form_data(dps["lot1"], user["allocation"], panel=[str(user["id"])]))
    page = f"/buyer/competitions/{competition_id}"
    fake = browser.submit(f"{page}/documents", {"document": upload("specification.pdf", b"not a pdf")}, page=page,
                          content_type="multipart/form-data")
    assert fake.status_code == 400 and "not a real .pdf file" in text(fake) and 'href="#document"' in text(fake)
    added = browser.submit(f"{page}/documents", {"document": upload("specification.pdf")}, page=page,
                           content_type="multipart/form-data")
    assert added.status_code == 302
    assert "specification.pdf" in text(browser.get(page))
    publish(browser, competition_id)
    assert 'name="document"' not in text(browser.get(page))
    late = browser.submit(f"{page}/documents", {"document": upload("addendum.pdf")}, page=page,
                          content_type="multipart/form-data")
    assert late.status_code == 400 and "Documents can only be added before the competition is published" in text(late)
    assert 'name="document"' not in text(late)
    with app.app_context():
        assert db.session.scalar(select(CompetitionDocument).where(CompetitionDocument.competition_id == competition_id)
                                 ).document.filename == "specification.pdf"
        assert len(db.session.scalars(select(CompetitionDocument)).all()) == 1


# Publishing ----------------------------------------------------------------------------------------

def test_publishing_invites_exactly_the_suppliers_admitted_to_the_lot_and_emails_them(app, buyer, dps, suppliers):
    browser, user = buyer
    competition_id = create(browser, form_data(dps["lot1"], user["allocation"], panel=[str(user["id"])]))
    before = len(outbox(app))
    response = publish(browser, competition_id)
    assert "2 suppliers admitted to Lot 1 have been invited and emailed" in text(browser.get(response.headers["Location"]))

    admitted = {suppliers["a"]["organisation_id"], suppliers["b"]["organisation_id"]}
    with app.app_context():
        invitations = db.session.scalars(select(Invitation).where(Invitation.competition_id == competition_id)).all()
        assert {i.organisation_id for i in invitations} == admitted
        competition = db.session.get(Competition, competition_id)
        assert all(i.invited_at == competition.published_at for i in invitations)
        event_ = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "competition.published"))
        assert sorted(event_.data["invited"]) == sorted(admitted)
    sent = outbox(app)[before:]
    assert sorted(m.to_address for m in sent) == ["amara@brightwater.example.org", "ben@coopfutures.example.org"]
    assert all(m.subject.startswith("Invitation to tender: Community wealth building review (CCIN-MC-2024-")
               for m in sent)
    assert "Tenders by 17 June 2024 at midday" in sent[0].body

    page = text(browser.get(f"/buyer/competitions/{competition_id}"))
    assert "Brightwater Research Ltd" in page and "Co-op Futures CIC" in page
    for absent in ("Halted Consulting Ltd", "Gone Analytics Ltd", "Prototype Works Ltd"):
        assert absent not in page
    assert "Open for tenders" in page and "Publish and invite suppliers" not in page
    again = browser.submit(f"/buyer/competitions/{competition_id}/publish", page=f"/buyer/competitions/{competition_id}")
    assert again.status_code == 400 and "Only a draft competition can be published" in text(again)


def test_publishing_after_the_clarification_deadline_has_passed_is_refused(app, buyer, dps, suppliers):
    browser, user = buyer
    competition_id = create(browser, form_data(dps["lot1"], user["allocation"], panel=[str(user["id"])]))
    set_clock(app, "2024-06-11T09:00")
    refused = browser.submit(f"/buyer/competitions/{competition_id}/publish", page=f"/buyer/competitions/{competition_id}")
    assert refused.status_code == 400
    assert "The tender deadline must be at least 10 days after the invitation is sent" in text(refused)
    with app.app_context():
        assert db.session.scalar(select(Invitation.id)) is None


# Clarifications ------------------------------------------------------------------------------------

def test_a_question_is_answered_to_every_invited_supplier_without_naming_who_asked(app, buyer, dps, suppliers):
    browser, user = buyer
    competition_id = create(browser, form_data(dps["lot1"], user["allocation"], panel=[str(user["id"])]))
    publish(browser, competition_id)
    supplier_a = app.test_client()
    sign_in(supplier_a, "amara@brightwater.example.org")
    supplier_b = app.test_client()
    sign_in(supplier_b, "ben@coopfutures.example.org")
    ask_page = f"/supplier/competitions/{competition_id}/clarifications"

    empty = supplier_a.submit(ask_page, {"question": "  "})
    assert empty.status_code == 400 and "Enter your question" in text(empty)
    before = len(outbox(app))
    asked = supplier_a.submit(ask_page, {"question": QUESTION_A})
    assert asked.status_code == 302
    to_buyer = outbox(app)[before:]
    assert [m.to_address for m in to_buyer] == ["priya@rochdale.example.org"]
    assert QUESTION_A in to_buyer[0].body and "Brightwater Research Ltd" not in to_buyer[0].body
    # Privately asked: B does not see it until it is answered; A sees its own question.
    assert "subcontractor" in text(supplier_a.get(ask_page))
    assert "subcontractor" not in text(supplier_b.get(ask_page))

    buyer_page = f"/buyer/competitions/{competition_id}"
    page = text(browser.get(buyer_page))
    assert "asked by Brightwater Research Ltd" in page and "subcontractor for the survey fieldwork" in page
    with app.app_context():
        clarification_id = db.session.scalar(select(Clarification.id))
    answer_url = f"{buyer_page}/clarifications/{clarification_id}/answer"
    prefix = f"c{clarification_id}-"
    # The answer must not name the asker: everyone reads it.
    naming = browser.submit(answer_url, {prefix + "published_question": QUESTION_A,
                                         prefix + "answer": "Yes."}, page=buyer_page)
    assert naming.status_code == 400
    assert "Remove “Brightwater Research”" in text(naming) and f'href="#{prefix}published_question"' in text(naming)
    blank = browser.submit(answer_url, {prefix + "published_question": "Can a supplier subcontract?",
                                        prefix + "answer": ""}, page=buyer_page)
    assert blank.status_code == 400 and "Enter your answer" in text(blank)

    before = len(outbox(app))
    answered = browser.submit(answer_url, {prefix + "published_question": "Can a supplier subcontract the fieldwork?",
                                           prefix + "answer": "Yes, if you name the subcontractor in your bid."},
                              page=buyer_page)
    assert answered.status_code == 302
    sent = outbox(app)[before:]
    assert sorted(m.to_address for m in sent) == ["amara@brightwater.example.org", "ben@coopfutures.example.org"]
    for message in sent:
        assert "Can a supplier subcontract the fieldwork?" in message.body
        assert "Yes, if you name the subcontractor in your bid." in message.body
        assert "Brightwater" not in message.body and "Brightwater" not in message.subject
        assert "Amara" not in message.body
    b_page = text(supplier_b.get(ask_page))
    assert "Can a supplier subcontract the fieldwork?" in b_page and "name the subcontractor in your bid" in b_page
    assert "Brightwater" not in b_page and "Amara" not in b_page and "survey fieldwork" not in b_page
    assert "your organisation asked this" in text(supplier_a.get(ask_page))
    with app.app_context():
        actions = set(db.session.scalars(select(AuditEvent.action)))
        assert {"clarification.asked", "clarification.answered"} <= actions
    twice = browser.submit(answer_url, {prefix + "published_question": "Again?", prefix + "answer": "Again."},
                           page=buyer_page)
    assert twice.status_code == 400 and "already been answered" in text(twice)

    # A supplier that was not invited cannot see the questions or ask.
    outsider = app.test_client()
    sign_in(outsider, "pat@prototype.example.org")
    assert outsider.get(ask_page).status_code == 404


def test_questions_after_the_clarification_deadline_are_refused(app, buyer, dps, suppliers):
    browser, user = buyer
    competition_id = create(browser, form_data(dps["lot1"], user["allocation"], panel=[str(user["id"])]))
    publish(browser, competition_id)
    supplier = app.test_client()
    sign_in(supplier, "amara@brightwater.example.org")
    ask_page = f"/supplier/competitions/{competition_id}/clarifications"
    set_clock(app, "2024-06-10T17:00")  # the deadline for questions itself
    page = text(supplier.get(ask_page))
    assert "The deadline for questions was 10 June 2024 at 5:00pm" in page and 'name="question"' not in page
    late = supplier.submit(ask_page, {"question": "Is there still time to ask?"}, page="/supplier/")
    assert late.status_code == 400
    assert "The deadline for questions was 10 June 2024 at 5:00pm: you can no longer ask a question" in text(late)
    with app.app_context():
        assert db.session.scalar(select(Clarification.id)) is None


# Before the deadline: names and times, never content -----------------------------------------------

def test_the_buyer_sees_who_opened_and_submitted_but_never_a_bids_content(app, buyer, dps, suppliers):
    browser, user = buyer
    competition_id = create(browser, form_data(dps["lot1"], user["allocation"], panel=[str(user["id"])]))
    publish(browser, competition_id)
    marker = "MARKER-7f3a-sealed-answer-text"
    with app.app_context():
        a_org = suppliers["a"]["organisation_id"]
        invitation = db.session.scalar(select(Invitation).where(Invitation.organisation_id == a_org))
        invitation.first_opened_at = clock.parse_london("2024-06-04T10:15")
        criterion = db.session.scalar(select(Criterion).where(Criterion.competition_id == competition_id,
                                                              Criterion.kind == "quality"))
        bid = Bid(competition_id=competition_id, organisation_id=a_org, state="submitted", price_pence=1234567,
                  updated_at=clock.parse_london("2024-06-05T14:30"), submitted_at=clock.parse_london("2024-06-05T14:30"),
                  receipt_reference="R-1")
        bid.answers.append(BidAnswer(criterion_id=criterion.id, text=marker))
        # B has a draft only: it has not submitted.
        draft = Bid(competition_id=competition_id, organisation_id=suppliers["b"]["organisation_id"], state="draft",
                    price_pence=7654321, updated_at=clock.now())
        db.session.add_all([bid, draft])
        db.session.commit()

    pages = ["/buyer/competitions", f"/buyer/competitions/{competition_id}", "/buyer/"]
    with statements(app) as seen:
        responses = [browser.get(p) for p in pages]
    for response in responses:
        assert response.status_code == 200
        body = text(response)
        assert "12,345.67" not in body and "1234567" not in body and "76,543.21" not in body
        assert marker not in body
    # Not shown, and not even read: no query touches answers, documents or prices of bids.
    assert not [s for s in seen if "bid_answers" in s or "bid_documents" in s or "price_pence" in s]
    page = text(responses[1])
    row_a = re.search(r"Brightwater Research Ltd.*?</tr>", page, re.S).group(0)
    assert "4 June 2024 at 10:15am" in row_a and "5 June 2024 at 2:30pm" in row_a
    row_b = re.search(r"Co-op Futures CIC.*?</tr>", page, re.S).group(0)
    assert "Not yet" in row_b and "Not submitted" in row_b


# Cancelling ----------------------------------------------------------------------------------------

def test_cancelling_needs_a_reason_and_tells_every_invited_supplier(app, buyer, dps, suppliers):
    browser, user = buyer
    competition_id = create(browser, form_data(dps["lot1"], user["allocation"], panel=[str(user["id"])]))
    publish(browser, competition_id)
    page = f"/buyer/competitions/{competition_id}"
    refused = browser.submit(f"{page}/cancel", {"reason": "   "}, page=page)
    assert refused.status_code == 400
    assert "Enter why the competition is cancelled: invited suppliers will read it" in text(refused)
    assert 'href="#reason"' in text(refused)

    before = len(outbox(app))
    reason = "The council's budget for this review has been withdrawn."
    cancelled = browser.submit(f"{page}/cancel", {"reason": reason}, page=page)
    assert cancelled.status_code == 302
    sent = outbox(app)[before:]
    assert sorted(m.to_address for m in sent) == ["amara@brightwater.example.org", "ben@coopfutures.example.org"]
    assert all(reason in m.body and m.subject.startswith("Cancelled: Community wealth building review") for m in sent)
    after = text(browser.get(page))
    assert "Cancelled" in after and "Cancel the competition" not in after
    with app.app_context():
        competition = db.session.get(Competition, competition_id)
        assert competition.stage(clock.now()) == "cancelled" and competition.cancel_reason == reason
    again = browser.submit(f"{page}/cancel", {"reason": "Twice"}, page="/buyer/competitions")
    assert again.status_code == 400 and "can no longer be cancelled" in text(again)
