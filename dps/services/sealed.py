"""The one gate for bid content (Directive 2014/24/EU Annex IV, carried into PCR 2015).

Before the tender deadline nobody but the bidder sees a tender's content (price, answers,
documents): not the buyer, not the DPS team, not an auditor, not a system administrator through
any page, download, export or search. Every page, download and export that could show bid
content asks this module first; every refusal is written to the audit log, so attempts are
detectable.

After the deadline the buyer opens the competition (an audited act). Then:
- panel members of the buyer's organisation who have declared no conflict of interest see bids;
- the DPS team and auditors may read them (oversight, read-only);
- each bidder always sees its own bid.
"""
from __future__ import annotations

from sqlalchemy import select

from .. import audit, clock
from ..extensions import db
from ..models import Bid, Competition, PanelMember


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


def record_refusal(user, competition: Competition, bid: Bid | None, what: str) -> None:
    data = {"competition_id": competition.id, "what": what, "sealed": is_sealed(competition),
            "bid_id": bid.id if bid is not None else None}
    audit.record("bid_content.refused", "competition", competition.id, data,
                 actor=user if getattr(user, "is_authenticated", False) else None,
                 actor_label="anonymous")
    db.session.commit()
