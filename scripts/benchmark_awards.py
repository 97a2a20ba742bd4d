"""Benchmark of the write path under real concurrent HTTP (issue 10, point 6).

Builds a throw-away database with N competitions whose awards are ready to confirm (standstill
over), all charged to one allocation with room for every one, starts gunicorn (4 workers,
4 threads each) on it, and fires at once: every award confirmation (a buyer), mixed with the DPS
team changing that allocation's amount and its line's total (the kinds of request that used to
deadlock). It prints one line per database: confirmed awards per second, request latency (p50,
p95), how long each transaction held the audit chain's lock (read from the server's DEBUG log,
`dps.audit.lock`), the number of failed requests (5xx), and whether every level held, counted from
the rows (call-offs within the allocation, allocations within the line, the audit chain intact).

A script, not a test: timings depend on the machine. Run it from the project folder:

    .venv/bin/python scripts/benchmark_awards.py                       # PostgreSQL and SQLite
    .venv/bin/python scripts/benchmark_awards.py --awards 400 --databases postgresql
    .venv/bin/python scripts/benchmark_awards.py --postgres-url postgresql://postgres@127.0.0.1:5432/dps_bench_awards

PostgreSQL: the database named in ``--postgres-url`` is DROPPED and created again: name one that
holds nothing you want. SQLite: a file in a temporary folder, deleted at the end.

The competitions, bids and awards go straight into their tables (this is benchmark data, as in
the award race test); the agreement, accounts and budget are made through the services.
"""
from __future__ import annotations

import argparse
import http.client
import http.cookiejar
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from dps import audit, clock, create_app, questionnaire  # noqa: E402
from dps.extensions import db  # noqa: E402
from dps.models import (  # noqa: E402
    Allocation,
    Award,
    Bid,
    BudgetLine,
    CallOff,
    Competition,
    Criterion,
    Invitation,
    Organisation,
    PanelMember,
    User,
)
from dps.models.agreements import PCR_2015_DPS  # noqa: E402
from dps.services import accounts, agreements, budget, installation, questionnaires  # noqa: E402

PASSWORD = "benchmark password of the award race"
NOW = "2024-07-01T09:00"
VALUE_PENCE = 1_000_00
SECRET = "benchmark-secret-key-not-for-production"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(url: str, storage: Path) -> dict:
    return {"DPS_DATABASE_URL": url, "DPS_SECRET_KEY": SECRET, "DPS_CLOCK": NOW, "DPS_STORAGE_URL": f"file://{storage}",
            "DPS_LOG_LEVEL": "WARNING"}


def build(url: str, storage: Path, awards: int) -> dict:
    app = create_app(_config(url, storage))
    with app.app_context():
        upgrade()
        clock.set_simulated(clock.parse_london(NOW), frozen=True)
        team = installation.set_up(accountable_body_name="Oldham Council", nation="England",
                                   admin_email="team@bench.example.org", admin_name="Bench Team", password=PASSWORD)
        body = team.organisation
        body.membership = "full"
        agreement = agreements.create_agreement(
            team, reference="CCIN-DPS-2020", title="CCIN DPS", description="", regime=PCR_2015_DPS,
            starts_on=date(2020, 4, 1), ends_on=date(2025, 3, 31), nation="England", accountable_body_id=body.id)
        lot = agreements.create_lot(team, agreement, number=1, title="Research", description="Research.", scope="",
                                    cpv_codes=["73000000-2"], selection_criteria="Criteria.",
                                    public_liability_min_pence=0, professional_indemnity_min_pence=0,
                                    case_studies_required=0)
        version = questionnaires.upload(team, agreement, questionnaire.shipped_text("ccin-sq-2020-04"))
        questionnaires.publish(team, version)
        agreements.publish_agreement(team, agreement)
        buyer = accounts.create_user(email="buyer@bench.example.org", name="Bench Buyer", role="buyer",
                                     organisation=body, password=PASSWORD, actor_label="benchmark")
        supplier_org = Organisation(name="Brightwater Research Ltd", kind="supplier", created_at=clock.now())
        db.session.add(supplier_org)
        year = budget.create_year(team, 2024)
        line = budget.create_line(team, year, "Policy Labs", awards * VALUE_PENCE * 2, None)
        allocation = budget.allocate(team, line, body, "Community wealth building lab", awards * VALUE_PENCE)
        db.session.commit()
        decided_at = clock.parse_london("2024-06-17T09:00")
        deadline = clock.parse_london("2024-06-14T12:00")
        ids = []
        for n in range(1, awards + 1):
            competition = Competition(
                reference=f"CCIN-MC-2024-{n:05d}", lot_id=lot.id, buyer_organisation_id=body.id, created_by_id=buyer.id,
                title=f"Review {n}", description="A review.", estimated_value_pence=VALUE_PENCE,
                allocation_id=allocation.id, clarification_deadline=deadline - timedelta(days=4),
                tender_deadline=deadline, standstill=True, standstill_days=10, price_formula="lowest_price_ratio",
                created_at=clock.parse_london("2024-06-01T09:00"), published_at=clock.parse_london("2024-06-01T10:00"),
                opened_at=decided_at, opened_by_id=buyer.id)
            competition.criteria.append(Criterion(position=1, kind="quality", title="Approach", weight=60))
            competition.criteria.append(Criterion(position=2, kind="price", title="Price", weight=30))
            competition.criteria.append(Criterion(position=3, kind="social_value", title="Social value", weight=10))
            db.session.add(competition)
            db.session.flush()
            db.session.add(Invitation(competition_id=competition.id, organisation_id=supplier_org.id,
                                      invited_at=competition.published_at))
            bid = Bid(competition_id=competition.id, organisation_id=supplier_org.id, state="submitted",
                      price_pence=VALUE_PENCE, updated_at=deadline - timedelta(days=1),
                      submitted_at=deadline - timedelta(days=1), receipt_reference=f"R-{competition.id}")
            db.session.add(bid)
            db.session.flush()
            db.session.add(PanelMember(competition_id=competition.id, user_id=buyer.id, declared_at=decided_at,
                                       conflicted=False, declaration="No conflict."))
            db.session.add(Award(competition_id=competition.id, bid_id=bid.id, value_pence=VALUE_PENCE,
                                 decided_at=decided_at, decided_by_id=buyer.id,
                                 standstill_ends_at=decided_at + timedelta(days=10)))
            ids.append(competition.id)
        db.session.commit()
        world = {"competitions": ids, "allocation": allocation.id, "line": line.id}
        db.session.remove()
        db.engine.dispose()
    return world


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


def _sign_in(base: str, email: str):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{base}/sign-in", timeout=30) as response:
        token = _csrf(response.read().decode())
    data = urllib.parse.urlencode({"email": email, "password": PASSWORD, "csrf_token": token}).encode()
    with opener.open(f"{base}/sign-in", data=data, timeout=30) as response:
        assert "Sign out" in response.read().decode(), f"could not sign in as {email}"
    return opener, "; ".join(f"{c.name}={c.value}" for c in jar)


def _post(port: int, path: str, cookie: str, fields: dict) -> tuple[int, float]:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", path, body=urllib.parse.urlencode(fields),
                           headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        response.read()
        return response.status, (time.perf_counter() - started) * 1000
    finally:
        connection.close()


def run(url: str, storage: Path, awards: int, team_changes: int, clients: int, log_path: Path) -> dict:
    world = build(url, storage, awards)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPS_")}
    env.update(_config(url, storage), DPS_LOG_LEVEL="DEBUG")
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", "4", "--threads", "4", "--preload",
             "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "dps:create_app()"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base}/sign-in", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        buyer, buyer_cookie = _sign_in(base, "buyer@bench.example.org")
        team, team_cookie = _sign_in(base, "team@bench.example.org")
        with buyer.open(f"{base}/buyer/competitions/{world['competitions'][0]}/evaluation", timeout=30) as response:
            buyer_token = _csrf(response.read().decode())
        with team.open(f"{base}/team/budget/allocations/{world['allocation']}", timeout=30) as response:
            team_token = _csrf(response.read().decode())
        requests = [(f"/buyer/competitions/{cid}/award/confirm", buyer_cookie, {"csrf_token": buyer_token}, "award")
                    for cid in world["competitions"]]
        # Team changes interleaved with the confirmations; each one is valid (it only raises).
        step = max(1, len(requests) // max(1, team_changes))
        for n in range(team_changes):
            if n % 2:
                change = (f"/team/budget/lines/{world['line']}/total", team_cookie,
                          {"csrf_token": team_token, "total": f"{awards * 2 * VALUE_PENCE // 100 + n + 1}"}, "team")
            else:
                change = (f"/team/budget/allocations/{world['allocation']}/amount", team_cookie,
                          {"csrf_token": team_token, "amount": f"{awards * VALUE_PENCE // 100 + n + 1}"}, "team")
            requests.insert(min(len(requests), (n + 1) * step), change)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            results = list(pool.map(lambda r: (r[3], *_post(port, r[0], r[1], r[2])), requests))
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    held = [float(m) for m in re.findall(r"audit chain lock held ([0-9.]+) ms", log_path.read_text(errors="replace"))]

    app = create_app(_config(url, storage))
    with app.app_context():
        allocation = db.session.get(Allocation, world["allocation"])
        line = db.session.get(BudgetLine, world["line"])
        call_offs = db.session.scalar(select(func.coalesce(func.sum(CallOff.value_pence), 0))
                                      .where(CallOff.allocation_id == allocation.id))
        confirmed = db.session.scalar(select(func.count()).select_from(Award).where(Award.confirmed_at.is_not(None)))
        allocated = db.session.scalar(select(func.sum(Allocation.amount_pence)).where(Allocation.line_id == line.id))
        levels = (call_offs == allocation.committed_pence <= allocation.amount_pence
                  and allocated == line.allocated_pence <= line.total_pence and audit.verify_chain().ok)
        db.session.remove()
        db.engine.dispose()
    latencies = sorted(ms for _, _, ms in results)
    return {
        "requests": len(results), "confirmed": confirmed, "wall": wall, "awards_per_s": confirmed / wall,
        "p50": statistics.median(latencies), "p95": latencies[int(0.95 * (len(latencies) - 1))],
        "errors": sum(1 for _, status, _ in results if status >= 500),
        "refused": sum(1 for _, status, _ in results if 400 <= status < 500),
        "held_p50": statistics.median(held) if held else float("nan"),
        "held_p95": sorted(held)[int(0.95 * (len(held) - 1))] if held else float("nan"),
        "held_max": max(held) if held else float("nan"), "levels": levels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--awards", type=int, default=200)
    parser.add_argument("--team-changes", type=int, default=40)
    parser.add_argument("--clients", type=int, default=16, help="Requests in flight at once.")
    parser.add_argument("--databases", default="postgresql,sqlite")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/dps_bench_awards")
    args = parser.parse_args()

    rows = []
    for kind in args.databases.split(","):
        work = Path(tempfile.mkdtemp(prefix="dps-bench-awards-"))
        try:
            if kind == "postgresql":
                url = make_url(args.postgres_url)
                admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
                    conn.execute(f'CREATE DATABASE "{url.database}"')
                database_url = url.render_as_string(hide_password=False)
            else:
                database_url = f"sqlite:///{work / 'bench.sqlite3'}"
            result = run(database_url, work / "documents", args.awards, args.team_changes, args.clients,
                         work / "gunicorn.log")
            rows.append((kind, result))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\n{args.awards} award confirmations and {args.team_changes} budget changes by the DPS team, "
          f"{args.clients} in flight at once, gunicorn 4 workers x 4 threads")
    print(f"{'database':<11}{'requests':>9}{'confirmed':>10}{'awards/s':>9}{'p50 ms':>8}{'p95 ms':>8}"
          f"{'lock p50 ms':>12}{'lock p95 ms':>12}{'lock max ms':>12}{'5xx':>5}{'4xx':>5}  levels held")
    for kind, r in rows:
        print(f"{kind:<11}{r['requests']:>9}{r['confirmed']:>10}{r['awards_per_s']:>9.1f}{r['p50']:>8.0f}{r['p95']:>8.0f}"
              f"{r['held_p50']:>12.2f}{r['held_p95']:>12.2f}{r['held_max']:>12.2f}{r['errors']:>5}{r['refused']:>5}"
              f"  {'yes' if r['levels'] else 'NO'}")


if __name__ == "__main__":
    main()
