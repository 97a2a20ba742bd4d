"""The whole mini-competition journey through the pages, as each role would live it:
publish, clarify, bid, resubmit, deadline, open, declare, score, moderate, award with standstill,
letters, call-off, invoice. Each step's rules are tested at their boundaries in their own files."""
from __future__ import annotations

import re

from sqlalchemy import func, select

from dps.extensions import db
from dps.models import Allocation, CallOff, Competition, Invoice
from tests.applying import make_dps
from tests.conftest import outbox, set_clock, sign_in
from tests.test_competitions import admit, allocation, form_data
from tests.test_evaluation import post


def text(response) -> str:
    return response.get_data(as_text=True)


def test_from_publication_to_the_last_invoice(app, factory, signed_in):
    dps = make_dps(app)
    council = factory.organisation(name="Rochdale Borough Council")
    buyer, buyer_user = signed_in("buyer", organisation_id=council, name="Priya Shah", email="priya@rochdale.example.org")
    budget = allocation(app, council)
    a = admit(app, factory, dps["agreement"], dps["lot1"], "Brightwater Research Ltd", "amara@brightwater.example.org")
    b = admit(app, factory, dps["agreement"], dps["lot1"], "Co-op Futures CIC", "ben@coopfutures.example.org")
    supplier_a, supplier_b = app.test_client(), app.test_client()
    sign_in(supplier_a, a["email"])
    sign_in(supplier_b, b["email"])

    # The buyer creates the competition (with a voluntary standstill) and publishes it.
    created = buyer.submit("/buyer/competitions/new",
                           form_data(dps["lot1"], budget, standstill="yes", panel=[str(buyer_user["id"])]))
    assert created.status_code == 302, text(created)
    competition_id = int(re.search(r"/buyer/competitions/(\d+)", created.headers["Location"]).group(1))
    page = f"/buyer/competitions/{competition_id}"
    assert buyer.submit(f"{page}/publish", page=page).status_code == 302
    invited = {m.to_address for m in outbox(app) if "Invitation to tender" in m.subject}
    assert invited == {a["email"], b["email"]}
    with app.app_context():
        competition = db.session.get(Competition, competition_id)
        criteria = {c.kind: c.id for c in competition.criteria}
    base = f"/supplier/competitions/{competition_id}"

    # Supplier A asks a question privately; the buyer answers everyone without naming A.
    assert supplier_a.submit(f"{base}/view", page="/supplier/competitions").status_code == 302
    asked = supplier_a.submit(f"{base}/clarifications", {"question": "Is there existing spending data to use?"})
    assert asked.status_code == 302, text(asked)
    with app.app_context():
        from dps.models import Clarification

        clarification_id = db.session.scalar(select(Clarification.id))
    prefix = f"c{clarification_id}"
    answered = post(buyer, f"{page}/clarifications/{clarification_id}/answer", page,
                    {f"{prefix}-published_question": "Is there existing spending data to use?",
                     f"{prefix}-answer": "Yes: three years of procurement spend, shared at the start."}, prefix=prefix)
    assert answered.status_code == 302, text(answered)
    to_b = [m for m in outbox(app) if m.to_address == b["email"] and "three years" in m.body]
    assert to_b and "Brightwater" not in to_b[0].body

    # Both bid; A resubmits with a better price before the deadline.
    assert supplier_b.submit(f"{base}/view", page="/supplier/competitions").status_code == 302
    for browser, price in ((supplier_a, "14,000"), (supplier_b, "12,000")):
        response = browser.submit(f"{base}/bid", {"price": price, f"criterion_{criteria['quality']}": "A clear plan.",
                                                  f"criterion_{criteria['social_value']}": "Local apprentices.",
                                                  "action": "submit"}, content_type="multipart/form-data")
        assert response.status_code == 302, text(response)
    assert supplier_a.submit(f"{base}/withdraw", page=f"{base}/bid").status_code == 302
    resubmitted = supplier_a.submit(f"{base}/bid", {"price": "11,500", f"criterion_{criteria['quality']}": "A clearer plan.",
                                                    f"criterion_{criteria['social_value']}": "Local apprentices.",
                                                    "action": "submit"}, content_type="multipart/form-data")
    assert resubmitted.status_code == 302
    receipts = [m for m in outbox(app) if m.to_address == a["email"] and m.subject.startswith("Bid received")]
    assert len(receipts) == 2
    # Before the deadline the buyer sees who submitted, never what.
    before = text(buyer.get(page))
    assert "Brightwater Research Ltd" in before and "11,500" not in before and "clearer plan" not in before

    # After the deadline: open, declare, score, moderate.
    set_clock(app, "2024-06-17T12:00")
    late = supplier_b.submit(f"{base}/bid", {"price": "1", "action": "submit"}, content_type="multipart/form-data")
    assert "closed" in text(late).lower()
    evaluation = f"{page}/evaluation"
    assert post(buyer, f"{page}/open", evaluation).status_code == 302
    assert post(buyer, f"{page}/declare", evaluation, {"conflicted": "no"}).status_code == 302
    with app.app_context():
        from dps.models import Bid

        bids = {bid.organisation_id: bid.id for bid in db.session.scalars(select(Bid).where(Bid.competition_id == competition_id))}
    scores = {a["organisation_id"]: (80, 70), b["organisation_id"]: (60, 60)}
    for sheet in ("", "/moderation"):  # each bid's scoring form, then its moderation form
        for org, (quality, social) in scores.items():
            bid_page = f"{evaluation}/bids/{bids[org]}{sheet}"
            response = post(buyer, bid_page, bid_page, {
                f"score_{criteria['quality']}": str(quality),
                f"justification_{criteria['quality']}": "Evidence in the answer.",
                f"score_{criteria['social_value']}": str(social),
                f"justification_{criteria['social_value']}": "Evidence in the answer."})
            assert response.status_code == 302, text(response)
    results = text(buyer.get(f"{evaluation}/ranking"))
    assert "11,500" in results  # the bids are open to the declared panel now

    # Award to A (best and cheapest), with standstill; letters to both bidders.
    awarded = post(buyer, f"{page}/award", evaluation, {"bid_id": bids[a["organisation_id"]], "value": "11,500"})
    assert awarded.status_code == 302, text(awarded)
    letters = [m for m in outbox(app) if m.subject.startswith(("Your bid is", "Your bid was")) and m.to_address in (a["email"], b["email"])]
    assert {m.to_address for m in letters} == {a["email"], b["email"]}
    assert all("Brightwater Research Ltd" in m.body for m in letters)
    assert post(buyer, f"{page}/award/confirm", evaluation).status_code == 400  # standstill running

    # After standstill: confirm, the call-off is created and the budget committed; invoices.
    set_clock(app, "2024-07-10T09:00")
    confirmed = post(buyer, f"{page}/award/confirm", evaluation)
    assert confirmed.status_code == 302, text(confirmed)
    with app.app_context():
        call_off = db.session.scalar(select(CallOff).where(CallOff.competition_id == competition_id))
        assert call_off.value_pence == 11_500_00
        assert db.session.get(Allocation, budget).committed_pence == 11_500_00
        call_off_id = call_off.id
    co_page = f"/buyer/call-offs/{call_off_id}"
    paid = post(buyer, f"{co_page}/invoices", co_page,
                {"supplier_reference": "BW-001", "amount": "11,500", "paid_on": ["9", "7", "2024"]})
    assert paid.status_code == 302, text(paid)
    with app.app_context():
        assert db.session.scalar(select(func.sum(Invoice.amount_pence))) == 11_500_00
        assert db.session.get(CallOff, call_off_id).paid_pence == 11_500_00
