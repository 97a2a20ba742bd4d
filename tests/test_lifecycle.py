"""One lifecycle for a mini-competition (issue 11, item 1): ``Competition.stage(now)`` and its SQL
form ``Competition.stage_at(now)`` agree on every stage at every boundary, to the second; the
actions table says what may be done in each stage; and the pages each role reads say the stage
as the clock crosses each boundary."""
from __future__ import annotations

import html
import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from dps import clock
from dps.extensions import db
from dps.models import Award, Bid, Competition, PanelMember
from dps.models.competitions import ACTIONS, FINISHED, STAGE_LABELS, Stage, StageError
from dps.services import ServiceError, evaluation
from tests.applying import make_dps
from tests.competing import make_allocation, make_bid, make_competition, post
from tests.conftest import set_clock

SECOND = timedelta(seconds=1)


def london(text: str) -> datetime:
    return clock.parse_london(text)


PUBLISHED = london("2024-06-01T10:00")
DEADLINE = london("2024-06-14T12:00")
OPENED = london("2024-06-17T09:00")
DECIDED = london("2024-06-20T10:00")
STANDSTILL_ENDS = london("2024-06-30T10:00")
CONFIRMED = london("2024-07-01T09:00")
CANCELLED = london("2024-06-10T15:30")
NO_AWARD = london("2024-06-18T11:00")


@pytest.fixture
def timelines(app, factory):
    """Competitions whose whole lives are recorded: the full path with standstill, one cancelled
    while open, one closed with no award, one awarded without standstill, and a draft."""
    dps = make_dps(app)
    buyer_org = factory.organisation(name="Plymouth City Council")
    buyer = factory.user("buyer", organisation_id=buyer_org)
    supplier = factory.organisation(kind="supplier", membership=None, name="Cedar Co-operative")
    allocation = make_allocation(app, buyer_org, amount_pence=50_000_00)
    ids = {}
    for number, name in enumerate(("full", "cancelled", "no_award", "no_standstill", "draft"), start=1):
        ids[name] = make_competition(app, lot_id=dps["lot1"], buyer_organisation_id=buyer_org, creator_id=buyer["id"],
                                     allocation_id=allocation, number=number, deadline="2024-06-14T12:00")
        make_bid(app, ids[name], supplier, 9_000_00)
    with app.app_context():
        def get(name):
            return db.session.get(Competition, ids[name])

        bid = {name: db.session.scalar(select(Bid.id).where(Bid.competition_id == ids[name])) for name in ids}
        for name in ("full", "no_award", "no_standstill"):
            get(name).opened_at = OPENED
            get(name).opened_by_id = buyer["id"]
        db.session.add(Award(competition_id=ids["full"], bid_id=bid["full"], value_pence=9_000_00, decided_at=DECIDED,
                             decided_by_id=buyer["id"], standstill_ends_at=STANDSTILL_ENDS, confirmed_at=CONFIRMED))
        db.session.add(Award(competition_id=ids["no_standstill"], bid_id=bid["no_standstill"], value_pence=9_000_00,
                             decided_at=DECIDED, decided_by_id=buyer["id"], confirmed_at=DECIDED))
        get("cancelled").cancelled_at, get("cancelled").cancel_reason = CANCELLED, "The need has gone"
        get("no_award").closed_without_award_at, get("no_award").no_award_reason = NO_AWARD, "No bid was suitable"
        get("draft").published_at = None
        db.session.commit()
    return ids


# What each competition's stage is, from each moment on: (moment, stage), in time order.
LIVES = {
    "full": [(PUBLISHED - SECOND, Stage.DRAFT), (PUBLISHED, Stage.OPEN), (DEADLINE, Stage.CLOSED),
             (OPENED, Stage.IN_EVALUATION), (DECIDED, Stage.STANDSTILL), (STANDSTILL_ENDS, Stage.AWARD_INTENDED),
             (CONFIRMED, Stage.AWARDED)],
    "cancelled": [(PUBLISHED, Stage.OPEN), (CANCELLED, Stage.CANCELLED)],
    "no_award": [(DEADLINE, Stage.CLOSED), (OPENED, Stage.IN_EVALUATION), (NO_AWARD, Stage.NO_AWARD)],
    "no_standstill": [(OPENED, Stage.IN_EVALUATION), (DECIDED, Stage.AWARDED)],
    "draft": [(PUBLISHED - SECOND, Stage.DRAFT), (CONFIRMED + timedelta(days=400), Stage.DRAFT)],
}


def expected(name: str, moment: datetime) -> Stage | None:
    """The stage LIVES gives at ``moment`` (None before its first entry)."""
    stage = None
    for start, then in LIVES[name]:
        if moment >= start:
            stage = then
    return stage


def moments() -> list[datetime]:
    """Every boundary, a second before it, at it, and a second after."""
    boundaries = sorted({start for life in LIVES.values() for start, _ in life})
    return [moment + offset for moment in boundaries for offset in (-SECOND, timedelta(0), SECOND)]


def test_the_stage_and_its_sql_form_agree_at_every_boundary_to_the_second(app, timelines):
    seen = set()
    with app.app_context():
        for moment in moments():
            in_sql = dict(db.session.execute(
                select(Competition.id, Competition.stage_at(moment)).where(Competition.id.in_(timelines.values()))).all())
            for name, competition_id in timelines.items():
                want = expected(name, moment)
                if want is None:
                    continue
                competition = db.session.get(Competition, competition_id)
                assert competition.stage(moment) is want, (name, moment)
                assert in_sql[competition_id] == want.value, (name, moment)
                seen.add(want)
    assert seen == set(Stage), "every stage is checked"


def test_lists_filter_by_stage_in_sql(app, timelines):
    with app.app_context():
        at = DECIDED + SECOND
        rows = db.session.scalars(select(Competition.id).where(Competition.stage_at(at) == Stage.STANDSTILL.value))
        assert list(rows) == [timelines["full"]]
        finished = db.session.scalars(select(Competition.id).where(
            Competition.stage_at(CONFIRMED).in_([s.value for s in FINISHED])))
        assert set(finished) == {timelines[name] for name in ("full", "cancelled", "no_award", "no_standstill")}


def test_every_action_names_stages_and_leads_somewhere_allowed():
    assert set(STAGE_LABELS) == set(Stage)
    reachable = {Stage.DRAFT}
    for action in ACTIONS.values():
        assert action.allowed and action.allowed <= set(Stage)
        assert not action.allowed & FINISHED or action is ACTIONS["record_invoice"], "nothing moves a finished one"
        if action.leads_to is not None:
            reachable.add(action.leads_to)
    # The clock moves OPEN to CLOSED and STANDSTILL to AWARD_INTENDED; confirming without standstill, AWARDED.
    reachable |= {Stage.CLOSED, Stage.AWARD_INTENDED}
    assert reachable == set(Stage)


def test_require_refuses_in_words_outside_the_allowed_stages(app, timelines):
    with app.app_context():
        full = db.session.get(Competition, timelines["full"])
        assert full.require("bid", DEADLINE - SECOND) is Stage.OPEN
        with pytest.raises(StageError) as refused:
            full.require("bid", DEADLINE)
        assert refused.value.stage is Stage.CLOSED and isinstance(refused.value, ServiceError)
        assert refused.value.message == "Tenders closed on 14 June 2024 at midday"
        with pytest.raises(StageError, match="The standstill period ends on 30 June 2024 at 10:00am"):
            full.require("confirm_award", STANDSTILL_ENDS - SECOND)
        assert full.require("confirm_award", STANDSTILL_ENDS) is Stage.AWARD_INTENDED
        with pytest.raises(StageError, match="The contract has been awarded"):
            full.require("cancel", CONFIRMED)


# What each role reads, as the clock crosses each boundary ---------------------------------------

def page_text(browser, url: str) -> str:
    response = browser.get(url)
    assert response.status_code == 200, url
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))))


def test_each_roles_pages_say_the_stage_as_the_clock_moves(app, factory, signed_in):
    dps = make_dps(app)
    buyer_org = factory.organisation(name="Plymouth City Council")
    buyer, buyer_user = signed_in("buyer", organisation_id=buyer_org, name="Alice Moreno")
    supplier_org = factory.organisation(kind="supplier", membership=None, name="Cedar Co-operative")
    supplier, _ = signed_in("supplier", organisation_id=supplier_org)
    allocation = make_allocation(app, buyer_org, amount_pence=50_000_00)
    competition_id = make_competition(app, lot_id=dps["lot1"], buyer_organisation_id=buyer_org,
                                      creator_id=buyer_user["id"], allocation_id=allocation)
    make_bid(app, competition_id, supplier_org, 9_000_00)
    with app.app_context():
        db.session.add(PanelMember(competition_id=competition_id, user_id=buyer_user["id"]))
        invitation = db.session.get(Competition, competition_id).invitations[0]
        invitation.first_opened_at = PUBLISHED  # the supplier opened it when invited
        db.session.commit()
    buyer_page, buyer_list = f"/buyer/competitions/{competition_id}", "/buyer/competitions"
    supplier_page, supplier_list = f"/supplier/competitions/{competition_id}", "/supplier/competitions"

    def says(buyer_words: str, supplier_words: str) -> None:
        for url in (buyer_page, buyer_list):
            assert buyer_words in page_text(buyer, url), (url, buyer_words)
        for url in (supplier_page, supplier_list):
            assert supplier_words in page_text(supplier, url), (url, supplier_words)

    set_clock(app, DEADLINE - SECOND)
    says("Open for tenders", "Open for tenders")
    assert "bids stay sealed until 14 June 2024 at midday" in page_text(buyer, buyer_page)

    set_clock(app, DEADLINE)
    says("Tenders closed: bids not opened", "Tenders closed")
    text = page_text(buyer, buyer_page)
    assert "stay sealed until 14 June" not in text
    assert "The bids stay sealed until the evaluation panel opens them" in text

    set_clock(app, OPENED)
    evaluation_page = f"{buyer_page}/evaluation"
    assert post(buyer, f"{buyer_page}/open", evaluation_page).status_code == 302
    says("In evaluation", "Tenders closed: being evaluated")
    assert "the panel opened the bids on 17 June 2024 at 9:00am" in page_text(buyer, buyer_page)

    with app.app_context():  # the panel's scoring and award, through the services
        from dps.models import User

        user = db.session.get(User, buyer_user["id"])
        competition = db.session.get(Competition, competition_id)
        evaluation.declare(competition, user, False, "")
        bid = db.session.scalar(select(Bid).where(Bid.competition_id == competition_id))
        scored = [criterion for criterion in competition.criteria if criterion.kind != "price"]
        for criterion in scored:  # the last mark submits the panel member's scores
            evaluation.score(competition, user, bid, criterion, 70, "Clear plan, good evidence")
        for criterion in scored:  # moderation opens once every evaluator has submitted
            evaluation.moderate(competition, user, bid, criterion, 70, "Agreed at moderation")
        db.session.commit()
    set_clock(app, DECIDED)
    with app.app_context():
        competition = db.session.get(Competition, competition_id)
        evaluation.decide_award(competition, db.session.get(User, buyer_user["id"]), bid_id_of(competition_id),
                                9_000_00, None)
        db.session.commit()
        ends = competition.award.standstill_ends_at

    says("Award intended: standstill", "Award intended: standstill")
    set_clock(app, ends - SECOND)
    says("Award intended: standstill", "Award intended: standstill")
    refused = post(buyer, f"{buyer_page}/award/confirm", evaluation_page)
    assert refused.status_code == 400 and "The standstill period ends on" in html.unescape(refused.get_data(as_text=True))

    set_clock(app, ends)
    says("Award intended: ready to confirm", "Award intended")
    assert post(buyer, f"{buyer_page}/award/confirm", evaluation_page).status_code == 302
    says("Awarded", "Awarded")


def bid_id_of(competition_id: int) -> Bid:
    return db.session.scalar(select(Bid).where(Bid.competition_id == competition_id))
