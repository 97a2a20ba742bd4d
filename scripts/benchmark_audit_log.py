"""Benchmark of the audit log page's queries at a million rows (issue 5 point 1).

Builds a throw-away database, migrates it, bulk-inserts N chained audit events (a valid chain:
``flask --app dps audit verify`` passes on it), then times the queries the page
``/team/audit`` runs (``dps.services.audit_log``): the newest page, a deep page, each filter,
and the filter form's lists. It prints one line per query: the rows returned, the median time
over several runs, and a summary of the database's plan (which index, whether it sorts).

A script, not a test: timings depend on the machine. Run it from the project folder:

    .venv/bin/python scripts/benchmark_audit_log.py                  # SQLite file, 1,000,000 rows
    .venv/bin/python scripts/benchmark_audit_log.py --rows 100000    # quicker
    .venv/bin/python scripts/benchmark_audit_log.py \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/dps_benchmark

PostgreSQL: the database named in ``--database-url`` is DROPPED and created again: name one
that holds nothing you want. SQLite: a file in a temporary folder, deleted at the end unless
``--keep``. ``--verify`` also times the whole-chain check (what ``audit verify`` does).

The rows go straight into the table (executemany in batches), around the app: this is test
data. Their hashes are computed with ``dps.audit.compute_hash`` exactly as ``audit.record``
does, so the chain is valid.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
from sqlalchemy import func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from dps import audit, create_app  # noqa: E402
from dps.extensions import db  # noqa: E402
from dps.models import AuditEvent, Organisation  # noqa: E402
from dps.services import audit_log  # noqa: E402

# (action, object type, how many distinct objects, relative frequency). Sign-ins dominate a
# real log; awards and call-offs are rare, which is what makes their filter worth timing.
ACTIONS = [
    ("user.signed_in", "user", 3000, 300), ("user.signed_out", "user", 3000, 120),
    ("document.downloaded", "document", 60000, 80), ("document.uploaded", "document", 60000, 60),
    ("application.answers_saved", "application", 2000, 60), ("bid.draft_saved", "bid", 40000, 60),
    ("invitation.opened", "invitation", 60000, 40), ("bid.scored", "bid", 40000, 30),
    ("bid.submitted", "bid", 40000, 30), ("bid.moderated", "bid", 40000, 15),
    ("clarification.asked", "clarification", 8000, 10), ("clarification.answered", "clarification", 8000, 8),
    ("application.submitted", "application", 2000, 4), ("application.lot_admitted", "application", 2000, 4),
    ("application.lot_rejected", "application", 2000, 1), ("application.decided", "application", 2000, 3),
    ("competition.created", "competition", 5000, 4), ("competition.published", "competition", 5000, 4),
    ("competition.opened", "competition", 5000, 3), ("panel.declared", "competition", 5000, 5),
    ("award.decided", "competition", 5000, 2), ("award.confirmed", "competition", 5000, 2),
    ("call_off.created", "call_off", 5000, 2), ("invoice.recorded", "call_off", 5000, 4),
    ("admission.suspended", "admission", 3000, 1), ("renewal.requested", "renewal_request", 5000, 2),
    ("allocation.created", "allocation", 1000, 1), ("budget_line.total_changed", "budget_line", 50, 1),
    ("user.created", "user", 3000, 3), ("export.taken", "export", 1, 1),
]
ORGANISATIONS = 300
START = datetime(2020, 4, 1, 8, 0, tzinfo=timezone.utc)
END = datetime(2025, 3, 31, 18, 0, tzinfo=timezone.utc)


def config(url: str) -> dict:
    return {
        "DPS_DATABASE_URL": url,
        "DPS_SECRET_KEY": "benchmark-only",
        "DPS_CLOCK": None,
        "DPS_STORAGE_URL": f"file://{tempfile.gettempdir()}/dps-benchmark-documents",
        "DPS_SMTP_URL": None,
        "TESTING": True,
    }


def fresh_database(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{parsed.database}"')


def fill(rows: int, batch: int, seed: int) -> dict:
    """Insert the organisations and ``rows`` chained events; return facts the queries use."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    db.session.execute(insert(Organisation), [
        {"name": f"Benchmark Council {n:03d}", "kind": "council", "membership": "full", "nation": "England",
         "created_at": now} for n in range(ORGANISATIONS)])
    db.session.commit()
    org_ids = list(db.session.scalars(select(Organisation.id)))
    weights = [a[3] for a in ACTIONS]
    # A few organisations act far more than the rest, as a real network's busiest councils do.
    org_weights = [50 if i < 10 else 1 for i in range(len(org_ids))]
    step = (END - START) / rows
    prev = audit.GENESIS_HASH
    table = AuditEvent.__table__
    moment = START
    started = time.perf_counter()
    pending = []
    for n in range(rows):
        # Strictly increasing times with jitter: like appends under the chain's lock.
        moment = moment + step * (0.5 + rng.random())
        at = moment.replace(microsecond=(moment.microsecond // 1000) * 1000)
        action, object_type, objects, _ = rng.choices(ACTIONS, weights)[0]
        object_id = str(rng.randint(1, objects))
        org = None if rng.random() < 0.03 else rng.choices(org_ids, org_weights)[0]
        actor = f"person{rng.randint(1, 3000)}@example.org"
        data = audit._canonical({"n": n, "note": "benchmark"} if n % 7 else
                                {"before": {"status": "admitted"}, "after": {"status": "suspended"}})
        ip = f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        digest = audit.compute_hash(prev, at.isoformat(), None, actor, org, action, object_type, object_id,
                                    data, ip)
        pending.append({"occurred_at": at, "actor_user_id": None, "actor_label": actor, "organisation_id": org,
                        "action": action, "object_type": object_type, "object_id": object_id, "data": data,
                        "ip_address": ip, "prev_hash": prev, "hash": digest})
        prev = digest
        if len(pending) == batch:
            db.session.execute(insert(table), pending)
            db.session.commit()
            pending = []
            done = n + 1
            rate = done / (time.perf_counter() - started)
            print(f"\r  inserted {done:,} of {rows:,} ({rate:,.0f} rows/s)", end="", flush=True)
    if pending:
        db.session.execute(insert(table), pending)
        db.session.commit()
    print(f"\r  inserted {rows:,} rows in {time.perf_counter() - started:,.1f}s" + " " * 20)
    busiest = db.session.execute(select(AuditEvent.organisation_id, func.count()).where(
        AuditEvent.organisation_id.is_not(None)).group_by(AuditEvent.organisation_id)
        .order_by(func.count().desc()).limit(1)).one()[0]
    quietest = db.session.execute(select(AuditEvent.organisation_id, func.count()).where(
        AuditEvent.organisation_id.is_not(None)).group_by(AuditEvent.organisation_id)
        .order_by(func.count()).limit(1)).one()[0]
    return {"busiest": busiest, "quietest": quietest}


def analyse() -> None:
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("ANALYZE audit_events"))
        db.session.execute(text("ANALYZE organisations"))
    else:
        db.session.execute(text("ANALYZE"))
    db.session.commit()


def plan_summary(plan: str) -> str:
    """The plan's steps in a few words: 'Limit > Index Scan Backward using ix_audit_events_action'."""
    if db.session.get_bind().dialect.name == "postgresql":
        steps = []
        for line in plan.splitlines():
            node = line.strip().lstrip("->").strip()
            if not node or node.startswith(("Filter", "Index Cond", "Sort Key", "Hash Cond", "Join Filter",
                                             "Rows Removed", "Cache", "Recheck", "Presorted", "Full-sort")):
                continue
            node = node.split("  (cost")[0]
            if "on organisations" in node or node.startswith(("Memoize", "Nested Loop")):
                continue
            steps.append(node.replace(" on audit_events", ""))
        return " > ".join(steps)
    return " | ".join(line for line in plan.splitlines() if "organisations" not in line)


def timed(label: str, call, repeat: int) -> tuple[str, int, float]:
    call()  # warm: the first run reads from disk, the page is read warm in practice
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - started) * 1000)
        db.session.rollback()
    return label, result, statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="how many events (default 1,000,000)")
    parser.add_argument("--database-url", help="PostgreSQL URL of a database to DROP and create (default: SQLite file)")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per executemany (default 10,000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per query; the median is shown")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--verify", action="store_true", help="also time the whole-chain check (audit verify)")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite file (its path is printed)")
    args = parser.parse_args()

    folder = None
    url = args.database_url
    if url is None:
        folder = tempfile.mkdtemp(prefix="dps-audit-benchmark-")
        url = f"sqlite:///{os.path.join(folder, 'audit.sqlite3')}"
    fresh_database(url)
    app = create_app(config(url))
    try:
        with app.app_context():
            from flask_migrate import upgrade

            print(f"Database: {make_url(url).render_as_string(hide_password=True)}")
            upgrade()
            facts = fill(args.rows, args.batch, args.seed)
            analyse()
            run(args, facts)
            if args.verify:
                started = time.perf_counter()
                result = audit.verify_chain()
                print(f"\nverify_chain: {'intact' if result.ok else 'BROKEN at ' + str(result.broken_id)}, "
                      f"{result.count:,} events in {time.perf_counter() - started:,.1f}s")
            db.session.remove()
            db.engine.dispose()
    finally:
        if folder and not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        elif folder:
            print(f"Kept {url}")
    return 0


def run(args, facts: dict) -> None:
    F = audit_log.LogFilters
    deep = 1_000  # an id near the start of the log: the oldest pages
    queries = [
        ("newest page", F(), {}),
        (f"deep page (before={deep})", F(), {"before": deep}),
        (f"newer page (after={deep})", F(), {"after": deep}),
        ("action = user.signed_in (common)", F(action="user.signed_in"), {}),
        ("action = award.confirmed (rare)", F(action="award.confirmed"), {}),
        ("action = award.confirmed, deep", F(action="award.confirmed"), {"before": deep * 50}),
        ("organisation (busiest)", F(organisation_id=facts["busiest"]), {}),
        ("organisation (quietest), deep", F(organisation_id=facts["quietest"]), {"before": deep * 50}),
        ("object = competition 42", F(object_type="competition", object_id="42"), {}),
        ("object type = call_off", F(object_type="call_off"), {}),
        ("date = one day (3 Jun 2024)", F(start=date(2024, 6, 3), end=date(2024, 6, 3)), {}),
        ("date = June 2021", F(start=date(2021, 6, 1), end=date(2021, 6, 30)), {}),
        ("date = 2020/21 (a year, old)", F(start=date(2020, 4, 1), end=date(2021, 3, 31)), {}),
        ("date from 1 Jan 2025", F(start=date(2025, 1, 1)), {}),
        ("date to 30 Jun 2020 (old)", F(end=date(2020, 6, 30)), {}),
        ("date June 2021 + action bid.submitted", F(start=date(2021, 6, 1), end=date(2021, 6, 30),
                                                    action="bid.submitted"), {}),
        ("organisation + action", F(organisation_id=facts["busiest"], action="invoice.recorded"), {}),
    ]
    rows = []
    for label, filters, keyset in queries:
        name, result, ms = timed(label, lambda: audit_log.page(filters, **keyset), args.repeat)
        plan = plan_summary(audit_log.explain(audit_log.page_statement(filters, **keyset)))
        db.session.rollback()
        rows.append((name, len(result.rows), ms, plan))
    name, result, ms = timed("filter lists (actions, types)", audit_log.choices, args.repeat)
    rows.append((name, len(result.actions) + len(result.object_types), ms,
                 "skip scans of the indexes (recursive CTE)"))
    name, result, ms = timed("organisation suggestions for 'co'", lambda: audit_log.suggest_organisations("co"),
                             args.repeat)
    rows.append((name, len(result), ms, "a range of ix_organisations_name_lower"))

    total = db.session.scalar(select(func.count()).select_from(AuditEvent))
    print(f"\n{total:,} events. Page size {audit_log.PAGE_SIZE}; median of {args.repeat} runs after one warm-up; "
          "each page = the page query + at most one EXISTS for the other direction.\n")
    width = max(len(r[0]) for r in rows)
    print(f"{'query':<{width}}  {'rows':>5}  {'ms':>8}  plan")
    print(f"{'-' * width}  {'-' * 5}  {'-' * 8}  {'-' * 40}")
    for name, count, ms, plan in rows:
        print(f"{name:<{width}}  {count:>5}  {ms:>8.2f}  {plan}")


if __name__ == "__main__":
    raise SystemExit(main())
