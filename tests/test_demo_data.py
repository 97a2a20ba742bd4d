"""The demo data: the network's real members and budget, invented suppliers, and its sign-ins."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from dps.audit import verify_chain
from dps.demo import DemoError, load_demo
from dps.extensions import db
from dps.models import (
    Admission,
    Agreement,
    QuestionnaireVersion,
    Allocation,
    Application,
    ApplicationLot,
    AuditEvent,
    BudgetLine,
    BudgetYear,
    Competition,
    Document,
    Lot,
    Organisation,
    RenewalRequest,
    User,
)
from dps.models.organisations import CONTRACTING_AUTHORITY_KINDS, LEGAL_FORMS
from tests.conftest import demo_application

PASSWORD = "copper kettle harbour lantern"
STAFF = [
    ("team@dps.example.org", "dps_admin", "Oldham Council"),
    ("auditor@dps.example.org", "auditor", "Oldham Council"),
    ("buyer@oldham.example.org", "buyer", "Oldham Council"),
    ("buyer@plymouth.example.org", "buyer", "Plymouth City Council"),
    ("buyer@ccin.example.org", "buyer", "Co-operative Councils' Innovation Network"),
]
# The network's funding table (shared/data/README.md), in pounds: (cap per call-off, line total).
CAPS_AND_TOTALS = {
    "2020/21": {"Policy Labs": (10_000, 5 * 10_000), "Policy Prototypes": (1_500, 13 * 1_500)},
    "2021/22": {"Policy Labs": (10_000, 7 * 10_000), "Policy Prototypes": (1_500, 7 * 1_500)},
    "2022/23": {"Policy Labs": (10_000, 60_000), "Policy Prototypes": (1_500, 15_000)},
    "2023/24": {"Policy Labs": (20_000, 4 * 20_000), "Policy Prototypes": (2_000, 5 * 2_000)},
    "2024/25": {"Policy Labs": (20_000, 3 * 20_000), "Policy Prototypes": (2_000, 5 * 2_000)},
}


@pytest.fixture(scope="module")
def demo_app(database_template, tmp_path_factory):
    """One demo load for the whole module (it takes seconds): these tests only read it."""
    with demo_application(database_template, tmp_path_factory, password=PASSWORD) as application:
        yield application


@pytest.fixture
def sign_ins(demo_app) -> Iterator[list[dict[str, str]]]:
    """The demo's sign-ins, as `flask demo load` prints them; the test runs in the app context."""
    with demo_app.app_context():
        yield demo_app.config["DEMO_SIGN_INS"]
        db.session.rollback()


def test_sign_ins_are_the_staff_then_one_per_supplier(sign_ins):
    staff = [(s["email"], s["role"], s["organisation"]) for s in sign_ins[:5]]
    assert staff == STAFF
    suppliers = sign_ins[5:]
    assert len(suppliers) >= 12
    assert all(s["role"] == "supplier" for s in suppliers)
    # Every sign-in is a confirmed, active account of the organisation it names.
    for sign_in in sign_ins:
        user = db.session.scalar(select(User).where(User.email == sign_in["email"]))
        assert user is not None and user.active and user.email_confirmed_at is not None
        assert user.role == sign_in["role"]
        assert user.organisation.name == sign_in["organisation"]
    assert db.session.scalar(select(func.count()).select_from(User)) == len(sign_ins)


def test_members_are_the_75_of_july_2020(sign_ins):
    tiers = dict(db.session.execute(
        select(Organisation.membership, func.count())
        .where(Organisation.membership.is_not(None))
        .group_by(Organisation.membership)
    ).all())
    assert tiers == {"full": 33, "associate": 16, "affiliate": 26}
    gmca = db.session.scalar(select(Organisation).where(Organisation.name == "Greater Manchester Combined Authority"))
    assert gmca.kind == "combined_authority"
    network = db.session.scalars(select(Organisation).where(Organisation.kind == "network")).one()
    assert network.name == "Co-operative Councils' Innovation Network"


def test_every_line_allocates_exactly_the_sum_of_its_allocations(sign_ins):
    lines = db.session.scalars(select(BudgetLine)).all()
    assert len(lines) == 15
    sums = dict(db.session.execute(
        select(Allocation.line_id, func.sum(Allocation.amount_pence)).group_by(Allocation.line_id)
    ).all())
    for line in lines:
        assert line.allocated_pence == sums.get(line.id, 0), line.programme
        assert line.allocated_pence <= line.total_pence
        assert line.allocations, f"{line.programme} {line.year.label} has no allocations"
        if line.cap_per_call_off_pence is not None:
            assert all(a.amount_pence <= line.cap_per_call_off_pence for a in line.allocations)
    # Committed money is the demo's call-offs, and no more (checked row by row in the competitions test).
    from dps.models import CallOff

    assert db.session.scalar(select(func.sum(Allocation.committed_pence))) == db.session.scalar(
        select(func.sum(CallOff.value_pence)))


def test_caps_and_totals_follow_the_network_funding_table(sign_ins):
    found: dict[str, dict[str, tuple[int | None, int]]] = {}
    for line in db.session.scalars(select(BudgetLine).join(BudgetLine.year).order_by(BudgetYear.starts_on)):
        found.setdefault(line.year.label, {})[line.programme] = (line.cap_per_call_off_pence, line.total_pence)
    assert list(found) == list(CAPS_AND_TOTALS)
    for label, programmes in CAPS_AND_TOTALS.items():
        for programme, (cap, total) in programmes.items():
            assert found[label][programme] == (cap * 100, total * 100), (label, programme)
        assert found[label]["Network commissioning"] == (None, 120_000 * 100)
    for year in db.session.scalars(select(BudgetYear)):
        start = int(year.label[:4])
        assert (year.starts_on.isoformat(), year.ends_on.isoformat()) == (f"{start}-04-01", f"{start + 1}-03-31")


def test_policy_allocations_go_to_member_contracting_authorities(sign_ins):
    rows = db.session.execute(
        select(Allocation, BudgetLine.programme, BudgetYear.label)
        .join(Allocation.line).join(BudgetLine.year)
    ).all()
    years_funded: dict[str, set[str]] = {}
    for allocation, programme, label in rows:
        org = allocation.organisation
        if programme.startswith("Policy"):
            assert org.kind in CONTRACTING_AUTHORITY_KINDS, (allocation.project_title, org.name)
            assert org.membership in ("full", "associate"), (allocation.project_title, org.name)
            years_funded.setdefault(org.name, set()).add(label)
        else:
            assert org.kind == "network"
    assert len(years_funded["Oldham Council"]) >= 3
    assert len(years_funded["Plymouth City Council"]) >= 3


def test_loading_twice_is_refused(sign_ins):
    with pytest.raises(DemoError, match="empty database"):
        load_demo(PASSWORD)


def test_suppliers_cover_every_legal_form_and_size(sign_ins):
    suppliers = db.session.scalars(select(Organisation).where(Organisation.kind == "supplier")).all()
    assert {s.legal_form for s in suppliers} == set(LEGAL_FORMS)
    assert {s.size for s in suppliers} == {"micro", "small", "medium", "large"}
    assert {s.nation for s in suppliers} >= {"England", "Wales", "Scotland"}
    assert any(s.is_vcse for s in suppliers) and not all(s.is_vcse for s in suppliers)


def test_every_object_loaded_has_its_audit_event(sign_ins):
    created = dict(db.session.execute(
        select(AuditEvent.action, func.count()).where(AuditEvent.actor_label == "demo loader").group_by(AuditEvent.action)
    ).all())
    count = lambda model: db.session.scalar(select(func.count()).select_from(model))  # noqa: E731
    assert created == {
        "organisation.created": count(Organisation),
        "agreement.created": count(Agreement),
        "agreement.published": count(Agreement),
        "lot.created": count(Lot),
        "questionnaire.uploaded": count(QuestionnaireVersion),
        "questionnaire.published": count(QuestionnaireVersion),
        "budget_year.created": count(BudgetYear),
        "budget_line.created": count(BudgetLine),
        "allocation.created": count(Allocation),
        "user.created": count(User),
        "application.loaded": count(Application),
        "competition.loaded": count(Competition),
    }
    assert verify_chain().ok


def test_the_demo_shows_suppliers_in_every_state(sign_ins):
    from dps import questionnaire
    from dps.services import applications as rules
    from dps.storage import get_storage

    admitted = db.session.scalars(select(Admission.organisation_id).where(Admission.status == "admitted").distinct()).all()
    assert len(admitted) >= 12
    assert db.session.scalar(select(func.count()).select_from(Admission).where(Admission.status == "suspended")) >= 1
    pending = rules.queue()
    assert len(pending) >= 2 and all(a.status == "submitted" for a in pending)
    assert any(rules.is_overdue(a) for a in pending) and not all(rules.is_overdue(a) for a in pending)
    rejected = db.session.scalars(select(ApplicationLot).where(ApplicationLot.decision == "rejected")).all()
    assert rejected and all(r.reasons for r in rejected)
    assert db.session.scalar(select(func.count()).select_from(RenewalRequest).where(RenewalRequest.responded_at.is_(None))) >= 1
    # Every application is complete against the questionnaire it records, and its evidence is stored.
    version = questionnaire.load("ccin-sq-2020-04")
    storage = get_storage()
    for application in db.session.scalars(select(Application)):
        lot_ids = [al.lot_id for al in application.lots]
        assert questionnaire.missing_answers(version, application.answer_map(), lot_ids) == []
        if application.decided_at is not None:
            assert application.submitted_at < application.decided_at
    for document in db.session.scalars(select(Document)):
        assert storage.get(document.storage_key).startswith(b"%PDF-")
    # Admissions agree with the decisions that made them.
    for admission in db.session.scalars(select(Admission)):
        assert admission.application_lot.decision == "admitted"


def test_the_demo_shows_competitions_in_every_state_and_the_budget_adds_up(sign_ins):
    from datetime import date

    from dps import clock
    from dps.models import Allocation, Award, CallOff, Competition, Invoice

    states = set()
    for competition in db.session.scalars(select(Competition)):
        if competition.status == "published":
            now = clock.now()
            if now < competition.tender_deadline:
                states.add("open")
            elif competition.opened_at is None:
                states.add("closed")
            else:
                states.add("in_evaluation")
        elif competition.status == "award_intended":
            assert competition.award.standstill_ends_at > clock.now()  # standstill running "today"
            states.add("award_intended")
        else:
            states.add(competition.status)
    assert states == {"draft", "open", "closed", "in_evaluation", "award_intended", "awarded", "cancelled", "no_award"}
    # Call-offs with invoices in each of the five financial years.
    years = {co.starts_on.year if co.starts_on.month >= 4 else co.starts_on.year - 1
             for co in db.session.scalars(select(CallOff)) if co.paid_pence > 0}
    assert years >= {2020, 2021, 2022, 2023, 2024}
    # The counters equal the rows they count; nothing is over its limit.
    for allocation in db.session.scalars(select(Allocation)):
        committed = db.session.scalar(select(func.coalesce(func.sum(CallOff.value_pence), 0))
                                      .where(CallOff.allocation_id == allocation.id))
        assert allocation.committed_pence == committed <= allocation.amount_pence
    for call_off in db.session.scalars(select(CallOff)):
        paid = db.session.scalar(select(func.coalesce(func.sum(Invoice.amount_pence), 0)).where(Invoice.call_off_id == call_off.id))
        assert call_off.paid_pence == paid <= call_off.value_pence
        cap = call_off.allocation.line.cap_per_call_off_pence
        assert cap is None or call_off.value_pence <= cap
    assert db.session.scalar(select(func.count()).select_from(Award)) == db.session.scalar(
        select(func.count(func.distinct(Award.competition_id))))
    assert date(2020, 4, 1) <= min(co.starts_on for co in db.session.scalars(select(CallOff)))
