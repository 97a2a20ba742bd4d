"""Demo data: the network's real members and budget, the CCIN DPS 2020–2025 with three lots, its
successor drafted as a Procurement Act 2023 dynamic market, invented suppliers, and one sign-in
for each kind of person.

Buyers are the real members of 31 July 2020 (``dps/data``, from the network's annual report
2019/20). Suppliers are invented: the demo must never make a real firm look like a DPS supplier,
so their names, people and registration numbers are fictional.

The demo is its own history, told through the services the real pages call: the accountable body
sets the service up in March 2020, the DPS team imports the members, sets up the DPS and its
budget; suppliers register, apply and are decided; buyers run mini-competitions that suppliers
bid in; and so on, up to the caller's "now". Each step runs at its moment on the simulated clock,
acted by the person who would do it (signed in, as on the real pages), so every row carries its
real time, every rule is checked at that time, and the audit log reads as the history it is. The
caller's clock is put back at the end; everything is in the caller's transaction, which the
caller commits.
"""
from __future__ import annotations

import csv
import heapq
import io
import itertools
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from importlib import resources
from typing import Literal, TypedDict

from flask import current_app, g
from flask_login import login_user, logout_user
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage

from . import clock, questionnaire, workingdays
from .extensions import db
from .models import (
    Agreement,
    Allocation,
    Application,
    BudgetLine,
    BudgetYear,
    CallOff,
    Competition,
    Invitation,
    Organisation,
    OutboxMessage,
    SimulatedClock,
    User,
)
from .models.agreements import PA_2023_DYNAMIC_MARKET, PCR_2015_DPS
from .models.organisations import LEGAL_FORMS, MEMBERSHIP_TIERS, NATIONS, SIZES
from .services import ServiceError
from .services import accounts as accounts_service
from .services import agreements as agreements_service
from .services import applications as applications_service
from .services import bids as bids_service
from .services import budget as budget_service
from .services import clarifications as clarifications_service
from .services import competitions as competitions_service
from .services import documents as documents_service
from .services import evaluation as evaluation_service
from .services import installation as installation_service
from .services import members as members_service
from .services import questionnaires as questionnaires_service
from .services import standing as standing_service
from .services import suppliers as suppliers_service
from .services.accounts import password_problem

# Who ran the set-up command, in the audit log: everything after it is done by the demo's people.
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
    # Why a rejected or suspended supplier is in that state ("" otherwise): the reasons the DPS
    # team gives the supplier when it rejects or suspends it.
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
# so none can point at a real body. The loader (_Story) turns each plan into the supplier's
# registration, application, decisions and standing.
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



# The successor: a dynamic market, drafted ------------------------------------------------------
# The DPS route closed to new procurements when the Procurement Act 2023 took effect; the DPS team
# drafts its successor as a dynamic market. It stays a draft: the service holds a dynamic market's
# details but refuses to publish one (it does not run the Act's rules yet), so the demo shows an
# agreement in each state: the DPS published (open, or closed after 31 March 2025) and this draft.

DYNAMIC_MARKET = {
    "reference": "CCIN-DM-2025",
    "title": "CCIN Dynamic Market 2025 to 2029",
    "description": (
        "The successor to the CCIN Dynamic Purchasing System under the Procurement Act 2023: a dynamic "
        "market of suppliers that the network's Full and Associate Members, and the network itself, "
        "can call on for co-operative policy work, open to new suppliers throughout its term."
    ),
    "starts_on": date(2025, 7, 1),
    "ends_on": date(2029, 6, 30),
    "regime": PA_2023_DYNAMIC_MARKET,
    "nation": "England",
}
DYNAMIC_MARKET_LOTS: tuple[dict[str, object], ...] = (
    {
        "number": 1,
        "title": "Research, evaluation and policy development",
        "description": (
            "Research, evidence reviews and evaluation for member councils and the network, and the "
            "development of co-operative policy options from them."
        ),
        "scope": "In scope: research, evaluation and policy options. Not in scope: delivering services (Lot 2).",
        # Research and development, social research.
        "cpv_codes": ["73000000-2", "79315000-5"],
        "selection_criteria": (
            "Public liability and professional indemnity insurance of at least £1 million each. Two case "
            "studies from the last three years of research or evaluation for a public body, each with a "
            "named referee. A research ethics and data protection policy meeting UK GDPR."
        ),
        "public_liability_min_pence": 100_000_000,
        "professional_indemnity_min_pence": 100_000_000,
        "case_studies_required": 2,
    },
    {
        "number": 2,
        "title": "Service design, prototyping and capacity building",
        "description": (
            "Designing and testing co-operative services with the people who use them, and the training "
            "and community development that leave councils and residents able to run them."
        ),
        "scope": "In scope: prototypes, pilots, training and facilitation. Not in scope: running a service after a pilot.",
        # Design consultancy, training.
        "cpv_codes": ["79415200-8", "80500000-9"],
        "selection_criteria": (
            "Public liability insurance of at least £2 million and professional indemnity insurance of at "
            "least £1 million. Two case studies from the last three years of service design or training, "
            "each with a named referee. A safeguarding policy and enhanced DBS checks where staff work "
            "with children or adults at risk."
        ),
        "public_liability_min_pence": 200_000_000,
        "professional_indemnity_min_pence": 100_000_000,
        "case_studies_required": 2,
    },
)
# When the team drafts it: in the DPS's last winter (or, for a demo clock before then, the day before).
DYNAMIC_MARKET_DRAFTED = date(2025, 2, 3)


# Mini-competitions -----------------------------------------------------------------------------
# One competition in every state, and call-offs with invoices in each of the five years.

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

    @property
    def recent(self) -> bool:
        """Placed around the demo's "today" (live ones, and the last year's award), rather than
        at a date of its own year."""
        return self.year == LAST_YEAR or self.state not in ("awarded", "cancelled", "no_award")


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
_BID_ANSWERS = {
    "quality": "We will work with residents and officers from the first week, with a named lead and monthly "
               "show-and-tells.",
    "social_value": "Two paid placements for local young people and a local supply chain.",
}
CANCEL_REASON = "The council's project was merged into a wider programme; the need has gone."
NO_AWARD_REASON = "No tender met the minimum quality score of 50% set out in the invitation."
QUESTION = "Can the work include a community event, or should it be delivered online only?"
ANSWER = "Either is welcome: say in your tender which you propose, and why."
# The invoices of a call-off: three stages (fewer for one still running), 100 days apart.
INVOICE_SHARES = (0.3, 0.3, 0.4)
INVOICE_INTERVAL_DAYS = 100


# Loading -------------------------------------------------------------------------------------

# The story needs a past: the DPS's first suppliers admitted and decided, before the parts placed
# relative to the demo's "today" (a pending application, a suspension, live competitions).
EARLIEST_CLOCK = date(2020, 9, 1)
LAUNCH_COHORT = 10
TEAM = STAFF[0].email

DEMO_PDF = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
            b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
EVIDENCE = {"accounts": "annual-accounts.pdf", "insurance_certificates": "insurance-certificates.pdf"}


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


def members_import_file() -> str:
    """The CSV file the DPS team imports: the shipped members in the import's columns, with what
    the demo knows beyond the annual report, and the network itself.

    Register codes are left out: no reliable list of them is to hand, and an invented code would be
    worse than none in an export. The org-id local authority lists hold principal authorities only:
    town, parish and community councils are not on them, so they get no scheme rather than a wrong
    one. A blank contracting_authority is the usual for the kind."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=members_service.COLUMNS, lineterminator="\n", restval="")
    writer.writeheader()
    for row in read_members():
        kind = "combined_authority" if row["name"] in COMBINED_AUTHORITIES else row["kind"]
        principal = kind in ("council", "combined_authority")
        writer.writerow({"name": row["name"], "membership": row["membership"], "kind": kind, "nation": row["nation"],
                         "identifier_scheme": AUTHORITY_SCHEMES.get(row["nation"], "") if principal else ""})
    writer.writerow({"name": NETWORK_NAME, "kind": "network", "nation": "England", "contracting_authority": "no"})
    return out.getvalue()


def _london(day: date, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=clock.LONDON).astimezone(clock.UTC)


def _working_day_on_or_after(day: date, nation: str) -> date:
    while not workingdays.is_working_day(day, nation):
        day += timedelta(days=1)
    return day


def _working_day_on_or_before(day: date, nation: str) -> date:
    while not workingdays.is_working_day(day, nation):
        day -= timedelta(days=1)
    return day


def _financial_year(day: date) -> int:
    return day.year if day.month >= 4 else day.year - 1


def _pdf(filename: str) -> FileStorage:
    """A document as a browser uploads it."""
    return FileStorage(stream=io.BytesIO(DEMO_PDF), filename=filename, content_type="application/pdf")


def _demo_answers(plan: SupplierPlan, lot_ids: list[int], received_on: date) -> dict[str, object]:
    """A supplier's answers to the questionnaire, as its forms save them (documents apart)."""
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
        "insurance_expiry": date(received_on.year + 1, 9, 30).isoformat(),
        "case_studies": {str(lot_id): (
            "Borough council, 2019: evaluation of a community food network." if rejected else
            "Metropolitan council, 2019: co-designed a neighbourhood care model with 40 residents. "
            "County council, 2021: evaluated a community wealth building programme across 6 towns."
        ) for lot_id in lot_ids},
        "references": f"{plan['contact_name']} can put you in touch with two council commissioners on request.",
    })
    return answers


def _part1(plan: SupplierPlan) -> dict[str, object]:
    """The supplier's organisation details, as it types them into Part 1."""
    nation = plan["nation"]
    return {
        "legal_form": plan["legal_form"], "registration_number": plan["registration_number"], "size": plan["size"],
        "is_vcse": plan["vcse"], "nation": nation,
        "address_line_1": f"{10 + len(plan['name'])} {'Stryd Fawr' if nation == 'Wales' else 'High Street'}",
        "town": {"England": "Manchester", "Wales": "Cardiff", "Scotland": "Glasgow"}[nation],
        "postcode": {"England": "M1 1AE", "Wales": "CF10 1EP", "Scotland": "G1 1XQ"}[nation],
        "contact_name": plan["contact_name"], "contact_email": plan["contact_email"],
    }


@dataclass(order=True)
class _Step:
    moment: datetime
    order: int
    what: str = field(compare=False)
    actor: str | None = field(compare=False)  # the email of whoever does it; None: nobody signed in
    run: Callable[[], None] = field(compare=False)


class _Story:
    """The demo's history as steps on the simulated clock, each through a service, run in order up
    to the caller's "now". A step placed after it has not happened yet, and is left out."""

    def __init__(self, password: str, now: datetime):
        self.password = password
        # Nothing happens on the DPS after it closes, whatever the caller's clock says.
        dps_end = _london(AGREEMENT["ends_on"] + timedelta(days=1), 0)
        self.horizon = min(now, dps_end)
        # Steps placed relative to the demo's "today" happen on earlier days, so before "now".
        self.today = clock.to_london(self.horizon - timedelta(microseconds=1)).date()
        self._steps: list[_Step] = []
        self._order = itertools.count()
        self._last: datetime | None = None
        self.users: dict[str, User] = {}
        self.orgs: dict[str, Organisation] = {}
        self.agreement: Agreement | None = None
        self.applications: dict[str, Application] = {}
        self.competitions: dict[int, Competition] = {}
        self.bidders: dict[int, list[int]] = {}

    # Running ------------------------------------------------------------------------------------

    def at(self, moment: datetime, actor: str | None, what: str, run: Callable[[], None]) -> None:
        if self._last is not None and moment < self._last:
            raise DemoError(f"The demo plan puts “{what}” before a step it follows")
        heapq.heappush(self._steps, _Step(moment, next(self._order), what, actor, run))

    def act_as(self, email: str | None) -> None:
        """Sign the person in (or out), as the pages they use would have them."""
        if email is None:
            logout_user()
        else:
            login_user(self.users[email])

    def run(self) -> None:
        while self._steps and self._steps[0].moment <= self.horizon:
            step = heapq.heappop(self._steps)
            self._last = step.moment
            clock.set_simulated(step.moment, frozen=True)
            self.act_as(step.actor)
            try:
                step.run()
            except ServiceError as exc:
                raise DemoError(f"{step.what} ({clock.fmt(step.moment)}): {exc.message}") from exc
        self.act_as(None)

    # Lookups ------------------------------------------------------------------------------------

    def _emailed_token(self, address: str, path: str) -> str:
        """The one-time link in the latest email to ``address``: what its reader follows."""
        body = db.session.scalar(select(OutboxMessage.body).where(OutboxMessage.to_address == address)
                                 .order_by(OutboxMessage.id.desc()).limit(1)) or ""
        match = re.search(re.escape(path) + r"([A-Za-z0-9_-]+)", body)
        if match is None:
            raise DemoError(f"No link to {path} in the last email to {address}")
        return match.group(1)

    def _supplier_user(self, organisation_id: int) -> User:
        return db.session.scalar(select(User).where(User.organisation_id == organisation_id, User.role == "supplier")
                                 .order_by(User.id).limit(1))

    # Planning -----------------------------------------------------------------------------------

    def plan(self) -> None:
        self._plan_set_up()
        for start in range(FIRST_YEAR, LAST_YEAR + 1):
            budget_day = _working_day_on_or_after(date(start, 3, 16), AGREEMENT["nation"])
            self.at(_london(budget_day), TEAM, f"Setting the {year_label(start)} budget",
                    lambda start=start: self._set_budget(start))
        self._plan_suppliers()
        for index, plan in enumerate(COMPETITION_PLAN):
            self._plan_competition(index, plan)
        drafted = min(_london(DYNAMIC_MARKET_DRAFTED), _london(self.today - timedelta(days=1), 15))
        self.at(drafted, TEAM, "Drafting the dynamic market", self._draft_dynamic_market)

    # The set-up, the members and the DPS ---------------------------------------------------------

    def _plan_set_up(self) -> None:
        set_up_on = AGREEMENT["starts_on"] - timedelta(days=30)
        self.at(_london(set_up_on, 9), None, "Setting the service up", self._set_up)
        self.at(_london(set_up_on, 9, 30), TEAM, "Importing the members", self._import_members)
        self.at(_london(set_up_on + timedelta(days=1)), TEAM, "Creating the DPS and its lots", self._create_dps)
        self.at(_london(set_up_on + timedelta(days=2), 11), TEAM, "Inviting the staff", self._invite_staff)
        for n, staff in enumerate(STAFF[1:]):
            self.at(_london(set_up_on + timedelta(days=3), 9, 10 * n), None, f"{staff.email} accepting the invitation",
                    lambda email=staff.email: self._accept_invitation(email))
        self.at(_london(set_up_on + timedelta(days=7)), TEAM, "Uploading the questionnaire", self._upload_questionnaire)
        self.at(_london(set_up_on + timedelta(days=8)), TEAM, "Publishing the DPS", self._publish_dps)

    def _set_up(self) -> None:
        team = STAFF[0]
        self.users[team.email] = installation_service.set_up(
            accountable_body_name=team.organisation, nation=AGREEMENT["nation"], admin_email=team.email,
            admin_name=team.name, password=self.password, actor_label=ACTOR)

    def _import_members(self) -> None:
        text = members_import_file()
        preview = members_service.preview_import(text)
        if not preview.ok:
            raise DemoError("The members file does not import: " + "; ".join(p.text for p in preview.problems[:3]))
        members_service.apply_import(self.users[TEAM], text, preview.fingerprint)
        self.orgs.update({org.name: org for org in db.session.scalars(
            select(Organisation).where(Organisation.kind != "supplier"))})

    def _create_dps(self) -> None:
        team = self.users[TEAM]
        self.agreement = agreements_service.create_agreement(
            team, accountable_body_id=self.orgs[ACCOUNTABLE_BODY].id, **AGREEMENT)
        for spec in LOTS:
            agreements_service.create_lot(team, self.agreement, **spec)

    def _upload_questionnaire(self) -> None:
        questionnaires_service.upload(self.users[TEAM], self.agreement, questionnaire.shipped_text(QUESTIONNAIRE_VERSION))

    def _publish_dps(self) -> None:
        team = self.users[TEAM]
        version = questionnaires_service.versions_of(self.agreement)[0]
        questionnaires_service.publish(team, version)
        agreements_service.publish_agreement(team, self.agreement)

    def _invite_staff(self) -> None:
        for staff in STAFF[1:]:
            self.users[staff.email] = accounts_service.invite(
                self.users[TEAM], email=staff.email, name=staff.name, role=staff.role,
                organisation=self.orgs[staff.organisation])

    def _accept_invitation(self, email: str) -> None:
        accounts_service.accept_invitation(self._emailed_token(email, "/invitation/"), self.password)

    def _set_budget(self, start: int) -> None:
        team = self.users[TEAM]
        year = budget_service.create_year(team, start)
        for spec in budget_plan()[start]:
            line = budget_service.create_line(team, year, spec.programme, spec.total_pence, spec.cap_per_call_off_pence)
            for org_name, title, amount in spec.allocations:
                org = self.orgs.get(org_name)
                if org is None:
                    raise DemoError(f"{spec.programme} {year.label}, {title!r}: no member called {org_name!r}")
                budget_service.allocate(team, line, org, title, line.cap_per_call_off_pence if amount is None else amount)

    # Suppliers ------------------------------------------------------------------------------------
    # Each supplier's plan becomes its history: it registers, gives its details, applies with
    # complete answers and evidence, and the DPS team decides, at dates spread over the DPS period.

    def _plan_suppliers(self) -> None:
        nation = AGREEMENT["nation"]
        start = AGREEMENT["starts_on"] + timedelta(days=5)
        decided_plans = [p for p in SUPPLIER_PLAN if p["state"] != "pending"]
        span = max((self.today - timedelta(days=60) - start).days, len(decided_plans))
        decided_index = pending_seen = 0
        for plan in SUPPLIER_PLAN:
            if plan["state"] == "pending":
                # The first received a few days ago; any later one long enough ago to be overdue.
                back = 4 if pending_seen == 0 else 20
                pending_seen += 1
                received_on = _working_day_on_or_before(self.today - timedelta(days=back), nation)
            else:
                # The DPS launched with most of its first providers (18, says the network); later
                # ones joined over the years.
                if decided_index < LAUNCH_COHORT:
                    offset = 2 * decided_index
                else:
                    later = len(decided_plans) - LAUNCH_COHORT
                    offset = 30 + (span - 30) * (decided_index - LAUNCH_COHORT + 1) // (later + 1)
                received_on = _working_day_on_or_after(start + timedelta(days=offset), nation)
                decided_index += 1
            received = _london(received_on, 9 + decided_index % 6, (17 * decided_index) % 60)
            decided = None
            if plan["state"] != "pending":
                decided = _london(workingdays.add_working_days(received_on, 6, nation), 15, 30)
            self._plan_supplier(plan, received, decided)
        suspended = [p for p in SUPPLIER_PLAN if p["state"] == "suspended"]
        for plan in suspended:
            asked_on = _working_day_on_or_before(self.today - timedelta(days=30), nation)
            self.at(_london(asked_on - timedelta(days=1), 16), plan["contact_email"],
                    f"{plan['name']} reporting a change of ownership",
                    lambda plan=plan: self._report_new_owner(plan))
            self.at(_london(asked_on), TEAM, f"Asking {plan['name']} for a renewed self-declaration",
                    lambda plan=plan: standing_service.request_renewal(self.users[TEAM], self.orgs[plan["name"]]))
            suspended_on = _working_day_on_or_before(self.today - timedelta(days=10), nation)
            self.at(_london(suspended_on, 11), TEAM, f"Suspending {plan['name']}", lambda plan=plan: self._suspend(plan))

    def _plan_supplier(self, plan: SupplierPlan, received: datetime, decided: datetime | None) -> None:
        name, email = plan["name"], plan["contact_email"]
        registered = received - timedelta(days=3)
        self.at(registered, None, f"{name} registering", lambda: self._register(plan))
        self.at(registered + timedelta(minutes=10), None, f"{email} confirming their email address",
                lambda: accounts_service.confirm_email(self._emailed_token(email, "/confirm-email/")))
        self.at(registered + timedelta(minutes=20), email, f"{name} starting an application",
                lambda: self._start_application(plan))
        self.at(received - timedelta(days=1), email, f"{name} answering the questionnaire",
                lambda: self._answer(plan, clock.to_london(received).date()))
        self.at(received, email, f"{name} submitting its application",
                lambda: applications_service.submit(self.applications[plan["slug"]], self.users[email]))
        if decided is not None:
            self.at(decided, TEAM, f"Deciding {name}'s application", lambda: self._decide(plan))

    def _register(self, plan: SupplierPlan) -> None:
        if plan["legal_form"] not in LEGAL_FORMS or plan["size"] not in SIZES or plan["nation"] not in NATIONS:
            raise DemoError(f"Supplier plan for {plan['name']}: unknown legal form, size or nation")
        accounts_service.sign_up_supplier(organisation_name=plan["name"], name=plan["contact_name"],
                                          email=plan["contact_email"], password=self.password)
        user = db.session.scalar(select(User).where(User.email == plan["contact_email"]))
        self.users[user.email] = user
        self.orgs[plan["name"]] = user.organisation

    def _start_application(self, plan: SupplierPlan) -> None:
        user, org = self.users[plan["contact_email"]], self.orgs[plan["name"]]
        suppliers_service.update_details(org, user, _part1(plan))
        application = applications_service.start(user, self.agreement)
        lots = {lot.number: lot.id for lot in self.agreement.lots}
        applications_service.choose_lots(application, user, [lots[n] for n in plan["lots"]])
        self.applications[plan["slug"]] = application

    def _answer(self, plan: SupplierPlan, received_on: date) -> None:
        """Each section as its page saves it: the answers, then the evidence uploaded with them."""
        user, application = self.users[plan["contact_email"]], self.applications[plan["slug"]]
        answers = _demo_answers(plan, [al.lot_id for al in application.lots], received_on)
        for section in questionnaire.load(application.questionnaire_version).sections:
            values = {q.id: answers[q.id] for q in section.questions if q.id in answers}
            if values:
                applications_service.save_answers(application, user, section.id, values)
            for q in section.questions:
                if q.id in EVIDENCE:
                    document = documents_service.store(user, _pdf(EVIDENCE[q.id]), field=q.id)
                    applications_service.attach_document(application, user, q.id, document)

    def _decide(self, plan: SupplierPlan) -> None:
        application = self.applications[plan["slug"]]
        rejected = plan["state"] == "rejected"
        for lot_id in [al.lot_id for al in application.lots]:
            applications_service.decide_lot(application, lot_id, self.users[TEAM],
                                            "rejected" if rejected else "admitted", plan["note"] if rejected else "")

    def _report_new_owner(self, plan: SupplierPlan) -> None:
        suppliers_service.update_details(self.orgs[plan["name"]], self.users[plan["contact_email"]],
                                         {"parent_company": "Ellerby Fold Holdings Ltd"})

    def _suspend(self, plan: SupplierPlan) -> None:
        for admission in standing_service.admissions_of(self.orgs[plan["name"]]):
            standing_service.suspend(admission, self.users[TEAM], plan["note"])

    # Mini-competitions ---------------------------------------------------------------------------

    def _dates(self, plan: CompetitionPlan, index: int) -> dict[str, datetime]:
        """Publication, deadlines and decision: at a date of their own year for finished ones,
        around "today" for live ones, so the demo's clock finds each in its state."""
        if not plan.recent:
            published = _london(date(plan.year, 6, 2) + timedelta(days=30 * (index % 4)))
        elif plan.state == "awarded":  # the recent award: finished a month or so before "today"
            published = _london(self.today - timedelta(days=75))
        else:
            offsets = {"draft": -2, "open": -5, "closed": -20, "in_evaluation": -25, "award_intended": -30}
            published = _london(self.today + timedelta(days=offsets[plan.state]))
        tender_deadline = published + timedelta(days=14, hours=2)
        return {"created": published - timedelta(days=3), "published": published,
                "clarification_deadline": published + timedelta(days=7), "tender_deadline": tender_deadline,
                "decided": tender_deadline + timedelta(days=9)}

    def _plan_competition(self, index: int, plan: CompetitionPlan) -> None:
        when = self._dates(plan, index)
        buyer = next(s.email for s in STAFF if s.role == "buyer" and s.organisation == plan.buyer)
        title = f"“{plan.title}”"

        def step(moment: datetime, actor: str | None, what: str, run: Callable[[Competition], object]) -> None:
            """A step of this competition, left out if it was not made (no budget left for it)."""
            def go() -> None:
                if index in self.competitions:
                    run(self.competitions[index])
            self.at(moment, actor, f"{what} {title}", go)

        self.at(when["created"], buyer, f"Creating {title}", lambda: self._create_competition(index, plan, when))
        if plan.state == "draft":
            return
        published, deadline = when["published"], when["tender_deadline"]
        step(published, buyer, "Publishing", lambda c: competitions_service.publish(c, self.users[buyer]))
        step(published + timedelta(hours=5), None, "Opening the invitations to", self._open_invitations)
        step(published + timedelta(days=1, hours=1), None, "A question about", lambda c: self._ask(c, index))
        step(published + timedelta(days=2, hours=4), buyer, "Answering the question about",
             lambda c: self._answer_question(c, buyer))
        if plan.state == "cancelled":
            step(published + timedelta(days=4, hours=2), buyer, "Cancelling",
                 lambda c: competitions_service.cancel(c, self.users[buyer], CANCEL_REASON))
            return
        if plan.state == "open":
            # Tenders are still being written: one is in, another saved as a draft.
            step(_london(self.today - timedelta(days=2)), None, "Bidding for", lambda c: self._bid(c, index, 0, True))
            step(_london(self.today - timedelta(days=1)), None, "Bidding for", lambda c: self._bid(c, index, 1, False))
            return
        for n in range(3):
            step(deadline - timedelta(days=2, hours=n), None, "Bidding for", lambda c, n=n: self._bid(c, index, n, False))
            step(deadline - timedelta(days=1, hours=n), None, "Submitting a bid for",
                 lambda c, n=n: self._submit(c, index, n))
        if plan.state == "closed":
            return  # the deadline has passed; the buyer has not opened the tenders yet
        step(deadline + timedelta(hours=1), buyer, "Opening the bids of", lambda c: self._open(c, buyer))
        low = plan.state == "no_award"
        if plan.state == "in_evaluation":
            step(deadline + timedelta(days=1), buyer, "Scoring", lambda c: self._score(c, index, buyer, first_only=True))
            return
        step(deadline + timedelta(days=2), buyer, "Scoring", lambda c: self._score(c, index, buyer, low=low))
        step(when["decided"] - timedelta(days=1), buyer, "Moderating",
             lambda c: self._score(c, index, buyer, low=low, moderate=True))
        if low:
            step(when["decided"], buyer, "Closing without award",
                 lambda c: evaluation_service.close_without_award(c, self.users[buyer], NO_AWARD_REASON))
            return
        step(when["decided"], buyer, "Awarding", lambda c: self._award(c, plan, buyer))

    def _allocation_for(self, plan: CompetitionPlan, when: dict[str, datetime]) -> Allocation | None:
        """The buyer's allocation for the programme in the financial year the call-off would be
        committed in (that of the tender deadline), or the year's before if that year's budget is
        not set yet."""
        years = [_financial_year(clock.to_london(when[moment]).date()) for moment in ("tender_deadline", "created")]
        for year in dict.fromkeys(years):
            allocation = db.session.scalar(
                select(Allocation).join(Allocation.line).join(BudgetLine.year)
                .where(Allocation.organisation_id == self.orgs[plan.buyer].id, BudgetLine.programme == plan.programme,
                       BudgetYear.starts_on == date(year, 4, 1))
                .order_by(Allocation.id))
            if allocation is not None:
                return allocation
        return None

    def _create_competition(self, index: int, plan: CompetitionPlan, when: dict[str, datetime]) -> None:
        buyer = self.users[next(s.email for s in STAFF if s.role == "buyer" and s.organisation == plan.buyer)]
        allocation = self._allocation_for(plan, when)
        if allocation is None:
            raise DemoError(f"The demo budget has no {plan.programme} allocation for {plan.buyer} for “{plan.title}”")
        # Asked for what the allocation can still pay (less than planned only for an early demo clock).
        cap = allocation.line.cap_per_call_off_pence
        value = min(plan.value_pounds * 100, allocation.amount_pence - allocation.committed_pence,
                    cap if cap is not None else plan.value_pounds * 100)
        if value <= 0:
            return
        lots = {lot.number: lot for lot in self.agreement.lots}
        competition, _warnings = competitions_service.create(
            buyer, lot_id=lots[plan.lot].id, title=plan.title,
            description=f"{plan.title}. See the specification for the outcomes we want.",
            estimated_value_pence=value, allocation_id=allocation.id,
            clarification_deadline=when["clarification_deadline"], tender_deadline=when["tender_deadline"],
            criteria=[competitions_service.CriterionInput(kind, title, weight, "", words)
                      for kind, title, weight, words in _CRITERIA],
            standstill=plan.state == "award_intended")
        competitions_service.appoint_panel(competition, buyer, [buyer.id])
        competitions_service.add_document(competition, buyer, _pdf("specification.pdf"))
        self.competitions[index] = competition

    def _open_invitations(self, competition: Competition) -> None:
        for invitation in db.session.scalars(select(Invitation).where(Invitation.competition_id == competition.id)
                                             .order_by(Invitation.organisation_id)):
            user = self._supplier_user(invitation.organisation_id)
            self.act_as(user.email)
            bids_service.mark_opened(invitation, user)

    def _bidders(self, competition: Competition, index: int) -> list[int]:
        """Up to three invited suppliers that bid (a different three from one competition to the next)."""
        if index not in self.bidders:
            invited = list(db.session.scalars(select(Invitation.organisation_id)
                                              .where(Invitation.competition_id == competition.id)
                                              .order_by(Invitation.organisation_id)))
            if not invited:
                raise DemoError(f"Nobody was invited to “{competition.title}”")
            turn = index % len(invited)
            self.bidders[index] = (invited[turn:] + invited[:turn])[:3]
        return self.bidders[index]

    def _bidder(self, competition: Competition, index: int, n: int) -> User | None:
        """The ``n``th bidder, signed in, if there is one and it may still bid."""
        bidders = self._bidders(competition, index)
        if n >= len(bidders):
            return None
        user = self._supplier_user(bidders[n])
        if bids_service.cannot_submit_reason(competition, user.organisation) is not None:
            return None
        self.act_as(user.email)
        return user

    def _ask(self, competition: Competition, index: int) -> None:
        user = self._bidder(competition, index, 0)
        if user is not None:
            clarifications_service.ask(competition, user, QUESTION)

    def _answer_question(self, competition: Competition, buyer: str) -> None:
        for clarification in clarifications_service.visible_to(competition, self.users[buyer]):
            if clarification.answered_at is None:
                clarifications_service.answer(clarification, self.users[buyer], clarification.question, ANSWER)

    def _bid(self, competition: Competition, index: int, n: int, submit: bool) -> None:
        user = self._bidder(competition, index, n)
        if user is None:
            return
        value = competition.estimated_value_pence
        answers = {c.id: _BID_ANSWERS[c.kind] for c in bids_service.answered_criteria(competition)}
        bids_service.save_draft(competition, user, value + n * value // 12, answers)
        if submit:
            bids_service.submit(competition, user)

    def _submit(self, competition: Competition, index: int, n: int) -> None:
        user = self._bidder(competition, index, n)
        if user is not None:
            bids_service.submit(competition, user)

    def _open(self, competition: Competition, buyer: str) -> None:
        evaluation_service.open_competition(competition, self.users[buyer])
        evaluation_service.declare(competition, self.users[buyer], False, "")

    def _score(self, competition: Competition, index: int, buyer: str, *, low: bool = False,
               moderate: bool = False, first_only: bool = False) -> None:
        """The panel's scores (or, with ``moderate``, its moderated ones): the first bidder's
        tender the best, then each next one 10 points lower."""
        user = self.users[buyer]
        order = {org_id: rank for rank, org_id in enumerate(self._bidders(competition, index))}
        bids = sorted(evaluation_service.submitted_bids(competition), key=lambda b: order.get(b.organisation_id, 99))
        for bid in bids[:1] if first_only else bids:
            rank = order.get(bid.organisation_id, len(order))
            for criterion in competition.criteria:
                if criterion.kind not in evaluation_service.SCORED_KINDS:
                    continue
                mark = (40 if low else 80) - 10 * rank - (5 if criterion.kind == "social_value" else 0)
                if moderate:
                    evaluation_service.moderate(competition, user, bid, criterion, mark,
                                                "Agreed at moderation against the published scoring guide.")
                else:
                    evaluation_service.score(competition, user, bid, criterion, mark,
                                             "Scored against the published scoring guide.")

    def _award(self, competition: Competition, plan: CompetitionPlan, buyer: str) -> None:
        rows = evaluation_service.results(competition)
        best = next(row for row in rows if row.rank == 1)
        award = evaluation_service.decide_award(competition, self.users[buyer], best.bid, best.bid.price_pence)
        if award.confirmed_at is None:
            return  # in standstill
        call_off = db.session.scalar(select(CallOff).where(CallOff.competition_id == competition.id))
        self._plan_invoices(call_off, plan, buyer)

    def _plan_invoices(self, call_off: CallOff, plan: CompetitionPlan, buyer: str) -> None:
        """Invoiced in stages 100 days apart; a recent call-off's invoices fit in the time it has run."""
        to_pay = int(call_off.value_pence * plan.paid_share)
        amounts, paid = [], 0
        for stage, share in enumerate(INVOICE_SHARES, start=1):
            amount = to_pay - paid if stage == len(INVOICE_SHARES) else min(int(call_off.value_pence * share), to_pay - paid)
            if amount <= 0:
                break
            amounts.append(amount)
            paid += amount
        interval = INVOICE_INTERVAL_DAYS
        if plan.recent and amounts:
            interval = min(interval, (self.today - timedelta(days=1) - call_off.starts_on).days // len(amounts))
            if interval < 1:
                return
        for stage, amount in enumerate(amounts, start=1):
            paid_on = call_off.starts_on + timedelta(days=interval * stage)
            self.at(_london(paid_on, 15), buyer, f"Recording an invoice of {call_off.reference}",
                    lambda stage=stage, amount=amount, paid_on=paid_on: evaluation_service.record_invoice(
                        call_off, self.users[buyer], f"INV-{call_off.competition_id:04d}-{stage}", amount, paid_on))

    # The successor ------------------------------------------------------------------------------

    def _draft_dynamic_market(self) -> None:
        team = self.users[TEAM]
        market = agreements_service.create_agreement(team, accountable_body_id=self.orgs[ACCOUNTABLE_BODY].id,
                                                     **DYNAMIC_MARKET)
        for spec in DYNAMIC_MARKET_LOTS:
            agreements_service.create_lot(team, market, **spec)

    # The sign-ins ---------------------------------------------------------------------------------

    def sign_ins(self) -> list[dict[str, str]]:
        people = [(s.email, s.role) for s in STAFF] + [(p["contact_email"], "supplier") for p in SUPPLIER_PLAN]
        missing = [email for email, _ in people if email not in self.users]
        if missing:
            raise DemoError(f"The demo's story did not reach {missing[0]}'s account")
        return [{"email": email, "role": role, "organisation": self.users[email].organisation.name}
                for email, role in people]


@contextmanager
def _as_the_pages_do() -> Iterator[None]:
    """A request context, as a page's: services read the signed-in person from it (and build the
    links in emails with it). Nothing of it is left behind: the caller's signed-in user and clock
    state are put back, and the emails of the demo's past are not written to the log one by one."""
    saved = {key: g.get(key) for key in ("_login_user", "dps_clock_state") if key in g}
    logger = current_app.logger
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with current_app.test_request_context(base_url=current_app.config["DPS_BASE_URL"]):
            yield
    finally:
        logger.setLevel(level)
        for key in ("_login_user", "dps_clock_state"):
            g.pop(key, None)
        for key, value in saved.items():
            setattr(g, key, value)


def load_demo(password: str) -> list[dict[str, str]]:
    """Load the demo into the current session (the caller commits) and return its sign-ins.

    Every account gets ``password``, already confirmed, so a trainer can hand out one password.
    Refuses a database that holds any organisation or user: demo rows must never mix with real ones.
    The story runs up to the simulated clock's "now" (at least ``EARLIEST_CLOCK``), or to the DPS's
    end if that is earlier; the clock is then put back where it was, frozen or running as it was.
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
    if clock.to_london(now).date() < EARLIEST_CLOCK:
        raise DemoError(f"The demo tells the DPS's story from its opening on 1 April 2020: start the simulated clock "
                        f"on {clock.fmt_date(EARLIEST_CLOCK)} or later (DPS_CLOCK)")
    row = db.session.get(SimulatedClock, 1)
    frozen = bool(row and row.frozen)
    story = _Story(password, now)
    story.plan()
    try:
        with _as_the_pages_do():
            story.run()
    finally:
        clock.set_simulated(now, frozen=frozen)
    return story.sign_ins()
