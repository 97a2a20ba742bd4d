"""Suppliers' bids to mini-competitions, driven through the supplier's pages: invitations,
drafts, submission with a receipt exact to the second, withdrawal and resubmission, the deadline
to the second, word limits, and standing on the lot (PCR 2015 reg 34)."""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import date

import pytest
from sqlalchemy import select

from dps import clock, questionnaire
from dps.extensions import db
from dps.models import (
    Admission,
    Allocation,
    Application,
    ApplicationLot,
    AuditEvent,
    Bid,
    BudgetLine,
    BudgetYear,
    Competition,
    Invitation,
    User,
)
from dps.services import bids, competitions
from dps.services.competitions import CriterionInput
from tests.applying import make_dps
from tests.conftest import outbox, set_clock, sign_in

# Published on Monday 3 June 2024 at 9am (conftest's DEFAULT_NOW); tenders close at midday on
# Friday 5 July 2024 (British Summer Time: 11:00 UTC).
TENDER_DEADLINE = "2024-07-05T12:00"
QUESTIONS_DEADLINE = "2024-06-28T12:00"
QUALITY_WORD_LIMIT = 50
SOCIAL_VALUE_WORD_LIMIT = 30


@dataclass
class Supplier:
    name: str
    org: int
    user: dict
    admission: int

    @property
    def email(self) -> str:
        return self.user["email"]


@dataclass
class World:
    """A published competition in Lot 1 and everyone around it."""

    competition: int
    reference: str
    lot: int
    other_lot: int
    quality: int
    social_value: int
    buyer: dict
    buyer_org: int
    team: dict
    suppliers: list[Supplier] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"/supplier/competitions/{self.competition}"


def text(response) -> str:
    return response.get_data(as_text=True)


def admitted_supplier(app, factory, agreement_id: int, lot_id: int, name: str) -> Supplier:
    """A supplier with one user, admitted to ``lot_id`` through a decided application."""
    org_id = factory.organisation(kind="supplier", membership=None, name=name)
    user = factory.user("supplier", organisation_id=org_id)
    with app.app_context():
        now = clock.now()
        application = Application(organisation_id=org_id, agreement_id=agreement_id,
                                  questionnaire_version="ccin-sq-2020-04", created_at=now,
                                  created_by_id=user["id"], updated_at=now, submitted_at=now,
                                  submitted_by_id=user["id"], decided_at=now)
        decision = ApplicationLot(application=application, lot_id=lot_id, decision="admitted", decided_at=now)
        db.session.add_all([application, decision])
        db.session.flush()
        admission = Admission(organisation_id=org_id, lot_id=lot_id, application_lot_id=decision.id,
                              admitted_at=now, status="admitted", status_changed_at=now)
        db.session.add(admission)
        db.session.commit()
        return Supplier(name=name, org=org_id, user=user, admission=admission.id)


def buyer_allocation(app, organisation_id: int) -> int:
    with app.app_context():
        year = BudgetYear(label="2024/25", starts_on=date(2024, 4, 1), ends_on=date(2025, 3, 31))
        line = BudgetLine(year=year, programme="Policy Labs", total_pence=1_000_000_00,
                          cap_per_call_off_pence=20_000_00, allocated_pence=20_000_00)
        allocation = Allocation(line=line, organisation_id=organisation_id, project_title="Community wealth lab",
                                amount_pence=20_000_00, committed_pence=0)
        db.session.add_all([year, line, allocation])
        db.session.commit()
        return allocation.id


def published_competition(app, factory, supplier_names: tuple[str, ...] = ("Brightwater Research Ltd",
                                                                         "Hollins Co-operative")) -> World:
    """The DPS, a buyer with budget, suppliers admitted to Lot 1, and a competition published to
    them (through the competition services) with a quality and a social value criterion."""
    dps = make_dps(app)
    team = factory.user("dps_admin", organisation_id=dps["body"])
    buyer_org = factory.organisation(name="Rochdale Borough Council")
    buyer = factory.user("buyer", organisation_id=buyer_org)
    allocation_id = buyer_allocation(app, buyer_org)
    suppliers = [admitted_supplier(app, factory, dps["agreement"], dps["lot1"], name) for name in supplier_names]
    with app.app_context():
        user = db.session.get(User, buyer["id"])
        competition, _warnings = competitions.create(
            user, lot_id=dps["lot1"], title="Community wealth building review",
            description="Review the council's community wealth building programme.\nReport by March.",
            estimated_value_pence=15_000_00, allocation_id=allocation_id,
            clarification_deadline=clock.parse_london(QUESTIONS_DEADLINE),
            tender_deadline=clock.parse_london(TENDER_DEADLINE),
            criteria=[CriterionInput("price", "Price", 40),
                      CriterionInput("quality", "Approach and method", 45, "How you will do the work.",
                                     QUALITY_WORD_LIMIT),
                      CriterionInput("social_value", "Social value", 15, "What you will add locally.",
                                     SOCIAL_VALUE_WORD_LIMIT)])
        competitions.publish(competition, user)
        db.session.commit()
        kinds = {c.kind: c.id for c in competition.criteria}
        return World(competition=competition.id, reference=competition.reference, lot=dps["lot1"],
                     other_lot=dps["lot2"], quality=kinds["quality"], social_value=kinds["social_value"],
                     buyer=buyer, buyer_org=buyer_org, team=team, suppliers=suppliers)


def browser_for(app, user: dict):
    browser = app.test_client()
    assert sign_in(browser, user["email"], user["password"]).status_code == 302
    return browser


def bid_data(world: World, price: str = "12,500.50", quality: str = "We will interview twenty local anchor "
             "institutions.", social: str = "We will hire two Oldham apprentices.", action: str = "save") -> dict:
    return {"price": price, f"criterion_{world.quality}": quality, f"criterion_{world.social_value}": social,
            "action": action}


def open_invitation(browser, world: World) -> None:
    assert browser.submit(f"{world.base}/view", page="/supplier/competitions").status_code == 302


def post_bid(browser, world: World, data: dict, document: tuple[bytes, str] | None = None):
    payload = dict(data)
    if document is not None:
        payload["document"] = (io.BytesIO(document[0]), document[1])
    return browser.submit(f"{world.base}/bid", payload, content_type="multipart/form-data")


def the_bid(app, world: World, org_id: int) -> Bid | None:
    with app.app_context():
        bid = db.session.scalar(select(Bid).where(Bid.competition_id == world.competition,
                                                  Bid.organisation_id == org_id))
        if bid is not None:
            bid.answers, bid.documents  # load them before leaving the session
            db.session.expunge_all()
        return bid


def events(app, prefix: str) -> list[AuditEvent]:
    with app.app_context():
        found = db.session.scalars(select(AuditEvent).where(AuditEvent.action.startswith(prefix))
                                   .order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        return found


@pytest.fixture
def world(app, factory) -> World:
    return published_competition(app, factory)


# Invitations ----------------------------------------------------------------------------------------

def test_an_invitation_is_listed_and_opened_only_by_pressing_the_button(app, world):
    supplier = world.suppliers[0]
    browser = browser_for(app, supplier.user)
    listing = text(browser.get("/supplier/competitions"))
    assert "Community wealth building review" in listing and "Rochdale Borough Council" in listing
    assert "Lot 1: Research and policy" in listing and "5 July 2024 at midday" in listing
    assert "Not started" in listing and "View invitation" in listing

    # Loading the page changes nothing: it offers the button, not the specification.
    unopened = text(browser.get(world.base))
    assert "View invitation" in unopened and "Report by March." not in unopened
    with app.app_context():
        assert db.session.scalar(select(Invitation.first_opened_at).where(
            Invitation.organisation_id == supplier.org)) is None

    set_clock(app, "2024-06-04T08:30")
    open_invitation(browser, world)
    set_clock(app, "2024-06-05T08:30")
    open_invitation(browser, world)  # a second opening does not move the first
    with app.app_context():
        opened = db.session.scalar(select(Invitation.first_opened_at).where(Invitation.organisation_id == supplier.org))
        assert opened == clock.parse_london("2024-06-04T08:30")
    assert len(events(app, "invitation.opened")) == 1
    page = text(browser.get(world.base))
    assert "Report by March." in page and "Approach and method" in page and "45%" in page
    assert "Prepare your bid" in page

    status = {s.organisation_name: s for s in _status_for_buyer(app, world)}
    assert status[supplier.name].first_opened_at == clock.parse_london("2024-06-04T08:30")
    assert status[world.suppliers[1].name].first_opened_at is None



def test_answered_clarifications_show_in_their_published_wording(app, world):
    from dps.services import clarifications

    asker, other = world.suppliers
    with app.app_context():
        competition = db.session.get(Competition, world.competition)
        question = clarifications.ask(competition, db.session.get(User, asker.user["id"]),
                                      "Brightwater asks: may we subcontract the survey?")
        clarifications.answer(question, db.session.get(User, world.buyer["id"]),
                              "May a supplier subcontract the survey?", "Yes, if you name the subcontractor.")
        db.session.commit()
    browser = browser_for(app, other.user)
    open_invitation(browser, world)
    page = text(browser.get(world.base))
    assert "May a supplier subcontract the survey?" in page and "Yes, if you name the subcontractor." in page
    assert "Brightwater asks" not in page
    assert f"/supplier/competitions/{world.competition}/clarifications" in page

def test_a_supplier_that_was_not_invited_is_told_nothing(app, factory, world):
    """Admitted to another lot only: every page of the competition is not found."""
    with app.app_context():
        agreement_id = db.session.scalar(select(Application.agreement_id))
    outsider = admitted_supplier(app, factory, agreement_id, world.other_lot, "Outsider Ltd")
    browser = browser_for(app, outsider.user)
    assert "Community wealth building review" not in text(browser.get("/supplier/competitions"))
    for url in (world.base, f"{world.base}/bid", f"{world.base}/receipt"):
        response = browser.get(url)
        assert response.status_code == 404, url
        assert "Community wealth building review" not in text(response)
    token = browser.csrf_token("/supplier/")
    for url in (f"{world.base}/view", f"{world.base}/bid", f"{world.base}/withdraw"):
        assert browser.post(url, data={"csrf_token": token, **bid_data(world)}).status_code == 404, url
    assert the_bid(app, world, outsider.org) is None


# Drafts, submission, receipts ------------------------------------------------------------------------

def test_draft_submit_withdraw_and_resubmit_each_with_its_own_receipt(app, world):
    supplier = world.suppliers[0]
    browser = browser_for(app, supplier.user)
    open_invitation(browser, world)

    saved = post_bid(browser, world, bid_data(world), document=(b"Our method, step by step.\n", "method.txt"))
    assert saved.status_code == 302, text(saved)
    draft = the_bid(app, world, supplier.org)
    assert draft.state == "draft" and draft.price_pence == 12_500_50 and draft.submitted_at is None
    assert {a.criterion_id: a.text for a in draft.answers}[world.quality].startswith("We will interview")
    assert len(draft.documents) == 1
    page = text(browser.get(f"{world.base}/bid"))
    assert "method.txt" in page and "12,500.50" in page and "You can enter up to 50 words" in page
    assert 'data-maxwords="50"' in page and 'data-maxwords="30"' in page

    set_clock(app, "2024-06-10T10:15:30")
    submitted = post_bid(browser, world, bid_data(world, action="submit"))
    assert submitted.status_code == 302 and submitted.headers["Location"].endswith(f"{world.base}/receipt")
    first_reference = f"{world.reference}-R{draft.id:04d}-1"
    receipt = text(browser.get(submitted.headers["Location"]))
    assert "Bid received" in receipt and f"<strong>{first_reference}</strong>" in receipt
    assert "10 June 2024 at 10:15:30am" in receipt
    bid = the_bid(app, world, supplier.org)
    assert bid.state == "submitted" and bid.submitted_at == clock.parse_london("2024-06-10T10:15:30")
    assert bid.receipt_reference == first_reference
    emails = [m for m in outbox(app) if m.to_address == supplier.email and m.subject.startswith("Bid received")]
    assert len(emails) == 1 and first_reference in emails[0].body
    assert "10 June 2024 at 10:15:30am" in emails[0].body and "12,500.50" not in emails[0].body

    # A submitted bid stands as received: it cannot be edited, only withdrawn.
    refused = post_bid(browser, world, bid_data(world, price="1.00"))
    assert refused.status_code == 400 and "withdraw it" in text(refused)
    assert the_bid(app, world, supplier.org).price_pence == 12_500_50

    set_clock(app, "2024-06-11T14:00:05")
    withdrawn = browser.submit(f"{world.base}/withdraw", page=f"{world.base}/bid")
    assert withdrawn.status_code == 302
    bid = the_bid(app, world, supplier.org)
    assert bid.state == "withdrawn" and bid.submitted_at is None and bid.receipt_reference is None
    assert bid.price_pence == 12_500_50  # the content is kept as a draft
    assert "Your bid has been withdrawn" in text(browser.get(f"{world.base}/bid"))
    assert browser.get(f"{world.base}/receipt").status_code == 302
    assert any(m.subject.startswith("Bid withdrawn") for m in outbox(app) if m.to_address == supplier.email)

    set_clock(app, "2024-06-12T09:30:45")
    again = post_bid(browser, world, bid_data(world, price="11,999.99", action="submit"))
    assert again.status_code == 302, text(again)
    receipt = text(browser.get(f"{world.base}/receipt"))
    second_reference = f"{world.reference}-R{draft.id:04d}-2"
    assert second_reference in receipt and "12 June 2024 at 9:30:45am" in receipt
    bid = the_bid(app, world, supplier.org)
    assert bid.state == "submitted" and bid.price_pence == 11_999_99 and bid.receipt_reference == second_reference
    assert len([m for m in outbox(app) if m.subject.startswith("Bid received")]) == 2

    listing = text(browser.get("/supplier/competitions"))
    assert "Submitted" in listing
    submissions = events(app, "bid.submitted")
    assert [e.data["receipt_reference"] for e in submissions] == [first_reference, second_reference]
    assert submissions[0].data == {"received_at": clock.parse_london("2024-06-10T10:15:30").isoformat(),
                                   "receipt_reference": first_reference, "organisation_id": supplier.org}


def test_no_bid_audit_event_carries_price_or_answers(app, world):
    supplier = world.suppliers[0]
    browser = browser_for(app, supplier.user)
    open_invitation(browser, world)
    marker = "Zanzibar-quartz-lantern"
    data = bid_data(world, price="4,321.87", quality=f"{marker} method", social=f"{marker} social value")
    assert post_bid(browser, world, data, document=(f"{marker}\n".encode(), f"{marker}.txt")).status_code == 302
    assert post_bid(browser, world, {**data, "action": "submit"}).status_code == 302
    assert browser.submit(f"{world.base}/withdraw", page=f"{world.base}/bid").status_code == 302
    assert post_bid(browser, world, {**data, "action": "submit"}).status_code == 302
    everything = events(app, "")
    actions = {e.action for e in everything}
    assert {"bid.draft_saved", "bid.document_attached", "bid.submitted", "bid.withdrawn",
            "document.uploaded"} <= actions
    for event in everything:
        dumped = json.dumps(event.data)
        assert marker not in dumped and "432187" not in dumped and "4,321.87" not in dumped, event.action


def test_an_answer_over_its_word_limit_is_refused_by_its_field(app, world):
    supplier = world.suppliers[0]
    browser = browser_for(app, supplier.user)
    open_invitation(browser, world)
    too_long = " ".join(["word"] * (QUALITY_WORD_LIMIT + 1))
    response = post_bid(browser, world, bid_data(world, quality=too_long))
    assert response.status_code == 400
    page = text(response)
    assert "must be 50 words or fewer: it has 51" in page
    assert f'href="#criterion_{world.quality}"' in page
    assert the_bid(app, world, supplier.org) is None  # nothing of the refused save is kept

    # Words are what whitespace separates, however much of it there is.
    spaced = "\n\n".join(["word"] * (QUALITY_WORD_LIMIT + 1))
    assert post_bid(browser, world, bid_data(world, quality=spaced)).status_code == 400

    wrong_price = post_bid(browser, world, bid_data(world, price="12.345"))
    assert wrong_price.status_code == 400
    assert "no more than 2 decimal places" in text(wrong_price) and 'href="#price"' in text(wrong_price)
    assert the_bid(app, world, supplier.org) is None

    exactly = " ".join(["word"] * QUALITY_WORD_LIMIT)
    assert post_bid(browser, world, bid_data(world, quality=exactly)).status_code == 302


def test_submitting_an_unfinished_bid_names_every_missing_part(app, world):
    supplier = world.suppliers[0]
    browser = browser_for(app, supplier.user)
    open_invitation(browser, world)
    response = post_bid(browser, world, bid_data(world, price="", social="", action="submit"))
    assert response.status_code == 400
    page = text(response)
    assert "Your draft has been saved, but your bid has not been submitted." in page
    assert 'href="#price"' in page and f'href="#criterion_{world.social_value}"' in page
    assert "Enter your price" in page and "Answer ‘Social value’" in page
    bid = the_bid(app, world, supplier.org)
    assert bid.state == "draft" and bid.submitted_at is None and len(bid.answers) == 1


def test_a_document_can_be_removed_from_a_draft(app, world):
    supplier = world.suppliers[0]
    browser = browser_for(app, supplier.user)
    open_invitation(browser, world)
    assert post_bid(browser, world, bid_data(world), document=(b"Plan\n", "plan.txt")).status_code == 302
    document_id = the_bid(app, world, supplier.org).documents[0].document_id
    assert browser.get(f"/documents/{document_id}").status_code == 200  # the bidder's own
    removed = browser.submit(f"{world.base}/bid/documents/{document_id}/remove", page=f"{world.base}/bid")
    assert removed.status_code == 302
    assert the_bid(app, world, supplier.org).documents == []
    assert "plan.txt" not in text(browser.get(f"{world.base}/bid"))


# The deadline, to the second ---------------------------------------------------------------------------

def test_a_bid_one_second_before_the_deadline_is_received(app, world):
    supplier = world.suppliers[0]
    browser = browser_for(app, supplier.user)
    open_invitation(browser, world)
    assert post_bid(browser, world, bid_data(world)).status_code == 302
    set_clock(app, "2024-07-05T11:59:59")
    response = post_bid(browser, world, bid_data(world, action="submit"))
    assert response.status_code == 302, text(response)
    assert "5 July 2024 at 11:59:59am" in text(browser.get(f"{world.base}/receipt"))
    bid = the_bid(app, world, supplier.org)
    assert bid.state == "submitted" and bid.submitted_at == clock.parse_london("2024-07-05T11:59:59")


def test_at_the_deadline_exactly_submission_is_refused_and_the_draft_kept(app, world):
    supplier = world.suppliers[0]
    browser = browser_for(app, supplier.user)
    open_invitation(browser, world)
    assert post_bid(browser, world, bid_data(world)).status_code == 302
    set_clock(app, TENDER_DEADLINE)
    response = post_bid(browser, world, bid_data(world, price="9,000.00", action="submit"))
    assert response.status_code == 400
    message = "Tenders closed on 5 July 2024 at midday: your draft has been kept but cannot be submitted"
    assert message in text(response)
    bid = the_bid(app, world, supplier.org)
    assert bid.state == "draft" and bid.submitted_at is None and bid.price_pence == 12_500_50
    assert events(app, "bid.submitted") == []

    # Saving is refused too, and the page is read-only, saying when tenders closed.
    saving = post_bid(browser, world, bid_data(world, price="9,000.00"))
    assert saving.status_code == 400 and "can no longer be changed" in text(saving)
    page = text(browser.get(f"{world.base}/bid"))
    assert message in page and "Submit bid" not in page and "Save draft" not in page
    assert "£12,500.50" in page  # the kept draft, read-only
    assert browser.submit(f"{world.base}/withdraw", page=f"{world.base}/bid").status_code == 302
    assert the_bid(app, world, supplier.org).state == "draft"


def test_a_submitted_bid_cannot_be_withdrawn_after_the_deadline(app, world):
    supplier = world.suppliers[0]
    browser = browser_for(app, supplier.user)
    open_invitation(browser, world)
    assert post_bid(browser, world, bid_data(world, action="submit")).status_code == 302
    set_clock(app, TENDER_DEADLINE)
    assert "Withdraw bid" not in text(browser.get(f"{world.base}/bid"))
    response = browser.post(f"{world.base}/withdraw", data={"csrf_token": browser.csrf_token(f"{world.base}/bid")},
                            follow_redirects=True)
    assert "your bid can no longer be withdrawn" in text(response)
    assert the_bid(app, world, supplier.org).state == "submitted"


# Standing on the lot -------------------------------------------------------------------------------------

def _status_for_buyer(app, world: World) -> list[bids.BidderStatus]:
    with app.app_context():
        return bids.status_for_buyer(db.session.get(Competition, world.competition))


def test_a_supplier_suspended_after_being_invited_cannot_submit_and_the_buyer_sees_it(app, world):
    suspended, other = world.suppliers
    browser = browser_for(app, suspended.user)
    open_invitation(browser, world)
    assert post_bid(browser, world, bid_data(world)).status_code == 302

    team = browser_for(app, world.team)
    response = team.submit(f"/team/suppliers/{suspended.org}/admissions/{suspended.admission}/suspend",
                           {"reason": "Insurance certificate expired"}, page=f"/team/suppliers/{suspended.org}")
    assert response.status_code == 302

    assert "is suspended from Lot 1 of the DPS, so it cannot submit a bid" in text(browser.get(f"{world.base}/bid"))
    refused = post_bid(browser, world, bid_data(world, action="submit"))
    assert refused.status_code == 400
    assert f"{suspended.name} is suspended from Lot 1 of the DPS, so it cannot submit a bid" in text(refused)
    assert the_bid(app, world, suspended.org).state == "draft"

    other_browser = browser_for(app, other.user)
    open_invitation(other_browser, world)
    set_clock(app, "2024-06-20T16:45:12")
    assert post_bid(other_browser, world, bid_data(world, action="submit")).status_code == 302

    status = {s.organisation_name: s for s in _status_for_buyer(app, world)}
    assert status[suspended.name].cannot_submit and status[suspended.name].admission_status == "suspended"
    assert status[suspended.name].submitted_at is None
    assert not status[other.name].cannot_submit
    assert status[other.name].submitted_at == clock.parse_london("2024-06-20T16:45:12")
    assert status[other.name].invited_at == clock.parse_london("2024-06-03T09:00")


def test_a_removed_supplier_cannot_submit_either(app, world):
    removed = world.suppliers[0]
    browser = browser_for(app, removed.user)
    open_invitation(browser, world)
    team = browser_for(app, world.team)
    assert team.submit(f"/team/suppliers/{removed.org}/admissions/{removed.admission}/remove",
                       {"reason": "Dissolved"}, page=f"/team/suppliers/{removed.org}").status_code == 302
    refused = post_bid(browser, world, bid_data(world, action="submit"))
    assert refused.status_code == 400 and "has been removed from Lot 1" in text(refused)
    status = {s.organisation_name: s for s in _status_for_buyer(app, world)}
    assert status[removed.name].cannot_submit and status[removed.name].admission_status == "removed"


def test_only_the_bidders_supplier_accounts_can_use_the_bid_services(app, world):
    """The services refuse on their own, whatever page calls them."""
    from dps.services import ServiceError

    with app.app_context():
        competition = db.session.get(Competition, world.competition)
        buyer = db.session.get(User, world.buyer["id"])
        with pytest.raises(ServiceError, match="was not invited"):
            bids.save_draft(competition, buyer, 100, {})
        supplier = db.session.get(User, world.suppliers[0].user["id"])
        with pytest.raises(ServiceError, match="Answer only the criteria"):
            bids.save_draft(competition, supplier, 100, {999_999: "text"})
        with pytest.raises(ServiceError) as refused:
            bids.save_draft(competition, supplier, 0, {})
        assert refused.value.field == "price"
        db.session.rollback()



def test_the_specification_is_for_invited_suppliers_only(app, factory, world):
    from dps.models import CompetitionDocument, Document

    with app.app_context():
        spec = Document(organisation_id=world.buyer_org, storage_key=f"{world.buyer_org}/spec-test", filename="specification.pdf",
                        content_type="application/pdf", size_bytes=4, sha256=hashlib.sha256(b"%PDF").hexdigest(),
                        uploaded_at=clock.now(),
                        uploaded_by_id=world.buyer["id"])
        db.session.add(spec)
        db.session.flush()
        db.session.add(CompetitionDocument(competition_id=world.competition, document_id=spec.id))
        db.session.commit()
        spec_id = spec.id
        agreement_id = db.session.scalar(select(Application.agreement_id))
        from dps.storage import get_storage

        get_storage().put(f"{world.buyer_org}/spec-test", b"%PDF", "application/pdf")
    invited = browser_for(app, world.suppliers[0].user)
    assert invited.get(f"/documents/{spec_id}").status_code == 200
    outsider = admitted_supplier(app, factory, agreement_id, world.other_lot, "Outsider Ltd")
    assert browser_for(app, outsider.user).get(f"/documents/{spec_id}").status_code == 404
