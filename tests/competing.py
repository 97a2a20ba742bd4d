"""Building blocks for tests of mini-competitions: an allocation to charge, a published
competition with its criteria, submitted bids, and posting a page's form as a browser would."""
from __future__ import annotations

import io
from datetime import date, timedelta

from sqlalchemy import select
from werkzeug.datastructures import FileStorage

from dps import clock
from dps.extensions import db
from dps.models import (
    Allocation,
    AuditEvent,
    Bid,
    BidAnswer,
    BidDocument,
    BudgetLine,
    BudgetYear,
    Competition,
    Criterion,
    Invitation,
    ModeratedScore,
    Organisation,
    PanelMember,
    Score,
    User,
)
from dps.services import documents
from tests.applying import PDF

CRITERIA = (("quality", "Approach and method", 40), ("social_value", "Social value", 20), ("price", "Price", 40))
DEADLINE = "2024-06-14T12:00"
AFTER_DEADLINE = "2024-06-17T09:00"


def make_allocation(app, organisation_id: int, *, amount_pence: int, cap_pence: int | None = 20_000_00,
                    committed_pence: int = 0, title: str = "Community wealth building lab") -> int:
    with app.app_context():
        year = db.session.scalar(select(BudgetYear).where(BudgetYear.label == "2024/25"))
        if year is None:
            year = BudgetYear(label="2024/25", starts_on=date(2024, 4, 1), ends_on=date(2025, 3, 31))
            db.session.add(year)
            db.session.flush()
        line = BudgetLine(year_id=year.id, programme=f"Policy Labs {year.id}-{title}", total_pence=amount_pence,
                          cap_per_call_off_pence=cap_pence, allocated_pence=amount_pence)
        db.session.add(line)
        db.session.flush()
        allocation = Allocation(line_id=line.id, organisation_id=organisation_id, project_title=title,
                                amount_pence=amount_pence, committed_pence=committed_pence)
        db.session.add(allocation)
        db.session.commit()
        return allocation.id


def make_competition(app, *, lot_id: int, buyer_organisation_id: int, creator_id: int, allocation_id: int,
                     number: int = 1, standstill: bool = True, formula: str = "lowest_price_ratio",
                     deadline: str = DEADLINE, criteria=CRITERIA, title: str = "Community wealth building review") -> int:
    """A published competition, as the competitions pages leave it."""
    with app.app_context():
        deadline_at = clock.parse_london(deadline)
        competition = Competition(
            reference=f"CCIN-MC-2024-{number:04d}", lot_id=lot_id, buyer_organisation_id=buyer_organisation_id,
            created_by_id=creator_id, title=title, description="A review.", estimated_value_pence=10_000_00,
            allocation_id=allocation_id, clarification_deadline=deadline_at - timedelta(days=4),
            tender_deadline=deadline_at, standstill=standstill, standstill_days=10, price_formula=formula,
            created_at=clock.parse_london("2024-06-01T09:00"), published_at=clock.parse_london("2024-06-01T10:00"))
        for position, (kind, name, weight) in enumerate(criteria, start=1):
            competition.criteria.append(Criterion(position=position, kind=kind, title=name, weight=weight))
        db.session.add(competition)
        db.session.commit()
        return competition.id


def make_bid(app, competition_id: int, organisation_id: int, price_pence: int, *, with_document: bool = False) -> int:
    """A submitted bid with an answer to every quality and social value criterion."""
    with app.app_context():
        competition = db.session.get(Competition, competition_id)
        submitted_at = competition.tender_deadline - timedelta(days=1)
        db.session.add(Invitation(competition_id=competition_id, organisation_id=organisation_id,
                                  invited_at=competition.published_at))
        bid = Bid(competition_id=competition_id, organisation_id=organisation_id, state="submitted",
                  price_pence=price_pence, updated_at=submitted_at, submitted_at=submitted_at,
                  receipt_reference=f"R-{competition_id}-{organisation_id}")
        db.session.add(bid)
        db.session.flush()
        for criterion in competition.criteria:
            if criterion.kind != "price":
                db.session.add(BidAnswer(bid_id=bid.id, criterion_id=criterion.id,
                                         text=f"Answer of bidder {organisation_id} to {criterion.title}"))
        if with_document:
            uploader = db.session.scalar(select(User).where(User.organisation_id == organisation_id))
            document = documents.store(uploader, FileStorage(io.BytesIO(PDF), filename="method-statement.pdf"))
            db.session.add(BidDocument(bid_id=bid.id, document_id=document.id))
        db.session.commit()
        return bid.id


def many_bids(app, competition_id: int, count: int, *, prefix: str = "Bidder") -> list[int]:
    """``count`` submitted bids, each from a supplier organisation of its own, inserted directly
    in one transaction (as ``make_bid`` makes one), prices apart so that they rank apart."""
    with app.app_context():
        competition = db.session.get(Competition, competition_id)
        submitted_at = competition.tender_deadline - timedelta(days=1)
        organisations = [Organisation(name=f"{prefix} {competition_id}-{n:04d}", kind="supplier",
                                      created_at=competition.published_at) for n in range(count)]
        db.session.add_all(organisations)
        db.session.flush()
        bids = [Bid(competition_id=competition_id, organisation_id=org.id, state="submitted",
                    price_pence=8_000_00 + 37_13 * n, updated_at=submitted_at, submitted_at=submitted_at,
                    receipt_reference=f"R-{competition_id}-{org.id}") for n, org in enumerate(organisations)]
        db.session.add_all(Invitation(competition_id=competition_id, organisation_id=org.id,
                                      invited_at=competition.published_at) for org in organisations)
        db.session.add_all(bids)
        db.session.flush()
        db.session.add_all(BidAnswer(bid_id=bid.id, criterion_id=c.id, text=f"Answer of {org.name} to {c.title}")
                           for bid, org in zip(bids, organisations) for c in competition.criteria if c.kind != "price")
        db.session.commit()
        return [bid.id for bid in bids]


def mark_everything(app, competition_id: int, user_ids: list[int], *, moderate: bool = True) -> None:
    """Every one of ``user_ids`` (panel members who declared no conflict) marks every bid on every
    scored criterion and submits; with ``moderate`` the panel moderates every score too. Rows go
    in directly, as the services would leave them."""
    with app.app_context():
        competition = db.session.get(Competition, competition_id)
        scored = [c for c in competition.criteria if c.kind != "price"]
        bids = db.session.scalars(select(Bid.id).where(Bid.competition_id == competition_id,
                                                       Bid.state == "submitted").order_by(Bid.id)).all()
        now = clock.now()
        members = db.session.scalars(select(PanelMember).where(PanelMember.competition_id == competition_id,
                                                               PanelMember.user_id.in_(user_ids))).all()
        for m, member in enumerate(members):
            db.session.add_all(Score(bid_id=bid, criterion_id=c.id, panel_member_id=member.id,
                                     score=(40 + 7 * n + 3 * m) % 100, justification=f"Mark {m} of bid {n}",
                                     scored_at=now) for n, bid in enumerate(bids) for c in scored)
            member.scores_submitted_at = now
        if moderate:
            db.session.add_all(ModeratedScore(bid_id=bid, criterion_id=c.id, score=(41 + 7 * n) % 100,
                                              justification=f"Agreed for bid {n}", moderated_at=now,
                                              moderated_by_id=user_ids[0])
                               for n, bid in enumerate(bids) for c in scored)
        db.session.commit()


def criterion_ids(app, competition_id: int) -> dict[str, int]:
    with app.app_context():
        return {c.kind: c.id for c in db.session.get(Competition, competition_id).criteria}


def events(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        return rows


def post(browser, url: str, page: str, data: dict | None = None, prefix: str | None = None):
    """Submit a form of ``page`` as a browser would, with its CSRF token (prefixed forms name it
    "<prefix>-csrf_token")."""
    payload = dict(data or {})
    token = browser.csrf_token(page)
    payload["csrf_token"] = token
    if prefix:
        payload[f"{prefix}-csrf_token"] = token
    return browser.post(url, data=payload)
