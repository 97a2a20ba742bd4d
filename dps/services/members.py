"""Member organisations: the network's members and their records (tier, kind, nation, whether a
contracting authority, org-id identifier, the dates they joined and left), changed one at a time
or by importing a CSV file.

Every organisation that is not a supplier is on the members pages: the members, the network
itself (kind "network", no tier) and an accountable body set up before its tier was recorded.
Buying depends on these records (``accounts.buyer_ineligibility``): a member that has left, or
has not joined yet, cannot start or publish a competition; its buyers still sign in and see what
they did before.

The CSV import is previewed first and saves nothing; applying it checks the whole file again
against the database as it is then and changes every row in one transaction, or none. A row
states a member's whole record: a blank cell means "none" (for contracting_authority, the usual
for its kind), so importing the same file twice changes nothing the second time. Members not in
the file are left as they are: the import never removes anyone (a member leaves by its date).
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select

from .. import audit, clock
from ..extensions import db
from ..models import Organisation, User
from ..models.organisations import CONTRACTING_AUTHORITY_KINDS, KIND_LABELS, KINDS, MEMBERSHIP_TIERS, NATIONS
from . import ServiceError

MEMBER_KINDS = tuple(kind for kind in KINDS if kind != "supplier")
TIER_LABELS = {"full": "Full", "associate": "Associate", "affiliate": "Affiliate"}
# Tiers whose members may buy from the DPS, and so need a nation (working days are counted by it).
BUYING_TIERS = ("full", "associate")
# The org-id.guide registers a member's identifier may come from.
IDENTIFIER_SCHEMES = {
    "GB-LAE": "Local authorities in England",
    "GB-PLA": "Principal local authorities in Wales",
    "GB-LAS": "Local authorities in Scotland",
    "GB-LANI": "Local authorities in Northern Ireland",
    "GB-COH": "Companies House",
    "GB-CHC": "Charity Commission for England and Wales",
    "GB-SC": "Scottish Charity Regulator",
    "GB-MPR": "Mutuals Public Register",
    "GB-GOR": "Government Organisation Register",
}
NAME_LIMIT = 200  # organisations.name
IDENTIFIER_LIMIT = 40  # organisations.identifier_id
IDENTIFIER_PATTERN = re.compile(r"[A-Z0-9](?:[A-Z0-9-]*[A-Z0-9])?")
PAGE_SIZE = 50
STATUSES = {"current": "Current members", "left": "Members that have left"}

# The fields of a member's record, in the order of the CSV columns and of the pages.
FIELDS = ("name", "membership", "kind", "nation", "contracting_authority", "identifier_scheme", "identifier_id",
          "joined_on", "left_on")
FIELD_LABELS = {
    "name": "name", "membership": "tier", "kind": "kind", "nation": "nation",
    "contracting_authority": "contracting authority", "identifier_scheme": "identifier scheme",
    "identifier_id": "identifier", "joined_on": "date joined", "left_on": "date left",
}
COLUMNS = FIELDS
IMPORT_ROW_LIMIT = 5_000
# Five thousand rows of the longest names and identifiers fit well inside this.
IMPORT_BYTES_LIMIT = 2 * 1024 * 1024

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _require_team(actor: User | None) -> None:
    # Views already refuse auditors; this keeps the rule true for any other caller (CLI, jobs).
    if actor is None or actor.role != "dps_admin":
        raise ServiceError("Only the DPS team can change the network’s members")


def _today() -> date:
    return clock.to_london(clock.now()).date()


def default_contracting_authority(kind: str) -> bool:
    return kind in CONTRACTING_AUTHORITY_KINDS


def identifier_text(scheme: str | None, identifier: str | None) -> str:
    """org-id.guide form, GB-LAE-OLD; a scheme whose code is not recorded yet says so."""
    if scheme and identifier:
        return f"{scheme}-{identifier}"
    if scheme:
        return f"{scheme} (code not recorded)"
    return ""


def status_of(org: Organisation, today: date | None = None) -> str:
    """Where a member stands today, in words for the members list."""
    today = today or _today()
    if org.is_network:
        return "The network itself"
    if org.membership is None:
        return "No tier recorded"
    if org.left_on is not None and today >= org.left_on:
        return f"Left on {clock.fmt_date(org.left_on)}"
    if org.joined_on is not None and today < org.joined_on:
        return f"Joins on {clock.fmt_date(org.joined_on)}"
    if org.left_on is not None:
        return f"Member until {clock.fmt_date(org.left_on - timedelta(days=1))}"
    return "Member"


# Checking a record ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """A rule a record breaks: the form field it belongs next to, the message for the form, and
    the message for a line of a CSV file (after "Line 7 (Name): ")."""

    field: str
    message: str
    csv: str = ""

    @property
    def csv_message(self) -> str:
        return self.csv or self.message[0].lower() + self.message[1:]


class _Directory:
    """Who already holds a name or an identifier, and which organisation is the network: asked
    of the database (one query per question, for the forms)."""

    def member_named(self, name: str) -> Organisation | None:
        return db.session.scalar(
            select(Organisation).where(Organisation.kind != "supplier",
                                       func.lower(Organisation.name) == name.lower())
            .order_by(Organisation.id).limit(1))

    def holder_of(self, scheme: str, identifier: str) -> Organisation | None:
        return db.session.scalar(
            select(Organisation).where(Organisation.identifier_scheme == scheme,
                                       Organisation.identifier_id == identifier).limit(1))

    def network(self) -> Organisation | None:
        return db.session.scalar(select(Organisation).where(Organisation.kind == "network")
                                 .order_by(Organisation.id).limit(1))


def _clean_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    # Inner runs of spaces become one; text with a line break is kept, for the check to refuse.
    return (text if _CONTROL.search(text) else " ".join(text.split())) or None


def _normalise(values: dict[str, Any]) -> dict[str, Any]:
    """The typed values of a record, tidied: text trimmed (a name's inner spaces too), empty text
    as None, codes in capitals."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise TypeError(f"not fields of a member: {', '.join(sorted(unknown))}")
    out = {name: values.get(name) for name in FIELDS}
    for name in ("name", "membership", "kind", "nation", "identifier_scheme", "identifier_id"):
        out[name] = _clean_text(out[name])
    for name in ("identifier_scheme", "identifier_id"):
        if out[name]:
            out[name] = out[name].upper()
    return out


def _problems(values: dict[str, Any], org: Organisation | None, directory) -> list[Problem]:
    """Every rule the record ``values`` breaks, for ``org`` (None for a new member)."""
    problems: list[Problem] = []
    own_id = org.id if org is not None else None

    name = values["name"]
    if not name:
        problems.append(Problem("name", "Enter the organisation’s name", "enter the member’s name"))
    elif len(name) > NAME_LIMIT:
        problems.append(Problem("name", f"Name must be {NAME_LIMIT} characters or fewer"))
    elif _CONTROL.search(name):
        problems.append(Problem("name", "Name must be on one line, without special characters"))
    else:
        other = directory.member_named(name)
        if other is not None and other.id != own_id:
            problems.append(Problem("name", f"There is already a member called {other.name}",
                                    f"another member is already called {other.name}"))

    kind = values["kind"]
    if kind not in MEMBER_KINDS:
        problems.append(Problem("kind", "Select the kind of organisation",
                                f"enter the kind: one of {', '.join(MEMBER_KINDS)}"))
    elif kind == "network":
        network = directory.network()
        if network is not None and network.id != own_id:
            problems.append(Problem("kind", f"Only one organisation can be the network itself, and that is {network.name}"))
    if org is not None and org.kind == "network" and kind != "network":
        problems.append(Problem("kind", "The network itself stays of the kind ‘The network’"))

    tier = values["membership"]
    if kind == "network":
        if tier is not None:
            problems.append(Problem("membership", "The network itself has no membership tier: leave it empty"))
    elif tier not in MEMBERSHIP_TIERS:
        problems.append(Problem("membership", "Select the membership tier",
                                "enter the membership tier: Full, Associate or Affiliate"))

    nation = values["nation"]
    if nation is not None and nation not in NATIONS:
        problems.append(Problem("nation", "Select the nation",
                                f"the nation must be {', '.join(NATIONS[:-1])} or {NATIONS[-1]}"))
    elif nation is None and tier in BUYING_TIERS:
        problems.append(Problem(
            "nation", "Select the nation: Full and Associate Members need one, for the bank holidays that apply to them",
            f"enter the nation ({', '.join(NATIONS[:-1])} or {NATIONS[-1]}): Full and Associate Members need one"))

    ca = values["contracting_authority"]
    if ca is not None and not isinstance(ca, bool):
        problems.append(Problem("contracting_authority", "Select yes or no"))

    scheme, identifier = values["identifier_scheme"], values["identifier_id"]
    if scheme is not None and scheme not in IDENTIFIER_SCHEMES:
        problems.append(Problem("identifier_scheme", "Select the identifier’s scheme from the list",
                                f"the identifier scheme {scheme} is not one of {', '.join(IDENTIFIER_SCHEMES)}"))
    if identifier is not None:
        if scheme is None:
            problems.append(Problem("identifier_scheme", "Select the scheme of the identifier, for example GB-LAE",
                                    f"enter the identifier_scheme of the identifier {identifier}, for example GB-LAE"))
        if len(identifier) > IDENTIFIER_LIMIT:
            problems.append(Problem("identifier_id", f"The identifier must be {IDENTIFIER_LIMIT} characters or fewer"))
        elif not IDENTIFIER_PATTERN.fullmatch(identifier):
            problems.append(Problem("identifier_id", "The identifier can only have letters, numbers and hyphens"))
        elif scheme in IDENTIFIER_SCHEMES:
            holder = directory.holder_of(scheme, identifier)
            if holder is not None and holder.id != own_id:
                problems.append(Problem("identifier_id",
                                        f"The identifier {scheme}-{identifier} already belongs to {holder.name}"))

    joined, left = values["joined_on"], values["left_on"]
    if joined is not None and left is not None and left <= joined:
        problems.append(Problem("left_on", f"The date it left must be after the date it joined ({clock.fmt_date(joined)})",
                                f"the date it left ({left.isoformat()}) must be after the date it joined "
                                f"({joined.isoformat()})"))
    return problems


def _resolved(values: dict[str, Any]) -> dict[str, Any]:
    """What is stored: a contracting-authority status left open becomes the usual for the kind."""
    out = dict(values)
    if out["contracting_authority"] is None and out["kind"] in MEMBER_KINDS:
        out["contracting_authority"] = default_contracting_authority(out["kind"])
    return out


def _record_of(org: Organisation) -> dict[str, Any]:
    return {name: getattr(org, name) for name in FIELDS}


def _changed(org: Organisation, values: dict[str, Any]) -> list[str]:
    return [name for name in FIELDS if getattr(org, name) != values[name]]


class InvalidMember(ServiceError):
    """A record that breaks rules: ``problems`` holds every one, each naming its field (the
    message and field of the exception are the first's)."""

    def __init__(self, problems: list[Problem]):
        super().__init__(problems[0].message, problems[0].field)
        self.problems = problems


def _raise_all(problems: list[Problem]) -> None:
    if problems:
        raise InvalidMember(problems)


def _create(actor: User, values: dict[str, Any], extra: dict | None = None) -> Organisation:
    org = Organisation(**values, created_at=clock.now())
    db.session.add(org)
    db.session.flush()
    audit.record("organisation.created", "organisation", org.id,
                 {"before": None, "after": _record_of(org), **(extra or {})}, actor=actor)
    return org


def _change(actor: User, org: Organisation, values: dict[str, Any], changes: list[str],
            extra: dict | None = None) -> None:
    before = {name: getattr(org, name) for name in changes}
    for name in changes:
        setattr(org, name, values[name])
    db.session.flush()
    audit.record("organisation.updated", "organisation", org.id,
                 {"before": before, "after": {name: values[name] for name in changes}, **(extra or {})}, actor=actor)


def add(actor: User, **fields: Any) -> Organisation:
    """Add a member organisation (any kind but supplier). ``fields`` are those of ``FIELDS``;
    those left out are empty, and contracting_authority left out is the usual for the kind."""
    _require_team(actor)
    values = _normalise(fields)
    _raise_all(_problems(values, None, _Directory()))
    return _create(actor, _resolved(values))


def update(actor: User, org: Organisation, **fields: Any) -> list[str]:
    """Change a member's record: the fields given replace what is stored, the others stay.
    Returns the fields that changed (none: nothing is written, not even an audit event)."""
    _require_team(actor)
    if org.is_supplier:
        raise ServiceError(f"{org.name} is a supplier, not a member of the network")
    values = _normalise({**_record_of(org), **fields})
    _raise_all(_problems(values, org, _Directory()))
    values = _resolved(values)
    changes = _changed(org, values)
    if changes:
        _change(actor, org, values, changes)
    return changes


# The members list -------------------------------------------------------------------------------

@dataclass
class MembersPage:
    members: list[Organisation]
    count: int  # members matching the filters, on every page
    next_after: int | None  # the id to pass as ``after`` for the next page
    previous_before: int | None  # the id to pass as ``before`` for the previous page


def _filters(tier: str | None, status: str | None) -> list:
    conditions = [Organisation.kind != "supplier"]
    if tier in MEMBERSHIP_TIERS:
        conditions.append(Organisation.membership == tier)
    today = _today()
    if status == "current":
        conditions.append(or_(Organisation.left_on.is_(None), Organisation.left_on > today))
    elif status == "left":
        conditions.append(Organisation.left_on <= today)
    return conditions


def members_page(*, tier: str | None = None, status: str | None = None, after: int | None = None,
                 before: int | None = None, size: int = PAGE_SIZE) -> MembersPage:
    """A page of members by name (then id), ``size`` to a page, by keyset: ``after`` (or
    ``before``) is the id of the member the page starts after (or ends before). Three queries,
    however many members there are; an unknown cursor gives the first page."""
    conditions = _filters(tier, status)
    count = db.session.scalar(select(func.count()).select_from(Organisation).where(*conditions))
    cursor_id = after if after is not None else before
    cursor = None
    if cursor_id is not None:
        cursor = db.session.execute(
            select(Organisation.name, Organisation.id).where(Organisation.id == cursor_id,
                                                             Organisation.kind != "supplier")).first()
    stmt = select(Organisation).where(*conditions)
    name, id_ = Organisation.name, Organisation.id
    if cursor is not None and after is not None:
        rows = list(db.session.scalars(
            stmt.where(or_(name > cursor.name, and_(name == cursor.name, id_ > cursor.id)))
            .order_by(name, id_).limit(size + 1)))
        more_after, more_before = len(rows) > size, True
        rows = rows[:size]
    elif cursor is not None:
        rows = list(db.session.scalars(
            stmt.where(or_(name < cursor.name, and_(name == cursor.name, id_ < cursor.id)))
            .order_by(name.desc(), id_.desc()).limit(size + 1)))
        more_after, more_before = True, len(rows) > size
        rows = list(reversed(rows[:size]))
    else:
        rows = list(db.session.scalars(stmt.order_by(name, id_).limit(size + 1)))
        more_after, more_before = len(rows) > size, False
        rows = rows[:size]
    return MembersPage(
        members=rows, count=count,
        next_after=rows[-1].id if rows and more_after else None,
        previous_before=rows[0].id if rows and more_before else None)


# CSV import -----------------------------------------------------------------------------------

def _lookup(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {key.casefold(): code for key, code in pairs}


_TIER_WORDS = _lookup([*((t, t) for t in MEMBERSHIP_TIERS), *((label, t) for t, label in TIER_LABELS.items()),
                       *((f"{label} member", t) for t, label in TIER_LABELS.items())])
_KIND_WORDS = _lookup([*((k, k) for k in MEMBER_KINDS), *((KIND_LABELS[k], k) for k in MEMBER_KINDS),
                       *((k.replace("_", " "), k) for k in MEMBER_KINDS)])
_NATION_WORDS = _lookup([*((n, n) for n in NATIONS), *((n.replace(" ", "_"), n) for n in NATIONS)])
_YES_NO = {"yes": True, "y": True, "true": True, "no": False, "n": False, "false": False}


@dataclass(frozen=True)
class RowProblem:
    line: int
    name: str
    messages: tuple[str, ...]

    @property
    def text(self) -> str:
        where = f"Line {self.line}" + (f" ({self.name})" if self.name else "")
        return f"{where}: {'; '.join(self.messages)}"


@dataclass
class ImportRow:
    line: int
    values: dict[str, Any]  # as it will be stored
    organisation: Organisation | None  # the member it matches; None for a new one
    changes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.values["name"]

    @property
    def status(self) -> str:
        if self.organisation is None:
            return "new"
        return "changed" if self.changes else "unchanged"

    @property
    def change_labels(self) -> str:
        return ", ".join(FIELD_LABELS[name] for name in self.changes)


@dataclass
class ImportPreview:
    rows: list[ImportRow]
    problems: list[RowProblem]
    sha256: str  # of the file's text, as UTF-8

    @property
    def ok(self) -> bool:
        return not self.problems

    def _with(self, status: str) -> list[ImportRow]:
        return [row for row in self.rows if row.status == status]

    @property
    def new(self) -> list[ImportRow]:
        return self._with("new")

    @property
    def changed(self) -> list[ImportRow]:
        return self._with("changed")

    @property
    def unchanged(self) -> list[ImportRow]:
        return self._with("unchanged")

    @property
    def to_apply(self) -> int:
        return len(self.new) + len(self.changed)

    @property
    def fingerprint(self) -> str:
        """The file and what it would do now: if the members change between the preview and the
        confirmation, applying it would do something else, so the confirmation is refused."""
        plan = [(row.line, row.status, row.organisation.id if row.organisation else None, row.changes)
                for row in self.rows]
        return hashlib.sha256(repr((self.sha256, plan)).encode("utf-8")).hexdigest()


@dataclass
class ImportResult:
    added: int
    changed: int
    unchanged: int


class ImportRefused(ServiceError):
    """The file has bad rows (``preview`` names them), or the members changed since the preview."""

    def __init__(self, message: str, preview: ImportPreview):
        super().__init__(message, "file")
        self.preview = preview


def _check_size(size: int) -> None:
    if size > IMPORT_BYTES_LIMIT:
        raise ServiceError(f"The file must be {IMPORT_BYTES_LIMIT // (1024 * 1024)} MB or smaller: "
                           f"import at most {IMPORT_ROW_LIMIT:,} members at a time", "file")


def decode(data: bytes) -> str:
    """An uploaded file's bytes as text: UTF-8, with or without a byte order mark."""
    _check_size(len(data))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ServiceError(f"The file must be saved as UTF-8 (in Excel, ‘CSV UTF-8’): line {line} has characters "
                           "that are not UTF-8", "file") from None


class _FileDirectory:
    """The database's members and identifiers, read once for a whole file."""

    def __init__(self, identifiers: set[tuple[str, str]]):
        members = db.session.scalars(select(Organisation).where(Organisation.kind != "supplier")
                                     .order_by(Organisation.id)).all()
        self.by_name: dict[str, Organisation] = {}
        self.by_identifier: dict[tuple[str, str], Organisation] = {}
        self._network = None
        for org in members:
            self.by_name.setdefault(org.name.casefold(), org)
            if org.identifier_scheme and org.identifier_id:
                self.by_identifier[(org.identifier_scheme, org.identifier_id)] = org
            if org.is_network and self._network is None:
                self._network = org
        # Suppliers hold identifiers too (the pair is unique across all organisations).
        wanted = sorted({identifier for _, identifier in identifiers})
        for start in range(0, len(wanted), 500):
            for org in db.session.scalars(select(Organisation).where(
                    Organisation.kind == "supplier", Organisation.identifier_id.in_(wanted[start:start + 500]))):
                self.by_identifier.setdefault((org.identifier_scheme, org.identifier_id), org)

    def member_named(self, name: str) -> Organisation | None:
        return self.by_name.get(name.casefold())

    def holder_of(self, scheme: str, identifier: str) -> Organisation | None:
        return self.by_identifier.get((scheme, identifier))

    def network(self) -> Organisation | None:
        return self._network


def _parse_date(raw: str, what: str, problems: list[str]) -> date | None:
    if not raw:
        return None
    try:
        if not _ISO_DATE.fullmatch(raw):
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        problems.append(f"enter the date it {what} as YYYY-MM-DD, like 2019-04-01 (not ‘{raw}’)")
        return None


def _parse_cells(cells: dict[str, str]) -> tuple[dict[str, Any], list[str], set[str]]:
    """A row's cells as typed values; the problems of reading them; the fields those concern."""
    problems: list[str] = []
    bad: set[str] = set()

    def word(column: str, words: dict[str, str], message: str) -> str | None:
        raw = cells[column]
        if not raw:
            return None
        value = words.get(raw.casefold())
        if value is None:
            problems.append(message.format(raw=raw))
            bad.add(column)
        return value

    for column, raw in cells.items():
        if _CONTROL.search(raw):
            problems.append(f"the {column} must be on one line, without special characters")
            bad.add(column)
            cells[column] = ""
    values: dict[str, Any] = {"name": " ".join(cells["name"].split()) or None}
    values["membership"] = word("membership", _TIER_WORDS,
                                "the membership tier must be Full, Associate or Affiliate, not ‘{raw}’")
    values["kind"] = word("kind", _KIND_WORDS, "the kind must be one of " + ", ".join(MEMBER_KINDS) + ", not ‘{raw}’")
    values["nation"] = word("nation", _NATION_WORDS,
                            f"the nation must be {', '.join(NATIONS[:-1])} or {NATIONS[-1]}, not ‘{{raw}}’")
    raw = cells["contracting_authority"]
    values["contracting_authority"] = _YES_NO.get(raw.casefold()) if raw else None
    if raw and values["contracting_authority"] is None:
        problems.append(f"enter yes or no for contracting_authority, or leave it blank for the usual for its kind "
                        f"(not ‘{raw}’)")
        bad.add("contracting_authority")
    values["identifier_scheme"] = cells["identifier_scheme"].upper() or None
    values["identifier_id"] = cells["identifier_id"].upper() or None
    before = len(problems)
    values["joined_on"] = _parse_date(cells["joined_on"], "joined", problems)
    if len(problems) > before:
        bad.add("joined_on")
    before = len(problems)
    values["left_on"] = _parse_date(cells["left_on"], "left", problems)
    if len(problems) > before:
        bad.add("left_on")
    return values, problems, bad


def _read_rows(text: str) -> list[tuple[int, dict[str, str], list[str]]]:
    """(line, cells by column, problems of shape) for each row that is not blank."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise ServiceError("The selected file is empty: its first row must name the columns", "file")
        names = [cell.strip().lower() for cell in header]
        missing = [column for column in COLUMNS if column not in names]
        if missing:
            raise ServiceError(f"The first row must name every column: {', '.join(missing)} "
                               f"{'is' if len(missing) == 1 else 'are'} missing. The columns are "
                               f"{', '.join(COLUMNS)}", "file")
        unknown = [name for name in names if name and name not in COLUMNS]
        if unknown:
            raise ServiceError(f"The first row names a column this import does not know: {unknown[0]}. "
                               f"The columns are {', '.join(COLUMNS)}", "file")
        repeated = [name for name in COLUMNS if names.count(name) > 1]
        if repeated:
            raise ServiceError(f"The first row names the column {repeated[0]} more than once", "file")
        position = {name: names.index(name) for name in COLUMNS}
        rows = []
        line_end = reader.line_num
        for cells in reader:
            line, line_end = line_end + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(rows) == IMPORT_ROW_LIMIT:
                raise ServiceError(f"The file has more than {IMPORT_ROW_LIMIT:,} members: split it into files of "
                                   f"{IMPORT_ROW_LIMIT:,} or fewer", "file")
            problems = []
            extra = [cell for index, cell in enumerate(cells) if index >= len(names) or not names[index]]
            if any(cell.strip() for cell in extra):
                problems.append("it has a value in a column the first row does not name")
            padded = cells + [""] * (len(names) - len(cells))
            rows.append((line, {name: padded[index].strip() for name, index in position.items()}, problems))
        return rows
    except csv.Error as exc:
        raise ServiceError(f"Line {reader.line_num} cannot be read as CSV ({exc}): save the file as CSV and try again",
                           "file") from None


def preview_import(content: str | bytes) -> ImportPreview:
    """Read and check a whole CSV file of members against the database; save nothing.

    Raises ``ServiceError`` (field "file") when the file as a whole cannot be used: not UTF-8,
    no header row or a column missing from it, more than ``IMPORT_ROW_LIMIT`` rows. Otherwise
    returns the preview: each bad row with its line number and what is wrong, and each good row
    as new, changed (which fields) or unchanged.
    """
    text = decode(content) if isinstance(content, bytes) else content.removeprefix("\ufeff")
    encoded = text.encode("utf-8")
    _check_size(len(encoded))
    read = _read_rows(text)
    parsed = []
    identifiers = set()
    for line, cells, shape_problems in read:
        values, problems, bad = _parse_cells(cells)
        parsed.append((line, values, shape_problems + problems, bad))
        if values["identifier_scheme"] and values["identifier_id"]:
            identifiers.add((values["identifier_scheme"], values["identifier_id"]))
    directory = _FileDirectory(identifiers)

    rows: list[ImportRow] = []
    bad_rows: list[RowProblem] = []
    names_seen: dict[str, int] = {}
    identifiers_seen: dict[tuple[str, str], int] = {}
    claimed: dict[int, int] = {}  # organisation id -> the line that matches it
    network_line = None
    for line, values, problems, bad in parsed:
        values = _normalise(values)
        name = values["name"] or ""
        scheme, identifier = values["identifier_scheme"], values["identifier_id"]
        key = (scheme, identifier) if scheme and identifier else None
        if name:
            if name.casefold() in names_seen:
                problems.append(f"the name is also on line {names_seen[name.casefold()]}")
            else:
                names_seen[name.casefold()] = line
        if key:
            if key in identifiers_seen:
                problems.append(f"the identifier {scheme}-{identifier} is also on line {identifiers_seen[key]}")
            else:
                identifiers_seen[key] = line
        if values["kind"] == "network":
            if network_line is not None:
                problems.append(f"only one organisation can be the network itself, and line {network_line} is")
            network_line = network_line or line

        org = directory.holder_of(*key) if key else None
        if org is not None and org.is_supplier:
            problems.append(f"the identifier {scheme}-{identifier} belongs to a supplier, {org.name}")
            org = None
            bad.add("identifier_id")
        if org is None and name:
            org = directory.member_named(name)
        if org is not None:
            if org.id in claimed:
                problems.append(f"it is the same member as line {claimed[org.id]} ({org.name})")
            else:
                claimed[org.id] = line
        problems += [p.csv_message for p in _problems(values, org, directory) if p.field not in bad]
        if problems:
            bad_rows.append(RowProblem(line, name, tuple(dict.fromkeys(problems))))
            continue
        values = _resolved(values)
        rows.append(ImportRow(line, values, org, _changed(org, values) if org is not None else []))
    return ImportPreview(rows, bad_rows, hashlib.sha256(encoded).hexdigest())


def apply_import(actor: User, content: str | bytes, fingerprint: str | None = None) -> ImportResult:
    """Check the file again and apply it, in the caller's transaction: every new member added and
    every changed one changed, each with its audit event, or nothing at all. Unchanged rows write
    nothing. ``fingerprint``: the preview's, so that a file that would now do something other
    than the preview showed is refused."""
    _require_team(actor)
    preview = preview_import(content)
    if not preview.ok:
        count = len(preview.problems)
        raise ImportRefused(f"Nothing was imported: {count} row{'' if count == 1 else 's'} of the file "
                            f"{'has' if count == 1 else 'have'} a problem", preview)
    if fingerprint is not None and fingerprint != preview.fingerprint and preview.to_apply:
        # (With nothing left to apply, e.g. the confirmation sent twice, there is nothing to refuse.)
        raise ImportRefused("Nothing was imported: the members have changed since the file was checked. "
                            "Check the changes below again.", preview)
    for row in preview.rows:
        extra = {"import": {"sha256": preview.sha256, "line": row.line}}
        if row.status == "new":
            _create(actor, row.values, extra)
        elif row.status == "changed":
            _change(actor, row.organisation, row.values, row.changes, extra)
    result = ImportResult(len(preview.new), len(preview.changed), len(preview.unchanged))
    if result.added or result.changed:
        audit.record("organisations.imported", "organisation", None,
                     {"sha256": preview.sha256, "added": result.added, "changed": result.changed,
                      "unchanged": result.unchanged}, actor=actor)
    db.session.flush()
    return result
