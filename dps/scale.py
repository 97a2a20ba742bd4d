"""Benchmark data at national scale: ``flask --app dps demo scale --factor K``.

Fills an empty, migrated database with K times:

- 1,000 suppliers (each with one supplier account, a submitted and decided application, and its
  answers, lots and admissions),
- 50 buyer organisations (Full Member councils that are contracting authorities, each with one
  buyer account and one allocation in each budget year),
- 2,000 mini-competitions (3 award criteria each, an evaluation panel, invitations, bids,
  scores, and the award, call-off and invoices of those awarded),
- 20,000 bids (about 10 a competition, each submitted before its deadline with a receipt),
- 100,000 audit events, in one valid hash chain,

so that at K=10 it holds what DESIGN 10 calls national scale (10,000 suppliers, 500 buyer
organisations, 20,000 competitions, 200,000 bids, 1,000,000 audit rows). K may be a fraction:
0.01 gives 10 suppliers, 1 buyer organisation, 20 competitions and 1,000 audit events (the
tests use it). Counts are rounded, and never below 1.

This is a benchmark fixture, not the demo. The demo is built through the services in date
order, so it proves the real paths; at a million audit rows that would take hours. Here only the
base goes through the services, exactly as a real installation starts: ``setup`` (the
accountable body and one DPS team account), then the DPS team creating the agreement and its
three lots, uploading and publishing the selection questionnaire and publishing the agreement,
each at its date in March 2020 on the simulated clock. Everything else is planned in memory
from a seeded random generator and written with SQLAlchemy Core ``insert()`` (executemany) in
batches of 5,000 rows, one transaction per batch; on PostgreSQL the batches go through ``COPY``,
which is several times faster. Primary keys are given explicitly (so rows can point at each
other before they exist) and PostgreSQL's sequences are moved past them at the end.

The data keeps the rules the services keep, so every page and export works on it: each row
respects the CHECK and UNIQUE constraints; competitions are placed over the DPS period and its
lots, most awarded in the past, and some open, closed, in evaluation, in standstill or drafted
relative to the simulated clock's "now", a few cancelled or closed without award; suppliers are
invited only if admitted to the lot (and not suspended or removed) when the competition was
published, and bid only if still in good standing; every bid is submitted before the deadline;
the award goes to the best-ranked bid by the competition's own formula; a confirmed award has its
call-off; and each allocation's committed amount is the sum of its call-offs, within its amount,
within its line.

What is sampled, and said here so no benchmark is misread:

- Invitations: a DPS invites *every* supplier admitted to the lot (reg 34). At national scale
  that is thousands of invitations per competition, tens of millions of rows; here each
  competition invites a random sample of about 20 suppliers admitted to its lot at publication,
  and its bidders are among them.
- The audit log: each row above has the events its services would have written for its life
  (registrations, applications and decisions, standing changes, budgets, every competition's
  creation, publication, opening, award, call-off and invoices, every bid's submission). That
  is about half of the total asked for; the rest is a random sample of the finer-grained events
  of the same objects (invitations opened, drafts saved, scores and moderations) and sign-ins,
  up to the total exactly. Every event is in the chain, in time order, hashed exactly as
  ``dps.audit`` hashes what it stores, so ``flask --app dps audit verify`` passes.
- Not made: documents (no files in storage: evidence, specifications, bid attachments), emails,
  clarifications, renewal requests and re-applications.

Every account has the one password given (its argon2 hash is computed once and shared). The run
is deterministic for a seed and a simulated clock (apart from the password hashes' salts).
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import time
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from types import SimpleNamespace

from sqlalchemy import JSON, Table, func, insert, select, text
from sqlalchemy.engine import Connection

from . import audit, clock, questionnaire, validators, workingdays
from .demo import AGREEMENT, LOTS, QUESTIONNAIRE_VERSION, database_is_empty
from .extensions import db
from .models import (
    Admission,
    Allocation,
    Answer,
    Application,
    ApplicationLot,
    AuditEvent,
    Award,
    Bid,
    BidAnswer,
    BudgetLine,
    BudgetYear,
    CallOff,
    Competition,
    Criterion,
    Invitation,
    Invoice,
    ModeratedScore,
    Organisation,
    PanelMember,
    Score,
    SimulatedClock,
    User,
)
from .services import ServiceError, accounts, installation
from .services import agreements as agreements_service
from .services import questionnaires as questionnaires_service
from .services.applications import supplier_snapshot
from .services.evaluation import term_end

# Rows per unit of --factor (DESIGN 10's national scale is --factor 10).
PER_FACTOR = {"suppliers": 1_000, "buyer_organisations": 50, "competitions": 2_000, "bids": 20_000,
              "audit_events": 100_000}
BATCH = 5_000
# The invented registration numbers run out past 100,000 suppliers.
MAX_FACTOR = 100
ACTOR = "scale loader"
ACCOUNTABLE_BODY = "Oldham Council"
TEAM_EMAIL = "team@dps.example.org"
TEAM_NAME = "Dana Whitfield"
NATION = AGREEMENT["nation"]
# The story needs a past: suppliers admitted and competitions finished before "now".
EARLIEST_CLOCK = date(2020, 9, 1)
FIRST_BUDGET_YEAR, LAST_BUDGET_YEAR = 2020, 2024
# Invitations sampled per competition (see the module's docstring), and bids asked for per competition.
INVITED_PER_COMPETITION = (16, 24)

# In the order rows are written (each table's foreign keys point at tables before it).
TABLES: tuple[Table, ...] = tuple(model.__table__ for model in (
    Organisation, User, BudgetYear, BudgetLine, Allocation, Application, ApplicationLot, Answer, Admission,
    Competition, Criterion, PanelMember, Invitation, Bid, BidAnswer, Score, ModeratedScore, Award, CallOff,
    Invoice, AuditEvent))


class ScaleError(Exception):
    """The benchmark data cannot be loaded (a database in use, no simulated clock, a weak password)."""


@dataclass(frozen=True)
class Volumes:
    suppliers: int
    buyer_organisations: int
    competitions: int
    bids: int
    audit_events: int

    @classmethod
    def for_factor(cls, factor: float) -> "Volumes":
        if not 0 < factor <= MAX_FACTOR:
            raise ScaleError(f"The factor must be a positive number up to {MAX_FACTOR}, like 1, 10 or 0.01")
        return cls(**{name: max(1, int(per * factor + 0.5)) for name, per in PER_FACTOR.items()})


@dataclass
class Summary:
    """What a run wrote: rows per table (the whole table, the base included) and the time taken."""

    volumes: Volumes
    rows: dict[str, int]
    seconds: float
    sign_ins: list[tuple[str, str, str]]
    notes: list[str]


# Vocabulary -----------------------------------------------------------------------------------

_FIRST = ("Amara", "Ben", "Chloe", "Dev", "Eilidh", "Farah", "Gareth", "Hana", "Idris", "Jess", "Kwame", "Lowri",
          "Maya", "Niall", "Olu", "Priya", "Rhys", "Sana", "Tom", "Uma", "Viktor", "Wen", "Yusuf", "Zoe", "Aled",
          "Bethan", "Callum", "Deepa", "Euan", "Fiona", "Grace", "Harun", "Isla", "Jonah", "Kiran", "Leah",
          "Marek", "Nia", "Owen", "Rosa")
_LAST = ("Adeyemi", "Baker", "Campbell", "Davies", "Evans", "Fraser", "Gill", "Hughes", "Iqbal", "Jones", "Khan",
         "Lewis", "Morgan", "Nowak", "Okafor", "Patel", "Quinn", "Roberts", "Singh", "Taylor", "Usman", "Vaughan",
         "Williams", "Young", "Ahmed", "Brennan", "Chen", "Doyle", "Ellis", "Fox", "Green", "Hall", "Ince",
         "Jackson", "Kelly", "Lloyd", "Murray", "Nash", "Owusu", "Price")
_NAME_A = ("Bright", "Common", "Northern", "Open", "Green", "Civic", "Shared", "Kindred", "River", "Hill", "Oak",
           "Harbour", "Meadow", "Copper", "Willow", "Beacon", "Granite", "Heron", "Thistle", "Lantern", "Orchard",
           "Pebble", "Saffron", "Bramble", "Canal", "Ferry", "Quarry", "Cobble", "Marble", "Tundra", "Amber",
           "Birch", "Cedar", "Delta", "Ember", "Fern", "Glen", "Hazel", "Iris", "Juniper")
_NAME_B = ("Ground", "Works", "Futures", "Commons", "Bridge", "Field", "Lane", "Way", "Path", "Yard", "Square",
           "Point", "Circle", "Garden", "Mill", "Forge", "Well", "Wharf", "Row", "Gate", "House", "Studio", "Lab",
           "Network", "Collective")
_NAME_C = ("Research", "Insight", "Design", "Consulting", "Evaluation", "Learning", "Community", "Policy", "Social",
           "Partners", "Associates", "Development")
_PLACE_HEADS = ("Ash", "Brack", "Cal", "Dun", "Elm", "Fen", "Gold", "Hart", "Ivy", "Kings", "Lark", "Marsh", "Nor",
                "Oak", "Pen", "Quarn", "Ram", "Stan", "Thorn", "Upper", "Wend", "Wold", "Yarn", "Bram", "Cray")
_PLACE_TAILS = ("bridge", "ford", "ham", "ley", "ton", "wick", "by", "field", "moor", "stead", "worth", "borough",
                "mouth", "dale", "well", "combe", "hurst", "minster", "thorpe", "chester")
_PLACE_QUALIFIERS = ("North", "South", "East", "West", "Greater", "Upper", "Lower")
_COUNCIL_KINDS = ("Borough Council", "City Council", "District Council", "County Council",
                  "Metropolitan Borough Council", "Council")
_TOWNS = {
    "England": (("Manchester", "M1 1AE"), ("Leeds", "LS1 4DY"), ("Bristol", "BS1 5TR"), ("Birmingham", "B1 1BB"),
                ("Newcastle upon Tyne", "NE1 7RU"), ("Sheffield", "S1 2HH"), ("Nottingham", "NG1 5FS"),
                ("Liverpool", "L1 8JQ"), ("London", "EC1V 9HX"), ("Plymouth", "PL1 2AA"), ("Norwich", "NR2 1TF"),
                ("Oldham", "OL1 1UT")),
    "Wales": (("Cardiff", "CF10 1EP"), ("Swansea", "SA1 3SN"), ("Wrexham", "LL11 1AY")),
    "Scotland": (("Glasgow", "G1 1XQ"), ("Edinburgh", "EH1 1YZ"), ("Dundee", "DD1 1DB"), ("Aberdeen", "AB10 1AB")),
    "Northern Ireland": (("Belfast", "BT1 5GS"), ("Derry", "BT48 6DQ")),
}
_STREETS = ("High Street", "Market Street", "Mill Lane", "Station Road", "Church Street", "Canal Side", "Union Street")
_LEGAL_FORMS = (("company", 40), ("cic", 12), ("co_operative", 10), ("community_benefit_society", 5),
                ("charity", 13), ("partnership", 6), ("sole_trader", 14))
_NATIONS = (("England", 84), ("Wales", 6), ("Scotland", 8), ("Northern Ireland", 2))
_SIZES = {"sole_trader": (("micro", 1),), "partnership": (("micro", 6), ("small", 4)),
          "charity": (("micro", 35), ("small", 40), ("medium", 20), ("large", 5)),
          None: (("micro", 42), ("small", 33), ("medium", 17), ("large", 8))}
_VCSE_FORMS = ("cic", "co_operative", "community_benefit_society", "charity")
_TURNOVER = {"micro": 180_000_00, "small": 1_400_000_00, "medium": 9_800_000_00, "large": 62_000_000_00}
_LOT_WEIGHTS = {1: 45, 2: 33, 3: 22}
_LOTS_ASKED = ((1, 50), (2, 30), (3, 20))
_TOPICS = ("Community wealth building", "Neighbourhood care", "Digital inclusion", "Tenant co-operatives",
           "Youth-led budgeting", "Food resilience", "Co-operative energy", "Social value in commissioning",
           "Participatory budgeting", "Co-operative childcare", "Community asset transfer", "Local procurement",
           "Climate assemblies", "Health inequalities", "Community transport", "Worker co-operatives",
           "Peer learning", "Cost of living resilience", "Housing co-operatives", "Ageing well")
_WORK = {1: ("evidence review", "evaluation", "policy options", "research"),
         2: ("prototype", "service design", "pilot", "user research"),
         3: ("training programme", "facilitation", "community development", "coaching")}
_CRITERIA_WEIGHTS = ((45, 40, 15), (50, 40, 10), (60, 30, 10), (40, 40, 20), (55, 35, 10))
_BID_ANSWERS = {
    "quality": "We will work with residents and officers from the first week, with a named lead and monthly "
               "show-and-tells.",
    "social_value": "Two paid placements for local young people and a local supply chain.",
}
_REJECTED = "The case studies did not show work of the kind this lot covers in the last three years."
_SUSPENDED = "The renewed self-declaration was not returned by its due date."
_REMOVED = "The supplier told us it has ceased trading."
_CANCELLED = "The council's project was merged into a wider programme; the need has gone."
_NO_AWARD = "No tender met the minimum quality score of 50% set out in the invitation."
_DECLARATION = "I have no conflict of interest with any of the bidders."
_SCORED = "Scored against the published scoring guide."
_MODERATED = "Agreed at moderation against the published scoring guide."
# Caps per call-off in pounds, by the financial year they start in (the network's published caps).
_LABS, _PROTOTYPES = "Policy Labs", "Policy Prototypes"
_CAPS = {_LABS: {2020: 10_000, 2021: 10_000, 2022: 10_000, 2023: 20_000, 2024: 20_000},
         _PROTOTYPES: {2020: 1_500, 2021: 1_500, 2022: 1_500, 2023: 2_000, 2024: 2_000}}


def _london(day: date, hour: int = 10, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=clock.LONDON).astimezone(clock.UTC)


def _day(moment: datetime) -> date:
    return clock.to_london(moment).date()


def _financial_year(day: date) -> int:
    return day.year if day.month >= 4 else day.year - 1


def _year_label(start: int) -> str:
    return f"{start}/{(start + 1) % 100:02d}"


def _working_day_on_or_after(day: date) -> date:
    while not workingdays.is_working_day(day, NATION):
        day += timedelta(days=1)
    return day


def _letters(n: int, width: int) -> str:
    out = ""
    for _ in range(width):
        n, r = divmod(n, 26)
        out = chr(65 + r) + out
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50].strip("-")


def _iso(moment: datetime | date | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _points(value: Decimal) -> Decimal:
    """As dps.services.evaluation publishes points: 2 decimal places, half up."""
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


# Loading ----------------------------------------------------------------------------------------

def load_scale(factor: float, password: str, *, seed: int = 1,
               echo: Callable[[str], None] = print) -> Summary:
    """Fill the empty database with ``factor`` times the unit volumes (see the module docstring).

    Commits as it goes: the base in one transaction, then each batch of rows in its own. A run
    that fails part way leaves a partial database: drop it and migrate again before the next."""
    volumes = Volumes.for_factor(factor)
    if not database_is_empty():
        raise ScaleError("The database already has organisations or users. Benchmark data goes only into an "
                         "empty, migrated database.")
    if not clock.is_simulated():
        raise ScaleError("The benchmark data is placed around the simulated clock's now: set DPS_CLOCK "
                         "(e.g. DPS_CLOCK=2024-06-03T09:00)")
    now = clock.now()
    if _day(now) < EARLIEST_CLOCK:
        raise ScaleError(f"The benchmark data tells the DPS's story from its opening on 1 April 2020: start the "
                         f"simulated clock on {clock.fmt_date(EARLIEST_CLOCK)} or later (DPS_CLOCK)")
    problem = accounts.password_problem(password, organisation="scale")
    if problem:
        raise ScaleError(f"Choose another password: {problem}")

    started = time.perf_counter()
    row = db.session.get(SimulatedClock, 1)
    frozen = bool(row and row.frozen)
    try:
        base = _set_up_base(password)
    except ServiceError as exc:
        db.session.rollback()
        raise ScaleError(f"Setting up the base failed: {exc.message}") from exc
    # The clock back where it was, frozen or running as it was (a failure rolls this back too).
    clock.set_simulated(now, frozen=frozen)
    db.session.commit()
    echo(f"Base: set-up, the agreement, its {len(base.lots)} lots and questionnaire through the services "
         f"({time.perf_counter() - started:.1f}s)")

    mark = time.perf_counter()
    password_hash = accounts.hash_password(password)
    answers = _answer_template(base.version)
    first_ids = {table.name: (db.session.scalar(select(func.max(table.c.id))) or 0) + 1 for table in TABLES}
    last_hash = db.session.scalar(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)) or audit.GENESIS_HASH
    base_events = db.session.scalar(select(func.count()).select_from(AuditEvent))
    # End the session's transaction: on SQLite it holds the write lock the batches need.
    db.session.commit()
    db.session.close()

    plan = _Plan(base=base, volumes=volumes, now=now, seed=seed, password_hash=password_hash,
                 first_ids=first_ids, answers=answers, base_events=base_events)
    plan.build()
    echo(f"Planned in memory ({time.perf_counter() - mark:.1f}s)")

    engine = db.engine
    use_copy = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        for table in TABLES:
            mark = time.perf_counter()
            if table is AuditEvent.__table__:
                count = _write_audit(conn, plan, last_hash, use_copy)
            else:
                count = _write(conn, table, plan.rows[table.name], use_copy)
            echo(f"  {table.name:<18} {count:>10,} rows  {time.perf_counter() - mark:6.1f}s")
        if engine.dialect.name == "postgresql":
            mark = time.perf_counter()
            with conn.begin():
                for table in TABLES:
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                      f"(SELECT max(id) FROM {table.name}))"))
            # Fresh statistics, as autovacuum would give a database that grew to this size.
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
            echo(f"  sequences moved on, tables analysed  {time.perf_counter() - mark:6.1f}s")

    counts = {}
    for table in TABLES:
        counts[table.name] = db.session.scalar(select(func.count()).select_from(table))
    db.session.commit()
    return Summary(volumes=volumes, rows=counts, seconds=time.perf_counter() - started,
                   sign_ins=plan.sign_ins(), notes=plan.notes)


@dataclass(frozen=True)
class _Base:
    team_id: int
    team_email: str
    body_id: int
    agreement_id: int
    version: str
    lots: tuple[tuple[int, int], ...]  # (id, number)


def _set_up_base(password: str) -> _Base:
    """What a real installation does first, through the services, at its dates in March 2020."""
    def at(day: date, hour: int) -> None:
        clock.set_simulated(_london(day, hour), frozen=True)

    at(date(2020, 3, 2), 9)
    team = installation.set_up(accountable_body_name=ACCOUNTABLE_BODY, nation=NATION, admin_email=TEAM_EMAIL,
                               admin_name=TEAM_NAME, password=password, actor_label=ACTOR)
    at(date(2020, 3, 3), 10)
    agreement = agreements_service.create_agreement(team, accountable_body_id=team.organisation_id, **AGREEMENT)
    for spec in LOTS:
        agreements_service.create_lot(team, agreement, **spec)
    at(date(2020, 3, 9), 10)
    version = questionnaires_service.upload(team, agreement, questionnaire.shipped_text(QUESTIONNAIRE_VERSION))
    at(date(2020, 3, 10), 10)
    questionnaires_service.publish(team, version)
    agreements_service.publish_agreement(team, agreement)
    db.session.flush()
    return _Base(team_id=team.id, team_email=team.email, body_id=team.organisation_id, agreement_id=agreement.id,
                 version=version.version, lots=tuple((lot.id, lot.number) for lot in agreement.lots))


def _answer_template(version: str) -> dict[str, object]:
    """A complete application's answers, as the questionnaire's forms save them (files apart)."""
    answers: dict[str, object] = {}
    for q in questionnaire.load(version).questions:
        if q.rule.kind in ("mandatory_exclusion", "discretionary_exclusion"):
            answers[q.id] = "no"
        elif q.type == "yes_no":
            answers[q.id] = "no" if q.id == "employers_liability_exempt" else "yes"
    answers.update({"employers_liability": 10_000_000_00, "public_liability": 5_000_000_00,
                    "professional_indemnity": 2_000_000_00,
                    "references": "Our contact can put you in touch with two council commissioners on request."})
    return answers


# Writing ----------------------------------------------------------------------------------------

def _copy(conn: Connection, table: Table, rows: list[dict]) -> None:
    """PostgreSQL: the rows through COPY, in the connection's transaction."""
    # The columns the rows give (any other takes its default, as with insert()).
    columns = [column.name for column in table.columns if column.name in rows[0]]
    json_columns = {column.name for column in table.columns if isinstance(column.type, JSON)}
    raw = conn.connection.driver_connection
    names = ", ".join(f'"{name}"' for name in columns)
    with raw.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([json.dumps(row[name]) if name in json_columns and row[name] is not None else row[name]
                            for name in columns])


def _begin_batch(conn: Connection) -> None:
    """PostgreSQL: a batch's commit need not wait for the disk (a crash loses at most the last
    batches of a run that has to be started again anyway)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")


def _write(conn: Connection, table: Table, rows: list[dict], use_copy: bool) -> int:
    for start in range(0, len(rows), BATCH):
        chunk = rows[start:start + BATCH]
        with conn.begin():
            _begin_batch(conn)
            if use_copy:
                _copy(conn, table, chunk)
            else:
                conn.execute(insert(table), chunk)
    return len(rows)


def _write_audit(conn: Connection, plan: "_Plan", prev: str, use_copy: bool) -> int:
    """The events in time order, each chained to the one before and hashed as dps.audit hashes
    what it stores (the time after its UTC round trip, the data as the JSON column gives it back)."""
    table = AuditEvent.__table__
    postgres = conn.dialect.name == "postgresql"
    next_id = plan.first_ids["audit_events"]
    written = 0
    for chunk in plan.audit_chunks(BATCH):
        rows = []
        for at, user_id, label, org_id, action, object_type, object_id, data, ip in chunk:
            digest = audit.compute_hash(prev, at.isoformat(), user_id, label, org_id, action, object_type,
                                        object_id, data, ip)
            rows.append({"id": next_id, "occurred_at": at, "actor_user_id": user_id, "actor_label": label,
                         "organisation_id": org_id, "action": action, "object_type": object_type,
                         "object_id": object_id, "data": data, "ip_address": ip, "prev_hash": prev, "hash": digest})
            prev = digest
            next_id += 1
        with conn.begin():
            _begin_batch(conn)
            if postgres:
                # As every writer of the chain does (dps.audit), though nobody else should be writing.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": audit.AUDIT_LOCK_KEY})
            if use_copy:
                _copy(conn, table, rows)
            else:
                conn.execute(insert(table), rows)
        written += len(rows)
    return written


# Planning ---------------------------------------------------------------------------------------

# An actor of an audit event: (user id, email, organisation id, IP address).
Actor = tuple[int, str, int, str]


@dataclass
class _Supplier:
    org_id: int
    name: str
    actor: Actor
    active_from: datetime  # email confirmed: may sign in from then


@dataclass
class _Buyer:
    index: int
    org_id: int
    name: str
    place: str
    actor: Actor
    active_from: datetime


@dataclass
class _Competition:
    state: str
    created: datetime
    buyer: _Buyer | None = None
    lot_number: int = 1
    published: datetime | None = None
    tender_deadline: datetime | None = None
    cancelled: datetime | None = None
    opened: datetime | None = None
    decided: datetime | None = None
    standstill: bool = False
    invited: list | None = None
    bidders: list | None = None
    quota: int = 0
    bid_until: datetime | None = None


class _Plan:
    """Every row and event of the run, planned in memory before anything is written."""

    def __init__(self, *, base: _Base, volumes: Volumes, now: datetime, seed: int, password_hash: str,
                 first_ids: dict[str, int], answers: dict[str, object], base_events: int):
        self.base = base
        self.volumes = volumes
        self.rng = random.Random(seed)
        # To the minute: the same DPS_CLOCK and seed give the same data, whatever the seconds.
        self.now = now.replace(second=0, microsecond=0)
        self.today = _day(self.now)
        self.dps_end = _london(AGREEMENT["ends_on"] + timedelta(days=1), 0)
        self.horizon = min(self.now, self.dps_end)
        self.dps_open = self.now < self.dps_end - timedelta(days=30)
        self.password_hash = password_hash
        self.first_ids = first_ids
        self._next = dict(first_ids)
        self.answers = answers
        self.base_events = base_events
        self.rows: dict[str, list[dict]] = {table.name: [] for table in TABLES}
        self.events: list[tuple] = []
        self.notes: list[str] = []
        self.lots = dict((number, lot_id) for lot_id, number in base.lots)
        self.team: Actor = (base.team_id, base.team_email, base.body_id, "192.0.2.10")
        self.suppliers: list[_Supplier] = []
        self.supplier_by_org: dict[int, _Supplier] = {}
        self.buyers: list[_Buyer] = []
        # Per lot number: admissions sorted by admission time, as (admitted_at, org id, bad from).
        self.admitted: dict[int, list[tuple[datetime, int, datetime | None]]] = {n: [] for n in self.lots}
        # (organisation id, lot number) -> when it was suspended or removed from the lot.
        self.bad_from: dict[tuple[int, int], datetime] = {}
        self.years: dict[int, dict] = {}
        self.lines: dict[tuple[int, str], dict] = {}
        self.allocations: dict[tuple[int, int], dict] = {}
        self.user_rows: dict[int, dict] = {}
        # Events of the finer-grained pool, as (kind, row): sampled to top up the audit log.
        self.optional: list[tuple[str, object]] = []

    def _id(self, table: str) -> int:
        value = self._next[table]
        self._next[table] = value + 1
        return value

    def _between(self, start: datetime, end: datetime) -> datetime:
        """A moment in [start, end), to the second (start itself if the span is under a second)."""
        seconds = int((end - start).total_seconds())
        return start + timedelta(seconds=int(self.rng.random() * seconds)) if seconds > 0 else start

    def _weighted(self, choices):
        values, weights = zip(*choices)
        return self.rng.choices(values, weights)[0]

    def _event(self, at: datetime, action: str, object_type: str, object_id, data: dict, actor: Actor | None = None,
               *, label: str | None = None, organisation_id: int | None = None, ip: str | None = None) -> None:
        if actor is not None:
            user_id, label, actor_org, ip = actor
            organisation_id = actor_org if organisation_id is None else organisation_id
        else:
            user_id = None
        self.events.append((at, user_id, label or "system", organisation_id, action, object_type,
                            None if object_id is None else str(object_id), data, ip))

    # The whole plan -----------------------------------------------------------------------------

    def build(self) -> None:
        self._plan_budget_years()
        self._plan_buyers()
        self._plan_suppliers()
        self._plan_competitions()
        self._plan_budget_amounts()
        self._top_up_audit()

    # Budget years and lines (amounts come once the call-offs are known) --------------------------

    def _plan_budget_years(self) -> None:
        for start in range(FIRST_BUDGET_YEAR, LAST_BUDGET_YEAR + 1):
            made = _london(_working_day_on_or_after(date(start, 3, 16)), 10)
            if made >= self.now:
                break
            year = {"id": self._id("budget_years"), "label": _year_label(start), "starts_on": date(start, 4, 1),
                    "ends_on": date(start + 1, 3, 31)}
            self.rows["budget_years"].append(year)
            self.years[start] = {"row": year, "made": made}
            for programme in (_LABS, _PROTOTYPES):
                line = {"id": self._id("budget_lines"), "year_id": year["id"], "programme": programme,
                        "total_pence": 0, "cap_per_call_off_pence": _CAPS[programme][start] * 100,
                        "allocated_pence": 0}
                self.rows["budget_lines"].append(line)
                self.lines[(start, programme)] = line

    # Buyer organisations ---------------------------------------------------------------------------

    def _place_names(self, count: int) -> list[str]:
        places = [head + tail for head in _PLACE_HEADS for tail in _PLACE_TAILS]
        self.rng.shuffle(places)
        names = []
        for i in range(count):
            round_, k = divmod(i, len(places))
            place = places[k]
            if round_:
                qualifier = _PLACE_QUALIFIERS[(round_ - 1) % len(_PLACE_QUALIFIERS)]
                number = (round_ - 1) // len(_PLACE_QUALIFIERS)
                place = f"{qualifier} {place}" + (f" {number + 1}" if number else "")
            names.append(place)
        return names

    def _plan_buyers(self) -> None:
        count = self.volumes.buyer_organisations
        imported = _london(date(2020, 3, 11), 9, 30)
        invited = _london(date(2020, 3, 11), 11)
        width = 3 if count <= 26 ** 3 else 4
        names = []
        for i, place in enumerate(self._place_names(count)):
            name = f"{place} {self.rng.choice(_COUNCIL_KINDS)}"
            names.append(name)
            org_id = self._id("organisations")
            org = _organisation(id=org_id, name=name, kind="council", membership="full", contracting_authority=True,
                                nation="England", identifier_scheme="GB-LAE",
                                identifier_id="Z" + _letters(i, width), created_at=imported)
            self.rows["organisations"].append(org)
            self._event(imported, "organisation.created", "organisation", org_id,
                        {"before": None, "after": {field: _iso(org[field]) if field.endswith("_on") else org[field]
                                                   for field in ("name", "membership", "kind", "nation",
                                                                 "contracting_authority", "identifier_scheme",
                                                                 "identifier_id", "joined_on", "left_on")}},
                        self.team)
            user_id = self._id("users")
            person = f"{self.rng.choice(_FIRST)} {self.rng.choice(_LAST)}"
            email = f"buyer@{_slug(place)}.example.org"
            sent = invited + timedelta(seconds=i)
            accepted = _london(_working_day_on_or_after(date(2020, 3, 12) + timedelta(days=self.rng.randrange(8))),
                               self.rng.randint(9, 16), self.rng.randrange(60))
            actor = (user_id, email, org_id, f"203.0.113.{i % 254 + 1}")
            self.user_rows[user_id] = _user(id=user_id, email=email, name=person, password_hash=self.password_hash,
                                            organisation_id=org_id, role="buyer", email_confirmed_at=accepted,
                                            created_at=sent)
            self._event(sent, "user.created", "user", user_id,
                        {"email": email, "name": person, "role": "buyer", "organisation_id": org_id}, self.team)
            self._event(sent, "user.invited", "user", user_id,
                        {"email": email, "role": "buyer", "organisation_id": org_id}, self.team)
            self._event(accepted, "user.invitation_accepted", "user", user_id, {}, actor)
            self.buyers.append(_Buyer(i, org_id, name, place, actor, accepted))
        digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
        self._event(imported, "organisations.imported", "organisation", None,
                    {"sha256": digest, "added": count, "changed": 0, "unchanged": 0}, self.team)
        for year, info in self.years.items():
            self._event(info["made"], "budget_year.created", "budget_year", info["row"]["id"],
                        {"before": None, "after": {"label": info["row"]["label"],
                                                   "starts_on": info["row"]["starts_on"].isoformat(),
                                                   "ends_on": info["row"]["ends_on"].isoformat()}}, self.team)
            for buyer in self.buyers:
                # One allocation a year for each member: every fifth on the prototypes line.
                programme = _PROTOTYPES if buyer.index % 5 == 4 else _LABS
                project = "prototypes" if programme == _PROTOTYPES else "policy lab"
                self.allocations[(buyer.index, year)] = {
                    "id": self._id("allocations"), "line_id": self.lines[(year, programme)]["id"],
                    "organisation_id": buyer.org_id, "amount_pence": 0, "committed_pence": 0,
                    "project_title": f"{buyer.place}: co-operative {project} {_year_label(year)}",
                    "_programme": programme, "_year": year, "_live": 0}

    # Suppliers ---------------------------------------------------------------------------------------

    def _supplier_names(self, count: int) -> list[str]:
        combos = [(a, b, c) for a in _NAME_A for b in _NAME_B for c in _NAME_C]
        self.rng.shuffle(combos)
        names = []
        for i in range(count):
            round_, k = divmod(i, len(combos))
            a, b, c = combos[k]
            names.append(f"{a} {b} {c}" + (f" {round_ + 1}" if round_ else ""))
        return names

    def _registration(self, i: int, legal_form: str, nation: str) -> str | None:
        if legal_form in ("company", "cic"):
            return f"{90_000_000 + i}"
        if legal_form in ("co_operative", "community_benefit_society"):
            return f"RS9{i:05d}"
        if legal_form == "charity":
            return {"Scotland": f"SC9{i:05d}", "Northern Ireland": f"NIC9{i:05d}"}.get(nation, f"{1_900_000 + i}")
        if legal_form == "partnership" and i % 2:
            return f"OC9{i:05d}"
        return None

    def _plan_suppliers(self) -> None:
        rng = self.rng
        count = self.volumes.suppliers
        launch = max(1, count // 4)
        last_received = self.horizon - timedelta(days=21)
        later_days = max(1, (_day(last_received) - date(2020, 5, 1)).days)
        team = self.team
        for i, combo in enumerate(self._supplier_names(count)):
            legal_form = self._weighted(_LEGAL_FORMS)
            nation = self._weighted(_NATIONS)
            size = self._weighted(_SIZES.get(legal_form, _SIZES[None]))
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            person = f"{first} {last}"
            suffix = {"company": " Ltd", "cic": " CIC", "co_operative": " Co-operative Ltd",
                      "community_benefit_society": " Community Benefit Society", "charity": " Trust",
                      "partnership": " LLP"}.get(legal_form, "")
            registration = self._registration(i, legal_form, nation)
            if legal_form == "partnership" and registration is None:
                suffix = " Partnership"
            name = f"{person} trading as {combo}" if legal_form == "sole_trader" else combo + suffix
            scheme, number = validators.registration(legal_form, registration)
            town, postcode = rng.choice(_TOWNS[nation])
            email = f"{first}.{last}@{_slug(combo)}.example.org".lower()
            if i < launch:
                received_on = date(2020, 4, 6) + timedelta(days=rng.randrange(19))
            else:
                received_on = date(2020, 5, 1) + timedelta(days=rng.randrange(later_days))
            received_on = _working_day_on_or_after(received_on)
            received = _london(received_on, rng.randint(9, 16), rng.randrange(60), rng.randrange(60))
            registered = received - timedelta(days=rng.randint(2, 10), minutes=rng.randrange(600))
            confirmed = registered + timedelta(minutes=10)
            started = registered + timedelta(minutes=20)
            decided_on = workingdays.add_working_days(received_on, rng.randint(2, 9), NATION)
            decided = _london(decided_on, 15, 30, rng.randrange(60))
            due_on = workingdays.add_working_days(received_on, 10, NATION)

            org_id, user_id, application_id = self._id("organisations"), self._id("users"), self._id("applications")
            org = _organisation(
                id=org_id, name=name, kind="supplier", nation=nation, identifier_scheme=scheme,
                identifier_id=validators.org_id(scheme, number), legal_form=legal_form, registration_number=number,
                size=size, is_vcse=legal_form in _VCSE_FORMS or (legal_form == "company" and rng.random() < 0.06),
                trading_name=combo if legal_form == "sole_trader" else None,
                address_line_1=f"{rng.randint(1, 220)} {rng.choice(_STREETS)}", town=town, postcode=postcode,
                contact_name=person, contact_email=email, created_at=registered)
            self.rows["organisations"].append(org)
            ip = f"198.51.{100 + i % 3}.{i % 254 + 1}"
            actor = (user_id, email, org_id, ip)
            self.user_rows[user_id] = _user(id=user_id, email=email, name=person, password_hash=self.password_hash,
                                            organisation_id=org_id, role="supplier", email_confirmed_at=confirmed,
                                            created_at=registered)
            supplier = _Supplier(org_id, name, actor, confirmed)
            self.suppliers.append(supplier)
            self.supplier_by_org[org_id] = supplier

            # Lots: the first three suppliers ask for all three and stay in good standing, so
            # every lot has someone to invite from the first competition on.
            asked = sorted(self.lots) if i < 3 else sorted(rng.sample(sorted(self.lots), self._weighted(_LOTS_ASKED)))
            decisions = {n: "rejected" if i >= 3 and rng.random() < 0.05 else "admitted" for n in asked}
            if "admitted" not in decisions.values():
                decisions[asked[0]] = "admitted"
            standing, changed, reason = "admitted", None, None
            roll = rng.random()
            if i >= 3 and roll < 0.07:
                earliest, latest = decided + timedelta(days=30), self.now - timedelta(days=1)
                if earliest < latest:
                    standing = "removed" if roll < 0.02 else "suspended"
                    changed = self._between(earliest, latest)
                    reason = _REMOVED if standing == "removed" else _SUSPENDED

            lot_ids = [self.lots[n] for n in asked]
            details = {field: org[field] for field in ("address_line_1", "town", "postcode", "nation", "legal_form",
                                                       "registration_number", "size", "is_vcse", "contact_name",
                                                       "contact_email", "identifier_scheme", "identifier_id")
                       if org[field] is not None}
            self._event(registered, "organisation.registered", "organisation", org_id, {"name": name},
                        label=email, organisation_id=org_id, ip=ip)
            self._event(registered, "user.created", "user", user_id,
                        {"email": email, "name": person, "role": "supplier", "organisation_id": org_id},
                        label=email, organisation_id=org_id, ip=ip)
            self._event(confirmed, "user.email_confirmed", "user", user_id, {}, actor)
            self._event(started, "organisation.details_updated", "organisation", org_id,
                        {"before": {field: None for field in details}, "after": details}, actor)
            self._event(started, "application.started", "application", application_id,
                        {"previous_application_id": None, "answers_copied": 0}, actor)
            self._event(started, "application.lots_chosen", "application", application_id,
                        {"before": [], "after": sorted(lot_ids)}, actor)
            self._event(received, "application.submitted", "application", application_id,
                        {"received_at": received.isoformat(), "decision_due_on": due_on.isoformat(),
                         "lots": lot_ids, "questionnaire_version": self.base.version}, actor)

            self.rows["applications"].append({
                "id": application_id, "organisation_id": org_id, "agreement_id": self.base.agreement_id,
                "questionnaire_version": self.base.version, "previous_application_id": None,
                "created_at": started, "created_by_id": user_id, "updated_at": received, "submitted_at": received,
                "submitted_by_id": user_id, "supplier_snapshot": supplier_snapshot(SimpleNamespace(**org)),
                "decision_due_on": due_on, "extended_at": None, "extended_by_id": None, "extension_reason": None,
                "decided_at": decided})
            answered = received - timedelta(days=1)
            values = dict(self.answers)
            values.update({"annual_turnover": _TURNOVER[size],
                           "insurance_expiry": date(received_on.year + 1, 9, 30).isoformat(),
                           "case_studies": {str(lot_id): (
                               "Metropolitan council, 2019: co-designed a neighbourhood care model with 40 residents. "
                               "County council, 2021: evaluated a community wealth building programme across 6 towns."
                           ) for lot_id in lot_ids}})
            for question_id, value in values.items():
                self.rows["answers"].append({"id": self._id("answers"), "application_id": application_id,
                                             "question_id": question_id, "value": value, "updated_at": answered})
            for n in asked:
                app_lot_id = self._id("application_lots")
                decision = decisions[n]
                self.rows["application_lots"].append({
                    "id": app_lot_id, "application_id": application_id, "lot_id": self.lots[n], "decision": decision,
                    "reasons": _REJECTED if decision == "rejected" else None, "decided_at": decided,
                    "decided_by_id": team[0]})
                reasons = _REJECTED if decision == "rejected" else None
                self._event(decided, f"application.lot_{decision}", "application", application_id,
                            {"lot_id": self.lots[n], "lot": n, "reasons": reasons}, team)
                if decision != "admitted":
                    continue
                admission_id = self._id("admissions")
                self.rows["admissions"].append({
                    "id": admission_id, "organisation_id": org_id, "lot_id": self.lots[n],
                    "application_lot_id": app_lot_id, "admitted_at": decided, "status": standing,
                    "status_changed_at": changed or decided, "status_reason": reason})
                self.admitted[n].append((decided, org_id, changed))
                if changed is not None:
                    self.bad_from[(org_id, n)] = changed
                if changed is not None:
                    self._event(changed, f"admission.{standing}", "admission", admission_id,
                                {"organisation_id": org_id, "lot": n, "before": {"status": "admitted"},
                                 "after": {"status": standing}, "reason": reason}, team)
            self._event(decided, "application.decided", "application", application_id,
                        {str(n): decisions[n] for n in asked}, team)
        for entries in self.admitted.values():
            entries.sort(key=lambda entry: entry[0])

    # Competitions ------------------------------------------------------------------------------------

    def _states(self, count: int) -> list[str]:
        """How many competitions are in each state: a few of each around "now" while the DPS is
        open, a few cancelled and closed without award, the rest awarded in the past."""
        shares = {"cancelled": 0.02, "no_award": 0.03}
        if self.dps_open:
            shares.update({"draft": 0.01, "open": 0.03, "closed": 0.01, "in_evaluation": 0.01,
                           "award_intended": 0.01})
        states: list[str] = []
        for state, share in shares.items():
            states += [state] * (max(1, round(count * share)) if count >= 20 else round(count * share))
        states = states[:count]
        states += ["awarded"] * (count - len(states))
        self.rng.shuffle(states)
        return states

    def _recent_times(self, c: _Competition) -> None:
        """A competition placed relative to now, so the clock finds it in its state."""
        rng, now = self.rng, self.now
        hours = lambda low, high: timedelta(hours=rng.uniform(low, high))  # noqa: E731
        if c.state == "draft":
            c.created = now - hours(2, 120)
            c.tender_deadline = _london(_day(now) + timedelta(days=rng.randint(20, 35)), 12)
            return
        if c.state == "open":
            c.published = now - hours(3, 8 * 24)
            c.tender_deadline = _london(_day(c.published) + timedelta(days=rng.randint(14, 21)), 12)
        elif c.state == "closed":
            c.tender_deadline = now - hours(2, 72)
        elif c.state == "in_evaluation":
            c.tender_deadline = now - hours(4 * 24, 10 * 24)
            c.opened = c.tender_deadline + hours(1, 24)
        elif c.state == "award_intended":
            c.standstill = True
            c.decided = now - hours(1 * 24, 8 * 24)
            c.opened = c.decided - hours(6 * 24, 12 * 24)
            c.tender_deadline = c.opened - hours(1, 24)
        if c.published is None:
            c.published = c.tender_deadline - timedelta(days=rng.randint(14, 21), hours=rng.randint(0, 5))
        c.created = c.published - hours(24, 5 * 24)

    def _historic_times(self, c: _Competition, earliest: datetime, latest: datetime) -> None:
        rng = self.rng
        day = _working_day_on_or_after(_day(self._between(earliest, latest)))
        c.published = _london(day, rng.randint(9, 16), rng.randrange(60), rng.randrange(60))
        c.created = c.published - timedelta(hours=rng.uniform(24, 6 * 24))
        c.tender_deadline = _london(_day(c.published) + timedelta(days=rng.randint(14, 28)), 12)
        if c.state == "cancelled":
            c.cancelled = self._between(c.published + timedelta(days=3), c.tender_deadline - timedelta(days=1))
            return
        c.opened = c.tender_deadline + timedelta(hours=rng.uniform(1, 72))
        c.decided = c.opened + timedelta(hours=rng.uniform(6 * 24, 20 * 24))
        c.standstill = c.state == "awarded" and rng.random() < 0.08

    def _eligible(self, lot_number: int, at: datetime, count: int) -> list[int]:
        """A random sample of up to ``count`` suppliers admitted to the lot and in good standing at ``at``."""
        entries = self.admitted[lot_number]
        k = bisect_right(entries, at, key=lambda entry: entry[0])
        good = lambda entry: entry[2] is None or entry[2] > at  # noqa: E731
        sample = self.rng.sample(range(k), min(k, count + count // 2 + 2))
        picked = [entries[i][1] for i in sample if good(entries[i])]
        if len(picked) < count and k > len(sample):
            picked = [entry[1] for entry in entries[:k] if good(entry)]
            self.rng.shuffle(picked)
        return picked[:count]

    def _plan_competitions(self) -> None:
        rng = self.rng
        count = self.volumes.competitions
        earliest = _london(date(2020, 5, 18), 9)
        latest = min(self.now - timedelta(days=75), self.dps_end - timedelta(days=15))
        if latest <= earliest:
            latest = earliest + timedelta(days=1)
        weights = [rng.uniform(0.3, 1.7) for _ in self.buyers]
        planned: list[_Competition] = []
        for state in self._states(count):
            c = _Competition(state=state, created=self.now)
            c.buyer = rng.choices(self.buyers, weights)[0]
            if state in ("draft", "open", "closed", "in_evaluation", "award_intended"):
                self._recent_times(c)
            else:
                self._historic_times(c, earliest, latest)
            planned.append(c)
        # Ids (and references) in the order the competitions were created.
        planned.sort(key=lambda c: c.created)

        # Who is invited, and how many may bid.
        for c in planned:
            if c.state == "draft":
                c.lot_number = self._weighted(_LOT_WEIGHTS.items())
                continue
            c.bid_until = min(x for x in (c.tender_deadline, self.now, c.cancelled) if x is not None)
            order = [self._weighted(_LOT_WEIGHTS.items())] + list(self.lots)
            for number in dict.fromkeys(order):
                invited = self._eligible(number, c.published, rng.randint(*INVITED_PER_COMPETITION))
                if invited:
                    c.lot_number, c.invited = number, invited
                    break
            else:
                raise ScaleError("No supplier was admitted when a competition was published: use a larger --factor")
            c.bidders = [org_id for org_id in c.invited
                         if (self.bad_from.get((org_id, c.lot_number)) or c.bid_until) >= c.bid_until]
            if c.bid_until - c.published < timedelta(hours=2):
                c.bidders = []
        self._share_bids([c for c in planned if c.state != "draft"])
        for c in planned:
            self._competition_rows(c)

    def _share_bids(self, competitions: list[_Competition]) -> None:
        """Share the bids asked for among the competitions, about 10 each, never more than the
        suppliers invited that may bid."""
        rng = self.rng
        target = self.volumes.bids
        if not competitions:
            return
        weights = [rng.uniform(0.5, 1.5) * (0.5 if c.state == "open" else 1) for c in competitions]
        total = sum(weights)
        for c, weight in zip(competitions, weights):
            c.quota = min(len(c.bidders), int(target * weight / total))
        left = target - sum(c.quota for c in competitions)
        while left > 0:
            spare = [c for c in competitions if c.quota < len(c.bidders)]
            if not spare:
                self.notes.append(f"{target - left:,} bids rather than {target:,}: at this factor too few suppliers "
                                  "are admitted to each lot to bid more")
                break
            rng.shuffle(spare)
            for c in spare[:left]:
                c.quota += 1
            left = target - sum(c.quota for c in competitions)

    def _competition_rows(self, c: _Competition) -> None:
        rng = self.rng
        rows = self.rows
        buyer = c.buyer
        actor = buyer.actor
        competition_id = self._id("competitions")
        reference = f"CCIN-MC-{_day(c.created).year}-{competition_id:04d}"
        allocation = self._allocation_for(buyer, c)
        cap = self.lines[(allocation["_year"], allocation["_programme"])]["cap_per_call_off_pence"]
        estimate = max(50_000, int(cap * rng.uniform(0.4, 1.0)) // 5_000 * 5_000)
        topic = rng.choice(_TOPICS)
        title = f"{topic}: {rng.choice(_WORK[c.lot_number])}"
        quality, price, social = rng.choice(_CRITERIA_WEIGHTS)
        formula = "linear_from_lowest" if rng.random() < 0.1 else "lowest_price_ratio"
        clarification = min(c.published + timedelta(days=7) if c.published else c.tender_deadline - timedelta(days=7),
                            c.tender_deadline - timedelta(days=1))
        no_award = c.state == "no_award"
        rows["competitions"].append({
            "id": competition_id, "reference": reference, "lot_id": self.lots[c.lot_number],
            "buyer_organisation_id": buyer.org_id, "created_by_id": actor[0], "title": title,
            "description": f"{title}. See the specification for the outcomes we want.",
            "estimated_value_pence": estimate, "allocation_id": allocation["id"],
            "clarification_deadline": clarification, "tender_deadline": c.tender_deadline,
            "standstill": c.standstill, "standstill_days": 10, "price_formula": formula, "created_at": c.created,
            "published_at": c.published, "cancelled_at": c.cancelled,
            "cancel_reason": _CANCELLED if c.cancelled else None, "opened_at": c.opened,
            "opened_by_id": actor[0] if c.opened else None,
            "closed_without_award_at": c.decided if no_award else None,
            "no_award_reason": _NO_AWARD if no_award else None})
        criteria = []
        for position, (kind, name, weight, words) in enumerate(
                (("quality", "Approach and methodology", quality, 500), ("price", "Price", price, None),
                 ("social_value", "Social value", social, 300)), start=1):
            criterion = {"id": self._id("criteria"), "competition_id": competition_id, "position": position,
                         "kind": kind, "title": name, "description": "", "weight": weight, "word_limit": words}
            rows["criteria"].append(criterion)
            criteria.append(criterion)
        panel_id = self._id("panel_members")
        declared = c.opened + timedelta(minutes=10) if c.opened else None
        rows["panel_members"].append({"id": panel_id, "competition_id": competition_id, "user_id": actor[0],
                                      "declared_at": declared, "conflicted": False if declared else None,
                                      "declaration": _DECLARATION if declared else None})
        self._event(c.created, "competition.created", "competition", competition_id, {
            "reference": reference, "lot": c.lot_number, "title": title, "estimated_value_pence": estimate,
            "allocation_id": allocation["id"], "tender_deadline": c.tender_deadline.isoformat(),
            "standstill": c.standstill,
            "criteria": [{"kind": x["kind"], "title": x["title"], "weight": x["weight"]} for x in criteria]}, actor)
        self._event(c.created, "panel.member_added", "competition", competition_id,
                    {"user_id": actor[0], "email": actor[1]}, actor)
        if c.published is None:
            allocation["_live"] += estimate
            return

        invited = sorted(c.invited, key=lambda org_id: self.supplier_by_org[org_id].name)
        self._event(c.published, "competition.published", "competition", competition_id,
                    {"reference": reference, "invited": invited, "tender_deadline": c.tender_deadline.isoformat()},
                    actor)
        bidders = set(rng.sample(c.bidders, c.quota))
        bids = []
        for org_id in c.invited:
            supplier = self.supplier_by_org[org_id]
            invitation = {"id": self._id("invitations"), "competition_id": competition_id, "organisation_id": org_id,
                          "invited_at": c.published, "first_opened_at": None}
            rows["invitations"].append(invitation)
            if org_id in bidders:
                submitted = self._between(c.published + timedelta(hours=1), c.bid_until - timedelta(minutes=1))
                invitation["first_opened_at"] = self._between(c.published, submitted)
                bid_id = self._id("bids")
                bid = {"id": bid_id, "competition_id": competition_id, "organisation_id": org_id,
                       "state": "submitted", "price_pence": max(1_000, int(estimate * rng.uniform(0.75, 1.15))
                                                               // 1_000 * 1_000),
                       "updated_at": submitted, "submitted_at": submitted,
                       "receipt_reference": f"{reference}-R{bid_id:04d}-1"}
                rows["bids"].append(bid)
                bids.append(bid)
                for criterion in criteria:
                    if criterion["kind"] in _BID_ANSWERS:
                        rows["bid_answers"].append({"id": self._id("bid_answers"), "bid_id": bid_id,
                                                    "criterion_id": criterion["id"],
                                                    "text": _BID_ANSWERS[criterion["kind"]]})
                self._event(submitted, "bid.submitted", "bid", bid_id,
                            {"received_at": submitted.isoformat(), "receipt_reference": bid["receipt_reference"],
                             "organisation_id": org_id}, supplier.actor)
                self.optional.append(("opened", (invitation, supplier.actor)))
                self.optional.append(("draft", (bid, self._between(invitation["first_opened_at"], submitted),
                                                supplier.actor)))
            elif rng.random() < 0.5 and c.bid_until > c.published:
                invitation["first_opened_at"] = self._between(c.published, c.bid_until)
                self.optional.append(("opened", (invitation, supplier.actor)))

        if c.cancelled is not None:
            self._event(c.cancelled, "competition.cancelled", "competition", competition_id, {"reason": _CANCELLED},
                        actor)
            return
        if c.opened is None:
            allocation["_live"] += estimate
            return
        self._event(c.opened, "competition.opened", "competition", competition_id,
                    {"reference": reference, "bids": len(bids), "opened_at": c.opened.isoformat()}, actor)
        self._event(declared, "panel.declared", "competition", competition_id,
                    {"panel_member_id": panel_id, "before": {"declared_at": None, "conflicted": None},
                     "conflicted": False, "declaration": _DECLARATION}, actor)
        scored = [x for x in criteria if x["kind"] != "price"]
        finished = c.decided is not None
        span_end = c.decided if finished else self.now
        moderated_at = declared + (span_end - declared) * 0.7
        marks: dict[int, dict[int, int]] = {}
        for n, bid in enumerate(bids):
            if not finished and n % 2:
                continue  # in evaluation: the panel has scored half the bids so far
            marks[bid["id"]] = {}
            for criterion in scored:
                mark = rng.randint(15, 45) if no_award else rng.randint(40, 90)
                marks[bid["id"]][criterion["id"]] = mark
                score = {"id": self._id("scores"), "bid_id": bid["id"], "criterion_id": criterion["id"],
                         "panel_member_id": panel_id, "score": mark, "justification": _SCORED,
                         "scored_at": self._between(declared + timedelta(minutes=5),
                                                    declared + (span_end - declared) * 0.5)}
                rows["scores"].append(score)
                self.optional.append(("scored", (score, competition_id, actor)))
                if finished:
                    moderated = {"id": self._id("moderated_scores"), "bid_id": bid["id"],
                                 "criterion_id": criterion["id"], "score": mark, "justification": _MODERATED,
                                 "moderated_at": moderated_at, "moderated_by_id": actor[0]}
                    rows["moderated_scores"].append(moderated)
                    self.optional.append(("moderated", (moderated, competition_id, actor)))
        if not finished:
            allocation["_live"] += estimate
            return
        if no_award:
            self._event(c.decided, "competition.closed_without_award", "competition", competition_id,
                        {"reason": _NO_AWARD, "bids": len(bids)}, actor)
            return
        if not bids:
            # Nobody bid: closed without award, as a buyer would.
            rows["competitions"][-1].update(closed_without_award_at=c.decided,
                                            no_award_reason="No tenders were received by the deadline.")
            self._event(c.decided, "competition.closed_without_award", "competition", competition_id,
                        {"reason": "No tenders were received by the deadline.", "bids": 0}, actor)
            return
        winner = max(bids, key=lambda bid: self._total(bid, criteria, formula, bids, marks[bid["id"]]))
        value = min(winner["price_pence"], cap)
        standstill_ends = c.decided + timedelta(days=10) if c.standstill else None
        confirmed = c.decided
        if standstill_ends is not None:
            confirmed = standstill_ends + timedelta(hours=rng.uniform(1, 48))
            if confirmed >= self.now:
                confirmed = None
        award_id = self._id("awards")
        rows["awards"].append({"id": award_id, "competition_id": competition_id, "bid_id": winner["id"],
                               "value_pence": value, "not_best_reason": None, "decided_at": c.decided,
                               "decided_by_id": actor[0], "standstill_ends_at": standstill_ends,
                               "confirmed_at": confirmed})
        self._event(c.decided, "award.decided", "competition", competition_id, {
            "award_id": award_id, "bid_id": winner["id"], "supplier_organisation_id": winner["organisation_id"],
            "value_pence": value, "rank": 1, "not_best_reason": None, "standstill_ends_at": _iso(standstill_ends),
            "letters": len(bids)}, actor)
        if confirmed is None:
            allocation["_live"] += value
            return
        starts_on = _day(confirmed) + timedelta(days=1)
        ends_on = term_end(starts_on)
        call_off_id = self._id("call_offs")
        call_off = {"id": call_off_id, "reference": f"{reference}-C", "competition_id": competition_id,
                    "award_id": award_id, "supplier_organisation_id": winner["organisation_id"],
                    "buyer_organisation_id": buyer.org_id, "allocation_id": allocation["id"], "value_pence": value,
                    "paid_pence": 0, "irrecoverable_vat_pence": 0, "starts_on": starts_on, "ends_on": ends_on,
                    "created_at": confirmed}
        rows["call_offs"].append(call_off)
        allocation["committed_pence"] += value
        allocation.setdefault("_call_offs", []).append((confirmed, value))
        self._event(confirmed, "award.confirmed", "competition", competition_id,
                    {"award_id": award_id, "call_off_id": call_off_id}, actor)
        created_event = {"reference": call_off["reference"], "competition_id": competition_id,
                         "supplier_organisation_id": winner["organisation_id"], "value_pence": value,
                         "irrecoverable_vat_pence": 0, "allocation_id": allocation["id"],
                         "allocation_committed_pence": None,  # the running total, once every call-off is known
                         "starts_on": starts_on.isoformat(), "ends_on": ends_on.isoformat()}
        allocation.setdefault("_events", []).append((confirmed, call_off_id, created_event))
        self._event(confirmed, "call_off.created", "call_off", call_off_id, created_event, actor)
        paid = 0
        for stage, share in enumerate((0.3, 0.3, 0.4), start=1):
            paid_on = starts_on + timedelta(days=100 * stage)
            if paid_on >= self.today:
                break
            amount = value - paid if stage == 3 else int(value * share)
            paid += amount
            invoice_id = self._id("invoices")
            recorded = _london(paid_on, 15, rng.randrange(60))
            reference_text = f"INV-{competition_id:05d}-{stage}"
            rows["invoices"].append({"id": invoice_id, "call_off_id": call_off_id,
                                     "supplier_reference": reference_text, "amount_pence": amount,
                                     "paid_on": paid_on, "recorded_at": recorded, "recorded_by_id": actor[0]})
            self._event(recorded, "invoice.recorded", "call_off", call_off_id, {
                "invoice_id": invoice_id, "supplier_reference": reference_text, "amount_pence": amount,
                "paid_on": paid_on.isoformat(), "paid_pence_after": paid}, actor)
        call_off["paid_pence"] = paid

    def _total(self, bid: dict, criteria: list[dict], formula: str, bids: list[dict], marks: dict[int, int]) -> Decimal:
        """The bid's total points as dps.services.evaluation.results computes them."""
        lowest = min(b["price_pence"] for b in bids)
        total = Decimal("0.00")
        for criterion in criteria:
            weight = criterion["weight"]
            if criterion["kind"] == "price":
                price = bid["price_pence"]
                if formula == "linear_from_lowest":
                    raw = Decimal(weight) * (1 - Decimal(price - lowest) / Decimal(lowest))
                    total += _points(max(Decimal(0), raw))
                else:
                    total += _points(Decimal(lowest) / Decimal(price) * weight)
            else:
                total += _points(Decimal(marks[criterion["id"]]) * weight / 100)
        return total

    def _allocation_for(self, buyer: _Buyer, c: _Competition) -> dict:
        """The buyer's allocation of the financial year of the tender deadline, or of the year the
        competition was created in if that year's budget was not set then."""
        years = [_financial_year(_day(c.tender_deadline)), _financial_year(_day(c.created))]
        for year in years + sorted(self.years, reverse=True):
            info = self.years.get(year)
            if info is not None and info["made"] <= c.created:
                return self.allocations[(buyer.index, year)]
        raise ScaleError("A competition was planned before any budget was set")  # pragma: no cover

    def _plan_budget_amounts(self) -> None:
        """Allocations big enough for their call-offs and live competitions, lines big enough
        for their allocations; and the audit events of their creation."""
        rng = self.rng
        per_line: dict[int, list[dict]] = defaultdict(list)
        for allocation in self.allocations.values():
            line = self.lines[(allocation["_year"], allocation["_programme"])]
            cap = line["cap_per_call_off_pence"]
            need = allocation["committed_pence"] + allocation["_live"] + int(cap * rng.uniform(0.5, 2.0))
            allocation["amount_pence"] = -(-need // 100_000) * 100_000
            per_line[line["id"]].append(allocation)
            running = 0
            for _confirmed, _call_off_id, data in sorted(allocation.get("_events", []), key=lambda e: e[:2]):
                running += data["value_pence"]
                data["allocation_committed_pence"] = running
        for (year, programme), line in self.lines.items():
            allocated = sum(a["amount_pence"] for a in per_line[line["id"]])
            line["allocated_pence"] = allocated
            line["total_pence"] = -(-int(allocated * 1.1) // 1_000_000) * 1_000_000 or 1_000_000
            made = self.years[year]["made"]
            self._event(made, "budget_line.created", "budget_line", line["id"], {
                "year": _year_label(year), "before": None,
                "after": {"programme": programme, "total_pence": line["total_pence"],
                          "cap_per_call_off_pence": line["cap_per_call_off_pence"], "allocated_pence": 0}},
                self.team)
            for n, allocation in enumerate(per_line[line["id"]]):
                self._event(made + timedelta(minutes=5, seconds=n), "allocation.created", "allocation",
                            allocation["id"], {
                                "line_id": line["id"], "year": _year_label(year), "programme": programme,
                                "organisation_id": allocation["organisation_id"], "before": None,
                                "after": {"project_title": allocation["project_title"],
                                          "amount_pence": allocation["amount_pence"], "committed_pence": 0}},
                            self.team)
        for allocation in self.allocations.values():
            self.rows["allocations"].append({key: value for key, value in allocation.items()
                                             if not key.startswith("_")})

    # The audit log ----------------------------------------------------------------------------------

    def _top_up_audit(self) -> None:
        """Sample the finer-grained events, then sign-ins, up to the total asked for."""
        rng = self.rng
        want = self.volumes.audit_events - self.base_events - len(self.events)
        if want < 0:
            self.notes.append(f"{self.base_events + len(self.events):,} audit events rather than "
                              f"{self.volumes.audit_events:,}: the rows made need that many")
            want = 0
        sign_ins = want // 3
        from_pool = min(want - sign_ins, len(self.optional))
        sign_ins = want - from_pool
        for kind, item in rng.sample(self.optional, from_pool):
            if kind == "opened":
                invitation, actor = item
                self._event(invitation["first_opened_at"], "invitation.opened", "invitation", invitation["id"], {
                    "competition_id": invitation["competition_id"], "organisation_id": invitation["organisation_id"],
                    "opened_at": invitation["first_opened_at"].isoformat()}, actor)
            elif kind == "draft":
                bid, saved, actor = item
                self._event(saved, "bid.draft_saved", "bid", bid["id"], {
                    "competition_id": bid["competition_id"], "organisation_id": bid["organisation_id"],
                    "saved_at": saved.isoformat()}, actor)
            elif kind == "scored":
                score, competition_id, actor = item
                self._event(score["scored_at"], "bid.scored", "bid", score["bid_id"], {
                    "competition_id": competition_id, "criterion_id": score["criterion_id"],
                    "panel_member_id": score["panel_member_id"], "before": None,
                    "after": {"score": score["score"], "justification": score["justification"]}}, actor)
            else:
                moderated, competition_id, actor = item
                self._event(moderated["moderated_at"], "bid.moderated", "bid", moderated["bid_id"], {
                    "competition_id": competition_id, "criterion_id": moderated["criterion_id"], "before": None,
                    "after": {"score": moderated["score"], "justification": moderated["justification"]}}, actor)
        self.optional = []
        people = ([(s.actor, s.active_from) for s in self.suppliers], [(b.actor, b.active_from) for b in self.buyers],
                  [(self.team, _london(date(2020, 3, 2), 9, 5))])
        last_signed_in: dict[int, datetime] = {}
        for _ in range(sign_ins):
            group = rng.choices(people, (60, 35, 5))[0]
            actor, active_from = rng.choice(group)
            at = self._between(active_from + timedelta(minutes=1), self.now - timedelta(minutes=1))
            self._event(at, "user.signed_in", "user", actor[0], {}, actor)
            if actor[0] not in last_signed_in or at > last_signed_in[actor[0]]:
                last_signed_in[actor[0]] = at
        for user_id, at in last_signed_in.items():
            if user_id in self.user_rows:
                self.user_rows[user_id]["last_signed_in_at"] = at
        self.rows["users"] = [self.user_rows[user_id] for user_id in sorted(self.user_rows)]
        self.rows["organisations"].sort(key=lambda row: row["id"])
        # The chain is in the order things happened (a transaction's events in the order recorded).
        self.events.sort(key=lambda event: event[0])
        late = [event for event in self.events if event[0] >= self.now]
        if late:  # pragma: no cover - a planning bug, not a user error
            raise ScaleError(f"Planned an event after now: {late[0][4]} at {late[0][0].isoformat()}")

    def audit_chunks(self, size: int) -> Iterator[list[tuple]]:
        for start in range(0, len(self.events), size):
            yield self.events[start:start + size]

    def sign_ins(self) -> list[tuple[str, str, str]]:
        """(email, role, organisation) of one account of each kind, to try the pages with."""
        out = [(self.base.team_email, "DPS team", ACCOUNTABLE_BODY)]
        if self.buyers:
            out.append((self.buyers[0].actor[1], "Buyer", self.buyers[0].name))
        if self.suppliers:
            out.append((self.suppliers[0].actor[1], "Supplier", self.suppliers[0].name))
        return out


_ORGANISATION_COLUMNS = tuple(column.name for column in Organisation.__table__.columns)


def _organisation(**values) -> dict:
    row = dict.fromkeys(_ORGANISATION_COLUMNS)
    row.update(values)
    return row


def _user(**values) -> dict:
    row = {"active": True, "session_version": 1, "last_signed_in_at": None}
    row.update(values)
    return row
