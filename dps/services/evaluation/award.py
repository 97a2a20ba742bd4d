"""The award: deciding it (or closing with no award), the letters, the standstill, confirming it.

The award goes to the best bid, or to another with a recorded reason, once every evaluator has
submitted and every criterion of every bid is moderated; or the competition closes with no
award. Every bidder gets a letter with its own scores per criterion (the moderated ones: never a
single evaluator's), the winner's, the reasons and the end of the standstill. With standstill
the award is intended until the standstill ends, then confirmed; confirming creates the call-off
contract and commits its value to the allocation in one transaction, never past the
allocation's amount however many awards are confirmed at once (DESIGN 5).
"""
from __future__ import annotations

import calendar
from datetime import date, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm.attributes import set_committed_value

from ... import audit, clock, mail
from ...extensions import db
from ...filters import money
from ...models import Award, Bid, CallOff, Competition, User
from .. import ServiceError, notify
from ..budget import check_call_off, commit_to_budget
from .common import (
    KIND_LABELS,
    bidder_name,
    check_bid,
    insert_once,
    lock_competition,
    panel,
    require_evaluator,
    require_stage,
    submitted_bids,
)
from .ranking import BidResult, results
from .scoring import moderation_refusal

CALL_OFF_TERM_MONTHS = 12


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


def decide_award(competition: Competition, user: User, bid: Bid, value_pence: int | None,
                 not_best_reason: str | None = None, *, starts_on: date | None = None,
                 ends_on: date | None = None, irrecoverable_vat_pence: int | None = None) -> Award:
    """Decide the award and write to every bidder. With standstill the award is intended until
    the standstill ends; without, it is confirmed at once (``starts_on``/``ends_on`` and
    ``irrecoverable_vat_pence`` then go to the call-off, see confirm_award)."""
    require_evaluator(competition, user)
    lock_competition(competition)
    require_stage(competition, "decide_award")
    check_bid(competition, bid, field="bid_id")
    waiting = moderation_refusal(panel(competition))
    if waiting is not None:
        raise ServiceError(waiting, field="bid_id")
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
    # Refused now if the budget cannot pay for it, so no letter promises it; committed on confirmation.
    check_call_off(competition.allocation, value_pence)

    now = clock.now()
    standstill_ends_at = None
    if competition.standstill and competition.standstill_days > 0:
        standstill_ends_at = now + timedelta(days=competition.standstill_days)
    award = Award(competition_id=competition.id, bid_id=bid.id, value_pence=value_pence,
                  not_best_reason=not_best_reason, decided_at=now, decided_by_id=user.id,
                  standstill_ends_at=standstill_ends_at)
    # The UNIQUE constraint on the competition is what finally stops a second award.
    insert_once(award, "This competition already has an award")
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
    the winner's name and scores, the reasons, and when the standstill ends. The scores are the
    panel's moderated ones, with the panel's reasons. Returns how many emails were queued."""
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
    require_evaluator(competition, user)
    lock_competition(competition)
    require_stage(competition, "close_without_award", field="reason")
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
    require_evaluator(competition, user)
    lock_competition(competition)
    require_stage(competition, "confirm_award")
    now = clock.now()
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
    # Conditional, so two confirmations of one award at the same moment make one call-off (the
    # stage guard above cannot see a confirmation not yet committed).
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


def call_off_of(award: Award) -> CallOff | None:
    return db.session.scalar(select(CallOff).where(CallOff.award_id == award.id))
