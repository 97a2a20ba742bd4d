"""The panel, opening the bids, and declarations of interest.

After the tender deadline a panel member opens the bids (an audited act). Each member then
declares whether they have a conflict of interest with any bidder; whoever declares one is
excluded: they never see the bids (dps.services.sealed) and take no part.
"""
from __future__ import annotations

from sqlalchemy import update

from ... import audit, clock
from ...extensions import db
from ...models import Competition, PanelMember, User
from .. import ServiceError
from .common import bid_count, insert_once, panel_member, require_buyer_of, require_panel_member, require_stage


def may_manage_panel(competition: Competition, user: User) -> bool:
    """The competition's creator and the members already on its panel choose the panel."""
    return (user.role == "buyer" and user.organisation_id == competition.buyer_organisation_id
            and (competition.created_by_id == user.id or panel_member(competition, user) is not None))


def add_panel_member(competition: Competition, user: User, member: User) -> PanelMember:
    require_buyer_of(competition, user)
    if not may_manage_panel(competition, user):
        raise ServiceError("Only the person who created this competition or a panel member can choose the panel",
                           field="user_id")
    require_stage(competition, "change_panel", field="user_id")
    if member.role != "buyer" or member.organisation_id != competition.buyer_organisation_id or not member.active:
        raise ServiceError("Choose a buyer of your organisation", field="user_id")
    if panel_member(competition, member) is not None:
        raise ServiceError(f"{member.name} is already on the panel", field="user_id")
    row = PanelMember(competition_id=competition.id, user_id=member.id)
    insert_once(row, f"{member.name} is already on the panel")
    audit.record("panel.member_added", "competition", competition.id, {"user_id": member.id, "email": member.email},
                 actor=user)
    return row


def open_competition(competition: Competition, user: User) -> None:
    """Open the bids to the panel: only after the tender deadline, once, by a panel member."""
    require_panel_member(competition, user)
    require_stage(competition, "open_bids")
    now = clock.now()
    # Conditional, so two panel members pressing the button together make one opening (and one
    # audit event), not two: the stage guard above cannot see the other's uncommitted opening.
    done = db.session.execute(
        update(Competition).where(Competition.id == competition.id, Competition.opened_at.is_(None))
        .values(opened_at=now, opened_by_id=user.id).execution_options(synchronize_session=False)).rowcount
    if done != 1:
        raise ServiceError("The bids have already been opened")
    db.session.refresh(competition)
    audit.record("competition.opened", "competition", competition.id,
                 {"reference": competition.reference, "bids": bid_count(competition), "opened_at": now.isoformat()},
                 actor=user)


def declare(competition: Competition, user: User, conflicted: bool, declaration: str) -> PanelMember:
    """A panel member's declaration of interests, made after opening (when the bidders are known)
    and before seeing any bid. A declared conflict excludes them; no conflict can later become a
    conflict (circumstances change), never the other way round."""
    member = require_panel_member(competition, user)
    require_stage(competition, "declare", field="conflicted")
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
