"""Evaluation by a panel of several evaluators, at real size (issue 11, items 2-4 and 6).

A competition with three panel members (one conflicted), 12 bids and three criteria (quality,
social value, price) is driven through the pages as each member: blind scoring (a member sees
nobody's marks before submitting their own), progress, moderation with every evaluator's marks
side by side and a departure reason (refused without it, next to its field), the ranking with
its working, the award with standstill and its letters (the moderated scores only), and the
confirmation. Then: each evaluation page makes the same number of queries with 10 and 200 bids
and shows a page of 50; the ranking's SQL arithmetic is the Python's (and the published
formula's, half up to 2 places); the departure rule at its edges; migration 0009 on data.
"""
from __future__ import annotations

import html
import re
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlalchemy import func, select

from dps import clock
from dps.extensions import db
from dps.models import (Allocation, Award, Bid, CallOff, Competition, ModeratedScore, PanelMember, Score,
                        SealedReadRefusal)
from dps.services import evaluation
from dps.services.evaluation import ranking
from tests.applying import make_dps
from tests.competing import (
    AFTER_DEADLINE,
    criterion_ids,
    events,
    make_allocation,
    make_bid,
    make_competition,
    many_bids,
    mark_everything,
    post,
)
from tests.conftest import count_queries, outbox, set_clock

CRITERIA = (("quality", "Quality of the method", 40), ("social_value", "Social value", 20), ("price", "Price", 40))
BIDDERS = [f"{name} Ltd" for name in ("Alder", "Birch", "Cedar", "Damson", "Elm", "Fir", "Gorse", "Hazel", "Ivy",
                                      "Juniper", "Kale", "Larch")]


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def plain(response) -> str:
    """The page's words, tags removed and spaces tidied."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text(response)))


def field_error(page: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error"[^>]*>(.*?)</p>', page, re.S)
    assert match, f"no error shown with {field_id}"
    return re.sub(r"<[^>]+>", "", match.group(1)).replace("Error:", "").strip()


# The panel's marks: quality and social value, per bidder, by Alice and by Bob.
def alice_marks(n: int) -> tuple[int, int]:
    return 50 + 3 * n, 60 + (n % 4) * 5


def bob_marks(n: int) -> tuple[int, int]:
    quality, social = alice_marks(n)
    return quality + 10, social


@pytest.fixture
def panel_world(app, factory, signed_in):
    dps = make_dps(app)
    buyer_org = factory.organisation(name="Plymouth City Council")
    alice, alice_user = signed_in("buyer", organisation_id=buyer_org, name="Alice Moreno")
    bob, bob_user = signed_in("buyer", organisation_id=buyer_org, name="Bob Hale")
    carol, carol_user = signed_in("buyer", organisation_id=buyer_org, name="Carol Singh")
    allocation = make_allocation(app, buyer_org, amount_pence=40_000_00, cap_pence=None)
    competition = make_competition(app, lot_id=dps["lot1"], buyer_organisation_id=buyer_org,
                                   creator_id=alice_user["id"], allocation_id=allocation, criteria=CRITERIA)
    bids, emails = {}, {}
    for n, name in enumerate(BIDDERS):
        org = factory.organisation(kind="supplier", membership=None, name=name)
        emails[name] = factory.user("supplier", organisation_id=org)["email"]
        # Prices from £9,000 up, in awkward steps, so the price formula's rounding shows.
        bids[name] = make_bid(app, competition, org, 9_000_00 + 333_33 * ((n * 5) % 12))
    page = f"/buyer/competitions/{competition}/evaluation"
    return {"alice": alice, "bob": bob, "carol": carol, "alice_user": alice_user, "bob_user": bob_user,
            "carol_user": carol_user, "competition": competition, "bids": bids, "emails": emails,
            "criteria": criterion_ids(app, competition), "allocation": allocation, "page": page,
            "base": f"/buyer/competitions/{competition}"}


def marks_data(w, quality: int, social: int, why: str) -> dict:
    q, s = w["criteria"]["quality"], w["criteria"]["social_value"]
    return {f"score_{q}": str(quality), f"justification_{q}": f"{why}: quality {quality}",
            f"score_{s}": str(social), f"justification_{s}": f"{why}: social value {social}"}


def score_bid(w, who: str, name: str, quality: int, social: int):
    page = f"{w['page']}/bids/{w['bids'][name]}"
    return post(w[who], page, page, marks_data(w, quality, social, f"{who.upper()}-MARK {name}"))


def moderation_page(w, name: str) -> str:
    return f"{w['page']}/bids/{w['bids'][name]}/moderation"


def test_three_members_one_conflicted_twelve_bids_blind_scoring_moderation_award_and_confirmation(app, panel_world):
    w = panel_world
    alice, bob, carol, page = w["alice"], w["bob"], w["carol"], w["page"]

    # The creator chooses the panel; the bids are opened after the deadline, then each declares.
    for who in ("alice_user", "bob_user", "carol_user"):
        assert post(alice, f"{w['base']}/panel", page, {"user_id": w[who]["id"]}).status_code == 302
    set_clock(app, AFTER_DEADLINE)
    assert post(bob, f"{w['base']}/open", page).status_code == 302
    assert "See who bid (12 bidders)" in plain(carol.get(page))
    assert "Larch Ltd" in plain(carol.get(f"{page}/bidders"))  # names, for declaring
    assert post(alice, f"{w['base']}/declare", page, {"conflicted": "no"}).status_code == 302
    assert post(bob, f"{w['base']}/declare", page, {"conflicted": "no"}).status_code == 302
    assert post(carol, f"{w['base']}/declare", page,
                {"conflicted": "yes", "declaration": "My partner is a director of Elm Ltd."}).status_code == 302

    # Carol, conflicted, sees nothing of the bids and does nothing; every attempt is audited.
    first = f"{page}/bids/{w['bids']['Alder Ltd']}"
    overview = plain(carol.get(page))
    assert "You declared a conflict of interest, so you do not see or score the bids" in overview
    assert "Answer of bidder" not in overview and "Alder Ltd" not in overview
    refused_before = len(events(app, "bid_content.refused"))

    def carols_refusals() -> int:
        with app.app_context():
            return db.session.scalar(select(func.coalesce(func.sum(SealedReadRefusal.count), 0)).where(
                SealedReadRefusal.user_id == w["carol_user"]["id"]))

    counted_before = carols_refusals()
    for url in (first, f"{first}/moderation", f"{page}/matrix", f"{page}/ranking", f"{w['base']}/award",
                f"{page}/bidders"):
        response = carol.get(url)
        assert response.status_code == 404, url
        assert "Answer of bidder" not in text(response)
    # The bidders' names are not sealed: 5 refusals, counted; the log has one event for them at
    # most (the first of Carol's refusals for this competition this hour), not five.
    assert len(events(app, "bid_content.refused")) <= refused_before + 1
    assert carols_refusals() == counted_before + 5
    refused = score_bid(w, "carol", "Alder Ltd", 90, 90)
    assert refused.status_code == 400 and "You declared a conflict of interest" in text(refused)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Score)) == 0

    # Progress before anyone scores: 0 of 24 marks each (12 bids × 2 scored criteria).
    overview = plain(alice.get(page))
    assert "Alice Moreno (you) No conflict" in overview and "0 of 24 marks" in overview
    assert "Carol Singh Conflict of interest: excluded My partner is a director of Elm Ltd. Takes no part" in overview

    # Blind scoring: Alice marks the first bid; Bob's page of that bid shows none of it.
    assert score_bid(w, "alice", "Alder Ltd", *alice_marks(0)).status_code == 302
    bob_first = text(bob.get(first))
    assert "Answer of bidder" in bob_first  # Bob sees the bid itself
    assert "ALICE-MARK" not in bob_first and "Alice Moreno" not in bob_first
    bob_matrix = plain(bob.get(f"{page}/matrix"))
    assert "Alder Ltd £" in bob_matrix and "Not scored Marked by 1 of 2" in bob_matrix
    assert "Scored by you 50% Marked by 1 of 2" in plain(alice.get(f"{page}/matrix"))
    assert "2 of 24 marks" in plain(bob.get(page))  # who has scored what: counts, never marks

    # Alice marks every bid, one form per bid, following "next bid" through the list.
    for n, name in enumerate(BIDDERS[1:], start=1):
        response = score_bid(w, "alice", name, *alice_marks(n))
        assert response.status_code == 302, text(response)
        expected = (f"/bids/{w['bids'][BIDDERS[n + 1]]}" if n + 1 < len(BIDDERS) else "/evaluation/matrix")
        assert response.headers["Location"].endswith(expected)
    submitted = events(app, "panel.scores_submitted")
    assert [e.data["marks"] for e in submitted] == [24] and submitted[0].actor_user_id == w["alice_user"]["id"]
    assert "Submitted" in plain(alice.get(page)) and "24 of 24 marks" in plain(alice.get(page))
    # Submitted marks are fixed.
    changed = score_bid(w, "alice", "Alder Ltd", 99, 99)
    assert changed.status_code == 400 and "You submitted your scores on 17 June 2024" in text(changed)

    # Bob marks half: Alice (submitted) still sees nothing of his, because he has not submitted.
    for n, name in enumerate(BIDDERS[:6]):
        assert score_bid(w, "bob", name, *bob_marks(n)).status_code == 302
    assert "BOB-MARK" not in text(alice.get(first))
    assert "ALICE-MARK" not in text(bob.get(first))
    # Nor is moderation open: it says who is still to submit, and refuses.
    assert "Still to submit: Bob Hale" in plain(alice.get(moderation_page(w, "Alder Ltd")))
    refused = post(alice, moderation_page(w, "Alder Ltd"), page, marks_data(w, 60, 60, "Agreed"))
    assert refused.status_code == 400 and "Still to submit: Bob Hale" in text(refused)
    assert "BOB-MARK" not in text(refused)

    for n, name in enumerate(BIDDERS[6:], start=6):
        assert score_bid(w, "bob", name, *bob_marks(n)).status_code == 302
    # Both submitted: each sees the other's marks and justifications now.
    assert "ALICE-MARK Alder Ltd: quality 50" in text(bob.get(first))
    assert "BOB-MARK Alder Ltd: quality 60" in text(alice.get(first))
    assert "Every evaluator has submitted" in plain(alice.get(page))
    assert "All submitted" in plain(bob.get(f"{page}/matrix"))

    # Moderation: every evaluator's mark side by side, then the consensus.
    sheet = plain(alice.get(moderation_page(w, "Alder Ltd")))
    for seen in ("Alice Moreno 50%", "ALICE-MARK Alder Ltd: quality 50", "Bob Hale 60%",
                 "BOB-MARK Alder Ltd: quality 60", "Range and mean 50–60% Mean 55%"):
        assert seen in sheet, seen
    assert "Carol Singh" not in sheet
    q, s = w["criteria"]["quality"], w["criteria"]["social_value"]
    # 85 is outside the evaluators' 50 and 60: refused without a reason, next to that field,
    # keeping what was typed and saving nothing.
    typed = {f"score_{q}": "85", f"justification_{q}": "Outstanding method, agreed in discussion.",
             f"score_{s}": "60", f"justification_{s}": "Local apprentices."}
    refused = post(alice, moderation_page(w, "Alder Ltd"), page, typed)
    assert refused.status_code == 400
    refused_page = text(refused)
    assert field_error(refused_page, f"departure_{q}") == (
        "The panel’s score of 85 for Quality of the method is outside the evaluators’ marks (50 to 60): "
        "enter why the panel agreed it")
    assert 'value="85"' in refused_page and "Outstanding method, agreed in discussion." in refused_page
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ModeratedScore)) == 0
    typed[f"departure_{q}"] = "The references, read at moderation, show the method already works in Plymouth."
    assert post(alice, moderation_page(w, "Alder Ltd"), page, typed).status_code == 302
    moderated = events(app, "bid.moderated")
    by_criterion = {e.data["criterion_id"]: e.data for e in moderated}
    assert by_criterion[q]["marks"] == [50, 60] and by_criterion[q]["departure"].startswith("outside")
    assert by_criterion[q]["after"]["departure_reason"].startswith("The references")
    assert by_criterion[s]["departure"] is None and by_criterion[s]["after"]["departure_reason"] is None

    # The rest: Bob and Alice share the moderation, agreeing Alice's marks (5 from the mean of
    # 10 apart: no reason needed).
    consensus = {"Alder Ltd": (85, 60)}
    for n, name in enumerate(BIDDERS[1:], start=1):
        who = "bob" if n % 2 else "alice"
        consensus[name] = alice_marks(n)
        response = post(w[who], moderation_page(w, name), page, marks_data(w, *alice_marks(n), "Agreed"))
        assert response.status_code == 302, text(response)
    assert "24 of 24 scores moderated" in plain(alice.get(page))

    # The ranking with its working, worked out here from the published rules.
    with app.app_context():
        prices = {name: db.session.get(Bid, w["bids"][name]).price_pence for name in BIDDERS}
    lowest = min(prices.values())

    def half_up(value: Decimal) -> Decimal:
        return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    totals = {name: half_up(Decimal(consensus[name][0]) * 40 / 100) + half_up(Decimal(consensus[name][1]) * 20 / 100)
              + half_up(Decimal(lowest) / Decimal(prices[name]) * 40) for name in BIDDERS}
    order = sorted(BIDDERS, key=lambda name: (-totals[name], name))
    ranking_page = plain(alice.get(f"{page}/ranking"))
    positions = [ranking_page.index(f"{name} Award to this bid") for name in order]
    assert positions == sorted(positions), "the ranking is best first"
    assert "85% × 40 = 34.00" in ranking_page
    assert f"lowest £{lowest / 100:,.2f} ÷ this £{lowest / 100:,.2f} × 40 = 40.00" in ranking_page
    assert f"Total {totals[order[0]]:.2f}" in ranking_page

    # The award, to the best bid, from the overview; standstill; one letter per bidder.
    best = order[0]
    assert f"Ranked first: {best}, {totals[best]:.2f} points" in plain(alice.get(page))
    assert post(carol, f"{w['base']}/award", page, {"bid_id": w["bids"][best], "value": "9,000"}).status_code == 404
    with app.app_context():
        value = db.session.get(Bid, w["bids"][best]).price_pence
    decided = post(alice, f"{w['base']}/award", page, {"bid_id": w["bids"][best], "value": f"{value / 100:.2f}"})
    assert decided.status_code == 302, text(decided)
    with app.app_context():
        award = db.session.scalar(select(Award))
        ends = award.standstill_ends_at
        assert award.bid_id == w["bids"][best] and ends == award.decided_at + timedelta(days=10)
    letters = {m.to_address: m for m in outbox(app) if m.subject.startswith("Your bid")}
    assert len(letters) == 12
    winner = letters[w["emails"][best]]
    assert winner.subject.startswith("Your bid is successful") and "ranked 1 of 12" in winner.body
    loser = order[-1]
    regret = letters[w["emails"][loser]]
    assert regret.subject.startswith("Your bid was not successful")
    assert f"Total: {totals[loser]:.2f} points out of 100, ranked 12 of 12" in regret.body
    assert f"The scores of the successful bid, from {best}" in regret.body
    assert f"Total: {totals[best]:.2f} points out of 100, ranked 1 of 12" in regret.body
    assert f"{consensus[loser][0]}% × 40" in regret.body and "Why: Agreed: quality" in regret.body
    assert "The standstill period ends on 27 June 2024 at 9:00am" in regret.body
    for letter in letters.values():  # the panel's scores and reasons, never one evaluator's
        assert "ALICE-MARK" not in letter.body and "BOB-MARK" not in letter.body
        assert "references, read at moderation" not in letter.body  # the departure reason is for the record
    assert "85% × 40 = 34.00" in letters[w["emails"]["Alder Ltd"]].body  # the moderated score

    # Confirmation after the standstill, by another evaluator; never by Carol.
    set_clock(app, ends)
    assert post(carol, f"{w['base']}/award/confirm", page).status_code == 400
    confirmed = post(bob, f"{w['base']}/award/confirm", page)
    assert confirmed.status_code == 302, text(confirmed)
    with app.app_context():
        call_off = db.session.scalar(select(CallOff))
        assert call_off.value_pence == value and call_off.award_id == award.id
        assert db.session.get(Allocation, w["allocation"]).committed_pence == value
        assert db.session.get(Competition, w["competition"]).stage(clock.now()) == "awarded"
    assert f"Call-off contract: {call_off.reference}" in plain(alice.get(page))


def test_each_evaluation_page_makes_the_same_queries_with_10_and_200_bids(app, factory, signed_in):
    """Every page of the evaluation, at 10 bids and at 200 (the same state: two evaluators
    submitted, everything moderated, the award to decide): the same number of queries, and never
    more than a page of bids (50; 20 for the ranking, whose bids are blocks of rows)."""
    dps = make_dps(app)
    buyer_org = factory.organisation(name="Plymouth City Council")
    alice, alice_user = signed_in("buyer", organisation_id=buyer_org, name="Alice Moreno")
    bob_user = factory.user("buyer", organisation_id=buyer_org, name="Bob Hale")
    allocation = make_allocation(app, buyer_org, amount_pence=500_000_00, cap_pence=None)
    sizes = {}
    for number, count in ((1, 10), (2, 200)):
        competition = make_competition(app, lot_id=dps["lot1"], buyer_organisation_id=buyer_org,
                                       creator_id=alice_user["id"], allocation_id=allocation, number=number,
                                       criteria=CRITERIA)
        bids = many_bids(app, competition, count)
        with app.app_context():
            c = db.session.get(Competition, competition)
            c.opened_at, c.opened_by_id = clock.parse_london(AFTER_DEADLINE), alice_user["id"]
            for user in (alice_user, bob_user):
                db.session.add(PanelMember(competition_id=competition, user_id=user["id"], conflicted=False,
                                           declared_at=c.opened_at, declaration="No conflict."))
            db.session.commit()
        mark_everything(app, competition, [alice_user["id"], bob_user["id"]])
        with app.app_context():
            second = evaluation.results(db.session.get(Competition, competition))[1].bid.id
        base = f"/buyer/competitions/{competition}"
        sizes[count] = {
            "overview": f"{base}/evaluation", "who bid": f"{base}/evaluation/bidders",
            "matrix": f"{base}/evaluation/matrix", "a bid": f"{base}/evaluation/bids/{bids[3]}",
            "its moderation": f"{base}/evaluation/bids/{bids[3]}/moderation",
            "ranking": f"{base}/evaluation/ranking", "the award": f"{base}/award?bid={second}"}
    set_clock(app, AFTER_DEADLINE)

    counted = {}
    for count, urls in sizes.items():
        for name, url in urls.items():
            assert alice.get(url).status_code == 200, url  # warm: the clock, the session
            with count_queries(app) as queries:
                response = alice.get(url)
            assert response.status_code == 200, url
            counted[(name, count)] = queries()
            if name in ("who bid", "matrix", "ranking"):
                size = 20 if name == "ranking" else 50
                shown = f"Showing 1 to {size} of 200" if count == 200 else f"{count} bid"
                assert shown in plain(response), (name, count)
    for name in sizes[10]:
        assert counted[(name, 10)] == counted[(name, 200)], (name, counted[(name, 10)], counted[(name, 200)])

    # The next page is a keyset page of the same list, in the same number of queries (plus the
    # one that asks whether there is a page before it).
    first = text(alice.get(sizes[200]["matrix"]))
    following = re.search(r'href="([^"]*matrix\?after=[^"]+)"', first).group(1).replace("&amp;", "&")
    with count_queries(app) as queries:
        response = alice.get(following)
    assert "Showing 51 to 100 of 200 bids" in plain(response)
    assert queries() == counted[("matrix", 200)] + 1


def test_the_ranking_in_sql_is_the_published_arithmetic(app, factory):
    """Prices chosen to land on halves and thirds: the database's ranking, the Python working
    and the published rule (Decimal, half up to 2 places) agree for every bid, both formulas."""
    dps = make_dps(app)
    buyer_org = factory.organisation(name="Plymouth City Council")
    buyer = factory.user("buyer", organisation_id=buyer_org)
    allocation = make_allocation(app, buyer_org, amount_pence=500_000_00, cap_pence=None)
    prices = [8_000_00, 8_000_01, 9_999_99, 12_000_00, 16_000_00, 16_000_01, 24_000_00, 7_999_99 * 3, 3 * 3_333_33,
              13_131_31, 8_888_89, 15_999_99]
    for number, formula in ((1, "lowest_price_ratio"), (2, "linear_from_lowest")):
        competition = make_competition(app, lot_id=dps["lot1"], buyer_organisation_id=buyer_org,
                                       creator_id=buyer["id"], allocation_id=allocation, number=number,
                                       formula=formula, criteria=(("quality", "Method", 33),
                                                                  ("social_value", "Social value", 12),
                                                                  ("price", "Price", 55)))
        many_bids(app, competition, len(prices), prefix=f"F{number}")
        with app.app_context():
            c = db.session.get(Competition, competition)
            for bid, price in zip(db.session.scalars(select(Bid).where(Bid.competition_id == competition)
                                                     .order_by(Bid.id)), prices):
                bid.price_pence = price
            c.opened_at = clock.now()
            db.session.add(PanelMember(competition_id=competition, user_id=buyer["id"], conflicted=False,
                                       declared_at=clock.now()))
            db.session.commit()
        mark_everything(app, competition, [buyer["id"]])
        with app.app_context():
            c = db.session.get(Competition, competition)
            lowest = min(prices)
            rows = evaluation.results(c)
            moderated = {(m.bid_id, m.criterion_id): m.score for m in db.session.scalars(select(ModeratedScore))}
            expected = {}
            for row in rows:
                price = Decimal(row.bid.price_pence)
                if formula == "linear_from_lowest":
                    raw = Decimal(55) * (1 - (price - lowest) / Decimal(lowest))
                    price_points = max(Decimal(0), raw).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
                else:
                    price_points = (Decimal(lowest) / price * 55).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
                quality = sum(Decimal(moderated[(row.bid.id, cr.id)] * cr.weight) / 100
                              for cr in c.criteria if cr.kind != "price")
                expected[row.bid.id] = quality + price_points
                assert row.total == expected[row.bid.id], (formula, row.bid.price_pence)
            # The ranks the database gave, against the totals: 1 + how many are strictly better.
            for row in rows:
                assert row.rank == 1 + sum(1 for t in expected.values() if t > expected[row.bid.id])
            page = ranking.ranking_page(c, True)
            assert [r.bid_id for r in page.rows] == [r.bid.id for r in rows]


@pytest.mark.parametrize("consensus, marks, departs", [
    (55, [50, 60], None),
    (50, [50, 60], None),
    (60, [50, 60], None),
    (49, [50, 60], "outside the evaluators’ marks (50 to 60)"),
    (61, [50, 60], "outside the evaluators’ marks (50 to 60)"),
    (70, [70], None),
    (71, [70], "outside the evaluators’ marks (70)"),
    (50, [20, 80], None),
    (40, [20, 80], None),  # exactly 10 from the mean
    (39, [20, 80], "more than 10 points from the evaluators’ mean mark (50)"),
    (20, [20, 80], "more than 10 points from the evaluators’ mean mark (50)"),
    (58, [40, 47, 60], None),  # mean 49: 9 away
    (60, [40, 47, 60], "more than 10 points from the evaluators’ mean mark (49)"),
    (50, [40, 45, 52], None),
    (56, [41, 45, 62], None),  # mean 49.33: 6.67 away
    (60, [41, 45, 62], "more than 10 points from the evaluators’ mean mark (49.3)"),
])
def test_the_departure_rule(consensus, marks, departs):
    assert evaluation.departure(consensus, marks) == departs


def test_migration_0009_backfills_who_had_submitted(app, factory):
    """On a database holding evaluations: a member with every mark is given their last mark's
    time as their submission; one with marks missing, or conflicted, is not."""
    from flask_migrate import downgrade, upgrade

    dps = make_dps(app)
    buyer_org = factory.organisation(name="Plymouth City Council")
    users = [factory.user("buyer", organisation_id=buyer_org) for _ in range(3)]
    allocation = make_allocation(app, buyer_org, amount_pence=50_000_00)
    competition = make_competition(app, lot_id=dps["lot1"], buyer_organisation_id=buyer_org,
                                   creator_id=users[0]["id"], allocation_id=allocation)
    bids = many_bids(app, competition, 3)
    with app.app_context():
        c = db.session.get(Competition, competition)
        scored = [cr.id for cr in c.criteria if cr.kind != "price"]
        at = clock.now()
        members = [PanelMember(competition_id=competition, user_id=u["id"], declared_at=at, conflicted=(n == 2))
                   for n, u in enumerate(users)]
        db.session.add_all(members)
        db.session.flush()
        last = {}
        for n, member in enumerate(members):
            cells = [(bid, cr) for bid in bids for cr in scored]
            if n == 1:
                cells = cells[:-1]  # one mark missing
            for k, (bid, cr) in enumerate(cells):
                moment = at + timedelta(minutes=k + 10 * n)
                db.session.add(Score(bid_id=bid, criterion_id=cr, panel_member_id=member.id, score=60,
                                     justification="Fine.", scored_at=moment))
                last[member.id] = moment
        ids = [m.id for m in members]
        db.session.commit()
        db.session.close()  # the migration's own connection needs the write lock (SQLite)
        downgrade(revision="8e4a2b3c0d51")
        upgrade()
        db.session.expire_all()
        submitted = {m.id: m.scores_submitted_at for m in db.session.scalars(select(PanelMember))}
        db.session.commit()
    assert submitted == {ids[0]: last[ids[0]], ids[1]: None, ids[2]: None}
