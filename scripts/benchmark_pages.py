#!/usr/bin/env python
"""Benchmark of the pages at national scale (issue 10, point 2).

Builds two databases with ``flask --app dps demo scale``, at factor 1 and factor 10 (10,000
suppliers, 500 buyer organisations, 20,000 competitions, 200,000 bids and 1,000,000 audit rows),
then requests each page in-process through Flask's test client, signed in as the role that sees
it, and prints a table: the page, its queries at 1× and 10×, its median time at 1× and 10×, that
time as a multiple of a bare route of the same app measured in the same run (it goes through the
same request hooks, sign-in and session included, and returns a word), and the page's size.

Targets (DESIGN 10): the same number of queries at 1× and 10× on every page; every page within
10× the bare route at 10×; audit log pages under 50 ms at 1,000,000 rows; pages that do not grow
with the data.

    .venv/bin/python scripts/benchmark_pages.py                          # PostgreSQL, builds both
    .venv/bin/python scripts/benchmark_pages.py --build-only             # build both, measure later
    .venv/bin/python scripts/benchmark_pages.py --reuse                  # measure existing databases
    .venv/bin/python scripts/benchmark_pages.py --sqlite                 # SQLite files in /tmp
    .venv/bin/python scripts/benchmark_pages.py --factors 0.1 1          # smaller, quicker

PostgreSQL: the databases ``bench_pages_<factor>`` on ``--postgres-url``'s server are DROPPED and
created again (unless ``--reuse``). A script, not a test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import event, func, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

CLOCK = "2024-11-18T09:30"
PASSWORD = "benchmark password of the national scale"
SECRET = "benchmark-secret-key-not-for-production"
BARE = "/__benchmark/bare"


def database_url(args, factor: float) -> str:
    name = f"bench_pages_{str(factor).replace('.', '_')}"
    if args.sqlite:
        return f"sqlite:////tmp/{name}.sqlite3"
    return make_url(args.postgres_url).set(drivername="postgresql+psycopg", database=name).render_as_string(
        hide_password=False)


def build(args, factor: float, url: str) -> None:
    """A fresh database at ``factor``: dropped, created, migrated and filled by ``demo scale``."""
    if args.sqlite:
        for suffix in ("", "-wal", "-shm"):
            Path(make_url(url).database + suffix).unlink(missing_ok=True)
    else:
        name = make_url(url).database
        with psycopg.connect(args.postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    env = dict(os.environ, DPS_DATABASE_URL=url, DPS_CLOCK=CLOCK, DPS_SECRET_KEY=SECRET,
               DPS_LOG_LEVEL="WARNING")
    flask = [str(ROOT / ".venv/bin/flask"), "--app", "dps"]
    started = time.perf_counter()
    subprocess.run([*flask, "db", "upgrade"], env=env, check=True, cwd=ROOT, capture_output=True)
    subprocess.run([*flask, "demo", "scale", "--factor", str(factor), "--password", PASSWORD],
                   env=env, check=True, cwd=ROOT)
    print(f"built factor {factor} in {time.perf_counter() - started:.0f} s", file=sys.stderr)


class Pages:
    """The app on one database, a signed-in browser per role, and the pages' addresses."""

    def __init__(self, url: str):
        from dps import create_app

        self.app = create_app({
            "DPS_DATABASE_URL": url, "DPS_SECRET_KEY": SECRET, "DPS_CLOCK": CLOCK,
            "DPS_SMTP_URL": None, "DPS_LOG_LEVEL": "WARNING", "DPS_STORAGE_URL": "file:///tmp/bench_pages_docs",
        })
        self.app.add_url_rule(BARE, "benchmark_bare", lambda: "bare")
        self.queries = 0

        from dps.extensions import db

        with self.app.app_context():
            event.listen(db.engine, "before_cursor_execute", self._count)
            self.addresses = self._addresses()
        self.browsers = {role: self._signed_in(email) for role, email in self.emails.items()}
        self.browsers["public"] = self.app.test_client()

    def _count(self, *_args) -> None:
        self.queries += 1

    def _addresses(self) -> list[tuple[str, str, str]]:
        """(page, role, path): the busiest buyer, supplier and competition, so each page is at
        its largest."""
        from dps.extensions import db
        from dps.models import Agreement, CallOff, Competition, Invitation, Organisation, User
        from dps.models.audit import AuditEvent

        session = db.session
        agreement = session.scalars(select(Agreement).order_by(Agreement.id)).first()
        buyer_org = session.scalar(select(Competition.buyer_organisation_id).group_by(
            Competition.buyer_organisation_id).order_by(func.count().desc()).limit(1))
        supplier_org = session.scalar(select(Invitation.organisation_id).group_by(
            Invitation.organisation_id).order_by(func.count().desc()).limit(1))
        competition = session.scalar(select(Invitation.competition_id).join(Competition).where(
            Competition.buyer_organisation_id == buyer_org).group_by(Invitation.competition_id)
            .order_by(func.count().desc()).limit(1))
        supplier_competition = session.scalar(select(Invitation.competition_id).where(
            Invitation.organisation_id == supplier_org).order_by(Invitation.id.desc()).limit(1))
        call_off = session.scalar(select(CallOff.id).where(CallOff.buyer_organisation_id == buyer_org)
                                  .order_by(CallOff.id.desc()).limit(1))
        busy_org = session.scalar(select(AuditEvent.organisation_id).where(
            AuditEvent.organisation_id.is_not(None)).group_by(AuditEvent.organisation_id)
            .order_by(func.count().desc()).limit(1))
        busy_name = session.get(Organisation, busy_org).name
        last_day = session.scalar(select(func.max(CallOff.starts_on)))

        def email_of(org_id: int, role: str) -> str:
            return session.scalar(select(User.email).where(User.organisation_id == org_id, User.role == role)
                                  .order_by(User.id).limit(1))

        team_email = session.scalar(select(User.email).where(User.role == "dps_admin").order_by(User.id).limit(1))
        self.emails = {"team": team_email, "buyer": email_of(buyer_org, "buyer"),
                       "supplier": email_of(supplier_org, "supplier")}
        ref = agreement.reference
        return [
            ("bare route", "public", BARE),
            ("home", "public", "/"),
            ("agreements", "public", "/agreements"),
            ("agreement", "public", f"/agreements/{ref}"),
            ("who is on the agreement", "public", f"/agreements/{ref}/suppliers"),
            ("… searched by name", "public", f"/agreements/{ref}/suppliers?q=co"),
            ("a lot", "public", f"/agreements/{ref}/lots/1"),
            ("OCDS releases, a month", "public",
             f"/ocds/releases.json?from={last_day.replace(day=1)}&to={last_day}"),
            ("team dashboard", "team", "/team/"),
            ("team suppliers", "team", "/team/suppliers"),
            ("applications queue", "team", "/team/applications"),
            ("accounts", "team", "/team/accounts"),
            ("members", "team", "/team/members"),
            ("audit log, first page", "team", "/team/audit"),
            ("audit log, one organisation", "team", f"/team/audit?organisation={busy_name}"),
            ("budget", "team", "/team/budget"),
            ("exports", "team", "/team/exports"),
            ("buyer dashboard", "buyer", "/buyer/"),
            ("buyer competitions", "buyer", "/buyer/competitions"),
            ("a competition (most invited)", "buyer", f"/buyer/competitions/{competition}"),
            ("buyer call-offs", "buyer", "/buyer/call-offs"),
            ("a call-off", "buyer", f"/buyer/call-offs/{call_off}"),
            ("supplier dashboard", "supplier", "/supplier/"),
            ("supplier invitations", "supplier", "/supplier/competitions"),
            ("an invitation", "supplier", f"/supplier/competitions/{supplier_competition}"),
        ]

    def _signed_in(self, email: str):
        browser = self.app.test_client()
        page = browser.get("/sign-in").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        response = browser.post("/sign-in", data={"csrf_token": token, "email": email, "password": PASSWORD})
        if response.status_code != 302:
            raise SystemExit(f"could not sign in as {email}: {response.status_code}")
        return browser

    def measure(self, role: str, path: str, repeat: int) -> tuple[int, float, int, int]:
        """(queries, median ms, bytes, status) of ``repeat`` requests, after one to warm up."""
        browser = self.browsers[role]
        browser.get(path)
        times, queries = [], set()
        for _ in range(repeat):
            self.queries = 0
            started = time.perf_counter()
            response = browser.get(path)
            body = response.get_data()
            times.append((time.perf_counter() - started) * 1000)
            queries.add(self.queries)
        return max(queries), statistics.median(times), len(body), response.status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a server to create the benchmark databases on (default: %(default)s)")
    parser.add_argument("--sqlite", action="store_true", help="SQLite files in /tmp instead of PostgreSQL")
    parser.add_argument("--factors", nargs=2, type=float, default=[1, 10], metavar=("SMALL", "LARGE"))
    parser.add_argument("--reuse", action="store_true", help="measure databases built by an earlier run")
    parser.add_argument("--build-only", action="store_true", help="build the databases, measure nothing")
    parser.add_argument("--repeat", type=int, default=15, help="requests per page (default: %(default)s)")
    args = parser.parse_args()
    if args.build_only:
        for factor in args.factors:
            build(args, factor, database_url(args, factor))
        return

    results = []
    for factor in args.factors:
        url = database_url(args, factor)
        if args.reuse:  # bring an earlier run's database up to the code's migrations
            env = dict(os.environ, DPS_DATABASE_URL=url, DPS_SECRET_KEY=SECRET, DPS_LOG_LEVEL="WARNING")
            subprocess.run([str(ROOT / ".venv/bin/flask"), "--app", "dps", "db", "upgrade"], env=env, check=True,
                           cwd=ROOT, capture_output=True)
        else:
            build(args, factor, url)
        pages = Pages(url)
        results.append({name: pages.measure(role, path, args.repeat) for name, role, path in pages.addresses})

    small, large = results
    bare = large["bare route"][1]
    label_small, label_large = (f"{f:g}×" for f in args.factors)
    print(f"\n{'PostgreSQL' if not args.sqlite else 'SQLite'}, {os.cpu_count()} cores; median of {args.repeat}"
          f" requests; bare route {small['bare route'][1]:.1f} ms at {label_small}, {bare:.1f} ms at {label_large}\n")
    print(f"| page | queries {label_small} | queries {label_large} | ms {label_small} | ms {label_large} "
          f"| × bare at {label_large} | KB {label_small} | KB {label_large} |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for name in small:
        if name == "bare route":
            continue
        (q1, ms1, b1, s1), (q2, ms2, b2, s2) = small[name], large[name]
        flag = "" if q1 == q2 else " ≠"
        status = "" if s1 == s2 == 200 else f" (HTTP {s1}/{s2})"
        print(f"| {name}{status} | {q1} | {q2}{flag} | {ms1:.1f} | {ms2:.1f} | {ms2 / bare:.1f} "
              f"| {b1 / 1024:.0f} | {b2 / 1024:.0f} |")


if __name__ == "__main__":
    main()
