"""Evaluation and award of a mini-competition, driven through the buyer's pages: opening after the
deadline, declarations of interest, scoring, moderation, the price formulas, ranking, the award
with standstill, letters to bidders, the call-off and its budget commitment, and invoices."""
from __future__ import annotations

import html
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from dps import clock
from dps.extensions import db
from dps.models import (
    Allocation,
    Award,
    Bid,
    BidDocument,
    CallOff,
    Competition,
    Invoice,
    PanelMember,
    User,
)
from dps.services import ServiceError, evaluation, sealed
from tests.applying import PDF, make_dps
from tests.competing import (
    AFTER_DEADLINE,
    criterion_ids,
    events,
    make_allocation,
    make_bid,
    make_competition,
    post,
)
from tests.conftest import outbox, set_clock



def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


# The world of one competition ------------------------------------------------------------------

@pytest.fixture
def world(app, factory, signed_in):
    dps = make_dps(app)
    buyer_org = factory.organisation(name="Plymouth City Council")
    alice, alice_user = signed_in("buyer", organisation_id=buyer_org, name="Alice Moreno")
    bob, bob_user = signed_in("buyer", organisation_id=buyer_org, name="Bob Hale")
    allocation = make_allocation(app, buyer_org, amount_pence=30_000_00, cap_pence=11_000_00)
    suppliers = {}
    for name in ("Brightwater Research Ltd", "Cedar Co-operative", "Northern Policy CIC"):
        org = factory.organisation(kind="supplier", membership=None, name=name)
        suppliers[name] = {"org": org, "user": factory.user("supplier", organisation_id=org)}
    return {"dps": dps, "buyer_org": buyer_org, "alice": alice, "alice_user": alice_user, "bob": bob,
            "bob_user": bob_user, "allocation": allocation, "suppliers": suppliers}


def competition_with_bids(app, world, *, prices=(10_000_00, 8_000_00, 12_000_00), standstill=True,
                          formula="lowest_price_ratio", number=1, panel=("alice_user",), declared=False) -> dict:
    competition = make_competition(app, lot_id=world["dps"]["lot1"], buyer_organisation_id=world["buyer_org"],
                                   creator_id=world["alice_user"]["id"], allocation_id=world["allocation"],
                                   number=number, standstill=standstill, formula=formula)
    bids = {}
    for (name, supplier), price in zip(world["suppliers"].items(), prices):
        bids[name] = make_bid(app, competition, supplier["org"], price, with_document=name.startswith("Brightwater"))
    with app.app_context():
        for key in panel:
            db.session.add(PanelMember(competition_id=competition, user_id=world[key]["id"],
                                       declared_at=clock.now() if declared else None,
                                       conflicted=False if declared else None))
        db.session.commit()
    return {"id": competition, "bids": bids, "criteria": criterion_ids(app, competition),
            "page": f"/buyer/competitions/{competition}/evaluation", "base": f"/buyer/competitions/{competition}"}


def bid_page(c: dict, name: str, action: str = "score") -> str:
    """One bid's scoring page (its one form scores every criterion), or its moderation page."""
    page = f"{c['page']}/bids/{c['bids'][name]}"
    return page if action == "score" else f"{page}/moderation"


def score_all(browser, c: dict, scores: dict[str, tuple[int, int]], action: str = "score") -> None:
    """Score (or moderate) every bid, one form per bid: ``scores`` maps bidder to (quality,
    social value)."""
    for name, (quality, social) in scores.items():
        data = {}
        for kind, value in (("quality", quality), ("social_value", social)):
            criterion = c["criteria"][kind]
            data[f"score_{criterion}"] = str(value)
            data[f"justification_{criterion}"] = f"{name} {kind} {action}d {value}: clear plan, good evidence"
        page = bid_page(c, name, action)
        response = post(browser, page, page, data)
        assert response.status_code == 302, text(response)


# Scores used in the journey: Brightwater 78.00, Northern 72.67, Cedar 72.00.
SCORES = {"Brightwater Research Ltd": (80, 70), "Cedar Co-operative": (50, 60), "Northern Policy CIC": (90, 50)}


def open_and_declare(app, world, c) -> None:
    set_clock(app, AFTER_DEADLINE)
    assert post(world["alice"], f"{c['base']}/open", c["page"]).status_code == 302
    assert post(world["alice"], f"{c['base']}/declare", c["page"], {"conflicted": "no"}).status_code == 302


# The journey ----------------------------------------------------------------------------------

def test_open_declare_score_moderate_award_with_standstill_letters_call_off_and_invoices(app, world):
    alice, bob = world["alice"], world["bob"]
    c = competition_with_bids(app, world)
    page = c["page"]

    # The creator puts a colleague on the panel (she is on it already).
    assert post(alice, f"{c['base']}/panel", page, {"user_id": world["bob_user"]["id"]}).status_code == 302
    assert "Bob Hale" in text(alice.get(page))

    # Before the deadline: no Open button, opening refused, no bid content anywhere.
    before = text(alice.get(page))
    assert "Open the bids</button>" not in before and "Bids are sealed until the tender deadline" in before
    refused = post(alice, f"{c['base']}/open", page)
    assert refused.status_code == 400
    assert "Tenders are open until 14 June 2024 at midday" in text(refused)
    assert "Answer of bidder" not in text(refused)
    with app.app_context():
        assert db.session.get(Competition, c["id"]).opened_at is None

    # After the deadline: open, an audited act with the count of bids.
    set_clock(app, AFTER_DEADLINE)
    assert "Open the bids" in text(alice.get(page))
    assert post(alice, f"{c['base']}/open", page).status_code == 302
    opened = events(app, "competition.opened")
    assert len(opened) == 1 and opened[0].data["bids"] == 3 and opened[0].actor_user_id == world["alice_user"]["id"]

    # Opened but undeclared: still no bid content, and the bidders are listed for the declaration.
    undeclared = text(alice.get(page))
    assert "Answer of bidder" not in undeclared and "See who bid (3 bidders)" in undeclared
    assert "Cedar Co-operative" in text(alice.get(f"{page}/bidders"))
    brightwater_page = bid_page(c, "Brightwater Research Ltd")
    assert alice.get(brightwater_page).status_code == 404  # the sealed gate: not before declaring

    # Bob declares a conflict: excluded. He never sees the bids, and the gate refuses him (audited).
    assert post(bob, f"{c['base']}/declare", page, {"conflicted": "yes"}).status_code == 400  # needs a description
    assert post(bob, f"{c['base']}/declare", page,
                {"conflicted": "yes", "declaration": "My brother works at Cedar Co-operative."}).status_code == 302
    assert "Answer of bidder" not in text(bob.get(page))
    for nothing_for_bob in (brightwater_page, f"{page}/matrix", f"{page}/ranking", f"{page}/bidders",
                            f"{brightwater_page}/moderation", f"{c['base']}/award"):
        assert bob.get(nothing_for_bob).status_code == 404, nothing_for_bob
    bid_id = c["bids"]["Brightwater Research Ltd"]
    with app.app_context():
        doc_id = db.session.scalar(select(BidDocument.document_id).where(BidDocument.bid_id == bid_id))
    assert bob.get(f"/documents/{doc_id}").status_code == 404
    assert events(app, "bid_content.refused")[-1].actor_user_id == world["bob_user"]["id"]
    with app.app_context():
        competition = db.session.get(Competition, c["id"])
        with pytest.raises(sealed.Sealed):
            sealed.require(db.session.get(User, world["bob_user"]["id"]), competition, what="test")
    quality = c["criteria"]["quality"]
    refused = post(bob, brightwater_page, page, {f"score_{quality}": "90", f"justification_{quality}": "Great."})
    assert refused.status_code == 400 and "You declared a conflict of interest" in text(refused)
    assert "Answer of bidder" not in text(refused)

    # Alice declares no conflict and sees the bids, answers and documents.
    assert post(alice, f"{c['base']}/declare", page, {"conflicted": "no"}).status_code == 302
    declared = text(alice.get(brightwater_page))
    assert "Answer of bidder" in declared and "method-statement.pdf" in declared
    assert "Make declaration" not in text(alice.get(page))  # declared: the form is gone
    download = alice.get(f"/documents/{doc_id}")
    assert download.status_code == 200 and download.data == PDF
    assert [e.data["conflicted"] for e in events(app, "panel.declared")] == [True, False]

    # A score needs a justification; what was typed is kept.
    refused = post(alice, brightwater_page, brightwater_page,
                   {f"score_{quality}": "73", f"justification_{quality}": "  "})
    assert refused.status_code == 400
    assert "Enter why you gave Approach and method this score" in text(refused) and 'value="73"' in text(refused)
    refused = post(alice, brightwater_page, brightwater_page,
                   {f"score_{quality}": "101", f"justification_{quality}": "Too keen."})
    assert refused.status_code == 400 and "Enter a score from 0 to 100" in text(refused)
    assert "Too keen." in text(refused)
    # Price is computed, never scored: the form has no field for it, and the service refuses it.
    with app.app_context():
        competition = db.session.get(Competition, c["id"])
        price = next(x for x in competition.criteria if x.kind == "price")
        with pytest.raises(ServiceError, match="Price is not scored by the panel"):
            evaluation.score(competition, db.session.get(User, world["alice_user"]["id"]),
                             db.session.get(Bid, bid_id), price, 50, "Cheap.")
        db.session.rollback()

    # Moderation waits for the panel's scores (Bob, excluded, is not waited for).
    moderation_page = bid_page(c, "Brightwater Research Ltd", "moderate")
    assert "Still to submit: Alice Moreno" in text(alice.get(moderation_page))
    refused = post(alice, moderation_page, moderation_page,
                   {f"score_{quality}": "80", f"justification_{quality}": "Agreed."})
    assert refused.status_code == 400 and "Still to submit: Alice Moreno" in text(refused)

    score_all(alice, c, SCORES)
    score_all(alice, c, SCORES, action="moderate")
    assert len(events(app, "bid.scored")) == 6 and len(events(app, "bid.moderated")) == 6
    assert [e.data["marks"] for e in events(app, "panel.scores_submitted")] == [6]

    # Results with their working; ranking.
    results_page = text(alice.get(f"{page}/ranking"))
    for working in ("lowest £8,000.00 ÷ this £10,000.00 × 40 = 32.00", "lowest £8,000.00 ÷ this £8,000.00 × 40 = 40.00",
                    "lowest £8,000.00 ÷ this £12,000.00 × 40 = 26.67", "80% × 40 = 32.00", "70% × 20 = 14.00"):
        assert working in results_page, working
    with app.app_context():
        rows = evaluation.results(db.session.get(Competition, c["id"]))
        ranking = [(r.supplier_name, r.total, r.rank) for r in rows]
    assert ranking == [("Brightwater Research Ltd", Decimal("78.00"), 1), ("Northern Policy CIC", Decimal("72.67"), 2),
                       ("Cedar Co-operative", Decimal("72.00"), 3)]

    # Awarding the second-ranked bid needs a reason; over the cap per call-off it is refused.
    northern = c["bids"]["Northern Policy CIC"]
    refused = post(alice, f"{c['base']}/award", page, {"bid_id": northern, "value": "12,000"})
    assert refused.status_code == 400 and "ranked 2, not first: enter why" in text(refused)
    assert 'value="12,000"' in text(refused)
    refused = post(alice, f"{c['base']}/award", page,
                   {"bid_id": northern, "value": "12,000", "not_best_reason": "Only bidder with local presence."})
    assert refused.status_code == 400 and "call-offs are capped at £11,000.00 each" in text(refused)
    with app.app_context():
        assert db.session.scalar(select(func.count(Award.id))) == 0
    assert outbox(app) == []

    # Award to the best bid, with standstill.
    assert post(alice, f"{c['base']}/award", page, {"bid_id": bid_id, "value": "10000"}).status_code == 302
    with app.app_context():
        award = db.session.scalar(select(Award).where(Award.competition_id == c["id"]))
        assert award.not_best_reason is None and award.confirmed_at is None and award.value_pence == 10_000_00
        assert award.standstill_ends_at == award.decided_at + timedelta(days=10)
        standstill_ends_at = award.standstill_ends_at
        assert db.session.get(Competition, c["id"]).stage(standstill_ends_at - timedelta(seconds=1)) == "standstill"
    # A second award is refused (the UNIQUE constraint behind the check).
    again = post(alice, f"{c['base']}/award", page, {"bid_id": northern, "value": "1000", "not_best_reason": "Again"})
    assert again.status_code == 400 and "The award has been decided" in text(again)

    # Letters to every bidder: their scores, the winner's name and scores, reasons, standstill end.
    letters = {m.to_address: m for m in outbox(app)}
    assert len(letters) == 3
    winner = letters[world["suppliers"]["Brightwater Research Ltd"]["user"]["email"]]
    assert winner.subject.startswith("Your bid is successful")
    assert "Total: 78.00 points out of 100, ranked 1 of 3" in winner.body
    assert "The standstill period ends on 27 June 2024 at 9:00am" in winner.body
    regret = letters[world["suppliers"]["Northern Policy CIC"]["user"]["email"]]
    assert regret.subject.startswith("Your bid was not successful")
    assert "to Brightwater Research Ltd" in regret.body
    assert "lowest £8,000.00 ÷ this £12,000.00 × 40 = 26.67" in regret.body  # its own price working
    assert "Total: 72.67 points out of 100, ranked 2 of 3" in regret.body
    assert "The scores of the successful bid, from Brightwater Research Ltd" in regret.body
    assert "Total: 78.00 points out of 100, ranked 1 of 3" in regret.body
    assert "Brightwater Research Ltd quality moderated 80: clear plan, good evidence" in regret.body  # the reasons
    assert "27 June 2024 at 9:00am" in regret.body
    assert "Cedar Co-operative quality" not in regret.body  # never another loser's scores
    assert "quality scored 80" not in regret.body  # the moderated scores and reasons, never an evaluator's
    award_event = events(app, "award.decided")[-1]
    assert award_event.data["letters"] == 3 and award_event.data["rank"] == 1

    # Confirmation: refused one second before the standstill ends, accepted when it has.
    set_clock(app, standstill_ends_at - timedelta(seconds=1))
    refused = post(alice, f"{c['base']}/award/confirm", page)
    assert refused.status_code == 400 and "The standstill period ends on 27 June 2024 at 9:00am" in text(refused)
    with app.app_context():
        assert db.session.scalar(select(func.count(CallOff.id))) == 0
        assert db.session.get(Allocation, world["allocation"]).committed_pence == 0
    set_clock(app, standstill_ends_at)
    confirmed = post(alice, f"{c['base']}/award/confirm", page)
    assert confirmed.status_code == 302
    with app.app_context():
        call_off = db.session.scalar(select(CallOff).where(CallOff.competition_id == c["id"]))
        assert call_off.reference == "CCIN-MC-2024-0001-C"
        assert call_off.value_pence == 10_000_00 and call_off.paid_pence == 0
        assert call_off.supplier_organisation_id == world["suppliers"]["Brightwater Research Ltd"]["org"]
        assert call_off.buyer_organisation_id == world["buyer_org"] and call_off.allocation_id == world["allocation"]
        assert (call_off.starts_on, call_off.ends_on) == (date(2024, 6, 28), date(2025, 6, 27))
        assert db.session.get(Allocation, world["allocation"]).committed_pence == 10_000_00
        assert db.session.get(Competition, c["id"]).stage(clock.now()) == "awarded"
        call_off_id = call_off.id
    assert confirmed.headers["Location"].endswith(f"/buyer/call-offs/{call_off_id}")
    assert len(events(app, "call_off.created")) == 1
    assert post(alice, f"{c['base']}/award/confirm", page).status_code == 400  # once only

    # Invoices: paid up to the value accepted, a penny more refused.
    co_page = f"/buyer/call-offs/{call_off_id}"
    assert post(alice, f"{co_page}/invoices", co_page,
                {"supplier_reference": "INV-001", "amount": "6,000", "paid_on": ["27", "6", "2024"]}).status_code == 302
    refused = post(alice, f"{co_page}/invoices", co_page,
                   {"supplier_reference": "INV-002", "amount": "4,000.01", "paid_on": ["27", "6", "2024"]})
    assert refused.status_code == 400 and "£4,000.00 is left to pay" in text(refused)
    assert 'value="INV-002"' in text(refused)
    assert post(alice, f"{co_page}/invoices", co_page,
                {"supplier_reference": "INV-002", "amount": "4,000", "paid_on": ["27", "6", "2024"]}).status_code == 302
    refused = post(alice, f"{co_page}/invoices", co_page,
                   {"supplier_reference": "INV-003", "amount": "0.01", "paid_on": ["27", "6", "2024"]})
    assert refused.status_code == 400 and "£0.00 is left to pay" in text(refused)
    future = post(alice, f"{co_page}/invoices", co_page,
                  {"supplier_reference": "INV-004", "amount": "1", "paid_on": ["1", "1", "2030"]})
    assert future.status_code == 400 and "The date paid must be today or in the past" in text(future)
    with app.app_context():
        item = db.session.get(CallOff, call_off_id)
        assert item.paid_pence == item.value_pence == 10_000_00
        assert db.session.scalar(select(func.sum(Invoice.amount_pence)).where(Invoice.call_off_id == call_off_id)) == item.paid_pence
    listing = text(alice.get("/buyer/call-offs"))
    assert "CCIN-MC-2024-0001-C" in listing and "£10,000.00" in listing and "£0.00" in listing
    assert len(events(app, "invoice.recorded")) == 2


def test_the_linear_price_formula_gives_exact_points(app, world):
    c = competition_with_bids(app, world, prices=(8_000_00, 10_000_00, 20_000_00), formula="linear_from_lowest",
                              declared=True)
    set_clock(app, AFTER_DEADLINE)
    assert post(world["alice"], f"{c['base']}/open", c["page"]).status_code == 302
    with app.app_context():
        points = evaluation.price_points(db.session.get(Competition, c["id"]))
    by_name = {name: points[bid][0] for name, bid in c["bids"].items()}
    assert by_name == {"Brightwater Research Ltd": Decimal("40.00"), "Cedar Co-operative": Decimal("30.00"),
                       "Northern Policy CIC": Decimal("0.00")}
    cedar = text(world["alice"].get(bid_page(c, "Cedar Co-operative")))
    assert "40 × (1 − (this £10,000.00 − lowest £8,000.00) ÷ lowest £8,000.00) = 30.00" in cedar
    northern = text(world["alice"].get(bid_page(c, "Northern Policy CIC")))
    assert "= 0.00 (the formula gives less than 0, so 0)" in northern


def test_the_lowest_price_ratio_for_two_bids(app, world):
    c = competition_with_bids(app, world, prices=(8_000_00, 10_000_00), declared=True)
    set_clock(app, AFTER_DEADLINE)
    with app.app_context():
        points = evaluation.price_points(db.session.get(Competition, c["id"]))
    assert [points[c["bids"][n]] for n in ("Brightwater Research Ltd", "Cedar Co-operative")] == [
        (Decimal("40.00"), "lowest £8,000.00 ÷ this £8,000.00 × 40 = 40.00"),
        (Decimal("32.00"), "lowest £8,000.00 ÷ this £10,000.00 × 40 = 32.00")]


def test_without_standstill_the_award_is_confirmed_at_once_and_commits_the_budget(app, world):
    alice = world["alice"]
    c = competition_with_bids(app, world, standstill=False)
    open_and_declare(app, world, c)
    score_all(alice, c, SCORES)
    score_all(alice, c, SCORES, action="moderate")
    # The second-ranked bid, with a reason, and a term the buyer chooses.
    northern = c["bids"]["Northern Policy CIC"]
    response = post(alice, f"{c['base']}/award", c["page"],
                    {"bid_id": northern, "value": "11,000", "not_best_reason": "Best social value for Plymouth.",
                     "starts_on": ["1", "7", "2024"], "ends_on": ["31", "3", "2025"]})
    assert response.status_code == 302, text(response)
    with app.app_context():
        award = db.session.scalar(select(Award).where(Award.competition_id == c["id"]))
        assert award.standstill_ends_at is None and award.confirmed_at == award.decided_at
        assert award.not_best_reason == "Best social value for Plymouth."
        call_off = db.session.scalar(select(CallOff).where(CallOff.award_id == award.id))
        assert (call_off.value_pence, call_off.starts_on, call_off.ends_on) == (11_000_00, date(2024, 7, 1), date(2025, 3, 31))
        assert db.session.get(Allocation, world["allocation"]).committed_pence == 11_000_00
    letter = next(m for m in outbox(app) if m.subject.startswith("Your bid was not successful"))
    assert "The reason: Best social value for Plymouth." in letter.body and "no standstill period" in letter.body


def test_a_refused_award_says_how_much_is_left_and_writes_nothing(app, world):
    alice = world["alice"]
    # 25,500 of 30,000 already committed: £4,500 left, not enough for £10,000.
    with app.app_context():
        db.session.get(Allocation, world["allocation"]).committed_pence = 25_500_00
        db.session.commit()
    c = competition_with_bids(app, world, standstill=False)
    open_and_declare(app, world, c)
    score_all(alice, c, SCORES)
    score_all(alice, c, SCORES, action="moderate")
    refused = post(alice, f"{c['base']}/award", c["page"], {"bid_id": c["bids"]["Brightwater Research Ltd"], "value": "10,000"})
    assert refused.status_code == 400
    assert "There is not enough left in “Community wealth building lab”: £4,500.00 remains" in text(refused)
    with app.app_context():
        assert db.session.scalar(select(func.count(Award.id))) == 0
        assert db.session.scalar(select(func.count(CallOff.id))) == 0
        assert db.session.get(Allocation, world["allocation"]).committed_pence == 25_500_00
    assert outbox(app) == []


def test_confirmation_refused_when_the_budget_was_spent_during_standstill(app, world):
    alice = world["alice"]
    c = competition_with_bids(app, world)
    open_and_declare(app, world, c)
    score_all(alice, c, SCORES)
    score_all(alice, c, SCORES, action="moderate")
    assert post(alice, f"{c['base']}/award", c["page"],
                {"bid_id": c["bids"]["Brightwater Research Ltd"], "value": "10,000"}).status_code == 302
    with app.app_context():
        award = db.session.scalar(select(Award))
        ends = award.standstill_ends_at
        # Other call-offs used the allocation meanwhile: £2,000 left.
        db.session.get(Allocation, world["allocation"]).committed_pence = 28_000_00
        db.session.commit()
    set_clock(app, ends + timedelta(hours=1))
    refused = post(alice, f"{c['base']}/award/confirm", c["page"])
    assert refused.status_code == 400 and "£2,000.00 remains, and this call-off needs £10,000.00" in text(refused)
    with app.app_context():
        assert db.session.scalar(select(Award)).confirmed_at is None
        assert db.session.scalar(select(func.count(CallOff.id))) == 0
        assert db.session.get(Allocation, world["allocation"]).committed_pence == 28_000_00


def test_close_with_no_award_needs_a_reason_and_tells_the_bidders(app, world):
    alice = world["alice"]
    c = competition_with_bids(app, world)
    open_and_declare(app, world, c)
    refused = post(alice, f"{c['base']}/no-award", c["page"], {"reason": ""})
    assert refused.status_code == 400 and "Enter why there is no award" in text(refused)
    assert post(alice, f"{c['base']}/no-award", c["page"],
                {"reason": "No bid met the brief."}).status_code == 302
    with app.app_context():
        assert db.session.get(Competition, c["id"]).stage(clock.now()) == "no_award"
    assert len(outbox(app)) == 3 and all("No bid met the brief." in m.body for m in outbox(app))
    assert events(app, "competition.closed_without_award")[0].data["bids"] == 3
    refused = post(alice, f"{c['base']}/award", c["page"], {"bid_id": c["bids"]["Cedar Co-operative"], "value": "1"})
    assert refused.status_code == 400 and "closed with no award" in text(refused)


def test_only_the_panel_of_the_buying_organisation_acts(app, world, factory, signed_in):
    c = competition_with_bids(app, world, panel=())
    set_clock(app, AFTER_DEADLINE)
    # Bob is a buyer of the organisation but not on the panel, and did not create the competition.
    refused = post(world["bob"], f"{c['base']}/open", c["page"])
    assert refused.status_code == 400 and "Only members of this competition’s evaluation panel" in text(refused)
    assert "Add a colleague to the panel" not in text(world["bob"].get(c["page"]))
    refused = post(world["bob"], f"{c['base']}/panel", c["page"], {"user_id": world["bob_user"]["id"]})
    assert refused.status_code == 400 and "Only the person who created this competition or a panel member" in text(refused)
    # The creator chooses the panel; a colleague must be chosen, and only once.
    alice = world["alice"]
    refused = post(alice, f"{c['base']}/panel", c["page"], {"user_id": ""})
    assert refused.status_code == 400 and "Choose a colleague to add to the panel" in text(refused)
    assert post(alice, f"{c['base']}/panel", c["page"], {"user_id": world["bob_user"]["id"]}).status_code == 302
    refused = post(alice, f"{c['base']}/panel", c["page"], {"user_id": world["bob_user"]["id"]})
    assert refused.status_code == 400 and "Bob Hale is already on the panel" in text(refused)
    assert events(app, "panel.member_added")[-1].data["user_id"] == world["bob_user"]["id"]
    # Another organisation's buyer: not found, whatever the page.
    other, _ = signed_in("buyer", organisation_id=factory.organisation(name="Oldham Borough"))
    assert other.get(c["page"]).status_code == 404
    assert other.get("/buyer/call-offs/1").status_code == 404
    # Suppliers never reach the buyers' pages.
    supplier_browser, _ = signed_in("supplier")
    assert supplier_browser.get(c["page"]).status_code == 403


def test_the_database_refuses_a_second_award_and_the_refusal_is_a_message(app, world):
    c = competition_with_bids(app, world, declared=True)
    with app.app_context():
        decided_at = clock.now()
        for name in ("Brightwater Research Ltd", "Cedar Co-operative"):
            award = Award(competition_id=c["id"], bid_id=c["bids"][name], value_pence=1_000_00, decided_at=decided_at,
                          decided_by_id=world["alice_user"]["id"])
            if name.startswith("Brightwater"):
                evaluation.insert_once(award, "This competition already has an award")
            else:
                with pytest.raises(ServiceError, match="This competition already has an award"):
                    evaluation.insert_once(award, "This competition already has an award")
        db.session.commit()  # the first award stands: the refused insert was only its savepoint
        assert db.session.scalar(select(func.count(Award.id)).where(Award.competition_id == c["id"])) == 1


def test_default_call_off_term_is_twelve_months_from_tomorrow(app):
    with app.app_context():
        clock.set_simulated(clock.parse_london("2024-02-28T10:00"), frozen=True)
        assert evaluation.default_term() == (date(2024, 2, 29), date(2025, 2, 28))
        clock.set_simulated(clock.parse_london("2025-01-30T10:00"), frozen=True)
        assert evaluation.default_term() == (date(2025, 1, 31), date(2026, 1, 30))
        assert evaluation.term_end(date(2023, 3, 1)) == date(2024, 2, 29)
        db.session.rollback()
