#!/usr/bin/env python
"""Show that exports keep memory flat as the number of rows grows (issue 5, "Done when").

It builds a throw-away migrated SQLite database (or uses ``--database-url``, which must have an
empty audit log), appends ROWS audit events with a valid hash chain (10,000 a day over
ROWS/10,000 days, so a period of d days holds d*10,000 rows), then takes each export for periods
of 10,000, 50,000 and ROWS rows. Each run is a fresh Python process, so its peak RSS is its own:

- once plain, for the time and the peak resident memory (``ru_maxrss``);
- once under ``tracemalloc``, for the peak of memory Python allocated during the export.

If memory stays flat, the peaks barely move while rows and file size grow tenfold.

    .venv/bin/python scripts/benchmark_exports.py                 # audit CSV and XLSX, 100,000 rows
    .venv/bin/python scripts/benchmark_exports.py --rows 200000 --exports audit
    .venv/bin/python scripts/benchmark_exports.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench

A script, not a test: the figures depend on the machine, and are for reading.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

ROWS_PER_DAY = 10_000
FIRST_DAY = date(2024, 1, 1)  # London is on GMT in January: a London day is a UTC day
BATCH = 5_000
MIB = 1024 * 1024


def make_app(database_url: str, storage: str):
    from dps import create_app

    return create_app({
        "DPS_DATABASE_URL": database_url,
        "DPS_SECRET_KEY": "benchmark-only-not-a-secret",
        "DPS_STORAGE_URL": f"file://{storage}",
        "DPS_CLOCK": None,
        "DPS_SMTP_URL": None,
        "DPS_LOG_LEVEL": "WARNING",
    })


# --- Building the data ------------------------------------------------------------------------

def build(database_url: str, rows: int, storage: str) -> None:
    from flask_migrate import upgrade
    from sqlalchemy import func, insert, select

    from dps import audit
    from dps.extensions import db
    from dps.models import AuditEvent, Organisation

    app = make_app(database_url, storage)
    with app.app_context():
        upgrade()
        if db.session.scalar(select(func.count()).select_from(AuditEvent)):
            raise SystemExit("The database's audit log is not empty: give the benchmark a throw-away database.")
        organisations = [Organisation(name=name, kind="council", membership="full", nation="England",
                                      created_at=datetime(2020, 4, 1, tzinfo=timezone.utc))
                         for name in ("Oldham Council", "Brighton & Hove City Council", "Ynys Môn / Isle of Anglesey")]
        db.session.add_all(organisations)
        db.session.flush()
        org_ids = [o.id for o in organisations]

        prev = audit.GENESIS_HASH
        step = timedelta(seconds=86_400 / ROWS_PER_DAY)
        start = datetime.combine(FIRST_DAY, datetime.min.time(), timezone.utc)
        batch: list[dict] = []
        began = time.perf_counter()
        for i in range(rows):
            day, within = divmod(i, ROWS_PER_DAY)
            occurred_at = (start + timedelta(days=day) + step * within).replace(microsecond=0)
            org_id = org_ids[i % len(org_ids)]
            data = {"before": {"status": "draft", "title": f"Policy Lab {i}: O’Neill & Sons"},
                    "after": {"status": "published", "title": f"Policy Lab {i}: O’Neill & Sons",
                              "value_pence": 1_000_000 + i}}
            row = {
                "occurred_at": occurred_at, "actor_user_id": None, "actor_label": f"officer{i % 50}@oldham.example.org",
                "organisation_id": org_id, "action": "competition.published", "object_type": "competition",
                "object_id": str(i), "data": data, "ip_address": "203.0.113.7", "prev_hash": prev,
            }
            row["hash"] = audit.compute_hash(prev, occurred_at.isoformat(), None, row["actor_label"], org_id,
                                             row["action"], row["object_type"], row["object_id"], data,
                                             row["ip_address"])
            prev = row["hash"]
            batch.append(row)
            if len(batch) == BATCH:
                db.session.execute(insert(AuditEvent), batch)
                batch = []
        if batch:
            db.session.execute(insert(AuditEvent), batch)
        db.session.commit()
        inserted = time.perf_counter() - began
        result = audit.verify_chain()
        if not result.ok or result.count != rows:
            raise SystemExit(f"The benchmark's audit chain does not verify: {result}")
        print(f"Inserted {rows:,} audit events in {inserted:.1f}s; chain verified.", file=sys.stderr)
        db.session.remove()
        db.engine.dispose()


# --- One measured run (in its own process) ----------------------------------------------------

def child(database_url: str, storage: str, name: str, days: int, trace: bool) -> None:
    from dps.exports import Filters, get
    from dps.exports.deliver import produce, size_of

    app = make_app(database_url, storage)
    with app.app_context():
        export = get(name)
        filters = Filters(FIRST_DAY, FIRST_DAY + timedelta(days=days - 1))
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


def run_child(database_url: str, storage: str, name: str, days: int, trace: bool) -> dict:
    command = [sys.executable, __file__, "--child", "--database-url", database_url, "--storage", storage,
               "--export", name, "--days", str(days)] + (["--trace"] if trace else [])
    done = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{name} for {days} day(s) failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="Audit events to insert (a multiple of 10,000).")
    parser.add_argument("--exports", default="audit,xlsx", help="Comma-separated export names (default audit,xlsx).")
    parser.add_argument("--database-url", default=None, help="A throw-away database (default: a temporary SQLite file).")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--storage", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--export", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--days", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        child(args.database_url, args.storage, args.export, args.days, args.trace)
        return
    if args.rows < ROWS_PER_DAY or args.rows % ROWS_PER_DAY:
        parser.error(f"--rows must be a multiple of {ROWS_PER_DAY:,}")

    with tempfile.TemporaryDirectory(prefix="dps-benchmark-") as folder:
        database_url = args.database_url or f"sqlite:///{folder}/benchmark.sqlite3"
        storage = os.path.join(folder, "documents")
        build(database_url, args.rows, storage)
        total_days = args.rows // ROWS_PER_DAY
        day_counts = sorted({d for d in (1, 5, total_days) if d <= total_days})
        header = (f"{'export':<8} {'rows':>9} {'seconds':>8} {'traced peak MiB':>16} {'peak RSS MiB':>13} "
                  f"{'RSS at start MiB':>17} {'file MiB':>9}")
        lines = [header, "-" * len(header)]
        print(header, file=sys.stderr)
        for name in [n.strip() for n in args.exports.split(",") if n.strip()]:
            for days in day_counts:
                plain = run_child(database_url, storage, name, days, trace=False)
                traced = run_child(database_url, storage, name, days, trace=True)
                line = (f"{name:<8} {plain['rows']:>9,} {plain['seconds']:>8.1f} {traced['traced_peak'] / MIB:>16.1f} "
                        f"{plain['peak_rss_kib'] / 1024:>13.1f} {plain['base_rss_kib'] / 1024:>17.1f} "
                        f"{plain['bytes'] / MIB:>9.1f}")
                lines.append(line)
                print(line, file=sys.stderr)
        print()
        print("\n".join(lines))
        print()
        print("rows: what the export counted for the period; seconds and peak RSS from a plain run; traced peak from "
              "a second run under tracemalloc (Python allocations during the export only); RSS at start: the "
              "process before the export began.")


if __name__ == "__main__":
    main()
