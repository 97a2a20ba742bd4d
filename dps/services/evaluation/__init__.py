"""Evaluation and award of a mini-competition, the call-off it creates, and invoices paid.

The sequence (PCR 2015 reg 34, the network's procedure), each step guarded by the competition's
lifecycle (``Competition.require(action, now)``, dps.models.competitions):
1. After the tender deadline a panel member opens the bids: an audited act (``panel``).
2. Each panel member declares whether they have a conflict of interest with any bidder. Whoever
   declares one is excluded: they never see the bids (dps.services.sealed) and take no part.
3. Each remaining member (an evaluator) marks every bid on each quality and social value
   criterion, blind to the others' marks until their own are submitted (``scoring``). Price is
   not marked by people: it is computed by the formula the competition published (``ranking``).
4. Once every evaluator has submitted, moderation fixes one consensus score per bid and
   criterion, with a reason wherever it departs from the evaluators' marks (``scoring``). The
   results (points per criterion with their working, totals, ranking) follow (``ranking``).
5. The award goes to the best bid, or to another with a recorded reason, or the competition
   closes with no award. Every bidder gets a letter with its scores, the winner's and why; with
   standstill the award is intended until it ends, then confirmed, which creates the call-off
   and commits its value to the budget (``award``, dps.services.budget).
6. Invoices paid against a call-off never add up to more than its value (``call_offs``).

What each page shows its reader is built by ``pages``. Services check, change, audit and flush;
the caller commits, and rolls back on ServiceError.
"""
from .award import call_off_of, close_without_award, confirm_award, decide_award, default_term, term_end
from .call_offs import record_invoice
from .common import (
    KIND_LABELS,
    PRICE_FORMULA_LABELS,
    SCORED_KINDS,
    FieldErrors,
    bidder_name,
    evaluators,
    insert_once,
    is_evaluator,
    panel,
    panel_member,
    submitted_bids,
)
from .panel import add_panel_member, declare, may_manage_panel, open_competition
from .ranking import BidResult, Line, RankRow, Standing, price_points, results, standing
from .scoring import (
    DEPARTURE_POINTS,
    departure,
    moderate,
    moderate_bid,
    moderation_refusal,
    score,
    score_bid,
    sees_marks_of,
    sees_panel_results,
)

__all__ = [
    "DEPARTURE_POINTS", "KIND_LABELS", "PRICE_FORMULA_LABELS", "SCORED_KINDS",
    "BidResult", "FieldErrors", "Line", "RankRow", "Standing",
    "add_panel_member", "bidder_name", "call_off_of", "close_without_award", "confirm_award", "decide_award",
    "declare", "default_term", "departure", "evaluators", "insert_once", "is_evaluator", "may_manage_panel",
    "moderate", "moderate_bid", "moderation_refusal", "open_competition", "panel", "panel_member", "price_points",
    "record_invoice", "results", "score", "score_bid", "sees_marks_of", "sees_panel_results", "standing",
    "submitted_bids", "term_end",
]
