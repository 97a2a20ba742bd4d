#!/usr/bin/env python
"""Benchmark of the CSV and XLSX exports against their floor, and of their memory (issue 10, point 5).

It fills a throw-away database with ``flask --app dps demo scale --factor K`` (K × 1,000
suppliers, 2,000 competitions, 20,000 bids and 100,000 audit events in a valid chain: K=10 is
national scale), then prints two tables.

**Exports against their floor.** Each export is taken whole (every row the data holds) and, in
another process, its *floor*: a raw DB-API cursor (``sqlite3``; ``psycopg`` with a server-side
cursor on PostgreSQL) running a plain SELECT of the same rows, with the same joins, conditions and
order, of the columns the export reads, written straight from the cursor by ``csv.writer`` (for
the XLSX workbook: one xlsxwriter ``constant_memory`` sheet per report, each raw row written with
``write_row``). JSON is read as its stored text. The floor is what reading those rows and writing
a file costs at all; the export adds what makes its cells right (UK times, pounds, neutralised
text, the Transparency Code's columns). Each of the two is run ``--repeat`` times, alternately,
each run a fresh process; the table shows the medians and their ratio (target: at most 2), the
export's peak resident memory and its file's size. The floor must write as many rows as the
export, or the script stops.

**Memory.** The audit log CSV and the workbook are taken for three periods, the last tenth of the
audit log, its last half and all of it, once plain (time, peak RSS: VmHWM after resetting it once
the app is loaded, so the ~100 MiB of importing the app and its libraries is not counted as the
export's) and once under ``tracemalloc`` (the peak of what Python allocated during the export).
If memory stays flat, the peaks barely move while the rows and the file grow tenfold.

    .venv/bin/python scripts/benchmark_exports.py                    # SQLite in a temporary folder, --factor 1
    .venv/bin/python scripts/benchmark_exports.py --factor 10
    .venv/bin/python scripts/benchmark_exports.py --exports audit,contracts --repeat 5
    .venv/bin/python scripts/benchmark_exports.py \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_exports
    .venv/bin/python scripts/benchmark_exports.py --database-url sqlite:////tmp/bench.sqlite3 --reuse

A database named by ``--database-url`` is DROPPED and made again (PostgreSQL: the database on
that server; SQLite: the file), unless ``--reuse`` says to measure the data an earlier run left
there. Name one that holds nothing you want. A script, not a test: the figures depend on the
machine, and are for reading.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import date, datetime, time as clock_time, timezone
from pathlib import Path
from typing import IO

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from sqlalchemy.engine import make_url  # noqa: E402

from dps.exports import LONDON  # noqa: E402
from dps.exports.tables import (  # noqa: E402
    CONTRACTS_FINDER_CHANGE_DAY,
    CONTRACTS_FINDER_NEW_PENCE,
    CONTRACTS_FINDER_OLD_PENCE,
    TRANSPARENCY_OVER_PENCE,
)

CLOCK = "2024-06-03T09:00"
PASSWORD = "benchmark password of the export floor"
SECRET = "benchmark-only-not-a-secret"
MIB = 1024 * 1024
EXPORTS = ("transparency-tenders", "transparency-contracts", "contracts", "contracts-finder", "award-notices",
           "audit", "xlsx")
MEMORY_EXPORTS = ("audit", "xlsx")
# Rows a server-side cursor fetches at a time, in the floor.
FLOOR_FETCH = 2_000


# --- The floor: plain SQL on a raw cursor ----------------------------------------------------------
#
# Each export's rows as one SELECT of the columns the export reads, as dps/exports/tables.py
# chooses them: only published agreements; the thresholds of the Transparency Code and Contracts
# Finder; the same order. ":change" is the moment Contracts Finder's threshold changed.

_CALL_OFFS = """
    FROM call_offs co
    JOIN competitions c ON c.id = co.competition_id
    JOIN lots l ON l.id = c.lot_id
    JOIN agreements a ON a.id = l.agreement_id
    JOIN organisations b ON b.id = co.buyer_organisation_id
    JOIN organisations s ON s.id = co.supplier_organisation_id"""

FLOOR_SQL = {
    "transparency-tenders": f"""
        SELECT c.reference, c.title, c.description, b.name, c.published_at, c.tender_deadline,
               c.estimated_value_pence, l.number, l.title, c.cancelled_at, c.closed_without_award_at, aw.id,
               aw.confirmed_at, a.reference
        FROM competitions c
        JOIN organisations b ON b.id = c.buyer_organisation_id
        JOIN lots l ON l.id = c.lot_id
        JOIN agreements a ON a.id = l.agreement_id
        LEFT JOIN awards aw ON aw.competition_id = c.id
        WHERE c.published_at IS NOT NULL AND c.estimated_value_pence > {TRANSPARENCY_OVER_PENCE}
          AND a.published_at IS NOT NULL
        ORDER BY c.published_at, c.id""",
    "transparency-contracts": f"""
        SELECT co.reference, c.title, b.name, c.description, s.name, s.registration_number, s.identifier_scheme,
               s.identifier_id, s.legal_form, s.address_line_1, s.address_line_2, s.town, s.postcode,
               co.value_pence, co.irrecoverable_vat_pence, co.starts_on, co.ends_on, s.size, s.is_vcse,
               a.reference
        {_CALL_OFFS}
        WHERE a.published_at IS NOT NULL AND co.value_pence > {TRANSPARENCY_OVER_PENCE}
        ORDER BY co.created_at, co.id""",
    "contracts": f"""
        SELECT a.reference, co.reference, c.reference, c.title, b.name, s.name, l.number, l.title, y.label,
               bl.programme, al.project_title, co.value_pence, co.irrecoverable_vat_pence, co.paid_pence,
               co.starts_on, co.ends_on, aw.decided_at, co.created_at, aw.standstill_ends_at, aw.not_best_reason
        {_CALL_OFFS}
        JOIN awards aw ON aw.id = co.award_id
        JOIN allocations al ON al.id = co.allocation_id
        JOIN budget_lines bl ON bl.id = al.line_id
        JOIN budget_years y ON y.id = bl.year_id
        WHERE a.published_at IS NOT NULL
        ORDER BY co.created_at, co.id""",
    "contracts-finder": f"""
        SELECT a.reference, co.reference, c.title, b.name, s.name, co.value_pence, co.created_at
        {_CALL_OFFS}
        WHERE a.published_at IS NOT NULL
          AND ((co.created_at < :change AND co.value_pence >= {CONTRACTS_FINDER_OLD_PENCE})
               OR (co.created_at >= :change AND co.value_pence >= {CONTRACTS_FINDER_NEW_PENCE}))
        ORDER BY co.created_at, co.id""",
    "award-notices": f"""
        SELECT a.reference, co.reference, c.title, b.name, s.name, co.value_pence, co.created_at
        {_CALL_OFFS}
        WHERE a.published_at IS NOT NULL
        ORDER BY a.reference, co.created_at, co.id""",
    "audit": """
        SELECT e.id, e.occurred_at, e.actor_label, o.name, e.action, e.object_type, e.object_id,
               CAST(e.data AS TEXT), e.ip_address, e.prev_hash, e.hash
        FROM audit_events e
        LEFT JOIN organisations o ON o.id = e.organisation_id
        ORDER BY e.id""",
}


class RawDatabase:
    """A plain DB-API connection to the benchmark's database: sqlite3 or psycopg, nothing of the app's."""

    def __init__(self, database_url: str):
        url = make_url(database_url)
        self.sqlite = url.get_backend_name() == "sqlite"
        if self.sqlite:
            self.connection = sqlite3.connect(url.database)
        else:
            import psycopg

            self.connection = psycopg.connect(host=url.host, port=url.port, user=url.username,
                                              password=url.password, dbname=url.database)

    def rows(self, name: str, *, count: bool = False):
        """A cursor over the floor's rows for ``name``, fetched FLOOR_FETCH at a time on PostgreSQL
        (``count``: over one row holding how many there are)."""
        sql = f"SELECT count(*) FROM ({FLOOR_SQL[name]}) AS floor" if count else FLOOR_SQL[name]
        change = datetime.combine(CONTRACTS_FINDER_CHANGE_DAY, clock_time(0), LONDON).astimezone(timezone.utc)
        if self.sqlite:  # as SQLAlchemy stores a moment on SQLite: naive UTC, to the microsecond
            sql = sql.replace(":change", "?")
            parameters = (change.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds"),) * sql.count("?")
            return self.connection.execute(sql, parameters)
        sql = sql.replace(":change", "%s")
        cursor = self.connection.cursor(name=f"floor_{name.replace('-', '_')}")
        cursor.itersize = FLOOR_FETCH
        cursor.execute(sql, (change,) * sql.count("%s"))
        return cursor

    def count(self, name: str) -> int:
        cursor = self.rows(name, count=True)
        [(rows,)] = cursor.fetchall()
        cursor.close()
        return rows

    def close(self) -> None:
        self.connection.close()


def write_floor_csv(database: RawDatabase, name: str, headings: list[str], out: IO[str]) -> None:
    writer = csv.writer(out)
    writer.writerow(headings)
    cursor = database.rows(name)
    writer.writerows(cursor)
    cursor.close()


def write_floor_xlsx(database: RawDatabase, sheets: list[tuple[str, str, list[str]]], out: IO[bytes]) -> None:
    import xlsxwriter

    from dps.exports.xlsxout import WORKBOOK_OPTIONS

    with tempfile.TemporaryDirectory(prefix="dps-floor-") as folder:
        path = os.path.join(folder, "floor.xlsx")
        workbook = xlsxwriter.Workbook(path, {**WORKBOOK_OPTIONS, "tmpdir": folder, "remove_timezone": True})
        for name, sheet_name, headings in sheets:
            sheet = workbook.add_worksheet(sheet_name)
            sheet.write_row(0, 0, headings)
            cursor = database.rows(name)
            for index, row in enumerate(cursor, start=1):
                sheet.write_row(index, 0, row)
            cursor.close()
        workbook.close()
        with open(path, "rb") as made:
            shutil.copyfileobj(made, out)


# --- The app ---------------------------------------------------------------------------------------

def make_app(database_url: str, storage: str):
    from dps import create_app

    return create_app({
        "DPS_DATABASE_URL": database_url,
        "DPS_SECRET_KEY": SECRET,
        "DPS_STORAGE_URL": f"file://{storage}",
        "DPS_CLOCK": CLOCK,
        "DPS_SMTP_URL": None,
        "DPS_LOG_LEVEL": "WARNING",
    })


def build(database_url: str, factor: float) -> None:
    """A fresh database: dropped and made again, migrated and filled by ``demo scale``."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(url.database + suffix).unlink(missing_ok=True)
    else:
        import psycopg

        with psycopg.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{url.database}"')
    env = dict(os.environ, DPS_DATABASE_URL=database_url, DPS_CLOCK=CLOCK, DPS_SECRET_KEY=SECRET,
               DPS_LOG_LEVEL="WARNING")
    flask = [sys.executable, "-m", "flask", "--app", "dps"]
    began = time.perf_counter()
    subprocess.run([*flask, "db", "upgrade"], env=env, check=True, cwd=PROJECT_ROOT, capture_output=True)
    subprocess.run([*flask, "demo", "scale", "--factor", f"{factor:g}", "--password", PASSWORD], env=env,
                   check=True, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL)
    print(f"Built --factor {factor:g} in {time.perf_counter() - began:.0f}s.", file=sys.stderr)


def memory_periods(database_url: str, storage: str) -> list[date | None]:
    """First days (UK) of the periods holding the last tenth and the last half of the audit log,
    and None for all of it."""
    from sqlalchemy import func, select

    from dps.database import read_only_transaction
    from dps.extensions import db
    from dps.models import AuditEvent

    app = make_app(database_url, storage)
    with app.app_context(), read_only_transaction():
        total = db.session.scalar(select(func.count()).select_from(AuditEvent))
        starts: list[date | None] = []
        for share in (10, 2):
            moment = db.session.scalar(select(AuditEvent.occurred_at).order_by(AuditEvent.occurred_at.desc())
                                       .offset(total // share).limit(1))
            starts.append(moment.astimezone(LONDON).date())
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    return [*starts, None]


# --- One measured run (in its own process) ---------------------------------------------------------

def child(database_url: str, storage: str, name: str, start: date | None, trace: bool) -> None:
    from dps.database import read_only_transaction
    from dps.exports import Filters, get
    from dps.exports.deliver import produce, size_of

    app = make_app(database_url, storage)
    with app.app_context():
        export = get(name)
        filters = Filters(start)
        with read_only_transaction():
            rows = export.count(filters) if export.count else None
        # Start the peak from here: importing the app and its libraries costs ~100 MiB, a
        # high-water mark the export itself should never reach above by much.
        reset = _reset_peak_rss()
        base_rss = _rss_kib("VmRSS")
        if trace:
            tracemalloc.start()
        began = time.perf_counter()
        written = 0

        def progress(n: int) -> None:
            nonlocal written
            written += n

        with produce(export, filters, progress) as tmp:
            size = size_of(tmp)
        seconds = time.perf_counter() - began
        traced_peak = tracemalloc.get_traced_memory()[1] if trace else None
        if trace:
            tracemalloc.stop()
        # With the high-water mark reset, VmHWM is the peak during the export; without (not Linux),
        # ru_maxrss is the peak of the whole process.
        peak_rss = _rss_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"rows": rows, "written": written, "seconds": seconds, "traced_peak": traced_peak,
                          "base_rss_kib": base_rss, "peak_rss_kib": peak_rss, "bytes": size}))


def floor_child(database_url: str, name: str) -> None:
    from dps.exports import Filters, tables
    from dps.exports.xlsxout import tables_for

    database = RawDatabase(database_url)
    if name == "xlsx":
        sheets = [(t.name, t.sheet, t.headings) for t in tables_for(Filters())]
        rows = sum(database.count(table_name) for table_name, _, _ in sheets)
    else:
        rows = database.count(name)
    # What a plain script would write to: a binary file for the workbook, a text file for a CSV.
    mode = {"mode": "w+b"} if name == "xlsx" else {"mode": "w", "encoding": "utf-8-sig", "newline": ""}
    with tempfile.TemporaryFile(prefix="dps-floor-", **mode) as out:
        began = time.perf_counter()
        if name == "xlsx":
            write_floor_xlsx(database, sheets, out)
        else:
            write_floor_csv(database, name, tables.table(name).headings, out)
        out.flush()
        seconds = time.perf_counter() - began
        size = os.fstat(out.fileno()).st_size
    database.close()
    print(json.dumps({"rows": rows, "seconds": seconds, "bytes": size}))


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to /proc/self/clear_refs resets the process's peak RSS (VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _rss_kib(field: str) -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_child(database_url: str, storage: str, name: str, *, start: date | None = None, trace: bool = False,
              floor: bool = False) -> dict:
    command = [sys.executable, __file__, "--child", "--database-url", database_url, "--storage", storage,
               "--export", name]
    if start is not None:
        command += ["--start", start.isoformat()]
    command += ["--trace"] if trace else []
    command += ["--floor"] if floor else []
    done = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT)
    if done.returncode != 0:
        what = "floor" if floor else "export"
        raise SystemExit(f"The {name} {what} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- The tables ------------------------------------------------------------------------------------

def against_floor(database_url: str, storage: str, names: list[str], repeat: int) -> list[str]:
    header = (f"{'export':<22} {'rows':>9} {'seconds':>8} {'floor s':>8} {'ratio':>6} {'peak RSS MiB':>13} "
              f"{'file MiB':>9}")
    lines = [header, "-" * len(header)]
    print(header, file=sys.stderr)
    for name in names:
        exports, floors = [], []
        for _ in range(repeat):
            exports.append(run_child(database_url, storage, name))
            if name in FLOOR_SQL or name == "xlsx":
                floors.append(run_child(database_url, storage, name, floor=True))
        first = exports[0]
        if floors and floors[0]["rows"] != first["written"]:
            raise SystemExit(f"The {name} floor wrote {floors[0]['rows']:,} rows, the export {first['written']:,}: "
                             "they must be the same rows.")
        seconds = statistics.median(e["seconds"] for e in exports)
        floor = statistics.median(f["seconds"] for f in floors) if floors else None
        if floor is None:
            floor_text = f"{'–':>8} {'–':>6}"
        elif not first["written"]:  # the data holds no rows for this export: nothing to compare
            floor_text = f"{floor:>8.2f} {'–':>6}"
        else:
            floor_text = f"{floor:>8.2f} {seconds / floor:>6.2f}"
        line = (f"{name:<22} {first['written']:>9,} {seconds:>8.2f} {floor_text} "
                f"{max(e['peak_rss_kib'] for e in exports) / 1024:>13.1f} {first['bytes'] / MIB:>9.1f}")
        lines.append(line)
        print(line, file=sys.stderr)
    return lines


def memory(database_url: str, storage: str, names: list[str]) -> list[str]:
    header = (f"{'export':<8} {'period from':>11} {'rows':>9} {'seconds':>8} {'traced peak MiB':>16} "
              f"{'peak RSS MiB':>13} {'RSS at start MiB':>17} {'file MiB':>9}")
    lines = [header, "-" * len(header)]
    print(header, file=sys.stderr)
    starts = memory_periods(database_url, storage)
    for name in names:
        for start in starts:
            plain = run_child(database_url, storage, name, start=start)
            traced = run_child(database_url, storage, name, start=start, trace=True)
            line = (f"{name:<8} {start.isoformat() if start else 'all':>11} {plain['written']:>9,} "
                    f"{plain['seconds']:>8.2f} {traced['traced_peak'] / MIB:>16.1f} "
                    f"{plain['peak_rss_kib'] / 1024:>13.1f} {plain['base_rss_kib'] / 1024:>17.1f} "
                    f"{plain['bytes'] / MIB:>9.1f}")
            lines.append(line)
            print(line, file=sys.stderr)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--factor", type=float, default=1.0,
                        help="demo scale --factor: 1 is 100,000 audit events, 10 national scale (default 1).")
    parser.add_argument("--exports", default=",".join(EXPORTS),
                        help="Comma-separated export names to measure against their floor (default: every CSV "
                             "and the workbook). Another export, such as ocds, is timed with no floor.")
    parser.add_argument("--memory-exports", default=",".join(MEMORY_EXPORTS),
                        help="Exports whose memory is measured over three periods (default audit,xlsx; '' for none).")
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each export and its floor (default 3).")
    parser.add_argument("--database-url", default=None,
                        help="A throw-away database, DROPPED and made again (default: SQLite in a temporary folder).")
    parser.add_argument("--reuse", action="store_true", help="Measure the data already in --database-url.")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--storage", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--export", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=date.fromisoformat, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        if args.floor:
            floor_child(args.database_url, args.export)
        else:
            child(args.database_url, args.storage, args.export, args.start, args.trace)
        return
    if args.reuse and not args.database_url:
        parser.error("--reuse needs the --database-url of an earlier run")

    with tempfile.TemporaryDirectory(prefix="dps-benchmark-") as folder:
        database_url = args.database_url or f"sqlite:///{folder}/benchmark.sqlite3"
        storage = os.path.join(folder, "documents")
        if not args.reuse:
            build(database_url, args.factor)
        names = [n.strip() for n in args.exports.split(",") if n.strip()]
        floor_lines = against_floor(database_url, storage, names, args.repeat)
        memory_names = [n.strip() for n in args.memory_exports.split(",") if n.strip()]
        memory_lines = memory(database_url, storage, memory_names) if memory_names else []
        dialect = make_url(database_url).get_backend_name()
        print()
        print(f"{dialect}, demo scale data{'' if args.reuse else f' at --factor {args.factor:g}'}; "
              f"medians of {args.repeat} runs")
        print("\n".join(floor_lines))
        print()
        print("floor: a raw cursor's plain SELECT of the same rows, written by csv.writer (xlsx: xlsxwriter "
              "constant_memory, write_row); ratio: export seconds / floor seconds (– where the data holds no rows "
              "for the export); peak RSS: the process's peak while the export ran (the memory table below shows "
              "what it held before the export began).")
        if memory_lines:
            print()
            print("\n".join(memory_lines))
            print()
            print("period from: the first day (UK) of a period running to the end of the data; rows: what the "
                  "export wrote; seconds and peak RSS from a plain run; traced peak from a second run under "
                  "tracemalloc (Python allocations during the export only); RSS at start: the process before the "
                  "export began.")


if __name__ == "__main__":
    main()
