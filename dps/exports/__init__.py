"""Exports for auditors and transparency officers (DESIGN 6).

Every export is one ``Export`` in ``REGISTRY``: a name (what the CLI and the web call it), a
title, a file type and a ``write(filters, out, progress)`` function that streams the export
into a binary file object. Nothing is handed out until the whole export has been written and
checked (``deliver.produce``): it is written to a temporary file first, so an export that fails
validation, or a database error half-way, hands out nothing.

- ``tables``: the tabular reports (Transparency Code tenders and contracts, contracts register,
  Contracts Finder due list, quarterly award notices, audit log) as ``Table`` objects, written
  as CSV by ``csvout`` and together as one XLSX workbook by ``xlsxout``.
- ``ocds``: OCDS 1.1.5 release and record packages, validated by ``ocds_validate`` against the
  schema files shipped in ``ocds_schema/``.
- ``deliver``: temporary file, then a local path, an S3 object (multipart), or a web response.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import IO, Callable, Iterator, Protocol
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")

# Progress callback: called with how many more rows (or releases) have been written.
Progress = Callable[[int], None]


def no_progress(_done: int) -> None:
    return None


@dataclass(frozen=True)
class Filters:
    """What an export covers: a period of whole days in Europe/London, both ends inclusive, and
    optionally one agreement (its reference; None: every published agreement). Drafts are never
    exported, whatever is asked for.

    The agreement is held as its reference, not an id, so that the audit event and the file name
    say which agreement in words anyone can read. Callers check the reference names a published
    agreement before they build the filters (the page, the command line and the public feed
    each refuse an unknown one); an export given an unknown reference simply finds no rows."""

    start: date | None = None
    end: date | None = None
    agreement: str | None = None

    def __post_init__(self) -> None:
        if self.start and self.end and self.end < self.start:
            raise ValueError("The end date must be the same as or after the start date")
        # References are upper-case (dps.services.agreements.REFERENCE_PATTERN); "" is "all".
        object.__setattr__(self, "agreement", (self.agreement or "").strip().upper() or None)

    @property
    def start_utc(self) -> datetime | None:
        """The first moment inside the period (midnight in London at the start date)."""
        if self.start is None:
            return None
        return datetime.combine(self.start, time(0), LONDON).astimezone(ZoneInfo("UTC"))

    @property
    def end_utc(self) -> datetime | None:
        """The first moment after the period (midnight in London after the end date)."""
        if self.end is None:
            return None
        return datetime.combine(self.end + timedelta(days=1), time(0), LONDON).astimezone(ZoneInfo("UTC"))

    def covers_day(self, day: date) -> bool:
        return (self.start is None or day >= self.start) and (self.end is None or day <= self.end)

    def covers(self, moment: datetime) -> bool:
        return ((self.start_utc is None or moment >= self.start_utc)
                and (self.end_utc is None or moment < self.end_utc))

    def whole_service(self) -> "Filters":
        """The same period for every agreement (for an export that cannot be split by agreement)."""
        return self if self.agreement is None else replace(self, agreement=None)

    def as_dict(self) -> dict:
        """For the audit event of taking an export (agreement None: every published agreement)."""
        return {"from": self.start.isoformat() if self.start else None,
                "to": self.end.isoformat() if self.end else None,
                "agreement": self.agreement}

    def period_label(self) -> str:
        if self.start and self.end:
            return f"{self.start.isoformat()}_to_{self.end.isoformat()}"
        if self.start:
            return f"from_{self.start.isoformat()}"
        if self.end:
            return f"to_{self.end.isoformat()}"
        return "all"

    def label(self) -> str:
        """For file names: ``ccin-dps-2020_2024-01-01_to_2024-03-31``, or the period alone."""
        if self.agreement:
            return f"{self.agreement.lower()}_{self.period_label()}"
        return self.period_label()


class Writer(Protocol):
    def __call__(self, filters: Filters, out: IO[bytes], progress: Progress) -> None: ...


@dataclass(frozen=True)
class Export:
    name: str               # the CLI's word for it, e.g. "contracts"
    title: str              # what the web page calls it
    description: str        # one sentence for the exports page and --help
    extension: str          # "csv", "json", "xlsx"
    media_type: str
    write: Writer
    # How many rows the progress bar counts to (None: unknown), and what it counts.
    count: Callable[[Filters], int] | None = None
    unit: str = "rows"
    # Public exports (the OCDS endpoints) hold nothing that is not published anyway.
    audience: tuple[str, ...] = field(default=("dps_admin", "auditor"))
    # Whether the export can be taken for one agreement. The audit log cannot: it is one hash
    # chain for the whole service, and many of its events (accounts, members, the clock) belong
    # to no agreement. Such an export is always taken whole (``applicable``).
    by_agreement: bool = True

    def applicable(self, filters: Filters) -> Filters:
        """The filters this export actually applies: what its file is named by and its audit
        event records."""
        return filters if self.by_agreement else filters.whole_service()

    def filename(self, filters: Filters) -> str:
        return f"ccin-dps-{self.name}-{self.applicable(filters).label()}.{self.extension}"


class ExportInvalid(Exception):
    """The export failed its own checks (e.g. OCDS schema validation); nothing was handed out.
    ``message`` names the field or row at fault."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NothingToExport(ExportInvalid):
    """Nothing falls in the period asked for, and the format cannot be empty (an OCDS package
    holds at least one release). Not a fault: the person asking can choose another period."""


REGISTRY: dict[str, Export] = {}


def register(export: Export) -> Export:
    if export.name in REGISTRY:
        raise ValueError(f"export {export.name!r} registered twice")
    REGISTRY[export.name] = export
    return export


def get(name: str) -> Export:
    _load()
    return REGISTRY[name]


def all_exports() -> list[Export]:
    _load()
    return list(REGISTRY.values())


def _load() -> None:
    # The modules register their exports when imported.
    from . import ocds, tables, xlsxout  # noqa: F401


def iter_chunks(fileobj: IO[bytes], size: int = 64 * 1024) -> Iterator[bytes]:
    while True:
        chunk = fileobj.read(size)
        if not chunk:
            return
        yield chunk
