"""Evaluation and award of a mini-competition, the call-off it creates, and invoices paid.

The sequence (PCR 2015 reg 34, the network's procedure):
1. After the tender deadline a panel member opens the bids: an audited act.
2. Each panel member declares whether they have a conflict of interest with any bidder. Whoever
   declares one is excluded: they never see the bids (dps.services.sealed) and take no part.
3. Each remaining member scores every bid on each quality and social value criterion, as a
   percentage of the criterion's weight, with a justification. Price is not scored by people:
   it is computed by the formula the competition published.
4. Moderation fixes one consensus score per bid and criterion. The results (points per
   criterion with their working, totals, ranking) follow from the moderated scores.
5. The award goes to the best bid, or to another with a recorded reason, or the competition
   closes with no award. Every bidder gets a letter with its scores, the winner's and why.
6. With standstill the award is intended until the standstill ends, then confirmed. Confirming
   creates the call-off contract and commits its value to the allocation in one transaction,
   never past the allocation's amount however many awards are confirmed at once (DESIGN 5).
7. Invoices paid against a call-off never add up to more than its value.

Services check, change, audit and flush; the caller commits, and rolls back on ServiceError.
"""
from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from .. import audit, clock, mail
from ..extensions import db
from ..filters import money
from ..models import (
    Award,
    Bid,
    CallOff,
    Competition,
    Criterion,
    Invoice,
    ModeratedScore,
    Organisation,
    PanelMember,
    Score,
    User,
)
from . import ServiceError, notify
from .competitions import commit_to_budget

SCORED_KINDS = ("quality", "social_value")
KIND_LABELS = {"quality": "Quality", "price": "Price", "social_value": "Social value"}
PRICE_FORMULA_LABELS = {
    "lowest_price_ratio": "lowest price ÷ bid price × weight",
    "linear_from_lowest": "weight × (1 − (bid price − lowest price) ÷ lowest price), never below 0",
}
CALL_OFF_TERM_MONTHS = 12
TWO_PLACES = Decimal("0.01")


# Who may act ----------------------------------------------------------------------------------

def panel_member(competition: Competition, user: User) -> PanelMember | None:
    return db.session.scalar(select(PanelMember).where(PanelMember.competition_id == competition.id,
                                                       PanelMember.user_id == user.id))


def panel(competition: Competition) -> list[PanelMember]:
    return list(db.session.scalars(
        select(PanelMember).where(PanelMember.competition_id == competition.id)
        .options(selectinload(PanelMember.user)).order_by(PanelMember.id)))


def _require_buyer_of(competition: Competition, user: User) -> None:
    if user.role != "buyer" or user.organisation_id != competition.buyer_organisation_id:
        raise ServiceError("Only buyers of the organisation running this competition can do this")


def _require_panel_member(competition: Competition, user: User) -> PanelMember:
    _require_buyer_of(competition, user)
    member = panel_member(competition, user)
    if member is None:
        raise ServiceError("Only members of this competition’s evaluation panel can do this")
    return member


def _require_evaluator(competition: Competition, user: User) -> PanelMember:
    """A panel member who has declared no conflict of interest: the only people who see the
    bids, score them and decide (a conflicted member must take no part at all)."""
    member = _require_panel_member(competition, user)
    if member.declared_at is None:
        raise ServiceError("Declare whether you have a conflict of interest first", field="conflicted")
    if member.conflicted:
        raise ServiceError("You declared a conflict of interest, so you cannot take part in this evaluation")
    return member


def _lock(competition: Competition) -> None:
    """Take the competition's row lock, then re-read it, so two people deciding at once (an award
    and a closure, two awards) are put one after the other and the second sees the first's result.

    The lock is taken by an UPDATE that changes nothing rather than SELECT ... FOR UPDATE: as a
    write it goes through the same path as every other write (dps.audit takes the audit chain's
    lock before a transaction's first write, so all writers lock in one order and cannot
    deadlock), and on PostgreSQL the re-read that follows is a new statement that sees whatever
    the transaction it waited for committed. SQLite: every transaction already holds the write
    lock (BEGIN IMMEDIATE)."""
    db.session.execute(update(Competition).where(Competition.id == competition.id)
                       .values(reference=Competition.reference).execution_options(synchronize_session=False))
    db.session.refresh(competition)


def _require_not_finished(competition: Competition) -> None:
    if competition.cancelled_at is not None:
        raise ServiceError("This competition was cancelled")
    if competition.closed_without_award_at is not None:
        raise ServiceError("This competition was closed with no award")


def _require_in_evaluation(competition: Competition) -> None:
    _require_not_finished(competition)
    if competition.opened_at is None:
        raise ServiceError("Open the bids first")
    if competition.award is not None:
        raise ServiceError("The award has been decided, so the evaluation can no longer change")


def _is_unique_violation(exc: IntegrityError) -> bool:
    original = exc.orig
    if getattr(original, "sqlstate", None) == "23505":  # PostgreSQL (psycopg): unique_violation
        return True
    return "UNIQUE constraint failed" in str(original)  # SQLite


def _insert_once(obj: object, message: str) -> None:
    """Insert ``obj`` in a savepoint: when a UNIQUE constraint refuses it (someone else got there
    first), the refusal becomes ``message`` and the rest of the transaction is untouched. Any
    other integrity error is a bug, and is raised as it is."""
    try:
        with db.session.begin_nested():
            db.session.add(obj)
            db.session.flush()
    except IntegrityError as exc:
        if not _is_unique_violation(exc):
            raise
        raise ServiceError(message) from None


def submitted_bids(competition: Competition) -> list[Bid]:
    return list(db.session.scalars(
        select(Bid).join(Bid.organisation)
        .where(Bid.competition_id == competition.id, Bid.state == "submitted")
        .options(selectinload(Bid.answers), selectinload(Bid.documents), selectinload(Bid.organisation))
        .order_by(Organisation.name, Bid.id)))


def bidder_name(bid: Bid) -> str:
    return bid.organisation.trading_name or bid.organisation.name


# Panel ----------------------------------------------------------------------------------------

def may_manage_panel(competition: Competition, user: User) -> bool:
    """The competition's creator and the members already on its panel choose the panel."""
    return (user.role == "buyer" and user.organisation_id == competition.buyer_organisation_id
            and (competition.created_by_id == user.id or panel_member(competition, user) is not None))


def add_panel_member(competition: Competition, user: User, member: User) -> PanelMember:
    _require_buyer_of(competition, user)
    if not may_manage_panel(competition, user):
        raise ServiceError("Only the person who created this competition or a panel member can choose the panel",
                           field="user_id")
    _require_not_finished(competition)
    if competition.award is not None:
        raise ServiceError("The award has been decided, so the panel can no longer change", field="user_id")
    if member.role != "buyer" or member.organisation_id != competition.buyer_organisation_id or not member.active:
        raise ServiceError("Choose a buyer of your organisation", field="user_id")
    if panel_member(competition, member) is not None:
        raise ServiceError(f"{member.name} is already on the panel", field="user_id")
    row = PanelMember(competition_id=competition.id, user_id=member.id)
    _insert_once(row, f"{member.name} is already on the panel")
    audit.record("panel.member_added", "competition", competition.id, {"user_id": member.id, "email": member.email},
                 actor=user)
    return row


# Opening and declarations ---------------------------------------------------------------------

def open_competition(competition: Competition, user: User) -> None:
    """Open the bids to the panel: only after the tender deadline, once, by a panel member."""
    _require_panel_member(competition, user)
    _require_not_finished(competition)
    if competition.published_at is None:
        raise ServiceError("This competition has not been published")
    now = clock.now()
    if now < competition.tender_deadline:
        raise ServiceError(f"You can open the bids after the tender deadline, {clock.fmt(competition.tender_deadline)}")
    # Conditional on it not being open yet, so two panel members pressing the button together
    # make one opening (and one audit event), not two.
    done = db.session.execute(
        update(Competition).where(Competition.id == competition.id, Competition.opened_at.is_(None))
        .values(opened_at=now, opened_by_id=user.id).execution_options(synchronize_session=False)).rowcount
    if done != 1:
        raise ServiceError("The bids have already been opened")
    db.session.refresh(competition)
    count = db.session.scalar(select(func.count(Bid.id)).where(Bid.competition_id == competition.id,
                                                               Bid.state == "submitted"))
    audit.record("competition.opened", "competition", competition.id,
                 {"reference": competition.reference, "bids": count, "opened_at": now.isoformat()}, actor=user)


def declare(competition: Competition, user: User, conflicted: bool, declaration: str) -> PanelMember:
    """A panel member's declaration of interests, made after opening (when the bidders are known)
    and before seeing any bid. A declared conflict excludes them; no conflict can later become a
    conflict (circumstances change), never the other way round."""
    member = _require_panel_member(competition, user)
    _require_not_finished(competition)
    if competition.opened_at is None:
        raise ServiceError("You can declare your interests once the bids are opened and you know who bid",
                           field="conflicted")
    declaration = (declaration or "").strip()
    if member.declared_at is not None:
        if member.conflicted:
            raise ServiceError("You have declared a conflict of interest: that cannot be undone", field="conflicted")
        if not conflicted:
            raise ServiceError("You have already declared no conflict of interest", field="conflicted")
    if conflicted and not declaration:
        raise ServiceError("Describe the conflict of interest", field="declaration")
    if not conflicted and not declaration:
        declaration = "I have no conflict of interest with any of the bidders."
    before = {"declared_at": member.declared_at.isoformat() if member.declared_at else None,
              "conflicted": member.conflicted}
    member.declared_at = clock.now()
    member.conflicted = conflicted
    member.declaration = declaration
    db.session.flush()
    audit.record("panel.declared", "competition", competition.id,
                 {"panel_member_id": member.id, "before": before, "conflicted": conflicted,
                  "declaration": declaration}, actor=user)
    return member


# Scoring --------------------------------------------------------------------------------------

def _check_scored_pair(competition: Competition, bid: Bid, criterion: Criterion) -> None:
    if bid.competition_id != competition.id or bid.state != "submitted":
        raise ServiceError("Choose a bid submitted to this competition")
    if criterion.competition_id != competition.id:
        raise ServiceError("Choose a criterion of this competition")
    if criterion.kind not in SCORED_KINDS:
        raise ServiceError("Price is not scored by the panel: its points come from the published formula")


def _check_score(score: int | None, justification: str | None) -> str:
    if score is None or not 0 <= score <= 100:
        raise ServiceError("Enter a score from 0 to 100", field="score")
    justification = (justification or "").strip()
    if not justification:
        raise ServiceError("Enter the justification for this score: bidders will read it", field="justification")
    return justification


def score(competition: Competition, user: User, bid: Bid, criterion: Criterion, score: int | None,
          justification: str | None) -> Score:
    """One panel member's score of a bid on a criterion (a percentage of its weight). A member
    may change their own score until the panel moderates it."""
    member = _require_evaluator(competition, user)
    _require_in_evaluation(competition)
    _check_scored_pair(competition, bid, criterion)
    justification = _check_score(score, justification)
    if _moderated(bid, criterion) is not None:
        raise ServiceError("The panel has moderated this score, so individual scores can no longer change")
    row = db.session.scalar(select(Score).where(Score.bid_id == bid.id, Score.criterion_id == criterion.id,
                                                Score.panel_member_id == member.id))
    before = {"score": row.score, "justification": row.justification} if row else None
    now = clock.now()
    if row is None:
        row = Score(bid_id=bid.id, criterion_id=criterion.id, panel_member_id=member.id, score=score,
                    justification=justification, scored_at=now)
        _insert_once(row, "Your score was saved from another window: reload the page to see it")
    else:
        row.score, row.justification, row.scored_at = score, justification, now
        db.session.flush()
    audit.record("bid.scored", "bid", bid.id,
                 {"competition_id": competition.id, "criterion_id": criterion.id, "panel_member_id": member.id,
                  "before": before, "after": {"score": score, "justification": justification}}, actor=user)
    return row


def _moderated(bid: Bid, criterion: Criterion) -> ModeratedScore | None:
    return db.session.scalar(select(ModeratedScore).where(ModeratedScore.bid_id == bid.id,
                                                          ModeratedScore.criterion_id == criterion.id))


def evaluators(competition: Competition) -> list[PanelMember]:
    return [m for m in panel(competition) if m.declared_at is not None and not m.conflicted]


def moderate(competition: Competition, user: User, bid: Bid, criterion: Criterion, score: int | None,
             justification: str | None) -> ModeratedScore:
    """The panel's consensus score for a bid on a criterion, once every member taking part has
    scored it. One per pair; it may be revised until the award is decided."""
    _require_evaluator(competition, user)
    _require_in_evaluation(competition)
    _check_scored_pair(competition, bid, criterion)
    justification = _check_score(score, justification)
    scored = set(db.session.scalars(select(Score.panel_member_id).where(Score.bid_id == bid.id,
                                                                        Score.criterion_id == criterion.id)))
    missing = [m.user.name for m in evaluators(competition) if m.id not in scored]
    if missing:
        raise ServiceError(f"Every panel member must score this before moderation. Still to score: {', '.join(missing)}",
                           field="score")
    row = _moderated(bid, criterion)
    before = {"score": row.score, "justification": row.justification} if row else None
    now = clock.now()
    if row is None:
        row = ModeratedScore(bid_id=bid.id, criterion_id=criterion.id, score=score, justification=justification,
                             moderated_at=now, moderated_by_id=user.id)
        _insert_once(row, "Another panel member moderated this score at the same moment: reload the page to see it")
    else:
        row.score, row.justification, row.moderated_at, row.moderated_by_id = score, justification, now, user.id
        db.session.flush()
    audit.record("bid.moderated", "bid", bid.id,
                 {"competition_id": competition.id, "criterion_id": criterion.id, "before": before,
                  "after": {"score": score, "justification": justification}}, actor=user)
    return row


# Results --------------------------------------------------------------------------------------

def _points(value: Decimal) -> Decimal:
    """Points are published to 2 decimal places, and the totals add up the published figures."""
    return value.quantize(TWO_PLACES, rounding=ROUND_HALF_UP)


def price_criterion(competition: Competition) -> Criterion | None:
    return next((c for c in competition.criteria if c.kind == "price"), None)


def price_points(competition: Competition, bids: Iterable[Bid] | None = None) -> dict[int, tuple[Decimal | None, str]]:
    """Points and working for price, per submitted bid, by the competition's published formula."""
    criterion = price_criterion(competition)
    bids = list(submitted_bids(competition) if bids is None else bids)
    priced = [b.price_pence for b in bids if b.price_pence]
    if criterion is None or not priced:
        return {b.id: (None, "No price given") for b in bids}
    weight = criterion.weight
    lowest = min(priced)
    result: dict[int, tuple[Decimal | None, str]] = {}
    for bid in bids:
        price = bid.price_pence
        if not price:
            result[bid.id] = (None, "No price given")
            continue
        if competition.price_formula == "linear_from_lowest":
            raw = Decimal(weight) * (1 - Decimal(price - lowest) / Decimal(lowest))
            points = _points(max(Decimal(0), raw))
            working = (f"{weight} × (1 − (this {money(price)} − lowest {money(lowest)}) ÷ lowest {money(lowest)})"
                       f" = {points:.2f}")
            if raw < 0:
                working += " (the formula gives less than 0, so 0)"
        else:
            points = _points(Decimal(lowest) / Decimal(price) * weight)
            working = f"lowest {money(lowest)} ÷ this {money(price)} × {weight} = {points:.2f}"
        result[bid.id] = (points, working)
    return result


@dataclass(frozen=True)
class Line:
    criterion: Criterion
    points: Decimal | None
    working: str
    # Quality and social value: the moderated score (per cent of the weight) and its reason.
    score: int | None = None
    justification: str | None = None


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
    """Per submitted bid: points per criterion with their working, the total, and the rank (only
    once every bid is fully moderated), best first."""
    bids = submitted_bids(competition) if bids is None else bids
    if not bids:
        return []
    prices = price_points(competition, bids)
    moderated = {(m.bid_id, m.criterion_id): m for m in db.session.scalars(
        select(ModeratedScore).where(ModeratedScore.bid_id.in_([b.id for b in bids])))}
    rows: list[BidResult] = []
    for bid in bids:
        lines = []
        for criterion in competition.criteria:
            if criterion.kind == "price":
                points, working = prices[bid.id]
                lines.append(Line(criterion, points, working))
                continue
            m = moderated.get((bid.id, criterion.id))
            if m is None:
                lines.append(Line(criterion, None, "Not moderated yet"))
                continue
            points = _points(Decimal(m.score) * criterion.weight / 100)
            lines.append(Line(criterion, points, f"{m.score}% × {criterion.weight} = {points:.2f}", m.score,
                              m.justification))
        row = BidResult(bid, lines)
        if row.complete:
            row.total = sum((line.points for line in lines), Decimal("0.00"))
        rows.append(row)
    if all(r.complete for r in rows):
        totals = [r.total for r in rows]
        for r in rows:
            r.rank = 1 + sum(1 for t in totals if t > r.total)
            r.joint = totals.count(r.total) > 1
        rows.sort(key=lambda r: (r.rank, r.supplier_name))
    return rows


# Award ----------------------------------------------------------------------------------------

def term_end(starts_on: date, months: int = CALL_OFF_TERM_MONTHS) -> date:
    """The last day of a term of ``months`` starting on ``starts_on``: the day before the same
    date ``months`` later (when that date does not exist, 29 February in a common year, the
    anniversary is the 1st of the next month)."""
    month_index = starts_on.month - 1 + months
    year, month = starts_on.year + month_index // 12, month_index % 12 + 1
    last_day = calendar.monthrange(year, month)[1]
    if starts_on.day <= last_day:
        anniversary = date(year, month, starts_on.day)
    else:
        anniversary = date(year, month, last_day) + timedelta(days=1)
    return anniversary - timedelta(days=1)


def default_term() -> tuple[date, date]:
    """A call-off starts the day after confirmation and runs for 12 months."""
    starts_on = clock.today_london() + timedelta(days=1)
    return starts_on, term_end(starts_on)


def _check_affordable(competition: Competition, value_pence: int) -> None:
    """Refuse early an award the budget cannot pay for now, so no letters promise it. The budget
    is committed only on confirmation, where the conditional update is the real guard."""
    allocation = competition.allocation
    cap = allocation.line.cap_per_call_off_pence
    if cap is not None and value_pence > cap:
        raise ServiceError(f"{allocation.line.programme} call-offs are capped at {money(cap)} each", field="value")
    left = allocation.amount_pence - allocation.committed_pence
    if value_pence > left:
        raise ServiceError(f"There is not enough left in “{allocation.project_title}”: {money(left)} remains, "
                           f"and this call-off needs {money(value_pence)}", field="value")


def decide_award(competition: Competition, user: User, bid: Bid, value_pence: int | None,
                 not_best_reason: str | None = None, *, starts_on: date | None = None,
                 ends_on: date | None = None, irrecoverable_vat_pence: int | None = None) -> Award:
    """Decide the award and write to every bidder. With standstill the award is intended until
    the standstill ends; without, it is confirmed at once (``starts_on``/``ends_on`` and
    ``irrecoverable_vat_pence`` then go to the call-off, see confirm_award)."""
    _require_evaluator(competition, user)
    _lock(competition)
    _require_not_finished(competition)
    if competition.opened_at is None:
        raise ServiceError("Open the bids first")
    if competition.award is not None:
        raise ServiceError("This competition already has an award")
    if bid.competition_id != competition.id or bid.state != "submitted":
        raise ServiceError("Choose a bid submitted to this competition", field="bid_id")
    rows = results(competition)
    if not all(r.complete for r in rows):
        raise ServiceError("Moderate every criterion of every bid before deciding the award", field="bid_id")
    chosen = next(r for r in rows if r.bid.id == bid.id)
    not_best_reason = (not_best_reason or "").strip() or None
    if chosen.rank == 1:
        not_best_reason = None  # the best bid needs no reason, and exports must not flag it
    elif not_best_reason is None:
        raise ServiceError(f"{chosen.supplier_name} is ranked {chosen.rank}, not first: enter why the award goes to it",
                           field="not_best_reason")
    if value_pence is None or value_pence <= 0:
        raise ServiceError("Enter the call-off’s value, more than £0", field="value")
    if bid.price_pence is not None and value_pence > bid.price_pence:
        raise ServiceError(f"The call-off’s value cannot be more than the bid’s price, {money(bid.price_pence)}",
                           field="value")
    _check_affordable(competition, value_pence)

    now = clock.now()
    standstill_ends_at = None
    if competition.standstill and competition.standstill_days > 0:
        standstill_ends_at = now + timedelta(days=competition.standstill_days)
    award = Award(competition_id=competition.id, bid_id=bid.id, value_pence=value_pence,
                  not_best_reason=not_best_reason, decided_at=now, decided_by_id=user.id,
                  standstill_ends_at=standstill_ends_at)
    # The UNIQUE constraint on the competition is what finally stops a second award.
    _insert_once(award, "This competition already has an award")
    db.session.refresh(competition)
    letters = _send_letters(competition, award, rows, chosen)
    audit.record("award.decided", "competition", competition.id, {
        "award_id": award.id, "bid_id": bid.id, "supplier_organisation_id": bid.organisation_id,
        "value_pence": value_pence, "rank": chosen.rank, "not_best_reason": not_best_reason,
        "standstill_ends_at": standstill_ends_at.isoformat() if standstill_ends_at else None,
        "letters": letters}, actor=user)
    if standstill_ends_at is None:
        confirm_award(award, user, starts_on=starts_on, ends_on=ends_on,
                      irrecoverable_vat_pence=irrecoverable_vat_pence)
    return award


def _score_lines(row: BidResult, count: int) -> str:
    lines = []
    for line in row.lines:
        c = line.criterion
        text = f"- {KIND_LABELS[c.kind]}: {c.title} (weight {c.weight}%): {line.points:.2f} points ({line.working})"
        if line.justification:
            text += f"\n  Why: {line.justification}"
        lines.append(text)
    lines.append(f"Total: {row.total:.2f} points out of 100, ranked {row.rank}{' (joint)' if row.joint else ''} "
                 f"of {count}.")
    return "\n".join(lines)


def _send_letters(competition: Competition, award: Award, rows: list[BidResult], winner: BidResult) -> int:
    """An award letter to the winner and a regret letter to every other bidder: their own scores,
    the winner's name and scores, the reasons, and when the standstill ends. Returns how many
    emails were queued."""
    count = len(rows)
    buyer = competition.buyer_organisation.name
    if award.standstill_ends_at is not None:
        standstill = (f"The standstill period ends on {clock.fmt(award.standstill_ends_at)}. The contract will not "
                      f"be confirmed before then. If you have concerns about this decision, tell {buyer} before "
                      "the standstill period ends.")
    else:
        standstill = ("There is no standstill period for this call-off (it is not required for call-offs under a "
                      "Dynamic Purchasing System), so the award is confirmed now.")
    reason = (f"\nThe award does not go to the highest-scoring bid. The reason: {award.not_best_reason}\n"
              if award.not_best_reason else "")
    winner_scores = _score_lines(winner, count)
    queued = 0
    for row in rows:
        own = _score_lines(row, count)
        if row.bid.id == winner.bid.id:
            subject = f"Your bid is successful: {competition.title} ({competition.reference})"
            body = (f"{buyer} has decided to award the call-off contract for {competition.title} "
                    f"({competition.reference}) to {row.supplier_name}.\n\n"
                    f"Your scores:\n{own}\n{reason}\n{standstill}\n\n"
                    f"{notify.link(f'/supplier/competitions/{competition.id}')}\n")
        else:
            subject = f"Your bid was not successful: {competition.title} ({competition.reference})"
            body = (f"{buyer} has decided to award the call-off contract for {competition.title} "
                    f"({competition.reference}) to {winner.supplier_name}. Your bid was not successful.\n\n"
                    f"Your scores:\n{own}\n\n"
                    f"The scores of the successful bid, from {winner.supplier_name}:\n{winner_scores}\n{reason}\n"
                    f"{standstill}\n\n"
                    f"{notify.link(f'/supplier/competitions/{competition.id}')}\n")
        for email in notify.organisation_emails(row.bid.organisation):
            mail.queue(email, subject, body)
            queued += 1
    return queued


def close_without_award(competition: Competition, user: User, reason: str | None) -> None:
    """End the competition with no award (no suitable bid, or none at all); bidders are told why."""
    _require_evaluator(competition, user)
    _lock(competition)
    _require_not_finished(competition)
    if competition.opened_at is None:
        raise ServiceError("Open the bids first", field="reason")
    if competition.award is not None:
        raise ServiceError("This competition already has an award", field="reason")
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("Enter why there is no award: bidders will read it", field="reason")
    competition.closed_without_award_at = clock.now()
    competition.no_award_reason = reason
    db.session.flush()
    bids = submitted_bids(competition)
    audit.record("competition.closed_without_award", "competition", competition.id,
                 {"reason": reason, "bids": len(bids)}, actor=user)
    for bid in bids:
        for email in notify.organisation_emails(bid.organisation):
            mail.queue(email, f"No award: {competition.title} ({competition.reference})",
                       f"{competition.buyer_organisation.name} has closed this mini-competition without awarding a "
                       f"contract.\n\nWhy: {reason}\n")


def confirm_award(award: Award, user: User, *, starts_on: date | None = None, ends_on: date | None = None,
                  irrecoverable_vat_pence: int | None = None) -> CallOff:
    """Confirm the award (after the standstill, if any): create the call-off contract and commit
    its value to the allocation, in the caller's one transaction. If the allocation has not
    enough left, ServiceError says how much remains; the caller rolls back and nothing is kept.

    ``irrecoverable_vat_pence``: the part of the value (which includes VAT) that is VAT the buyer
    cannot reclaim, which the Transparency Code asks councils to publish. Councils recover most
    VAT (VAT Act 1994 s33), so it is usually 0, the default."""
    competition = award.competition
    _require_evaluator(competition, user)
    _lock(competition)
    if competition.cancelled_at is not None:
        raise ServiceError("This competition was cancelled")
    if award.confirmed_at is not None:
        raise ServiceError("This award has already been confirmed")
    now = clock.now()
    if award.standstill_ends_at is not None and now < award.standstill_ends_at:
        raise ServiceError(f"The standstill period ends on {clock.fmt(award.standstill_ends_at)}: you can confirm "
                           "the award after that")
    starts_on = starts_on or default_term()[0]
    ends_on = ends_on or term_end(starts_on)
    if ends_on < starts_on:
        raise ServiceError("The end date must be the same as or after the start date", field="ends_on")
    irrecoverable_vat_pence = irrecoverable_vat_pence or 0
    if irrecoverable_vat_pence < 0:
        raise ServiceError("Irrecoverable VAT must be £0 or more", field="irrecoverable_vat")
    if irrecoverable_vat_pence > award.value_pence:
        raise ServiceError(f"Irrecoverable VAT cannot be more than the call-off’s value, {money(award.value_pence)}",
                           field="irrecoverable_vat")
    # Conditional, so two confirmations of one award at the same moment make one call-off.
    done = db.session.execute(
        update(Award).where(Award.id == award.id, Award.confirmed_at.is_(None))
        .values(confirmed_at=now).execution_options(synchronize_session=False)).rowcount
    if done != 1:
        raise ServiceError("This award has already been confirmed")
    set_committed_value(award, "confirmed_at", now)
    bid = award.bid
    call_off = CallOff(reference=f"{competition.reference}-C", competition_id=competition.id, award_id=award.id,
                       supplier_organisation_id=bid.organisation_id,
                       buyer_organisation_id=competition.buyer_organisation_id,
                       allocation_id=competition.allocation_id, value_pence=award.value_pence, paid_pence=0,
                       irrecoverable_vat_pence=irrecoverable_vat_pence, starts_on=starts_on, ends_on=ends_on,
                       created_at=now)
    for email in notify.organisation_emails(bid.organisation):
        mail.queue(email, f"Contract confirmed: {competition.title} ({call_off.reference})",
                   f"{competition.buyer_organisation.name} has confirmed the award of {competition.title} to "
                   f"{bidder_name(bid)}.\n\nCall-off contract: {call_off.reference}\nValue: {money(call_off.value_pence)}\n"
                   f"Starts: {clock.fmt_date(starts_on)}\nEnds: {clock.fmt_date(ends_on)}\n")
    # The budget guard, as late as it can be: its row lock on the allocation, which every other
    # confirmation charged to it queues for, is then held only for the call-off's insert, the
    # audit events and the commit. Before the insert, not after: the insert's foreign key takes a
    # share lock on the allocation, and upgrading that to the UPDATE's lock while the DPS team
    # waits for the row would deadlock.
    committed = commit_to_budget(competition.allocation_id, award.value_pence)
    # No savepoint needed: the conditional UPDATE above let only this transaction confirm the
    # award, so its call-off is the only one (the UNIQUE constraint stays as the last defence).
    db.session.add(call_off)
    db.session.flush()
    audit.record("award.confirmed", "competition", competition.id,
                 {"award_id": award.id, "call_off_id": call_off.id}, actor=user)
    audit.record("call_off.created", "call_off", call_off.id, {
        "reference": call_off.reference, "competition_id": competition.id,
        "supplier_organisation_id": call_off.supplier_organisation_id, "value_pence": call_off.value_pence,
        "irrecoverable_vat_pence": call_off.irrecoverable_vat_pence, "allocation_id": competition.allocation_id,
        "allocation_committed_pence": committed,
        "starts_on": starts_on.isoformat(), "ends_on": ends_on.isoformat()}, actor=user)
    return call_off


# Invoices -------------------------------------------------------------------------------------

def record_invoice(call_off: CallOff, user: User, supplier_reference: str | None, amount_pence: int | None,
                   paid_on: date | None) -> Invoice:
    """Record an invoice paid against a call-off. What is paid never exceeds the call-off's value,
    even with two invoices recorded at once: a conditional UPDATE checked by its row count, and
    the CHECK constraint on call_offs behind it."""
    if user.role != "buyer" or user.organisation_id != call_off.buyer_organisation_id:
        raise ServiceError("Only buyers of the organisation that holds this call-off can record its invoices")
    supplier_reference = (supplier_reference or "").strip()
    if not supplier_reference:
        raise ServiceError("Enter the supplier’s invoice number", field="supplier_reference")
    if len(supplier_reference) > 100:
        raise ServiceError("The invoice number must be 100 characters or fewer", field="supplier_reference")
    if amount_pence is None or amount_pence <= 0:
        raise ServiceError("Enter the amount paid, more than £0", field="amount")
    if paid_on is None:
        raise ServiceError("Enter the date the invoice was paid", field="paid_on")
    if paid_on > clock.today_london():
        raise ServiceError("The date paid must be today or in the past", field="paid_on")
    done = db.session.execute(
        update(CallOff)
        .where(CallOff.id == call_off.id, CallOff.paid_pence + amount_pence <= CallOff.value_pence)
        .values(paid_pence=CallOff.paid_pence + amount_pence)
        .execution_options(synchronize_session=False)).rowcount
    db.session.refresh(call_off)
    if done != 1:
        left = call_off.value_pence - call_off.paid_pence
        raise ServiceError(f"This would pay more than the call-off’s value of {money(call_off.value_pence)}: "
                           f"{money(left)} is left to pay", field="amount")
    invoice = Invoice(call_off_id=call_off.id, supplier_reference=supplier_reference, amount_pence=amount_pence,
                      paid_on=paid_on, recorded_at=clock.now(), recorded_by_id=user.id)
    db.session.add(invoice)
    db.session.flush()
    audit.record("invoice.recorded", "call_off", call_off.id, {
        "invoice_id": invoice.id, "supplier_reference": supplier_reference, "amount_pence": amount_pence,
        "paid_on": paid_on.isoformat(), "paid_pence_after": call_off.paid_pence}, actor=user)
    return invoice
