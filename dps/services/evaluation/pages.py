"""What the evaluation pages show, built for the person looking: plain dataclasses the views
render. Each page reads a fixed number of queries whatever the number of bids (the lists are
keyset pages of 50, dps.pagination), and shows only what its reader may see:

- bid content only after the sealed-bid gate says so (``dps.services.sealed.may_read``; a refusal
  is raised as ``Refused`` for the view to audit), so never before the deadline and opening, nor
  to a conflicted or undeclared member;
- other people's marks, the moderated scores and the ranking by the blind-scoring rule
  (dps.services.evaluation.scoring: ``sees_marks_of``, ``sees_panel_results``);
- what the reader may do now by the competition's lifecycle (``Competition.refusal``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import and_, case, func, or_, select

from ... import clock
from ...extensions import db
from ...models import (
    Award,
    Bid,
    BidAnswer,
    BidDocument,
    CallOff,
    Competition,
    Criterion,
    Document,
    ModeratedScore,
    Organisation,
    PanelMember,
    Score,
    User,
)
from ...models.competitions import Stage, StageLabel, STAGE_LABELS
from ...pagination import Page, keyset_page
from .. import sealed
from .award import call_off_of
from .common import (
    PRICE_FORMULA_LABELS,
    bid_count,
    bidder_name_sql,
    evaluators,
    is_evaluator,
    panel,
    panel_member,
    price_criterion,
    scored_criteria,
)
from .ranking import Line, RankRow, Standing, best, best_and, price_working, ranking_page, standing
from .scoring import (
    DEPARTURE_POINTS,
    departure,
    has_submitted,
    marks_by_member,
    mean_mark,
    moderation_refusal,
    sees_marks_of,
    sees_panel_results,
)


class NotShown(Exception):
    """The page has nothing for this reader (not bid content: the sealed gate answers for that)."""


class Refused(sealed.Sealed):
    """The sealed-bid gate refused this reader the page's bid content. The view records the
    refusal (``sealed.record_refusal``, an audited attempt) in a writing transaction of its own,
    so pages that are allowed stay read-only transactions (dps.database), and answers 404."""

    def __init__(self, competition: Competition, bid: Bid | None, what: str):
        super().__init__(what)
        self.competition, self.bid, self.what = competition, bid, what


def _gate(user: User, competition: Competition, *, what: str, bid: Bid | None = None) -> None:
    if not sealed.may_read(user, competition, bid.organisation_id if bid is not None else None):
        raise Refused(competition, bid, what)


def _me(members: list[PanelMember], user: User) -> PanelMember | None:
    return next((m for m in members if m.user_id == user.id), None)


# The overview -----------------------------------------------------------------------------------

@dataclass
class PanelRow:
    member: PanelMember
    name: str
    marks: int
    needed: int

    @property
    def declared(self) -> bool:
        return self.member.declared_at is not None

    @property
    def conflicted(self) -> bool:
        return bool(self.member.conflicted)

    @property
    def submitted_at(self) -> datetime | None:
        return self.member.scores_submitted_at


@dataclass
class Overview:
    competition: Competition
    stage: Stage
    label: StageLabel
    formula: str
    me: PanelMember | None
    panel: list[PanelRow]
    colleagues: list[User]  # who the reader may add to the panel (none: may not)
    opened: bool
    bids: int
    criteria: list[Criterion]  # the scored ones
    needed: int  # marks each evaluator makes
    open_refusal: str | None  # None: the reader may open the bids now
    may_declare: bool  # the first declaration
    may_declare_conflict: bool  # declared no conflict, which may still become a conflict
    readable: bool  # the sealed-bid gate lets the reader see the bids
    why_not_readable: str | None
    sees_results: bool
    standing: Standing | None
    moderation_refusal: str | None
    best: RankRow | None  # the first-ranked bid, once the ranking is final
    may_decide: bool
    may_close: bool
    award: Award | None
    awarded_to: str | None
    confirm_refusal: str | None  # None: the reader may confirm the award now
    call_off: CallOff | None

    @property
    def evaluator(self) -> bool:
        return is_evaluator(self.me)

    @property
    def submitted(self) -> bool:
        return has_submitted(self.me)

    @property
    def confirming(self) -> bool:
        """The award is decided and waits for its confirmation, which this reader may give."""
        return self.evaluator and self.stage in (Stage.STANDSTILL, Stage.AWARD_INTENDED)

    @property
    def my_marks(self) -> int:
        return next((row.marks for row in self.panel if self.me is not None and row.member.id == self.me.id), 0)


def _why_not_readable(competition: Competition, stage: Stage, me: PanelMember | None) -> str:
    if stage is Stage.DRAFT:
        return "This competition has not been published yet, so there are no bids."
    if stage is Stage.OPEN:
        return (f"Bids are sealed until the tender deadline, {clock.fmt(competition.tender_deadline)}. "
                "Nobody can see them before then.")
    if competition.opened_at is None:
        if stage is Stage.CANCELLED:
            return "This competition was cancelled before its bids were opened."
        return "The bids have not been opened yet. A panel member opens them."
    if me is None:
        return "Only members of the evaluation panel see the bids."
    if me.conflicted:
        return "You declared a conflict of interest, so you do not see or score the bids."
    return "Declare whether you have a conflict of interest to see the bids."


def overview(competition: Competition, user: User) -> Overview:
    now = clock.now()
    stage = competition.stage(now)
    members = panel(competition)
    me = _me(members, user)
    criteria = scored_criteria(competition)
    opened = competition.opened_at is not None
    bids = bid_count(competition) if opened else 0
    needed = bids * len(criteria)
    marks = marks_by_member(members) if opened else {}
    rows = [PanelRow(m, m.user.name, marks.get(m.id, 0), needed) for m in members]

    colleagues: list[User] = []
    manages = (user.role == "buyer" and user.organisation_id == competition.buyer_organisation_id
               and (competition.created_by_id == user.id or me is not None))
    if manages and competition.refusal("change_panel", now) is None:
        on_panel = {m.user_id for m in members}
        colleagues = [u for u in db.session.scalars(
            select(User).where(User.organisation_id == competition.buyer_organisation_id, User.role == "buyer",
                               User.active.is_(True)).order_by(User.name, User.id)) if u.id not in on_panel]

    declare_refused = competition.refusal("declare", now) is not None
    readable = sealed.may_read(user, competition)
    results = readable and sees_panel_results(me)
    state = standing(competition) if readable and bids else None
    waiting = moderation_refusal(members) if readable else None
    top = best(competition) if results and state is not None and state.complete else None
    evaluator = is_evaluator(me)
    award = competition.award
    awarded_to = None
    if award is not None:
        awarded_to = db.session.scalar(select(bidder_name_sql()).select_from(Bid)
                                       .join(Organisation, Organisation.id == Bid.organisation_id)
                                       .where(Bid.id == award.bid_id))
    return Overview(
        competition=competition, stage=stage, label=STAGE_LABELS[stage],
        formula=PRICE_FORMULA_LABELS[competition.price_formula], me=me, panel=rows, colleagues=colleagues,
        opened=opened, bids=bids, criteria=criteria, needed=needed,
        open_refusal=competition.refusal("open_bids", now) if me is not None else "Only panel members open the bids",
        may_declare=me is not None and me.declared_at is None and not declare_refused,
        may_declare_conflict=evaluator and not declare_refused,
        readable=readable, why_not_readable=None if readable else _why_not_readable(competition, stage, me),
        sees_results=results, standing=state, moderation_refusal=waiting, best=top,
        may_decide=(evaluator and top is not None and waiting is None
                    and competition.refusal("decide_award", now) is None),
        may_close=evaluator and competition.refusal("close_without_award", now) is None,
        award=award, awarded_to=awarded_to,
        confirm_refusal=(competition.refusal("confirm_award", now) if evaluator
                         else "Only an evaluator confirms the award"),
        call_off=call_off_of(award) if award is not None else None,
    )


# Who bid ---------------------------------------------------------------------------------------

@dataclass
class Bidders:
    competition: Competition
    page: Page  # rows: (bid id, bidder's name)


def bidders(competition: Competition, user: User, *, after: str | None = None, before: str | None = None) -> Bidders:
    """Who bid (names only, for declaring interests): once the bids are opened, for the buying
    organisation's buyers, except a panel member who declared a conflict (who sees nothing of
    the bids)."""
    member = panel_member(competition, user)
    if competition.opened_at is None or (member is not None and member.conflicted):
        raise NotShown
    name = bidder_name_sql()
    page = keyset_page(select(Bid.id, name).join(Organisation, Organisation.id == Bid.organisation_id)
                       .where(Bid.competition_id == competition.id, Bid.state == "submitted"),
                       [name, Bid.id], after=after, before=before)
    return Bidders(competition, page)


# The matrix -------------------------------------------------------------------------------------

NOT_SCORED = "not_scored"
SCORED_BY_ME = "scored_by_me"
ALL_SUBMITTED = "all_submitted"
MODERATED = "moderated"


@dataclass
class Cell:
    criterion: Criterion
    state: str  # NOT_SCORED, SCORED_BY_ME, ALL_SUBMITTED or MODERATED
    mine: int | None  # the reader's own mark
    marked_by: int  # how many evaluators have marked it
    moderated: int | None  # the moderated score, when the reader may see it


@dataclass
class MatrixRow:
    bid_id: int
    name: str
    price_pence: int | None
    cells: list[Cell]


@dataclass
class Matrix:
    competition: Competition
    criteria: list[Criterion]
    page: Page  # rows: MatrixRow
    me: PanelMember
    evaluators: int
    my_marks: int
    needed: int
    moderation_refusal: str | None
    sees_results: bool

    @property
    def submitted(self) -> bool:
        return has_submitted(self.me)


def matrix(competition: Competition, user: User, *, after: str | None = None, before: str | None = None) -> Matrix:
    """A page of bids × scored criteria, each cell's state for the reader: not scored (by them),
    scored by them, every evaluator submitted (ready to moderate), or moderated."""
    _gate(user, competition, what="the scoring matrix")
    members = panel(competition)
    me = _me(members, user)
    taking_part = evaluators(members)
    criteria = scored_criteria(competition)
    name = bidder_name_sql()
    page = keyset_page(select(Bid.id, name, Bid.price_pence).join(Organisation, Organisation.id == Bid.organisation_id)
                       .where(Bid.competition_id == competition.id, Bid.state == "submitted"),
                       [name, Bid.id], after=after, before=before)
    ids = [row[0] for row in page.rows]
    marked: dict[tuple[int, int], tuple[int, int | None]] = {}
    moderated: dict[tuple[int, int], int] = {}
    if ids:
        for bid_id, criterion_id, count, mine in db.session.execute(
                select(Score.bid_id, Score.criterion_id, func.count(),
                       func.max(case((Score.panel_member_id == me.id, Score.score), else_=None)))
                .where(Score.bid_id.in_(ids), Score.panel_member_id.in_([m.id for m in taking_part]))
                .group_by(Score.bid_id, Score.criterion_id)):
            marked[(bid_id, criterion_id)] = (count, mine)
        moderated = {(b, c): s for b, c, s in db.session.execute(
            select(ModeratedScore.bid_id, ModeratedScore.criterion_id, ModeratedScore.score)
            .where(ModeratedScore.bid_id.in_(ids)))}
    waiting = moderation_refusal(members)
    results = sees_panel_results(me)
    rows = []
    for bid_id, bid_name, price in page.rows:
        cells = []
        for c in criteria:
            count, mine = marked.get((bid_id, c.id), (0, None))
            agreed = moderated.get((bid_id, c.id))
            if agreed is not None:
                state = MODERATED
            elif waiting is None:
                state = ALL_SUBMITTED
            elif mine is not None:
                state = SCORED_BY_ME
            else:
                state = NOT_SCORED
            cells.append(Cell(c, state, mine, count, agreed if results else None))
        rows.append(MatrixRow(bid_id, bid_name, price, cells))
    page.rows = rows
    my_marks = marks_by_member([me])[me.id]
    return Matrix(competition, criteria, page, me, len(taking_part), my_marks, page.total * len(criteria), waiting,
                  results)


# One bid ----------------------------------------------------------------------------------------

@dataclass
class Mark:
    evaluator: str
    score: int
    justification: str


@dataclass
class CriterionView:
    criterion: Criterion
    answer: str | None
    mine: Score | None
    others: list[Mark]  # only the marks the reader may see
    moderated: ModeratedScore | None  # only when the reader may see it


@dataclass
class BidSheet:
    competition: Competition
    bid: Bid
    name: str
    documents: list[Document]
    criteria: list[CriterionView]  # the scored ones
    price: Line | None
    me: PanelMember
    score_refusal: str | None  # None: the reader may mark this bid now
    moderation_refusal: str | None
    previous: tuple[int, str] | None  # (bid id, bidder's name)
    next: tuple[int, str] | None

    @property
    def submitted(self) -> bool:
        return has_submitted(self.me)


def neighbours(competition: Competition, bid: Bid) -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
    """The bids (id, bidder's name) before and after this one in the matrix's order (bidder's
    name, then id)."""
    name = _name_of(bid)
    key = bidder_name_sql()
    base = (select(Bid.id, key).join(Organisation, Organisation.id == Bid.organisation_id)
            .where(Bid.competition_id == competition.id, Bid.state == "submitted"))
    after = base.where(or_(key > name, and_(key == name, Bid.id > bid.id))).order_by(key, Bid.id).limit(1)
    before = base.where(or_(key < name, and_(key == name, Bid.id < bid.id))).order_by(key.desc(), Bid.id.desc()).limit(1)
    found_before, found_after = db.session.execute(before).first(), db.session.execute(after).first()
    return (tuple(found_before) if found_before else None), (tuple(found_after) if found_after else None)


def _price_line(competition: Competition, bid: Bid) -> Line | None:
    criterion = price_criterion(competition)
    if criterion is None:
        return None
    lowest = db.session.scalar(select(func.min(Bid.price_pence)).where(Bid.competition_id == competition.id,
                                                                       Bid.state == "submitted"))
    points, working = price_working(competition.price_formula, criterion.weight, bid.price_pence, lowest)
    return Line(criterion, points, working)


def _answers(bid: Bid) -> dict[int, str]:
    return dict(db.session.execute(select(BidAnswer.criterion_id, BidAnswer.text).where(BidAnswer.bid_id == bid.id)).all())


def _name_of(bid: Bid) -> str:
    return bid.organisation.trading_name or bid.organisation.name


def bid_sheet(competition: Competition, user: User, bid: Bid) -> BidSheet:
    """One bid, its content and the reader's marks for every criterion (one form), with the
    others' marks once the blind-scoring rule allows."""
    _gate(user, competition, bid=bid, what="a bid for evaluation")
    members = panel(competition)
    me = _me(members, user)
    by_id = {m.id: m for m in members}
    answers = _answers(bid)
    documents = list(db.session.scalars(select(Document).join(BidDocument, BidDocument.document_id == Document.id)
                                        .where(BidDocument.bid_id == bid.id).order_by(Document.id)))
    marks = list(db.session.scalars(select(Score).where(Score.bid_id == bid.id).order_by(Score.id)))
    results = sees_panel_results(me)
    agreed = ({m.criterion_id: m for m in db.session.scalars(
        select(ModeratedScore).where(ModeratedScore.bid_id == bid.id))} if results else {})
    views = []
    for c in scored_criteria(competition):
        mine = next((s for s in marks if s.criterion_id == c.id and s.panel_member_id == me.id), None)
        others = [Mark(by_id[s.panel_member_id].user.name, s.score, s.justification) for s in marks
                  if s.criterion_id == c.id and s.panel_member_id != me.id and s.panel_member_id in by_id
                  and sees_marks_of(me, by_id[s.panel_member_id])]
        views.append(CriterionView(c, answers.get(c.id), mine, others, agreed.get(c.id)))
    now = clock.now()
    refusal = competition.refusal("score", now)
    if refusal is None and has_submitted(me):
        refusal = (f"You submitted your scores on {clock.fmt(me.scores_submitted_at)}, so they can no longer change. "
                   "Moderation records the panel’s agreed score")
    name = _name_of(bid)
    previous, following = neighbours(competition, bid)
    return BidSheet(competition, bid, name, documents, views, _price_line(competition, bid), me, refusal,
                    moderation_refusal(members), previous, following)


# Moderating one bid -----------------------------------------------------------------------------

@dataclass
class ModerationView:
    criterion: Criterion
    answer: str | None
    marks: list[Mark]  # every evaluator's, side by side
    mean: Decimal | None
    moderated: ModeratedScore | None

    @property
    def low(self) -> int | None:
        return min((m.score for m in self.marks), default=None)

    @property
    def high(self) -> int | None:
        return max((m.score for m in self.marks), default=None)

    @property
    def spread_text(self) -> str:
        if not self.marks:
            return "–"
        return f"{self.low}%" if self.low == self.high else f"{self.low}–{self.high}%"

    @property
    def mean_text(self) -> str:
        if self.mean is None:
            return "–"
        return f"{self.mean:.1f}".removesuffix(".0")

    def departs(self, consensus: int) -> str | None:
        return departure(consensus, [m.score for m in self.marks])


@dataclass
class ModerationSheet:
    competition: Competition
    bid: Bid
    name: str
    criteria: list[ModerationView]
    refusal: str | None  # None: the reader may moderate this bid now
    departure_points: int
    previous: tuple[int, str] | None  # (bid id, bidder's name)
    next: tuple[int, str] | None


def moderation_sheet(competition: Competition, user: User, bid: Bid) -> ModerationSheet:
    """Every evaluator's mark and justification per criterion of one bid, side by side, and the
    panel's consensus: only once every evaluator has submitted (before, no mark is shown)."""
    _gate(user, competition, bid=bid, what="a bid for moderation")
    members = panel(competition)
    me = _me(members, user)
    waiting = moderation_refusal(members)
    refusal = waiting or competition.refusal("moderate", clock.now())
    taking_part = {m.id: m for m in evaluators(members)}
    marks = []
    if waiting is None:
        marks = [s for s in db.session.scalars(select(Score).where(Score.bid_id == bid.id).order_by(Score.panel_member_id))
                 if s.panel_member_id in taking_part]
    agreed = ({m.criterion_id: m for m in db.session.scalars(
        select(ModeratedScore).where(ModeratedScore.bid_id == bid.id))} if sees_panel_results(me) else {})
    answers = _answers(bid)
    views = []
    for c in scored_criteria(competition):
        given = [Mark(taking_part[s.panel_member_id].user.name, s.score, s.justification)
                 for s in marks if s.criterion_id == c.id]
        views.append(ModerationView(c, answers.get(c.id), given, mean_mark([m.score for m in given]),
                                    agreed.get(c.id)))
    name = _name_of(bid)
    previous, following = neighbours(competition, bid)
    return ModerationSheet(competition, bid, name, views, refusal, DEPARTURE_POINTS, previous, following)


# The ranking ------------------------------------------------------------------------------------

@dataclass
class Ranking:
    competition: Competition
    formula: str
    shown: bool  # False: the reader has not submitted their own scores yet
    standing: Standing | None = None
    page: Page | None = None  # rows: RankRow
    may_award: bool = False  # the reader may decide the award now (to any bid of the ranking)


def ranking(competition: Competition, user: User, *, after: str | None = None,
            before: str | None = None) -> Ranking:
    """The ranking with its working (each criterion's points, the price formula's arithmetic),
    50 bids a page: best first once every bid is moderated, by bidder's name before."""
    _gate(user, competition, what="the ranking")
    members = panel(competition)
    me = _me(members, user)
    formula = PRICE_FORMULA_LABELS[competition.price_formula]
    if not sees_panel_results(me):
        return Ranking(competition, formula, shown=False)
    state = standing(competition)
    may_award = (state.complete and moderation_refusal(members) is None
                 and competition.refusal("decide_award", clock.now()) is None)
    return Ranking(competition, formula, True, state,
                   ranking_page(competition, state.complete, after=after, before=before), may_award)


# Deciding the award -----------------------------------------------------------------------------

@dataclass
class AwardSheet:
    competition: Competition
    refusal: str | None  # None: the reader may decide the award now
    best: RankRow | None
    chosen: RankRow | None  # the bid the form awards to (the best, unless another was chosen)
    bids: int
    allocation_left: int


def award_sheet(competition: Competition, user: User, bid_id: int | None = None) -> AwardSheet:
    """Deciding the award to the best bid or, with a reason, to another one chosen in the ranking."""
    _gate(user, competition, what="the award decision")
    members = panel(competition)
    me = _me(members, user)
    now = clock.now()
    refusal = competition.refusal("decide_award", now)
    if refusal is None and not sees_panel_results(me):
        refusal = "Submit your own scores first: the award follows from the panel’s moderated scores"
    if refusal is None:
        refusal = moderation_refusal(members)
    state = standing(competition)
    if refusal is None and not state.complete:
        refusal = "Moderate every criterion of every bid before deciding the award"
    top, chosen = best_and(competition, bid_id) if state.complete else (None, None)
    allocation = competition.allocation
    return AwardSheet(competition, refusal, top, chosen, state.bids,
                      allocation.amount_pence - allocation.committed_pence)
