"""Benchmark data at scale: `flask --app dps demo scale --factor K` (dps/scale.py), run small."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from dps import clock, validators
from dps.audit import verify_chain
from dps.extensions import db
from dps.models import (
    Admission,
    Allocation,
    Application,
    AuditEvent,
    Award,
    Bid,
    BudgetLine,
    CallOff,
    Competition,
    Criterion,
    Invitation,
    Invoice,
    Organisation,
    User,
)
from dps.scale import _TOWNS, PER_FACTOR, TEAM_EMAIL, Volumes
from tests.conftest import DEFAULT_NOW, TEST_PASSWORD, sign_in

FACTOR = 0.01  # 10 suppliers, 1 buyer organisation, 20 competitions, 1,000 audit events


def run(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def load(app, factor: float = FACTOR):
    result = run(app, "demo", "scale", "--factor", str(factor), "--password", TEST_PASSWORD)
    assert result.exit_code == 0, result.output
    return result


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def test_volumes_follow_the_factor():
    assert Volumes.for_factor(1) == Volumes(**PER_FACTOR)
    assert Volumes.for_factor(10) == Volumes(10_000, 500, 20_000, 200_000, 1_000_000)
    assert Volumes.for_factor(0.01) == Volumes(10, 1, 20, 200, 1_000)


def test_invented_postcodes_are_valid():
    for towns in _TOWNS.values():
        for _town, postcode in towns:
            assert validators.postcode(postcode) == postcode


def test_rows_match_the_factor_and_keep_the_rules(app):
    result = load(app)
    assert "Password for every account" in result.output
    with app.app_context():
        assert count(Organisation, Organisation.kind == "supplier") == 10
        assert count(User, User.role == "supplier") == 10
        assert count(Organisation, Organisation.membership == "full", Organisation.contracting_authority.is_(True)) == 1
        assert count(User, User.role == "buyer") == 1
        assert count(User, User.role == "dps_admin") == 1
        assert count(Competition) == 20
        assert count(AuditEvent) == 1_000
        # Every application submitted and decided; every supplier on at least one lot.
        assert count(Application, Application.decided_at.is_not(None), Application.submitted_at.is_not(None)) == 10
        assert db.session.scalar(select(func.count(func.distinct(Admission.organisation_id)))) == 10
        # Bids: at most 10 a competition on average, only from invited suppliers, before the deadline.
        bids = count(Bid)
        assert 0 < bids <= 200
        assert count(Bid, Bid.state == "submitted", Bid.receipt_reference.is_not(None)) == bids
        late = db.session.scalar(select(func.count()).select_from(Bid).join(Competition)
                                 .where(Bid.submitted_at >= Competition.tender_deadline))
        assert late == 0
        uninvited = db.session.scalar(
            select(func.count()).select_from(Bid).outerjoin(
                Invitation, (Invitation.competition_id == Bid.competition_id)
                & (Invitation.organisation_id == Bid.organisation_id)).where(Invitation.id.is_(None)))
        assert uninvited == 0
        for competition_id in db.session.scalars(select(Competition.id)):
            weights = db.session.scalars(select(Criterion.weight).where(Criterion.competition_id == competition_id))
            assert sum(weights) == 100
        # The budget: each allocation's committed is the sum of its call-offs, within its amount.
        call_offs = dict(db.session.execute(select(CallOff.allocation_id, func.sum(CallOff.value_pence))
                                            .group_by(CallOff.allocation_id)).all())
        for allocation in db.session.scalars(select(Allocation)):
            assert allocation.committed_pence == call_offs.get(allocation.id, 0)
            assert allocation.committed_pence <= allocation.amount_pence
        for line in db.session.scalars(select(BudgetLine)):
            assert line.allocated_pence == sum(a.amount_pence for a in line.allocations) <= line.total_pence
        paid = dict(db.session.execute(select(Invoice.call_off_id, func.sum(Invoice.amount_pence))
                                       .group_by(Invoice.call_off_id)).all())
        for call_off in db.session.scalars(select(CallOff)):
            assert call_off.paid_pence == paid.get(call_off.id, 0)
        assert count(Award, Award.confirmed_at.is_not(None)) == count(CallOff)
        # Competitions in every state around the clock's now.
        now = clock.parse_london(DEFAULT_NOW)
        stages = {c.stage(now).value for c in db.session.scalars(select(Competition))}
        assert {"draft", "open", "in_evaluation", "cancelled", "no_award", "standstill", "awarded"} <= stages
        assert count(Competition, Competition.published_at.is_not(None), Competition.cancelled_at.is_(None),
                     Competition.tender_deadline > now) >= 1
        # The audit log is one valid chain, in time order, all of it before now.
        verification = verify_chain()
        assert verification.ok and verification.count == 1_000
        times = list(db.session.scalars(select(AuditEvent.occurred_at).order_by(AuditEvent.id)))
        assert times == sorted(times) and times[-1] < now
    verified = run(app, "audit", "verify")
    assert verified.exit_code == 0 and "1000 events, chain verified" in verified.output


def test_a_second_run_is_refused(app):
    load(app)
    result = run(app, "demo", "scale", "--factor", str(FACTOR), "--password", TEST_PASSWORD)
    assert result.exit_code != 0
    assert "already has data" in result.output
    with app.app_context():
        assert count(Organisation, Organisation.kind == "supplier") == 10


@pytest.mark.parametrize("factor", ["0", "-1", "abc"])
def test_the_factor_must_be_a_positive_number(app, factor):
    result = run(app, "demo", "scale", "--factor", factor)
    assert result.exit_code != 0
    with app.app_context():
        assert count(Organisation) == 0


def test_bids_match_the_factor_when_there_are_suppliers_enough(app):
    load(app, 0.05)  # 50 suppliers, 100 competitions, 1,000 bids
    with app.app_context():
        assert count(Bid) == 1_000
        assert count(Competition) == 100
        assert count(AuditEvent) == 5_000
        assert verify_chain().ok


def test_pages_and_exports_work_on_it(app, tmp_path):
    load(app)
    with app.app_context():
        buyer = db.session.scalar(select(User.email).where(User.role == "buyer"))
        supplier = db.session.scalar(select(User.email).where(User.role == "supplier").order_by(User.id))
        competitions = list(db.session.scalars(select(Competition.id)))
        call_off = db.session.scalar(select(CallOff.id))
        suppliers = list(db.session.scalars(select(Organisation.id).where(Organisation.kind == "supplier")))
        applications = list(db.session.scalars(select(Application.id)))
        supplier_org = db.session.scalar(select(User.organisation_id).where(User.email == supplier))
        invited = list(db.session.scalars(select(Invitation.competition_id)
                                          .where(Invitation.organisation_id == supplier_org)))
        event = db.session.scalar(select(func.max(AuditEvent.id)))
    team_client = app.test_client()
    assert sign_in(team_client, TEAM_EMAIL).status_code == 302
    for page in ("/team/", "/team/suppliers", "/team/audit", "/team/applications", "/team/budget",
                 "/team/members", "/team/exports", "/agreements", "/agreements/CCIN-DPS-2020",
                 "/agreements/CCIN-DPS-2020/suppliers", f"/team/audit/{event}", "/team/audit?object_type=bid",
                 *(f"/team/suppliers/{org_id}" for org_id in suppliers),
                 *(f"/team/applications/{application_id}" for application_id in applications)):
        assert team_client.get(page).status_code == 200, page
    buyer_client = app.test_client()
    assert sign_in(buyer_client, buyer).status_code == 302
    for page in ("/buyer/", "/buyer/competitions", "/buyer/call-offs", f"/buyer/call-offs/{call_off}",
                 "/buyer/budget", *(f"/buyer/competitions/{competition_id}" for competition_id in competitions)):
        assert buyer_client.get(page).status_code == 200, page
    for competition_id in competitions:
        assert buyer_client.get(f"/buyer/competitions/{competition_id}/evaluation").status_code == 200
    supplier_client = app.test_client()
    assert sign_in(supplier_client, supplier).status_code == 302
    for page in ("/supplier/", "/supplier/competitions", *(f"/supplier/competitions/{c}" for c in invited)):
        assert supplier_client.get(page).status_code == 200, page
    for kind, *extra in (("ocds",), ("records",), ("transparency", "--report", "tenders"),
                         ("transparency", "--report", "contracts"), ("contracts",), ("contracts-finder",),
                         ("award-notices",), ("audit",), ("xlsx",)):
        out = tmp_path / f"{kind}-{'-'.join(extra)}.out"
        result = run(app, "export", kind, *extra, "--out", str(out), "--no-progress")
        assert result.exit_code == 0, (kind, result.output)
        assert out.stat().st_size > 0
    # The service's own events (sign-ins, exports taken) carry the chain on from the loader's.
    with app.app_context():
        verification = verify_chain()
        assert verification.ok and verification.count > 1_000
