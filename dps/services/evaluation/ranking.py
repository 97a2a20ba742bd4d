"""The results: each bid's points per criterion with their working, its total and its rank.

Quality and social value points are the moderated score (a percentage) of the criterion's
weight; price points come from the formula the competition published. Points are published to
2 decimal places, rounded half up, and the totals add up the published figures.

The database ranks the bids (``_ranked``: one statement with the same integer arithmetic as
``price_hundredths``, exact in hundredths of a point), so a page of the ranking reads only its
own rows whatever the number of bids, and the award, the letters and every page agree on who is
first. Python writes out the working of the rows it shows.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.orm import aliased

from ...extensions import db
from ...filters import money
from ...models import Bid, Competition, Criterion, ModeratedScore, Organisation
from ...pagination import Page, keyset_page
from .common import bidder_name, bidder_name_sql, price_criterion, scored_criteria, submitted_bids


# Price ------------------------------------------------------------------------------------------

def price_hundredths(formula: str, weight: int, price: int, lowest: int) -> tuple[int, bool]:
    """Price points in hundredths, rounded half up, in whole numbers (so exact, and the same as
    the SQL in ``_price_hundredths_sql``); and whether the formula went below 0 (then 0)."""
    if formula == "linear_from_lowest":
        # weight × (1 − (price − lowest) ÷ lowest) = weight × (2 × lowest − price) ÷ lowest
        numerator = 2 * lowest - price
        if numerator <= 0:
            return 0, numerator < 0
        return (200 * weight * numerator + lowest) // (2 * lowest), False
    return (200 * lowest * weight + price) // (2 * price), False


def _price_hundredths_sql(formula: str, weight: int, price, lowest):
    if formula == "linear_from_lowest":
        numerator = 2 * lowest - price
        return case((numerator <= 0, literal(0)), else_=(200 * weight * numerator + lowest) // (2 * lowest))
    return (200 * weight * lowest + price) // (2 * price)


def _points(hundredths: int) -> Decimal:
    return Decimal(hundredths).scaleb(-2)


def price_working(formula: str, weight: int, price: int | None, lowest: int | None) -> tuple[Decimal | None, str]:
    """A bid's price points and how they were worked out, in words."""
    if not price or not lowest:
        return None, "No price given"
    hundredths, clipped = price_hundredths(formula, weight, price, lowest)
    points = _points(hundredths)
    if formula == "linear_from_lowest":
        working = (f"{weight} × (1 − (this {money(price)} − lowest {money(lowest)}) ÷ lowest {money(lowest)})"
                   f" = {points:.2f}")
        if clipped:
            working += " (the formula gives less than 0, so 0)"
    else:
        working = f"lowest {money(lowest)} ÷ this {money(price)} × {weight} = {points:.2f}"
    return points, working


def price_points(competition: Competition, bids: Iterable[Bid] | None = None) -> dict[int, tuple[Decimal | None, str]]:
    """Points and working for price, per submitted bid, by the competition's published formula."""
    criterion = price_criterion(competition)
    bids = list(submitted_bids(competition) if bids is None else bids)
    priced = [b.price_pence for b in bids if b.price_pence]
    if criterion is None or not priced:
        return {b.id: (None, "No price given") for b in bids}
    lowest = min(priced)
    return {b.id: price_working(competition.price_formula, criterion.weight, b.price_pence, lowest) for b in bids}


# One bid's lines --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Line:
    criterion: Criterion
    points: Decimal | None
    working: str
    # Quality and social value: the moderated score (per cent of the weight) and its reason.
    score: int | None = None
    justification: str | None = None


def _lines(competition: Competition, price: int | None, lowest: int | None,
           moderated: dict[int, ModeratedScore]) -> list[Line]:
    lines = []
    for criterion in competition.criteria:
        if criterion.kind == "price":
            points, working = price_working(competition.price_formula, criterion.weight, price, lowest)
            lines.append(Line(criterion, points, working))
            continue
        m = moderated.get(criterion.id)
        if m is None:
            lines.append(Line(criterion, None, "Not moderated yet"))
            continue
        points = _points(m.score * criterion.weight)
        lines.append(Line(criterion, points, f"{m.score}% × {criterion.weight} = {points:.2f}", m.score,
                          m.justification))
    return lines


def _total(lines: list[Line]) -> Decimal | None:
    if any(line.points is None for line in lines):
        return None
    return sum((line.points for line in lines), Decimal("0.00"))


def _moderated_of(bid_ids: list[int]) -> dict[int, dict[int, ModeratedScore]]:
    by_bid: dict[int, dict[int, ModeratedScore]] = defaultdict(dict)
    if bid_ids:
        for m in db.session.scalars(select(ModeratedScore).where(ModeratedScore.bid_id.in_(bid_ids))):
            by_bid[m.bid_id][m.criterion_id] = m
    return by_bid


# The ranking, in SQL ----------------------------------------------------------------------------

def _ranked(competition: Competition):
    """Every submitted bid with its bidder's name, price, the lowest price, how many of its
    criteria are moderated, whether it is complete, its total in hundredths (complete bids only)
    and its rank among them: a subquery.

    Each bid's moderated scores are read by a correlated subquery on moderated_scores' bid_id
    index (two index probes a bid), not a join to a grouped subquery: the plan stays linear in
    the number of bids whatever the planner believes about the tables' sizes. The per-bid work
    is a MATERIALIZED common table expression, so it is done once a bid however many times the
    statement refers to its total (PostgreSQL 12 and SQLite 3.35 read the keyword)."""
    scored = scored_criteria(competition)
    price = price_criterion(competition)
    scored_ids = [c.id for c in scored]
    weight = case({c.id: c.weight for c in scored}, value=ModeratedScore.criterion_id, else_=0)
    done = (select(func.count()).where(ModeratedScore.bid_id == Bid.id, ModeratedScore.criterion_id.in_(scored_ids))
            .correlate(Bid).scalar_subquery())
    points = (select(func.coalesce(func.sum(ModeratedScore.score * weight), 0))
              .where(ModeratedScore.bid_id == Bid.id, ModeratedScore.criterion_id.in_(scored_ids))
              .correlate(Bid).scalar_subquery())
    priced = aliased(Bid)  # the competition's bids again, for the lowest price: never correlated
    lowest = (select(func.min(priced.price_pence))
              .where(priced.competition_id == competition.id, priced.state == "submitted").scalar_subquery())
    if price is None:
        price_points_sql = literal(0)
    else:
        price_points_sql = _price_hundredths_sql(competition.price_formula, price.weight, Bid.price_pence, lowest)
    totals = (
        select(Bid.id.label("bid_id"), bidder_name_sql().label("name"), Bid.price_pence.label("price_pence"),
               lowest.label("lowest"), done.label("moderated"), (points + price_points_sql).label("total"))
        .join(Organisation, Organisation.id == Bid.organisation_id)
        .where(Bid.competition_id == competition.id, Bid.state == "submitted")
        .cte("totals").prefix_with("MATERIALIZED"))
    complete = and_(totals.c.moderated == len(scored), totals.c.total.is_not(None))
    return (
        select(totals.c.bid_id, totals.c.name, totals.c.price_pence, totals.c.lowest, totals.c.moderated,
               case((complete, 1), else_=0).label("complete"),
               case((complete, totals.c.total), else_=None).label("total"))
        .subquery("complete"))


def _with_rank(competition: Competition):
    """``_ranked`` with each complete bid's rank (1 + how many complete bids have a higher
    total) and how many share its total."""
    ranked = _ranked(competition)
    return (
        select(ranked, func.rank().over(order_by=ranked.c.total.desc()).label("rank"),
               func.count().over(partition_by=ranked.c.total).label("tied"))
        .subquery("ranked"))


@dataclass(frozen=True)
class Standing:
    """How far the panel has got: bids, and moderated scores of how many."""

    bids: int
    moderated: int
    cells: int
    priced: int
    needs_price: bool

    @property
    def complete(self) -> bool:
        """Every criterion of every bid moderated (and priced): the ranking is final."""
        return self.bids > 0 and self.moderated == self.cells and (not self.needs_price or self.priced == self.bids)


def standing(competition: Competition) -> Standing:
    """One query, without working anything out per bid: the counts say whether it is complete
    (a bid has at most one moderated score per criterion, by the UNIQUE constraint)."""
    scored_ids = [c.id for c in scored_criteria(competition)]
    moderated = (select(func.count()).select_from(ModeratedScore).join(Bid, Bid.id == ModeratedScore.bid_id)
                 .where(Bid.competition_id == competition.id, Bid.state == "submitted",
                        ModeratedScore.criterion_id.in_(scored_ids)).scalar_subquery())
    bids, priced, done = db.session.execute(
        select(func.count(Bid.id), func.count(Bid.price_pence), moderated)
        .where(Bid.competition_id == competition.id, Bid.state == "submitted")).one()
    return Standing(int(bids), int(done), int(bids) * len(scored_ids), int(priced),
                    price_criterion(competition) is not None)


@dataclass
class RankRow:
    """A bid in the ranking: its points per criterion with their working, total and rank (the
    rank only once every bid is complete)."""

    bid_id: int
    supplier_name: str
    price_pence: int | None
    lines: list[Line]
    total: Decimal | None
    rank: int | None = None
    joint: bool = False

    @property
    def complete(self) -> bool:
        return self.total is not None


def _rank_rows(competition: Competition, rows, ranked_final: bool) -> list[RankRow]:
    moderated = _moderated_of([r.bid_id for r in rows])
    result = []
    for r in rows:
        lines = _lines(competition, r.price_pence, r.lowest, moderated.get(r.bid_id, {}))
        result.append(RankRow(r.bid_id, r.name, r.price_pence, lines, _total(lines),
                              r.rank if ranked_final else None, ranked_final and r.tied > 1))
    return result


def _order(ranked, final: bool) -> list:
    return [ranked.c.rank, ranked.c.name, ranked.c.bid_id] if final else [ranked.c.name, ranked.c.bid_id]


# Each bid of the ranking is a block of rows (one a criterion, with its working, and the total),
# so a page holds fewer bids than the lists of one row a bid.
RANKING_PAGE_SIZE = 20


def ranking_page(competition: Competition, final: bool, *, after: str | None = None,
                 before: str | None = None) -> Page:
    """A page of the ranking (dps.pagination, RANKING_PAGE_SIZE bids): best first once ``final``
    (see Standing.complete), by bidder's name until then. Its rows are RankRows."""
    ranked = _with_rank(competition)
    page = keyset_page(select(ranked.c.bid_id, ranked.c.name, ranked.c.price_pence, ranked.c.lowest,
                              ranked.c.rank, ranked.c.tied),
                       _order(ranked, final), after=after, before=before, size=RANKING_PAGE_SIZE)
    page.rows = _rank_rows(competition, [_Row(*row) for row in page.rows], final)
    return page


def best_and(competition: Competition, bid_id: int | None = None) -> tuple[RankRow | None, RankRow | None]:
    """The first-ranked bid (the first by name among joint firsts) once the ranking is final,
    and the row of bid ``bid_id`` (the first-ranked one if None): one query."""
    ranked = _with_rank(competition)
    wanted = ranked.c.rank == 1 if bid_id is None else or_(ranked.c.rank == 1, ranked.c.bid_id == bid_id)
    rows = [_Row(*row) for row in db.session.execute(
        select(ranked.c.bid_id, ranked.c.name, ranked.c.price_pence, ranked.c.lowest, ranked.c.rank, ranked.c.tied)
        .where(wanted).order_by(*_order(ranked, True)))]
    if not rows:
        return None, None
    top = rows[0]
    chosen = top if bid_id is None else next((r for r in rows if r.bid_id == bid_id), None)
    built = {r.bid_id: r for r in _rank_rows(competition, [top] if chosen in (None, top) else [top, chosen], True)}
    return built[top.bid_id], (built[chosen.bid_id] if chosen is not None else None)


def best(competition: Competition) -> RankRow | None:
    """The first-ranked bid (the first by name among joint firsts), once the ranking is final."""
    return best_and(competition)[0]


@dataclass(frozen=True)
class _Row:
    bid_id: int
    name: str
    price_pence: int | None
    lowest: int | None
    rank: int | None
    tied: int


@dataclass
class BidResult:
    bid: Bid
    lines: list[Line]
    total: Decimal | None = None
    rank: int | None = None
    joint: bool = False

    @property
    def complete(self) -> bool:
        return all(line.points is not None for line in self.lines)

    @property
    def supplier_name(self) -> str:
        return bidder_name(self.bid)


def results(competition: Competition, bids: list[Bid] | None = None) -> list[BidResult]:
    """Every submitted bid's result, best first once every bid is complete (by bidder's name
    before): for deciding the award and writing the letters, which need them all."""
    bids = submitted_bids(competition) if bids is None else bids
    if not bids:
        return []
    by_id = {b.id: b for b in bids}
    ranked = _with_rank(competition)
    rows = db.session.execute(select(ranked.c.bid_id, ranked.c.name, ranked.c.price_pence, ranked.c.lowest,
                                     ranked.c.rank, ranked.c.tied, ranked.c.complete)
                              .where(ranked.c.bid_id.in_(list(by_id)))).all()
    final = all(row.complete for row in rows)
    rows.sort(key=(lambda row: (row.rank, row.name, row.bid_id)) if final else (lambda row: (row.name, row.bid_id)))
    ranked_rows = _rank_rows(competition, [_Row(*row[:6]) for row in rows], final)
    return [BidResult(by_id[r.bid_id], r.lines, r.total, r.rank, r.joint) for r in ranked_rows]
