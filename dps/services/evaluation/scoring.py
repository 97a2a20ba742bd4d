"""Scoring and moderation: each evaluator marks every bid alone, then the panel agrees one score.

Scoring. Every panel member who declared no conflict (an *evaluator*) marks each submitted bid on
each quality and social value criterion, as a percentage of the criterion's weight, with a
justification; price is never marked by people (dps.services.evaluation.ranking). A member
*submits* their scores the moment their last mark goes in (every bid × criterion has one): the
moment is recorded (``PanelMember.scores_submitted_at``) and audited, and from then on their
marks are fixed.

Blind scoring. A mark is seen by its author, and by another member only once both of them have
submitted (``sees_marks_of``); the moderated scores and the ranking, which come from everyone's
marks, likewise only by members who have submitted (``sees_panel_results``). So nobody reads a
colleague's mark, or the panel's, before their own are fixed, and a mark still being made is
never shown to anyone but its author.

Moderation. It opens when every evaluator has submitted (``moderation_refusal``): members who
have not declared yet are not evaluators and are not waited for; if one declares no conflict
later, moderation and the award wait for their submission too. Any evaluator may moderate: they
see every evaluator's mark and justification side by side and record the consensus with its
reasons (which bidders read). Where the consensus *departs* from the evaluators' marks (outside
their range, or more than ``DEPARTURE_POINTS`` from their mean: ``departure``) the moderator must
also say why; that reason is kept for the record and the audit log, not sent to bidders. A
moderated score may be revised until the award is decided.

Services check, change, audit and flush; the caller commits, and rolls back on ServiceError.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select

from ... import audit, clock
from ...extensions import db
from ...models import Bid, Competition, Criterion, ModeratedScore, PanelMember, Score, User
from .. import ServiceError
from .common import (
    FieldErrors,
    bid_count,
    check_bid,
    evaluators,
    insert_once,
    is_evaluator,
    lock_member,
    panel,
    require_evaluator,
    require_stage,
    scored_criteria,
)

# A consensus further than this from the evaluators' mean mark (points of 100) departs from them.
DEPARTURE_POINTS = 10


# Progress ---------------------------------------------------------------------------------------

def marks_needed(competition: Competition, bids: int | None = None) -> int:
    """How many marks each evaluator makes: every submitted bid on every scored criterion."""
    return (bid_count(competition) if bids is None else bids) * len(scored_criteria(competition))


def marks_by_member(members: Sequence[PanelMember]) -> dict[int, int]:
    """How many marks each member has made, by member id (one GROUP BY, however many bids)."""
    if not members:
        return {}
    counted = dict(db.session.execute(
        select(Score.panel_member_id, func.count()).where(Score.panel_member_id.in_([m.id for m in members]))
        .group_by(Score.panel_member_id)).all())
    return {m.id: counted.get(m.id, 0) for m in members}


def has_submitted(member: PanelMember | None) -> bool:
    return member is not None and member.scores_submitted_at is not None


def sees_marks_of(viewer: PanelMember | None, author: PanelMember) -> bool:
    """The blind-scoring rule for one mark: its author sees it; another member, once both have
    submitted (and the author still takes part)."""
    if viewer is None:
        return False
    if viewer.id == author.id:
        return True
    return has_submitted(viewer) and has_submitted(author) and is_evaluator(author)


def sees_panel_results(viewer: PanelMember | None) -> bool:
    """Moderated scores and the ranking come from everyone's marks: seen once one's own are in."""
    return is_evaluator(viewer) and has_submitted(viewer)


def moderation_refusal(members: Sequence[PanelMember]) -> str | None:
    """Why moderation cannot start yet, or None when every evaluator has submitted."""
    taking_part = evaluators(list(members))
    if not taking_part:
        return "Nobody on the panel has declared no conflict of interest yet"
    waiting = [m.user.name for m in taking_part if m.scores_submitted_at is None]
    if waiting:
        return ("Moderation starts when every evaluator has submitted their scores. "
                f"Still to submit: {', '.join(waiting)}")
    return None


# Scoring ----------------------------------------------------------------------------------------

def _criteria_asked(competition: Competition, asked: Mapping[int, object]) -> list[Criterion]:
    """The scored criteria, refusing any id in ``asked`` that is not one of them."""
    scored = scored_criteria(competition)
    known = {c.id for c in scored}
    for criterion_id in asked:
        if criterion_id in known:
            continue
        criterion = next((c for c in competition.criteria if c.id == criterion_id), None)
        if criterion is not None:  # the price criterion
            raise ServiceError("Price is not scored by the panel: its points come from the published formula")
        raise ServiceError("Choose a criterion of this competition")
    return scored


def score_bid(competition: Competition, user: User, bid: Bid,
              marks: Mapping[int, tuple[int | None, str | None]]) -> list[Score]:
    """An evaluator's marks for one bid: ``marks`` maps a criterion id to (score, justification).
    A criterion left wholly blank is skipped (saved later); one half filled in is refused next to
    its field (``score_<id>``, ``justification_<id>``). The last mark the member makes submits
    their scores."""
    member = require_evaluator(competition, user)
    require_stage(competition, "score")
    check_bid(competition, bid)
    criteria = _criteria_asked(competition, marks)
    lock_member(member)
    if member.scores_submitted_at is not None:
        raise ServiceError(f"You submitted your scores on {clock.fmt(member.scores_submitted_at)}, so they can no "
                           "longer change. Moderation records the panel’s agreed score.")
    errors: list[tuple[str, str]] = []
    given: list[tuple[Criterion, int, str]] = []
    for criterion in criteria:
        value, justification = marks.get(criterion.id, (None, None))
        justification = (justification or "").strip()
        if value is None and not justification:
            continue
        if value is None or not 0 <= value <= 100:
            errors.append((f"score_{criterion.id}", f"Enter a score from 0 to 100 for {criterion.title}"))
        if not justification:
            errors.append((f"justification_{criterion.id}", f"Enter why you gave {criterion.title} this score"))
        given.append((criterion, value, justification))
    if errors:
        raise FieldErrors(errors)
    if not given:
        raise ServiceError("Enter a score and its justification for at least one criterion",
                           field=f"score_{criteria[0].id}")
    existing = {s.criterion_id: s for s in db.session.scalars(
        select(Score).where(Score.bid_id == bid.id, Score.panel_member_id == member.id))}
    now = clock.now()
    rows = []
    for criterion, value, justification in given:
        row = existing.get(criterion.id)
        before = {"score": row.score, "justification": row.justification} if row else None
        if row is None:
            row = Score(bid_id=bid.id, criterion_id=criterion.id, panel_member_id=member.id, score=value,
                        justification=justification, scored_at=now)
            insert_once(row, "Your score was saved from another window: reload the page to see it")
        else:
            row.score, row.justification, row.scored_at = value, justification, now
        rows.append(row)
        audit.record("bid.scored", "bid", bid.id,
                     {"competition_id": competition.id, "criterion_id": criterion.id, "panel_member_id": member.id,
                      "before": before, "after": {"score": value, "justification": justification}}, actor=user)
    db.session.flush()
    _note_submission(competition, member, user)
    return rows


def score(competition: Competition, user: User, bid: Bid, criterion: Criterion, score: int | None,
          justification: str | None) -> Score:
    """One mark: ``score_bid`` for one criterion."""
    return score_bid(competition, user, bid, {criterion.id: (score, justification)})[0]


def _note_submission(competition: Competition, member: PanelMember, user: User) -> None:
    """Record the submission when the member's marks now cover every bid and criterion. The
    member's row lock (taken by ``score_bid``) makes this count see every mark of theirs."""
    needed = marks_needed(competition)
    have = db.session.scalar(select(func.count()).select_from(Score).where(Score.panel_member_id == member.id))
    if not needed or have < needed:
        return
    member.scores_submitted_at = clock.now()
    db.session.flush()
    audit.record("panel.scores_submitted", "competition", competition.id,
                 {"panel_member_id": member.id, "marks": have,
                  "submitted_at": member.scores_submitted_at.isoformat()}, actor=user)


# Moderation -------------------------------------------------------------------------------------

def _mean_text(mean: Decimal) -> str:
    if mean == mean.to_integral_value():
        return str(int(mean))
    return str(mean.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def mean_mark(marks: Sequence[int]) -> Decimal | None:
    return Decimal(sum(marks)) / len(marks) if marks else None


def departure(consensus: int, marks: Sequence[int]) -> str | None:
    """How a consensus departs from the evaluators' marks, in words; None when it does not. It
    departs when it lies outside their range, or more than DEPARTURE_POINTS from their mean."""
    if not marks:
        return None
    low, high = min(marks), max(marks)
    if consensus < low or consensus > high:
        spread = str(low) if low == high else f"{low} to {high}"
        return f"outside the evaluators’ marks ({spread})"
    mean = mean_mark(marks)
    if abs(Decimal(consensus) - mean) > DEPARTURE_POINTS:
        return f"more than {DEPARTURE_POINTS} points from the evaluators’ mean mark ({_mean_text(mean)})"
    return None


def moderate_bid(competition: Competition, user: User, bid: Bid,
                 entries: Mapping[int, tuple[int | None, str | None, str | None]]) -> list[ModeratedScore]:
    """The panel's consensus for one bid: ``entries`` maps a criterion id to (score, reasons,
    departure reason). A criterion left wholly blank is skipped; errors come back next to their
    fields (``score_<id>``, ``justification_<id>``, ``departure_<id>``)."""
    require_evaluator(competition, user)
    require_stage(competition, "moderate")
    check_bid(competition, bid)
    criteria = _criteria_asked(competition, entries)
    members = panel(competition)
    refusal = moderation_refusal(members)
    if refusal is not None:
        raise ServiceError(refusal, field=f"score_{criteria[0].id}")
    taking_part = {m.id for m in evaluators(members)}
    marks: dict[int, list[int]] = defaultdict(list)
    for s in db.session.scalars(select(Score).where(Score.bid_id == bid.id)):
        if s.panel_member_id in taking_part:
            marks[s.criterion_id].append(s.score)
    errors: list[tuple[str, str]] = []
    given: list[tuple[Criterion, int, str, str | None, str | None]] = []
    for criterion in criteria:
        value, justification, reason = entries.get(criterion.id, (None, None, None))
        justification = (justification or "").strip()
        reason = (reason or "").strip() or None
        if value is None and not justification and reason is None:
            continue
        departs = None
        if value is None or not 0 <= value <= 100:
            errors.append((f"score_{criterion.id}", f"Enter the panel’s score for {criterion.title}, from 0 to 100"))
        else:
            departs = departure(value, marks[criterion.id])
        if not justification:
            errors.append((f"justification_{criterion.id}",
                           f"Enter the panel’s reasons for its score of {criterion.title}: bidders will read them"))
        if departs and reason is None:
            errors.append((f"departure_{criterion.id}",
                           f"The panel’s score of {value} for {criterion.title} is {departs}: enter why the panel "
                           "agreed it"))
        given.append((criterion, value, justification, reason, departs))
    if errors:
        raise FieldErrors(errors)
    if not given:
        raise ServiceError("Enter the panel’s score and reasons for at least one criterion",
                           field=f"score_{criteria[0].id}")
    existing = {m.criterion_id: m for m in db.session.scalars(
        select(ModeratedScore).where(ModeratedScore.bid_id == bid.id))}
    now = clock.now()
    rows = []
    for criterion, value, justification, reason, departs in given:
        row = existing.get(criterion.id)
        before = ({"score": row.score, "justification": row.justification, "departure_reason": row.departure_reason}
                  if row else None)
        if row is None:
            row = ModeratedScore(bid_id=bid.id, criterion_id=criterion.id, score=value, justification=justification,
                                 departure_reason=reason, moderated_at=now, moderated_by_id=user.id)
            insert_once(row, "Another panel member moderated this bid at the same moment: reload the page to see it")
        else:
            row.score, row.justification, row.departure_reason = value, justification, reason
            row.moderated_at, row.moderated_by_id = now, user.id
        rows.append(row)
        audit.record("bid.moderated", "bid", bid.id,
                     {"competition_id": competition.id, "criterion_id": criterion.id, "before": before,
                      "after": {"score": value, "justification": justification, "departure_reason": reason},
                      "marks": sorted(marks[criterion.id]), "departure": departs}, actor=user)
    db.session.flush()
    return rows


def moderate(competition: Competition, user: User, bid: Bid, criterion: Criterion, score: int | None,
             justification: str | None, departure_reason: str | None = None) -> ModeratedScore:
    """One moderated score: ``moderate_bid`` for one criterion."""
    return moderate_bid(competition, user, bid, {criterion.id: (score, justification, departure_reason)})[0]
