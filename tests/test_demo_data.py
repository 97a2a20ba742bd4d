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


# Rows the demo writes, each accounted for by the audit events of the service that wrote it: the
# ids (or pairs) the events name must be exactly the rows. Keyed by table, so that a table the
# demo writes to and this test does not know fails the test below.
NOT_AUDITED = {
    "audit_events": "the log itself",
    "outbox_messages": "emails, written with the change they report",
    "sign_in_attempts": "the marker a new password leaves, lifting any sign-in lock",
    "user_tokens": "one-time links, sent by the audited change that issued them",
    "simulated_clock": "the training clock, which the loader and tests set",
    "answers": "each application's are checked below against the sections its audit events say were saved",
    "bid_answers": "sealed content: a bid's audit events deliberately carry none",
}


def _events(*actions: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action.in_(actions)).order_by(AuditEvent.id)))


def _object_ids(*actions: str) -> set[int]:
    return {int(e.object_id) for e in _events(*actions)}


def _ids(model, *where) -> set[int]:
    return set(db.session.scalars(select(model.id).where(*where)))


def _pairs(model, *columns, where=()) -> set[tuple]:
    return {tuple(row) for row in db.session.execute(select(*(getattr(model, c) for c in columns)).where(*where))}


def _audited_rows() -> dict[str, list[tuple[str, set, set]]]:
    """Per table: (what, what the audit log says was written, the rows there are)."""
    from dps.models import (
        Award, Bid, BidDocument, CallOff, Clarification, CompetitionDocument, Criterion, Installation, Invitation,
        Invoice, ModeratedScore, PanelMember, Score,
    )

    decided = {(e.object_id, e.data["lot_id"]) for e in _events("application.lot_admitted", "application.lot_rejected")}
    admitted = {(int(e.object_id), e.data["lot_id"]) for e in _events("application.lot_admitted")}
    owner = dict(db.session.execute(select(Application.id, Application.organisation_id)).all())
    chosen: dict[int, list[int]] = {}
    for e in _events("application.lots_chosen"):
        chosen[int(e.object_id)] = e.data["after"]  # the last choice stands
    criteria = {int(e.object_id): len(e.data["criteria"]) for e in _events("competition.created")}
    return {
        "organisations": [("created or registered", _object_ids("organisation.created", "organisation.registered"),
                           _ids(Organisation))],
        "users": [("created", _object_ids("user.created"), _ids(User))],
        "installation": [("set up", _object_ids("service.set_up"), _ids(Installation))],
        "agreements": [("created", _object_ids("agreement.created"), _ids(Agreement)),
                       ("published", _object_ids("agreement.published"),
                        _ids(Agreement, Agreement.published_at.is_not(None)))],
        "lots": [("created", _object_ids("lot.created"), _ids(Lot))],
        "questionnaire_versions": [
            ("uploaded", _object_ids("questionnaire.uploaded"), _ids(QuestionnaireVersion)),
            ("published", _object_ids("questionnaire.published"),
             _ids(QuestionnaireVersion, QuestionnaireVersion.published_at.is_not(None)))],
        "budget_years": [("created", _object_ids("budget_year.created"), _ids(BudgetYear))],
        "budget_lines": [("created", _object_ids("budget_line.created"), _ids(BudgetLine))],
        "allocations": [("created", _object_ids("allocation.created"), _ids(Allocation))],
        "documents": [("uploaded", _object_ids("document.uploaded"), _ids(Document))],
        "applications": [
            ("started", _object_ids("application.started"), _ids(Application)),
            ("submitted", _object_ids("application.submitted"), _ids(Application, Application.submitted_at.is_not(None))),
            ("decided", _object_ids("application.decided"), _ids(Application, Application.decided_at.is_not(None)))],
        "application_lots": [
            ("chosen", {(a, lot) for a, lots in chosen.items() for lot in lots},
             _pairs(ApplicationLot, "application_id", "lot_id")),
            ("decided", {(int(a), lot) for a, lot in decided},
             _pairs(ApplicationLot, "application_id", "lot_id", where=[ApplicationLot.decision.is_not(None)]))],
        "admissions": [
            ("admitted", {(owner[a], lot) for a, lot in admitted}, _pairs(Admission, "organisation_id", "lot_id")),
            ("suspended", _object_ids("admission.suspended"), _ids(Admission, Admission.status == "suspended"))],
        "renewal_requests": [("requested", _object_ids("renewal.requested"), _ids(RenewalRequest))],
        "competitions": [
            ("created", _object_ids("competition.created"), _ids(Competition)),
            ("published", _object_ids("competition.published"), _ids(Competition, Competition.published_at.is_not(None))),
            ("opened", _object_ids("competition.opened"), _ids(Competition, Competition.opened_at.is_not(None))),
            ("cancelled", _object_ids("competition.cancelled"), _ids(Competition, Competition.cancelled_at.is_not(None))),
            ("closed without award", _object_ids("competition.closed_without_award"),
             _ids(Competition, Competition.closed_without_award_at.is_not(None)))],
        "criteria": [("created with their competition", {(c, n) for c, n in criteria.items()},
                      {tuple(r) for r in db.session.execute(
                          select(Criterion.competition_id, func.count()).group_by(Criterion.competition_id))})],
        "competition_documents": [
            ("added", {(int(e.object_id), e.data["document_id"]) for e in _events("competition.document_added")},
             _pairs(CompetitionDocument, "competition_id", "document_id"))],
        "panel_members": [
            ("added", {(int(e.object_id), e.data["user_id"]) for e in _events("panel.member_added")},
             _pairs(PanelMember, "competition_id", "user_id")),
            ("declared", {e.data["panel_member_id"] for e in _events("panel.declared")},
             _ids(PanelMember, PanelMember.declared_at.is_not(None)))],
        "invitations": [
            ("sent", {(int(e.object_id), org) for e in _events("competition.published") for org in e.data["invited"]},
             _pairs(Invitation, "competition_id", "organisation_id")),
            ("opened", _object_ids("invitation.opened"), _ids(Invitation, Invitation.first_opened_at.is_not(None)))],
        "clarifications": [
            ("asked", _object_ids("clarification.asked"), _ids(Clarification)),
            ("answered", _object_ids("clarification.answered"), _ids(Clarification, Clarification.answered_at.is_not(None)))],
        "bids": [("saved", _object_ids("bid.draft_saved"), _ids(Bid)),
                 ("submitted", _object_ids("bid.submitted"), _ids(Bid, Bid.state == "submitted"))],
        "bid_documents": [("attached", {(int(e.object_id), e.data["document_id"]) for e in _events("bid.document_attached")},
                           _pairs(BidDocument, "bid_id", "document_id"))],
        "scores": [("scored", {(int(e.object_id), e.data["criterion_id"], e.data["panel_member_id"])
                               for e in _events("bid.scored")},
                    _pairs(Score, "bid_id", "criterion_id", "panel_member_id"))],
        "moderated_scores": [("moderated", {(int(e.object_id), e.data["criterion_id"]) for e in _events("bid.moderated")},
                              _pairs(ModeratedScore, "bid_id", "criterion_id"))],
        "awards": [("decided", {e.data["award_id"] for e in _events("award.decided")}, _ids(Award)),
                   ("confirmed", {e.data["award_id"] for e in _events("award.confirmed")},
                    _ids(Award, Award.confirmed_at.is_not(None)))],
        "call_offs": [("created", _object_ids("call_off.created"), _ids(CallOff))],
        "invoices": [("recorded", {e.data["invoice_id"] for e in _events("invoice.recorded")}, _ids(Invoice))],
    }


def test_no_row_of_the_demo_is_written_without_its_audit_event(sign_ins):
    audited = _audited_rows()
    for table, checks in audited.items():
        for what, logged, rows in checks:
            assert logged == rows, f"{table} {what}: audit log {sorted(logged)[:5]}…, rows {sorted(rows)[:5]}…"
    # Every table the demo wrote to is accounted for above (or has no audit event by design).
    written = {t.name for t in db.metadata.sorted_tables
               if db.session.scalar(select(func.count()).select_from(t))}
    assert written - set(audited) - set(NOT_AUDITED) == set()
    # Answers are saved section by section, and documents attached, each audited.
    for application in db.session.scalars(select(Application)):
        saved = {q for e in _events("application.answers_saved", "application.document_attached")
                 if e.object_id == str(application.id) for q in e.data.get("questions", [e.data.get("question")])}
        assert set(application.answer_map()) == saved, application.organisation.name
    assert verify_chain().ok


def test_the_demo_is_done_by_its_people_in_the_order_it_happened(sign_ins):
    from dps import clock

    events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    # The log reads as a history: each event at its moment on the simulated clock, none after "now".
    moments = [e.occurred_at for e in events]
    assert moments == sorted(moments) and moments[-1] <= clock.now()
    assert clock.to_london(moments[0]).date().isoformat() == "2020-03-02"  # set up a month before the DPS opens
    # Only the set-up (run by the loader, as an operator runs the setup command) and suppliers
    # registering (nobody signed in yet) are done by no signed-in person.
    unattributed = {(e.action, e.actor_label) for e in events if e.actor_user_id is None}
    assert {action for action, label in unattributed if label == "demo loader"} == {
        "organisation.created", "service.set_up", "user.created"}
    emails = set(db.session.scalars(select(User.email)))
    assert {action for action, label in unattributed if label != "demo loader"} == {
        "organisation.registered", "user.created"}
    assert {label for _, label in unattributed} <= emails | {"demo loader"}
    # Each act is attributed to the person who did it, as on the pages they use.
    for application in db.session.scalars(select(Application).where(Application.submitted_at.is_not(None))):
        [submitted] = [e for e in events if e.action == "application.submitted" and e.object_id == str(application.id)]
        assert submitted.actor_user_id == application.submitted_by_id
        assert submitted.organisation_id == application.organisation_id
    team = db.session.scalar(select(User).where(User.email == "team@dps.example.org"))
    assert {e.actor_user_id for e in events if e.action.startswith(("application.lot_", "budget_", "allocation.",
                                                                    "admission.", "renewal.", "agreement.", "lot."))} == {team.id}
    assert {e.actor_user_id for e in events if e.action == "organisations.imported"} == {team.id}
    buyers = set(db.session.scalars(select(User.id).where(User.role == "buyer")))
    assert {e.actor_user_id for e in events if e.action.startswith(("competition.", "award.", "invoice."))} <= buyers
    suppliers = set(db.session.scalars(select(User.id).where(User.role == "supplier")))
    assert {e.actor_user_id for e in events if e.action.startswith(("bid.draft", "bid.submitted", "invitation."))} <= suppliers


def test_the_demo_holds_the_dps_published_and_its_successor_in_draft(sign_ins):
    from datetime import date

    from dps.models.agreements import PA_2023_DYNAMIC_MARKET, PCR_2015_DPS
    from dps.services import agreements

    dps = agreements.by_reference("CCIN-DPS-2020")
    market = agreements.by_reference("CCIN-DM-2025")
    assert [a.reference for a in agreements.all_agreements()] == ["CCIN-DM-2025", "CCIN-DPS-2020"]
    assert (dps.regime, dps.starts_on, dps.ends_on) == (PCR_2015_DPS, date(2020, 4, 1), date(2025, 3, 31))
    assert agreements.phase(dps) == agreements.OPEN  # the demo's default clock is 3 June 2024
    assert (market.regime, market.title) == (PA_2023_DYNAMIC_MARKET, "CCIN Dynamic Market 2025 to 2029")
    assert (market.starts_on, market.ends_on) == (date(2025, 7, 1), date(2029, 6, 30))
    assert market.published_at is None and agreements.phase(market) == agreements.DRAFT
    assert [(lot.number, len(lot.cpv_codes) > 0) for lot in market.lots] == [(1, True), (2, True)]
    assert market.accountable_body.name == "Oldham Council"
    # Publishing it is refused: the service does not run a dynamic market's rules yet.
    assert any("Procurement Act 2023" in problem for problem in agreements.publication_problems(market))
    assert agreements.published_agreements() == [dps]
    # Nothing of the draft reaches suppliers or buyers.
    assert db.session.scalar(select(func.count()).select_from(Application).where(Application.agreement_id == market.id)) == 0
    assert db.session.scalar(select(func.count()).select_from(Competition).join(Lot).where(Lot.agreement_id == market.id)) == 0


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

    now = clock.now()
    states = {competition.stage(now).value for competition in db.session.scalars(select(Competition))}
    assert states == {"draft", "open", "closed", "in_evaluation", "standstill", "awarded", "cancelled", "no_award"}
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


# Tests with a database of their own (on PostgreSQL they empty the one the demo above is in) -------

def test_at_a_later_clock_the_dps_shows_closed_and_nothing_happened_after_it(app):
    from flask import g

    from dps import clock
    from dps.services import ServiceError, agreements, applications, bids

    later = clock.parse_london("2025-06-02T09:00")
    with app.app_context():
        clock.set_simulated(later, frozen=True)
        db.session.commit()
        load_demo(PASSWORD)
        db.session.commit()
        # The caller's clock is put back, frozen as it was, and nobody is left signed in.
        assert clock.now() == later and "_login_user" not in g
        dps = agreements.by_reference("CCIN-DPS-2020")
        market = agreements.by_reference("CCIN-DM-2025")
        assert agreements.status_text(dps) == "Closed on 31 March 2025"
        assert agreements.phase(market) == agreements.DRAFT
        end = dps.window()[1]
        assert db.session.scalar(select(func.max(AuditEvent.occurred_at))) < end
        assert not any(bids.tenders_open(c) for c in db.session.scalars(select(Competition)))
        supplier = db.session.scalar(select(User).where(User.email == "olivia@tidewell.example.org"))
        assert applications.live_application(supplier.organisation, dps).status == "submitted"
        with pytest.raises(ServiceError, match="closed on 31 March 2025"):
            applications.start(db.session.scalar(select(User).where(User.email == "gary@quickwin.example.org")), dps)
        db.session.rollback()
        assert verify_chain().ok


def test_a_clock_before_the_story_has_a_past_is_refused(app):
    from dps import clock
    from dps.demo import database_is_empty

    with app.app_context():
        clock.set_simulated(clock.parse_london("2020-08-31T17:00"), frozen=True)
        db.session.commit()
        with pytest.raises(DemoError, match="1 September 2020 or later"):
            load_demo(PASSWORD)
        db.session.rollback()
        assert database_is_empty()
