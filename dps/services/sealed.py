"""The one gate for bid content (Directive 2014/24/EU Annex IV, carried into PCR 2015).

Before the tender deadline nobody but the bidder sees a tender's content (price, answers,
documents): not the buyer, not the DPS team, not an auditor, not a system administrator through
any page, download, export or search. Every page, download and export that could show bid
content asks this module first; every refusal is recorded, so attempts are detectable: the first
of each person's refusals for a competition in a clock hour is written to the audit log, the
later ones of that hour are counted (``sealed_read_refusals``), so that a crawl of refused pages
cannot flood the append-only log (issue 14).

After the deadline the buyer opens the competition (an audited act). Then:
- panel members of the buyer's organisation who have declared no conflict of interest see bids;
- the DPS team and auditors may read them (oversight, read-only);
- each bidder always sees its own bid.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from .. import audit, clock
from ..extensions import db
from ..models import Bid, Competition, PanelMember, SealedReadRefusal


class Sealed(Exception):
    """Bid content asked for by someone who may not see it (now or ever)."""


def is_sealed(competition: Competition) -> bool:
    return clock.now() < competition.tender_deadline


def is_open_for_reading(competition: Competition) -> bool:
    return competition.opened_at is not None and not is_sealed(competition)


def declared_panel_member(user, competition: Competition) -> PanelMember | None:
    member = db.session.scalar(select(PanelMember).where(PanelMember.competition_id == competition.id,
                                                         PanelMember.user_id == user.id))
    if member is None or member.declared_at is None or member.conflicted:
        return None
    return member


def may_read(user, competition: Competition, bid_organisation_id: int | None = None) -> bool:
    """Whether ``user`` may see bid content of ``competition`` (of one bidder, if given)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    if bid_organisation_id is not None and user.organisation_id == bid_organisation_id:
        return True  # a bidder's own tender
    if not is_open_for_reading(competition):
        return False
    if user.role in ("dps_admin", "auditor"):
        return True
    return (user.role == "buyer" and user.organisation_id == competition.buyer_organisation_id
            and declared_panel_member(user, competition) is not None)


def require(user, competition: Competition, *, bid: Bid | None = None, what: str) -> None:
    """Raise Sealed (and audit the attempt) unless ``user`` may see this bid content now.

    The refusal's audit event is committed at once, because the request then ends in an error
    page whose transaction would otherwise roll it back. So call this before changing anything."""
    if may_read(user, competition, bid.organisation_id if bid is not None else None):
        return
    record_refusal(user, competition, bid, what)
    raise Sealed(what)


def _refusal_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _count_refusal(actor: str, user_id: int | None, competition_id: int, moment: datetime) -> SealedReadRefusal | None:
    """Add one to this hour's count of ``actor``'s refused reads of the competition. Returns the
    new row when this is the first refusal of the hour (the one to audit), else None.

    A conditional UPDATE first (the usual case once a crawl is under way); when no row is there,
    an INSERT in a savepoint, which a concurrent first refusal on PostgreSQL can beat (the unique
    constraint refuses the second): then it is counted by the UPDATE after all. On SQLite the
    transaction holds the write lock, so there is no race."""
    hour = _refusal_hour(moment)
    match = (SealedReadRefusal.actor == actor, SealedReadRefusal.competition_id == competition_id,
             SealedReadRefusal.hour == hour)
    counted = update(SealedReadRefusal).where(*match).values(count=SealedReadRefusal.count + 1, last_at=moment)
    if db.session.execute(counted).rowcount:
        return None
    row = SealedReadRefusal(actor=actor, user_id=user_id, competition_id=competition_id, hour=hour, count=1,
                            first_at=moment, last_at=moment)
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError:
        db.session.execute(counted)
        return None
    return row


def record_refusal(user, competition: Competition, bid: Bid | None, what: str) -> None:
    """Record a refused read and commit it (the request then ends in an error page, whose
    transaction would otherwise roll it back). Only the first of the hour is an audit event."""
    signed_in = getattr(user, "is_authenticated", False)
    moment = clock.now()
    first = _count_refusal(str(user.id) if signed_in else "anonymous", user.id if signed_in else None,
                           competition.id, moment)
    if first is not None:
        data = {"competition_id": competition.id, "what": what, "sealed": is_sealed(competition),
                "bid_id": bid.id if bid is not None else None,
                # Later refusals of the same person for this competition this hour are counted there.
                "refusal_count_id": first.id}
        audit.record("bid_content.refused", "competition", competition.id, data,
                     actor=user if signed_in else None, actor_label="anonymous")
    db.session.commit()


def refusal_count(refusal_count_id: int | None) -> SealedReadRefusal | None:
    """The count a ``bid_content.refused`` event names (None for events from before counting)."""
    if not isinstance(refusal_count_id, int) or isinstance(refusal_count_id, bool):
        return None
    return db.session.get(SealedReadRefusal, refusal_count_id)
