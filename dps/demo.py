"""Demo data: the network's real members and budget, one agreement with three lots, invented
suppliers, and one sign-in for each kind of person.

Buyers are the real members of 31 July 2020 (``dps/data``, from the network's annual report
2019/20). Suppliers are invented: the demo must never make a real firm look like a DPS supplier,
so their names, people and registration numbers are fictional.

Everything is written inside the caller's transaction, with an audit event per object, exactly
as a service would; the caller commits.
"""
from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from uuid import uuid4
from importlib import resources
from typing import Literal, TypedDict

from sqlalchemy import func, select

from . import audit, clock, questionnaire, workingdays
from .extensions import db
from .models import (
    Admission,
    Award,
    Bid,
    BidAnswer,
    CallOff,
    Competition,
    Criterion,
    Invitation,
    Invoice,
    ModeratedScore,
    PanelMember,
    Agreement,
    Allocation,
    Answer,
    Application,
    ApplicationLot,
    BudgetLine,
    BudgetYear,
    Document,
    Lot,
    Organisation,
    Installation,
    RenewalRequest,
    SimulatedClock,
    User,
)
from .models.agreements import PCR_2015_DPS
from .services import agreements as agreements_service
from .services import applications as applications_service
from .services import questionnaires as questionnaires_service
from .storage import StorageError, get_storage
from .models.organisations import CONTRACTING_AUTHORITY_KINDS, LEGAL_FORMS, MEMBERSHIP_TIERS, NATIONS, SIZES
from .services import ServiceError
from .services.accounts import create_user, password_problem

ACTOR = "demo loader"
MEMBERS_FILE = "ccin-members-2020-07-31.csv"
MEMBER_KINDS = ("council", "town_parish_community_council", "opposition_group", "organisation")
NETWORK_NAME = "Co-operative Councils' Innovation Network"
ACCOUNTABLE_BODY = "Oldham Council"
# The annual report lists the combined authority among the councils; it is a different kind of
# contracting authority, and its identifier and reporting differ from a council's.
COMBINED_AUTHORITIES = frozenset({"Greater Manchester Combined Authority"})
# org-id.guide lists of local authorities, by the nation whose list a member belongs to.
AUTHORITY_SCHEMES = {"England": "GB-LAE", "Wales": "GB-PLA", "Scotland": "GB-LAS"}


class DemoError(Exception):
    """The demo data cannot be loaded (a database in use, a weak password, or a broken plan)."""


# The agreement -------------------------------------------------------------------------------

AGREEMENT = {
    "reference": "CCIN-DPS-2020",
    "title": "CCIN Dynamic Purchasing System 2020 to 2025",
    "description": (
        "An open list of pre-qualified suppliers that the network's Full and Associate Members, "
        "and the network itself, can call on for co-operative policy work. It covers developing "
        "policy, implementing prototypes and building capacity, both in communities and inside "
        "councils. Suppliers may apply to join any lot at any time while the system is open."
    ),
    "starts_on": date(2020, 4, 1),
    "ends_on": date(2025, 3, 31),
    "regime": PCR_2015_DPS,
    "nation": "England",
}
QUESTIONNAIRE_VERSION = "ccin-sq-2020-04"

# These lot titles and criteria are illustrative: the network's public notices name only "Lot 1"
# (the "Co-operative Difference in Care" research call-off), so the split into three lots follows
# the three uses the network describes: policy, prototypes and capacity building.
LOTS: tuple[dict[str, object], ...] = (
    {
        "number": 1,
        "public_liability_min_pence": 100_000_000,
        "professional_indemnity_min_pence": 100_000_000,
        "case_studies_required": 2,
        # Research and development, social research, research consultancy.
        "cpv_codes": ["73000000-2", "79315000-5", "73210000-7"],
        "scope": ("In scope: research, evaluation and policy options commissioned by a member or the network. "
                  "Not in scope: delivering the services a policy proposes (Lot 2) or training (Lot 3)."),
        "title": "Research, evaluation and policy development",
        "description": (
            "Research, evidence reviews, evaluation of funded projects and the development of "
            "co-operative policy options for member councils and the network, including reports "
            "written for publication."
        ),
        "selection_criteria": (
            "Employer's liability insurance of at least £5 million, public liability insurance of at "
            "least £1 million and professional indemnity insurance of at least £1 million, each "
            "valid on the date of application. Two case studies from the last three years of "
            "research, evaluation or policy work for a public body or community organisation, each "
            "with a named referee who may be contacted. A research ethics and data protection "
            "policy meeting UK GDPR, including how personal data from interviews is kept and "
            "destroyed. Audited accounts for the last two years, or for organisations trading for "
            "less than two years a bank reference."
        ),
    },
    {
        "number": 2,
        "public_liability_min_pence": 200_000_000,
        "professional_indemnity_min_pence": 100_000_000,
        "case_studies_required": 2,
        # Design consultancy, general management consultancy, project management.
        "cpv_codes": ["79415200-8", "79411000-8", "79421000-1"],
        "scope": ("In scope: designing, testing and piloting services with the people who use them. "
                  "Not in scope: running a service once the pilot has ended."),
        "title": "Prototyping, service design and implementation",
        "description": (
            "Designing, testing and putting into practice new co-operative services with the "
            "people who will use them: user research, prototypes, pilots and the support to run "
            "them, in communities and inside councils."
        ),
        "selection_criteria": (
            "Employer's liability insurance of at least £5 million, public liability insurance of at "
            "least £2 million and professional indemnity insurance of at least £1 million. Two case "
            "studies from the last three years in which the supplier designed and ran a service "
            "prototype or pilot with its users, each with a named referee and the outcomes "
            "achieved. A safeguarding policy and enhanced DBS checks for staff who will work with "
            "children or adults at risk. An accessibility statement describing how prototypes are "
            "tested with disabled people."
        ),
    },
    {
        "number": 3,
        "public_liability_min_pence": 200_000_000,
        "professional_indemnity_min_pence": 50_000_000,
        "case_studies_required": 2,
        # Training, personal development training, services of social membership organisations.
        "cpv_codes": ["80500000-9", "80570000-0", "98133000-4"],
        "scope": ("In scope: training, coaching, facilitation and community development. "
                  "Not in scope: accredited qualifications that lead to a regulated award."),
        "title": "Capacity building, training and community development",
        "description": (
            "Training, coaching, facilitation and community development that leave councils, "
            "residents and community groups better able to run co-operative projects themselves."
        ),
        "selection_criteria": (
            "Employer's liability insurance of at least £5 million, public liability insurance of at "
            "least £2 million and professional indemnity insurance of at least £500,000. Two case "
            "studies from the last three years of training or community development delivered to "
            "a public body, community group or voluntary organisation, each with a named referee. "
            "A safeguarding policy and enhanced DBS checks for trainers working with children or "
            "adults at risk. Evidence that trainers hold a recognised training or facilitation "
            "qualification, or have at least two years' experience of delivering similar work."
        ),
    },
)


# Suppliers -----------------------------------------------------------------------------------

SupplierState = Literal["admitted", "pending", "rejected", "suspended"]


class SupplierPlan(TypedDict):
    name: str
    legal_form: str
    size: str
    vcse: bool
    nation: str
    registration_number: str | None
    slug: str
    contact_name: str
    contact_email: str
    lots: list[int]
    state: SupplierState
    # Why a rejected or suspended supplier is in that state ("" otherwise): the decision notes a
    # later issue needs when it turns this plan into applications.
    note: str


def _supplier(name: str, legal_form: str, size: str, vcse: bool, nation: str,
              registration_number: str | None, slug: str, contact_name: str, lots: list[int],
              state: SupplierState, note: str = "") -> SupplierPlan:
    first_name = contact_name.split()[0].lower()
    return SupplierPlan(
        name=name, legal_form=legal_form, size=size, vcse=vcse, nation=nation,
        registration_number=registration_number, slug=slug, contact_name=contact_name,
        contact_email=f"{first_name}@{slug}.example.org", lots=lots, state=state, note=note,
    )


# Every supplier, person and number here is invented. The registration numbers have the format of
# their register but sit in ranges those registers have not reached (England and Wales companies
# 99xxxxxx, Scottish SC999xxx, LLPs OC999xxx, charities 1999xxx and SC099xxx, societies RS099xxx),
# so none can point at a real body. _load_applications turns each plan into the supplier's
# applications, decisions, admissions and standing.
SUPPLIER_PLAN: list[SupplierPlan] = [
    _supplier("Brightwater Co-operative Research Ltd", "co_operative", "small", True, "England",
              "RS099101", "brightwater", "Amara Okafor", [1], "admitted"),
    _supplier("Kinder Street Consulting CIC", "cic", "micro", True, "England",
              "99010234", "kinderstreet", "Tom Hargreaves", [1, 2], "admitted"),
    _supplier("Northern Commons Community Benefit Society", "community_benefit_society", "medium", True,
              "England", "RS099102", "northerncommons", "Priya Raman", [3], "admitted"),
    _supplier("Fernhill Policy Partners LLP", "partnership", "medium", False, "England",
              "OC999101", "fernhill", "Jonathan Pike", [1, 2], "admitted"),
    _supplier("Pennine Ridge Evaluation Ltd", "company", "small", False, "England",
              "99010235", "pennineridge", "Sarah Whitfield", [1], "admitted"),
    _supplier("Larchmoor Civic Design Ltd", "company", "large", False, "England",
              "99010236", "larchmoor", "David Mensah", [2], "admitted"),
    _supplier("Saltmarsh Community Learning Trust", "charity", "medium", True, "England",
              "1999101", "saltmarsh", "Grace Adeyemi", [3], "admitted"),
    _supplier("Cwm Teg Co-operative Cyf", "co_operative", "micro", True, "Wales",
              "RS099103", "cwmteg", "Rhian Evans", [2, 3], "admitted"),
    _supplier("Thistlebank Community Learning", "charity", "small", True, "Scotland",
              "SC099101", "thistlebank", "Callum Fraser", [3], "admitted"),
    _supplier("Oakapple Training Co-operative Ltd", "co_operative", "small", True, "England",
              "RS099104", "oakapple", "Nadia Hussain", [3], "admitted"),
    _supplier("Juniper Yard Service Design Ltd", "company", "medium", False, "England",
              "99010237", "juniperyard", "Ben Castellano", [2], "admitted"),
    _supplier("Helen Ashdown Research", "sole_trader", "micro", False, "England",
              None, "ashdownresearch", "Helen Ashdown", [1], "admitted"),
    _supplier("Wayfarer Community Enterprise CIC", "cic", "small", True, "England",
              "99010238", "wayfarer", "Joseph Nwosu", [2, 3], "admitted"),
    _supplier("Kestrel Lane Data Co-operative Ltd", "co_operative", "micro", True, "England",
              "RS099105", "kestrellane", "Lucy Tran", [1, 2], "admitted"),
    _supplier("Tidewell Kitchen Collective CIC", "cic", "micro", True, "England",
              "99010239", "tidewell", "Olivia Brennan", [2], "pending"),
    _supplier("Marcus Bell Facilitation", "sole_trader", "micro", False, "England",
              None, "marcusbell", "Marcus Bell", [3], "pending"),
    _supplier("Quickwin Procurement Solutions Ltd", "company", "small", False, "England",
              "99010240", "quickwin", "Gary Lomax", [1], "rejected",
              "Professional indemnity insurance of £250,000, below the £1 million Lot 1 requires, and "
              "one case study instead of two."),
    _supplier("Copperfold Management Consultants Ltd", "company", "large", False, "England",
              "99010241", "copperfold", "Richard Ellison", [1, 2], "suspended",
              "Did not return a renewed self-declaration within 5 working days after a reported "
              "change of ownership."),
]


def supplier_identifier_scheme(legal_form: str, nation: str) -> str | None:
    """The org-id.guide list a supplier's registration number belongs to (None: no register)."""
    if legal_form in ("company", "cic", "partnership"):
        return "GB-COH"
    if legal_form in ("co_operative", "community_benefit_society"):
        return "GB-MPR"
    if legal_form == "charity":
        return "GB-SC" if nation == "Scotland" else "GB-CHC"
    return None


# People who sign in --------------------------------------------------------------------------

@dataclass(frozen=True)
class StaffAccount:
    email: str
    name: str
    role: str
    organisation: str


STAFF: tuple[StaffAccount, ...] = (
    StaffAccount("team@dps.example.org", "Fiona Marsden", "dps_admin", ACCOUNTABLE_BODY),
    StaffAccount("auditor@dps.example.org", "Imran Siddiqui", "auditor", ACCOUNTABLE_BODY),
    StaffAccount("buyer@oldham.example.org", "Rachel Ogden", "buyer", ACCOUNTABLE_BODY),
    StaffAccount("buyer@plymouth.example.org", "Kerry Tremayne", "buyer", "Plymouth City Council"),
    StaffAccount("buyer@ccin.example.org", "Martin Hughes", "buyer", NETWORK_NAME),
)


# The budget ----------------------------------------------------------------------------------

POLICY_LABS = "Policy Labs"
POLICY_PROTOTYPES = "Policy Prototypes"
NETWORK_COMMISSIONING = "Network commissioning"
FIRST_YEAR, LAST_YEAR = 2020, 2024  # financial years 2020/21 to 2024/25, the DPS period


def _pounds(amount: int) -> int:
    return amount * 100


@dataclass(frozen=True)
class LinePlan:
    programme: str
    total_pence: int
    cap_per_call_off_pence: int | None
    # (member's name, project title, amount in pence or None for the cap)
    allocations: tuple[tuple[str, str, int | None], ...]


# The network's funding table: caps rose in 2023; 2022's totals are the report's "in all" figures.
# Project titles and the councils they go to are invented for the demo.
_LABS: dict[int, tuple[int, tuple[tuple[str, str, int | None], ...]]] = {
    2020: (10_000, (
        ("Oldham Council", "Community wealth building lab", None),
        ("Plymouth City Council", "Social value in procurement lab", None),
        ("Preston City Council", "Anchor institutions and local spending lab", None),
        ("Kirklees Council", "Co-operative approaches to climate action lab", None),
        ("Cardiff Council", "Youth participation and co-production lab", None),
    )),
    2021: (10_000, (
        ("Oldham Council", "Neighbourhood working and early help lab", None),
        ("Plymouth City Council", "Community energy partnerships lab", None),
        ("Lambeth Council", "Co-operative housing models lab", None),
        ("Sunderland City Council", "Digital inclusion lab", None),
        ("Glasgow City Council", "Participatory budgeting lab", None),
        ("Salford City Council", "Fair work charter lab", None),
        ("Greater Manchester Combined Authority", "Co-operative business growth lab", None),
    )),
    2022: (10_000, (
        ("Oldham Council", "Co-operative difference in care lab", None),
        ("Plymouth City Council", "Community food systems lab", None),
        ("Croydon Council", "Resident-led regeneration lab", None),
        ("Birmingham City Council", "Social enterprise in adult social care lab", None),
        ("Knowsley Metropolitan Borough Council", "Community asset transfer lab", None),
        ("Bristol City Council", "Inclusive economy indicators lab", None),
    )),
    2023: (20_000, (
        ("Oldham Council", "Cost of living and community resilience lab", None),
        ("Plymouth City Council", "Co-operative place-making lab", None),
        ("Newcastle City Council", "Net zero neighbourhoods lab", None),
        ("Telford and Wrekin Council", "Co-operative childcare lab", None),
    )),
    2024: (20_000, (
        ("Plymouth City Council", "Community-owned renewable energy lab", None),
        ("Rochdale Metropolitan Borough Council", "Co-production with care leavers lab", None),
        ("Southampton City Council", "Shared ownership of local services lab", None),
    )),
}

# A few projects asked for less than the cap, so some lines keep headroom for new allocations.
_PROTOTYPES: dict[int, tuple[int, tuple[tuple[str, str, int | None], ...]]] = {
    2020: (1_500, (
        ("Oldham Council", "Co-operative care at home prototype", None),
        ("Plymouth City Council", "Community food network prototype", None),
        ("Barking & Dagenham Council", "Street-level participation prototype", None),
        ("Bassetlaw District Council", "Rural transport co-operative prototype", None),
        ("Brent Council", "Youth enterprise hub prototype", None),
        ("Cheshire West & Chester Council", "Community benefit from new housing prototype", None),
        ("Hull City Council", "Co-operative tenancy support prototype", _pounds(1_250)),
        ("Milton Keynes Council", "Time banking prototype", None),
        ("Oxford City Council", "Community energy switching prototype", None),
        ("Rochdale Metropolitan Borough Council", "Mutual aid network prototype", None),
        ("Stevenage Borough Council", "Co-operative neighbourhood management prototype", _pounds(1_200)),
        ("Torbay Council", "Social prescribing co-operative prototype", None),
        ("Seaton Valley Community Council", "Community-run library prototype", None),
    )),
    2021: (1_500, (
        ("Oldham Council", "Community shop prototype", None),
        ("Plymouth City Council", "Young people's co-operative prototype", None),
        ("Sandwell Metropolitan Borough Council", "Co-operative homecare rota prototype", None),
        ("South Tyneside Council", "Community wealth mapping prototype", None),
        ("Tameside Council", "Community-led green spaces prototype", None),
        ("Billingham Town Council", "Town centre co-operative market prototype", None),
        ("Royal Borough of Greenwich", "Digital skills co-operative prototype", None),
    )),
    2022: (1_500, (
        ("Oldham Council", "Warm spaces network prototype", None),
        ("Plymouth City Council", "Repair café co-operative prototype", None),
        ("North Hertfordshire District Council", "Community composting prototype", _pounds(1_000)),
        ("Preston City Council", "Worker co-operative start-up support prototype", None),
        ("South Ribble Borough Council", "Community transport booking prototype", None),
        ("Sunderland City Council", "Care co-operative recruitment prototype", None),
        ("Burntwood Town Council", "Community events co-operative prototype", None),
        ("Halewood Town Council", "Youth voice panel prototype", None),
        ("Winsford Town Council", "Community allotment co-operative prototype", None),
        ("Woughton Community Council", "Estate residents' co-operative prototype", None),
    )),
    2023: (2_000, (
        ("Oldham Council", "Community food pantry prototype", None),
        ("Plymouth City Council", "Co-operative bike repair prototype", None),
        ("Kirklees Council", "Community heat pump buying club prototype", None),
        ("Salford City Council", "Co-operative home adaptations prototype", None),
        ("Cardiff Council", "Welsh-language community co-operative prototype", None),
    )),
    2024: (2_000, (
        ("Oldham Council", "Co-operative childminding network prototype", None),
        ("Plymouth City Council", "Community land trust feasibility prototype", None),
        ("Glasgow City Council", "Tenants' energy co-operative prototype", _pounds(1_800)),
        ("Lambeth Council", "Co-operative catering for schools prototype", None),
        ("Brent Council", "Neighbourhood care circles prototype", None),
    )),
}

# The network's own research and commissioning: no cap per call-off (the Community Food
# Initiatives call-off alone was £50,000); the yearly total is the demo's assumption.
NETWORK_COMMISSIONING_TOTAL = _pounds(120_000)
NETWORK_PROJECT = "Network research and evaluation"


def year_label(start_year: int) -> str:
    return f"{start_year}/{(start_year + 1) % 100:02d}"


def _capped_line(programme: str, cap_pounds: int,
                 projects: tuple[tuple[str, str, int | None], ...]) -> LinePlan:
    # The total is the number of funded projects times the cap, as the network budgets it.
    cap = _pounds(cap_pounds)
    return LinePlan(programme, cap * len(projects), cap, projects)


def budget_plan() -> dict[int, tuple[LinePlan, ...]]:
    """The lines of each financial year (keyed by the year it starts), with their allocations."""
    plan: dict[int, tuple[LinePlan, ...]] = {}
    for year in range(FIRST_YEAR, LAST_YEAR + 1):
        plan[year] = (
            _capped_line(POLICY_LABS, *_LABS[year]),
            _capped_line(POLICY_PROTOTYPES, *_PROTOTYPES[year]),
            LinePlan(NETWORK_COMMISSIONING, NETWORK_COMMISSIONING_TOTAL, None,
                     ((NETWORK_NAME, NETWORK_PROJECT, NETWORK_COMMISSIONING_TOTAL),)),
        )
    return plan


# Loading -------------------------------------------------------------------------------------

def database_is_empty() -> bool:
    """True when there are no organisations and no users: demo data may then be loaded."""
    organisations = db.session.scalar(select(func.count()).select_from(Organisation))
    users = db.session.scalar(select(func.count()).select_from(User))
    return organisations == 0 and users == 0


def read_members() -> list[dict[str, str]]:
    """The members file shipped in ``dps/data``, checked against the model's vocabularies."""
    text = resources.files("dps").joinpath("data", MEMBERS_FILE).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    for number, row in enumerate(rows, start=2):
        problems = []
        if row["membership"] not in MEMBERSHIP_TIERS:
            problems.append(f"unknown membership {row['membership']!r}")
        if row["kind"] not in MEMBER_KINDS:
            problems.append(f"unknown kind {row['kind']!r}")
        if row["nation"] and row["nation"] not in NATIONS:
            problems.append(f"unknown nation {row['nation']!r}")
        # Working days are counted by a member's nation, so a member who can buy must have one.
        if row["membership"] != "affiliate" and not row["nation"]:
            problems.append("no nation for a Full or Associate Member")
        if problems:
            raise DemoError(f"{MEMBERS_FILE} line {number} ({row['name']}): {'; '.join(problems)}")
    return rows


def _record(action: str, object_type: str, object_id: int, data: dict, organisation_id: int | None = None) -> None:
    audit.record(action, object_type, object_id, data, actor_label=ACTOR, organisation_id=organisation_id)


def _add_organisation(org: Organisation) -> Organisation:
    db.session.add(org)
    db.session.flush()
    _record("organisation.created", "organisation", org.id, {
        "name": org.name,
        "kind": org.kind,
        "membership": org.membership,
        "nation": org.nation,
        "identifier_scheme": org.identifier_scheme,
        "identifier_id": org.identifier_id,
        "legal_form": org.legal_form,
        "registration_number": org.registration_number,
        "size": org.size,
        "is_vcse": org.is_vcse,
    }, organisation_id=org.id)
    return org


def _load_members(now: datetime) -> dict[str, Organisation]:
    members: dict[str, Organisation] = {}
    for row in read_members():
        kind = "combined_authority" if row["name"] in COMBINED_AUTHORITIES else row["kind"]
        nation = row["nation"] or None
        # Register codes are left out: no reliable list of them is to hand, and an invented code
        # would be worse than none in an export.
        # The org-id local authority lists hold principal authorities only: town, parish and
        # community councils are not on them, so they get no scheme rather than a wrong one.
        principal = kind in ("council", "combined_authority")
        scheme = AUTHORITY_SCHEMES.get(nation or "") if principal else None
        members[row["name"]] = _add_organisation(Organisation(
            name=row["name"], kind=kind, membership=row["membership"], nation=nation,
            identifier_scheme=scheme, identifier_id=None, created_at=now,
            contracting_authority=kind in CONTRACTING_AUTHORITY_KINDS,
        ))
    return members


def _load_suppliers(now: datetime) -> dict[str, Organisation]:
    suppliers: dict[str, Organisation] = {}
    for plan in SUPPLIER_PLAN:
        if plan["legal_form"] not in LEGAL_FORMS or plan["size"] not in SIZES or plan["nation"] not in NATIONS:
            raise DemoError(f"Supplier plan for {plan['name']}: unknown legal form, size or nation")
        scheme = supplier_identifier_scheme(plan["legal_form"], plan["nation"])
        suppliers[plan["name"]] = _add_organisation(Organisation(
            name=plan["name"], kind="supplier", nation=plan["nation"], legal_form=plan["legal_form"],
            registration_number=plan["registration_number"], size=plan["size"], is_vcse=plan["vcse"],
            identifier_scheme=scheme if plan["registration_number"] else None,
            identifier_id=plan["registration_number"] if scheme else None,
            created_at=now,
        ))
    return suppliers


def _load_agreement(accountable_body: Organisation) -> Agreement:
    """The DPS as the DPS team sets one up: created, its lots, its questionnaire published, then
    the agreement published, each through the service (and so audited) at the simulated time."""
    agreement = agreements_service.create_agreement(None, actor_label=ACTOR, accountable_body_id=accountable_body.id,
                                                    **AGREEMENT)
    for spec in LOTS:
        agreements_service.create_lot(None, agreement, actor_label=ACTOR, **spec)
    version = questionnaires_service.upload(None, agreement, questionnaire.shipped_text(QUESTIONNAIRE_VERSION),
                                            actor_label=ACTOR)
    questionnaires_service.publish(None, version, actor_label=ACTOR)
    agreements_service.publish_agreement(None, agreement, actor_label=ACTOR)
    return agreement


def _may_hold_allocation(org: Organisation, programme: str) -> bool:
    if programme == NETWORK_COMMISSIONING:
        return org.is_network
    # Member projects are call-offs a member awards itself, so only Full and Associate Members
    # that are contracting authorities can hold them.
    return org.is_contracting_authority and org.membership in ("full", "associate")


def _load_budget(organisations: dict[str, Organisation]) -> None:
    for start, lines in budget_plan().items():
        year = BudgetYear(label=year_label(start), starts_on=date(start, 4, 1), ends_on=date(start + 1, 3, 31))
        db.session.add(year)
        db.session.flush()
        _record("budget_year.created", "budget_year", year.id, {
            "label": year.label,
            "starts_on": year.starts_on.isoformat(),
            "ends_on": year.ends_on.isoformat(),
        })
        for spec in lines:
            line = BudgetLine(year=year, programme=spec.programme, total_pence=spec.total_pence,
                              cap_per_call_off_pence=spec.cap_per_call_off_pence, allocated_pence=0)
            db.session.add(line)
            db.session.flush()
            _record("budget_line.created", "budget_line", line.id, {
                "year": year.label,
                "programme": line.programme,
                "total_pence": line.total_pence,
                "cap_per_call_off_pence": line.cap_per_call_off_pence,
            })
            for org_name, title, amount in spec.allocations:
                _allocate(line, organisations, org_name, title, amount)


def _allocate(line: BudgetLine, organisations: dict[str, Organisation], org_name: str, title: str,
              amount: int | None) -> None:
    where = f"{line.programme} {line.year.label}, {title!r}"
    org = organisations.get(org_name)
    if org is None:
        raise DemoError(f"{where}: no organisation called {org_name!r}")
    if not _may_hold_allocation(org, line.programme):
        raise DemoError(f"{where}: {org_name} cannot hold an allocation from this line")
    amount = line.cap_per_call_off_pence if amount is None else amount
    if amount is None or amount <= 0:
        raise DemoError(f"{where}: no amount")
    if line.cap_per_call_off_pence is not None and amount > line.cap_per_call_off_pence:
        raise DemoError(f"{where}: the amount is over the line's cap per call-off")
    if line.allocated_pence + amount > line.total_pence:
        raise DemoError(f"{where}: the line's total would be exceeded")
    allocation = Allocation(line=line, organisation=org, project_title=title, amount_pence=amount,
                            committed_pence=0)
    line.allocated_pence += amount
    db.session.add(allocation)
    db.session.flush()
    _record("allocation.created", "allocation", allocation.id, {
        "line_id": line.id,
        "year": line.year.label,
        "programme": line.programme,
        "organisation_id": org.id,
        "project_title": title,
        "amount_pence": amount,
        "line_allocated_pence": line.allocated_pence,
    }, organisation_id=org.id)


def _sign_in(email: str, name: str, role: str, organisation: Organisation, password: str) -> dict[str, str]:
    try:
        create_user(email=email, name=name, role=role, organisation=organisation, password=password,
                    confirmed=True, actor_label=ACTOR)
    except ServiceError as exc:
        raise DemoError(f"Could not create {email}: {exc.message}") from exc
    return {"email": email, "role": role, "organisation": organisation.name}


def load_demo(password: str) -> list[dict[str, str]]:
    """Load the demo into the current session (the caller commits) and return its sign-ins.

    Every account gets ``password``, already confirmed, so a trainer can hand out one password.
    Refuses a database that holds any organisation or user: demo rows must never mix with real ones.
    """
    if not database_is_empty():
        raise DemoError(
            "The database already has organisations or users. Demo data can only be loaded into an "
            "empty database."
        )
    # Checked once up front so that a weak password fails before anything is written.
    problem = password_problem(password, organisation="demo")
    if problem:
        raise DemoError(f"Choose another demo password: {problem}")

    if not clock.is_simulated():
        raise DemoError("The demo runs on a simulated clock: set DPS_CLOCK (make run does)")
    now = clock.now()
    frozen = bool(db.session.get(SimulatedClock, 1) and db.session.get(SimulatedClock, 1).frozen)
    # The DPS is set up as an accountable body would: before it opens, through the services.
    clock.set_simulated(_london(AGREEMENT["starts_on"] - timedelta(days=30), 9), frozen=True)
    organisations = _load_members(clock.now())
    network = _add_organisation(Organisation(name=NETWORK_NAME, kind="network", nation="England",
                                             contracting_authority=False, created_at=clock.now()))
    organisations[network.name] = network
    db.session.add(Installation(id=1, accountable_body_id=organisations[ACCOUNTABLE_BODY].id, set_up_at=clock.now()))
    agreement = _load_agreement(organisations[ACCOUNTABLE_BODY])
    clock.set_simulated(now, frozen=frozen)
    suppliers = _load_suppliers(now)
    _load_budget(organisations)

    sign_ins = [
        _sign_in(staff.email, staff.name, staff.role, organisations[staff.organisation], password)
        for staff in STAFF
    ]
    sign_ins += [
        _sign_in(plan["contact_email"], plan["contact_name"], "supplier", suppliers[plan["name"]], password)
        for plan in SUPPLIER_PLAN
    ]
    _load_applications(agreement, suppliers, now)
    _load_competitions(agreement, now)
    return sign_ins


# Applications ---------------------------------------------------------------------------------
# Each supplier's plan becomes its history: applications with complete answers and evidence,
# submitted and decided at dates spread over the DPS period. The rows carry those historical
# times; their audit events are written now and say the demo loader made them, so the audit log
# never pretends something happened at a time it did not.

LAUNCH_COHORT = 10

DEMO_PDF = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
            b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")


def _london(day: date, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=clock.LONDON).astimezone(clock.UTC)


def _working_day_on_or_after(day: date, nation: str) -> date:
    while not workingdays.is_working_day(day, nation):
        day += timedelta(days=1)
    return day


def _demo_answers(plan: SupplierPlan, lot_ids: list[int], documents: dict[str, int]) -> dict[str, object]:
    version = questionnaire.load(QUESTIONNAIRE_VERSION)
    answers: dict[str, object] = {}
    for q in version.questions:
        if q.rule.kind in ("mandatory_exclusion", "discretionary_exclusion"):
            answers[q.id] = "no"
        elif q.type == "yes_no":
            answers[q.id] = "no" if q.id == "employers_liability_exempt" else "yes"
    rejected = plan["state"] == "rejected"
    answers.update({
        "annual_turnover": {"micro": 180_000_00, "small": 1_400_000_00, "medium": 9_800_000_00,
                            "large": 62_000_000_00}[plan["size"]],
        "employers_liability": 10_000_000_00,
        "public_liability": 5_000_000_00,
        "professional_indemnity": 250_000_00 if rejected else 2_000_000_00,
        "insurance_expiry": "2025-09-30",
        "case_studies": {str(lot_id): (
            "Borough council, 2019: evaluation of a community food network." if rejected else
            "Metropolitan council, 2019: co-designed a neighbourhood care model with 40 residents. "
            "County council, 2021: evaluated a community wealth building programme across 6 towns."
        ) for lot_id in lot_ids},
        "references": f"{plan['contact_name']} can put you in touch with two council commissioners on request.",
        "accounts": [documents["accounts"]],
        "insurance_certificates": [documents["insurance_certificates"]],
    })
    return answers


def _demo_documents(org: Organisation, uploader: User, at: datetime) -> dict[str, int]:
    storage = get_storage()
    ids = {}
    for question_id, filename in (("accounts", "annual-accounts.pdf"), ("insurance_certificates", "insurance-certificates.pdf")):
        key = f"{org.id}/{uuid4().hex}"
        try:
            storage.put(key, DEMO_PDF, "application/pdf")
        except StorageError as exc:
            raise DemoError(f"Could not store the demo documents: {exc}") from exc
        document = Document(organisation_id=org.id, storage_key=key, filename=filename, content_type="application/pdf",
                            size_bytes=len(DEMO_PDF), sha256=hashlib.sha256(DEMO_PDF).hexdigest(),
                            uploaded_at=at, uploaded_by_id=uploader.id)
        db.session.add(document)
        db.session.flush()
        ids[question_id] = document.id
    return ids


def _load_applications(agreement: Agreement, suppliers: dict[str, Organisation], now: datetime) -> None:
    lots = {lot.number: lot for lot in agreement.lots}
    team = db.session.scalar(select(User).where(User.role == "dps_admin").order_by(User.id))
    start = agreement.starts_on + timedelta(days=5)
    # The demo's "now", kept inside the DPS period so pending applications are ones it could receive.
    today = min(clock.to_london(now).date(), agreement.ends_on)
    decided_plans = [p for p in SUPPLIER_PLAN if p["state"] != "pending"]
    span = max((today - timedelta(days=60) - start).days, len(decided_plans))
    decided_index = pending_seen = 0
    for plan in SUPPLIER_PLAN:
        org = suppliers[plan["name"]]
        user = db.session.scalar(select(User).where(User.organisation_id == org.id))
        org.address_line_1 = f"{10 + len(org.name)} {plan['nation'] == 'Wales' and 'Stryd Fawr' or 'High Street'}"
        org.town = {"England": "Manchester", "Wales": "Cardiff", "Scotland": "Glasgow"}[plan["nation"]]
        org.postcode = {"England": "M1 1AE", "Wales": "CF10 1EP", "Scotland": "G1 1XQ"}[plan["nation"]]
        org.contact_name, org.contact_email = plan["contact_name"], plan["contact_email"]
        if plan["state"] == "pending":
            # The first received a few days ago; any later one long enough ago to be overdue.
            back = 4 if pending_seen == 0 else 20
            pending_seen += 1
            received_on = _working_day_on_or_after(today - timedelta(days=back), agreement.nation)
        else:
            # The DPS launched with most of its first providers (18, says the network); later
            # ones joined over the years.
            if decided_index < LAUNCH_COHORT:
                offset = 2 * decided_index
            else:
                later = len(decided_plans) - LAUNCH_COHORT
                offset = 30 + (span - 30) * (decided_index - LAUNCH_COHORT + 1) // (later + 1)
            received_on = _working_day_on_or_after(start + timedelta(days=offset), agreement.nation)
            decided_index += 1
        received = _london(received_on, 9 + decided_index % 6, (17 * decided_index) % 60)
        lot_ids = [lots[n].id for n in plan["lots"]]
        documents = _demo_documents(org, user, received - timedelta(days=2))
        application = Application(
            organisation_id=org.id, agreement_id=agreement.id, questionnaire_version=QUESTIONNAIRE_VERSION,
            created_at=received - timedelta(days=3), created_by_id=user.id, updated_at=received,
            submitted_at=received, submitted_by_id=user.id,
            decision_due_on=workingdays.add_working_days(received_on, 10, agreement.nation))
        db.session.add(application)
        db.session.flush()
        application.supplier_snapshot = applications_service.supplier_snapshot(org)
        for question_id, value in _demo_answers(plan, lot_ids, documents).items():
            application.answers.append(Answer(question_id=question_id, value=value, updated_at=received))
        decided_at = _london(workingdays.add_working_days(received_on, 6, agreement.nation), 15, 30)
        for lot_id in lot_ids:
            app_lot = ApplicationLot(lot_id=lot_id)
            application.lots.append(app_lot)
            if plan["state"] == "pending":
                continue
            app_lot.decided_at, app_lot.decided_by_id = decided_at, team.id
            if plan["state"] == "rejected":
                app_lot.decision, app_lot.reasons = "rejected", plan["note"]
                continue
            app_lot.decision = "admitted"
            db.session.flush()
            suspended = plan["state"] == "suspended"
            db.session.add(Admission(
                organisation_id=org.id, lot_id=lot_id, application_lot_id=app_lot.id, admitted_at=decided_at,
                status="suspended" if suspended else "admitted",
                status_changed_at=_london(today - timedelta(days=10), 11) if suspended else decided_at,
                status_reason=plan["note"] if suspended else None))
        if plan["state"] != "pending":
            application.decided_at = decided_at
        if plan["state"] == "suspended":
            asked_on = today - timedelta(days=30)
            db.session.add(RenewalRequest(organisation_id=org.id, requested_at=_london(asked_on, 9), requested_by_id=team.id,
                                          due_on=workingdays.add_working_days(asked_on, 5, agreement.nation)))
        db.session.flush()
        _record("application.loaded", "application", application.id, {
            "organisation": org.name, "state": plan["state"], "lots": plan["lots"],
            "submitted_at": received.isoformat(), "decided_at": application.decided_at.isoformat() if application.decided_at else None,
        }, organisation_id=org.id)


# Mini-competitions ----------------------------------------------------------------------------
# One competition in every state, and call-offs with invoices in each of the five years. As with
# applications, rows carry their historical times and the audit log says the loader made them.
# Budget counters are kept equal to the rows they count: an allocation's committed amount is the
# sum of its call-offs, a call-off's paid amount the sum of its invoices.

@dataclass(frozen=True)
class CompetitionPlan:
    year: int  # the financial year starting 1 April of this year (for finished ones)
    buyer: str
    programme: str
    lot: int
    title: str
    state: str  # draft, open, closed, in_evaluation, award_intended, awarded, cancelled, no_award
    value_pounds: int
    paid_share: float = 1.0  # of an awarded call-off, how much has been invoiced and paid


COMPETITION_PLAN: tuple[CompetitionPlan, ...] = (
    CompetitionPlan(2020, ACCOUNTABLE_BODY, "Policy Labs", 1, "Community wealth building lab: evidence review", "awarded", 9_500),
    CompetitionPlan(2021, "Plymouth City Council", "Policy Labs", 2, "Neighbourhood care co-design prototype", "awarded", 9_800),
    CompetitionPlan(2021, NETWORK_NAME, "Network commissioning", 1,
                    "External researcher to prepare the co-operative difference in care report", "awarded", 24_000),
    CompetitionPlan(2022, NETWORK_NAME, "Network commissioning", 3, "Community food initiatives", "awarded", 50_000),
    CompetitionPlan(2022, ACCOUNTABLE_BODY, "Policy Prototypes", 2, "Digital inclusion volunteers prototype", "no_award", 1_400),
    CompetitionPlan(2023, ACCOUNTABLE_BODY, "Policy Labs", 3, "Cost of living resilience: community training", "awarded", 19_000),
    CompetitionPlan(2023, "Plymouth City Council", "Policy Prototypes", 2, "Food pantry ordering prototype", "cancelled", 1_800),
    CompetitionPlan(2024, "Plymouth City Council", "Policy Labs", 1, "Evaluation of the co-operative childminding network", "awarded", 18_500, 0.4),
    CompetitionPlan(2024, ACCOUNTABLE_BODY, "Policy Prototypes", 2, "Youth-led budgeting prototype", "award_intended", 1_900),
    CompetitionPlan(2024, NETWORK_NAME, "Network commissioning", 1, "Social value in co-operative councils: research", "in_evaluation", 30_000),
    CompetitionPlan(2024, "Plymouth City Council", "Policy Prototypes", 3, "Tenant co-operatives training pilot", "closed", 1_950),
    CompetitionPlan(2024, NETWORK_NAME, "Network commissioning", 2, "Co-operative energy: service design research", "open", 19_500),
    CompetitionPlan(2024, NETWORK_NAME, "Network commissioning", 3, "Peer learning programme for member councils", "draft", 40_000),
)

_CRITERIA = (("quality", "Approach and methodology", 45, 500), ("price", "Price", 40, None),
             ("social_value", "Social value", 15, 300))


def _competition_dates(plan: CompetitionPlan, index: int, today: date) -> dict[str, datetime]:
    """Publication, deadlines and decision dates: historical for finished ones, around 'today'
    for live ones, so the demo's clock finds each in its state."""
    if plan.state in ("awarded", "cancelled", "no_award"):
        published = _london(date(plan.year, 6, 2) + timedelta(days=30 * (index % 4)), 10)
        if plan.year == 2024:  # the recent award: finished a month or so before 'today'
            published = _london(today - timedelta(days=75), 10)
    else:
        offsets = {"draft": -2, "open": -5, "closed": -20, "in_evaluation": -25, "award_intended": -30}
        published = _london(today + timedelta(days=offsets[plan.state]), 10)
    tender_deadline = published + timedelta(days=14, hours=2)
    return {"created": published - timedelta(days=3), "published": published,
            "clarification_deadline": published + timedelta(days=7), "tender_deadline": tender_deadline,
            "decided": tender_deadline + timedelta(days=9)}


def _allocation_for(buyer: Organisation, plan: CompetitionPlan) -> Allocation | None:
    return db.session.scalar(
        select(Allocation).join(Allocation.line).join(BudgetLine.year)
        .where(Allocation.organisation_id == buyer.id, BudgetLine.programme == plan.programme,
               BudgetYear.starts_on == date(plan.year, 4, 1))
        .order_by(Allocation.id))


def _load_competitions(agreement: Agreement, now: datetime) -> None:
    today = min(clock.to_london(now).date(), agreement.ends_on)
    lots = {lot.number: lot for lot in agreement.lots}
    for index, plan in enumerate(COMPETITION_PLAN):
        buyer_org = db.session.scalar(select(Organisation).where(Organisation.name == plan.buyer))
        buyer = db.session.scalar(select(User).where(User.organisation_id == buyer_org.id, User.role == "buyer"))
        allocation = _allocation_for(buyer_org, plan)
        value = plan.value_pounds * 100
        if allocation is None or allocation.amount_pence - allocation.committed_pence < value:
            raise DemoError(f"The demo budget has no room for “{plan.title}”")
        when = _competition_dates(plan, index, today)
        lot = lots[plan.lot]
        competition = Competition(
            reference="pending", lot_id=lot.id, buyer_organisation_id=buyer_org.id, created_by_id=buyer.id,
            title=plan.title, description=f"{plan.title}. See the specification for the outcomes we want.",
            estimated_value_pence=value, allocation_id=allocation.id,
            clarification_deadline=when["clarification_deadline"], tender_deadline=when["tender_deadline"],
            standstill=plan.state == "award_intended", standstill_days=10, price_formula="lowest_price_ratio",
            created_at=when["created"], published_at=None if plan.state == "draft" else when["published"])
        for position, (kind, title, weight, words) in enumerate(_CRITERIA, start=1):
            competition.criteria.append(Criterion(position=position, kind=kind, title=title, weight=weight,
                                                  description="", word_limit=words))
        db.session.add(competition)
        db.session.flush()
        competition.reference = f"CCIN-MC-{clock.to_london(when['created']).year}-{competition.id:04d}"
        db.session.add(PanelMember(competition_id=competition.id, user_id=buyer.id))
        if plan.state != "draft":
            _demo_bidding(competition, lot, plan, when, buyer, value)
        db.session.flush()
        _record("competition.loaded", "competition", competition.id, {
            "reference": competition.reference, "title": plan.title, "state": plan.state,
            "published_at": competition.published_at.isoformat() if competition.published_at else None,
        }, organisation_id=buyer_org.id)


def _demo_bidding(competition: Competition, lot: Lot, plan: CompetitionPlan, when: dict[str, datetime],
                  buyer: User, value: int) -> None:
    invited = db.session.scalars(
        select(Admission.organisation_id).where(Admission.lot_id == lot.id, Admission.admitted_at < when["published"],
                                                Admission.status == "admitted").order_by(Admission.organisation_id)).all()
    if len(invited) < 2:
        raise DemoError(f"Too few suppliers on Lot {lot.number} for “{plan.title}”")
    for org_id in invited:
        db.session.add(Invitation(competition_id=competition.id, organisation_id=org_id, invited_at=when["published"],
                                  first_opened_at=when["published"] + timedelta(hours=5)))
    if plan.state == "cancelled":
        competition.cancelled_at = when["published"] + timedelta(days=4)
        competition.cancel_reason = "The council's project was merged into a wider programme; the need has gone."
        return
    if plan.state == "open":
        return  # tenders are still being written
    bids = []
    for n, org_id in enumerate(invited[:3]):
        bid = Bid(competition_id=competition.id, organisation_id=org_id, state="submitted",
                  price_pence=value + n * value // 12, updated_at=when["tender_deadline"] - timedelta(days=1, hours=n),
                  submitted_at=when["tender_deadline"] - timedelta(days=1, hours=n))
        db.session.add(bid)
        db.session.flush()
        bid.receipt_reference = f"{competition.reference}-R{bid.id:04d}-1"
        for criterion in competition.criteria:
            if criterion.kind != "price":
                bid.answers.append(BidAnswer(criterion_id=criterion.id, text=(
                    "We will work with residents and officers from the first week, with a named lead "
                    "and monthly show-and-tells." if criterion.kind == "quality" else
                    "Two paid placements for local young people and a local supply chain.")))
        bids.append(bid)
    if plan.state == "closed":
        return  # the deadline has passed; the buyer has not opened the tenders yet
    competition.opened_at = when["tender_deadline"] + timedelta(hours=1)
    competition.opened_by_id = buyer.id
    member = db.session.scalar(select(PanelMember).where(PanelMember.competition_id == competition.id))
    member.declared_at, member.conflicted = competition.opened_at, False
    member.declaration = "I have no conflict of interest with any bidder."
    if plan.state == "in_evaluation":
        return
    for rank, bid in enumerate(bids):
        for criterion in competition.criteria:
            if criterion.kind != "price":
                db.session.add(ModeratedScore(bid_id=bid.id, criterion_id=criterion.id, score=80 - 10 * rank,
                                              justification="Agreed at moderation against the published scoring guide.",
                                              moderated_at=when["decided"] - timedelta(days=1), moderated_by_id=buyer.id))
    if plan.state == "no_award":
        competition.closed_without_award_at = when["decided"]
        competition.no_award_reason = "No tender met the minimum quality score set out in the invitation."
        return
    award = Award(competition_id=competition.id, bid_id=bids[0].id, value_pence=bids[0].price_pence,
                  decided_at=when["decided"], decided_by_id=buyer.id,
                  standstill_ends_at=when["decided"] + timedelta(days=10) if competition.standstill else None)
    db.session.add(award)
    db.session.flush()
    if plan.state == "award_intended":
        return
    award.confirmed_at = when["decided"]
    starts_on = clock.to_london(when["decided"]).date() + timedelta(days=1)
    call_off = CallOff(reference=f"{competition.reference}-C", competition_id=competition.id, award_id=award.id,
                       supplier_organisation_id=bids[0].organisation_id, buyer_organisation_id=competition.buyer_organisation_id,
                       allocation_id=competition.allocation_id, value_pence=award.value_pence, paid_pence=0,
                       starts_on=starts_on, ends_on=starts_on + timedelta(days=364), created_at=when["decided"])
    db.session.add(call_off)
    competition.allocation.committed_pence += call_off.value_pence
    # Invoiced in three stages (or fewer, for a call-off still running).
    to_pay = int(call_off.value_pence * plan.paid_share)
    for stage, share in enumerate((0.3, 0.3, 0.4), start=1):
        amount = min(int(call_off.value_pence * share), to_pay - call_off.paid_pence)
        if stage == 3:
            amount = to_pay - call_off.paid_pence
        if amount <= 0:
            break
        # Paid 100 days apart, but never after the demo's today (the service refuses future dates).
        now = clock.now()
        paid_on = min(starts_on + timedelta(days=100 * stage), clock.to_london(now).date())
        if paid_on < starts_on:
            break
        recorded_at = min(max(_london(paid_on, 15), when["decided"]), now)
        db.session.add(Invoice(call_off=call_off, supplier_reference=f"INV-{competition.id:04d}-{stage}", amount_pence=amount,
                               paid_on=paid_on, recorded_at=recorded_at, recorded_by_id=buyer.id))
        call_off.paid_pence += amount
