#!/usr/bin/env python
"""Benchmark of the evaluation pages at real size (issue 11, point 4).

Builds one throw-away database holding two mini-competitions, one with 100 bids and one with
1,000, each with three panel members (two evaluators who have marked every bid and submitted,
one who declared a conflict), three criteria (quality, social value, price) and every score
moderated: the state in which every evaluation page shows the most (the award is still to be
decided). The agreement, accounts and budget are made through the services; the bids, marks and
moderated scores go straight into their tables (benchmark data, as tests/competing.py makes it).

Then it requests each evaluation page in-process through Flask's test client, signed in as an
evaluator, and prints a table: the page, its queries at 100 and at 1,000 bids, its median time
at each, that time at 1,000 as a multiple of a bare route of the same app measured in the same
run (through the same request hooks, session and sign-in included, returning a word), and the
page's size at 1,000.

Targets: the same number of queries at 100 and 1,000 bids; every page within 10× the bare
route; no page growing with the number of bids (the lists are pages of 50).

    .venv/bin/python scripts/benchmark_evaluation.py                      # SQLite and PostgreSQL
    .venv/bin/python scripts/benchmark_evaluation.py --databases sqlite
    .venv/bin/python scripts/benchmark_evaluation.py --sizes 100 1000 --repeat 25

PostgreSQL: the database named in ``--postgres-url`` is DROPPED and created again: name one that
holds nothing you want. SQLite: a file in a temporary folder, deleted at the end. A script, not a
test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import event, insert, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from dps import clock, create_app, questionnaire  # noqa: E402
from dps.extensions import db  # noqa: E402
from dps.models import (  # noqa: E402
    Bid,
    BidAnswer,
    Competition,
    Criterion,
    Invitation,
    ModeratedScore,
    Organisation,
    PanelMember,
    Score,
)
from dps.models.agreements import PCR_2015_DPS  # noqa: E402
from dps.services import accounts, agreements, budget, evaluation, installation, questionnaires  # noqa: E402

PASSWORD = "benchmark password of the evaluation pages"
SECRET = "benchmark-secret-key-not-for-production"
NOW = "2024-06-17T10:00"
BARE = "/__benchmark/bare"
CRITERIA = (("quality", "Approach and method", 40), ("social_value", "Social value", 20), ("price", "Price", 40))


def _config(url: str, storage: Path) -> dict:
    return {"DPS_DATABASE_URL": url, "DPS_SECRET_KEY": SECRET, "DPS_CLOCK": NOW, "DPS_STORAGE_URL": f"file://{storage}",
            "DPS_SMTP_URL": None, "DPS_LOG_LEVEL": "WARNING"}


def _competition(lot_id: int, body_id: int, creator_id: int, allocation_id: int, number: int, bids: int,
                 panel: list) -> int:
    """A competition with ``bids`` submitted bids, marked by the first two of ``panel`` and
    moderated; the third declared a conflict."""
    deadline = clock.parse_london("2024-06-14T12:00")
    opened = clock.parse_london("2024-06-17T09:00")
    competition = Competition(
        reference=f"CCIN-MC-2024-{number:04d}", lot_id=lot_id, buyer_organisation_id=body_id, created_by_id=creator_id,
        title=f"Community wealth building review ({bids:,} bids)", description="A review.",
        estimated_value_pence=10_000_00, allocation_id=allocation_id, clarification_deadline=deadline - timedelta(days=4),
        tender_deadline=deadline, standstill=True, standstill_days=10, price_formula="lowest_price_ratio",
        created_at=clock.parse_london("2024-06-01T09:00"), published_at=clock.parse_london("2024-06-01T10:00"),
        opened_at=opened, opened_by_id=creator_id)
    for position, (kind, title, weight) in enumerate(CRITERIA, start=1):
        competition.criteria.append(Criterion(position=position, kind=kind, title=title, weight=weight))
    db.session.add(competition)
    db.session.flush()
    scored = [c.id for c in competition.criteria if c.kind != "price"]
    members = []
    for n, user in enumerate(panel):
        member = PanelMember(competition_id=competition.id, user_id=user.id, declared_at=opened, conflicted=(n == 2),
                             declaration="My partner works for one of the bidders." if n == 2 else "No conflict.",
                             scores_submitted_at=opened + timedelta(hours=20 + n) if n < 2 else None)
        db.session.add(member)
        members.append(member)
    orgs = [Organisation(name=f"Bidder {number}-{n:04d} Ltd", kind="supplier", created_at=competition.published_at)
            for n in range(bids)]
    db.session.add_all(orgs)
    db.session.flush()
    submitted = deadline - timedelta(days=1)
    db.session.execute(insert(Invitation), [
        {"competition_id": competition.id, "organisation_id": org.id, "invited_at": competition.published_at}
        for org in orgs])
    db.session.execute(insert(Bid), [
        {"competition_id": competition.id, "organisation_id": org.id, "state": "submitted",
         "price_pence": 8_000_00 + 37_13 * n, "updated_at": submitted, "submitted_at": submitted,
         "receipt_reference": f"R-{competition.id}-{org.id}"} for n, org in enumerate(orgs)])
    bid_ids = list(db.session.scalars(select(Bid.id).where(Bid.competition_id == competition.id).order_by(Bid.id)))
    db.session.execute(insert(BidAnswer), [
        {"bid_id": bid, "criterion_id": c, "text": f"Our answer, bid {n}, criterion {c}: " + "evidence " * 40}
        for n, bid in enumerate(bid_ids) for c in scored])
    marked = opened + timedelta(hours=2)
    db.session.execute(insert(Score), [
        {"bid_id": bid, "criterion_id": c, "panel_member_id": member.id, "score": (40 + 7 * n + 5 * m) % 100,
         "justification": f"Mark of evaluator {m + 1}: the method is clear and the evidence good.", "scored_at": marked}
        for m, member in enumerate(members[:2]) for n, bid in enumerate(bid_ids) for c in scored])
    db.session.execute(insert(ModeratedScore), [
        {"bid_id": bid, "criterion_id": c, "score": (42 + 7 * n) % 100, "justification": "Agreed at moderation.",
         "departure_reason": None, "moderated_at": marked + timedelta(days=1), "moderated_by_id": creator_id}
        for n, bid in enumerate(bid_ids) for c in scored])
    return competition.id


def build(url: str, storage: Path, sizes: list[int]) -> dict:
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
        panel = [accounts.create_user(email=f"{name.lower()}@bench.example.org", name=f"{name} Evaluator", role="buyer",
                                      organisation=body, password=PASSWORD, actor_label="benchmark")
                 for name in ("Alice", "Bob", "Carol")]
        year = budget.create_year(team, 2024)
        line = budget.create_line(team, year, "Policy Labs", 1_000_000_00, None)
        allocation = budget.allocate(team, line, body, "Community wealth building lab", 500_000_00)
        db.session.commit()
        competitions = {}
        for number, size in enumerate(sizes, start=1):
            competitions[size] = _competition(lot.id, body.id, panel[0].id, allocation.id, number, size, panel)
            db.session.commit()
            print(f"built the competition with {size:,} bids", file=sys.stderr)
        db.session.remove()
        db.engine.dispose()
    return competitions


class Pages:
    """The app on the benchmark database, an evaluator signed in, and a query counter."""

    def __init__(self, url: str, storage: Path):
        self.app = create_app(_config(url, storage))
        self.app.add_url_rule(BARE, "benchmark_bare", lambda: "bare")
        self.queries = 0
        with self.app.app_context():
            event.listen(db.engine, "before_cursor_execute", self._count)
        self.browser = self.app.test_client()
        page = self.browser.get("/sign-in").get_data(as_text=True)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        response = self.browser.post("/sign-in", data={"csrf_token": token, "email": "alice@bench.example.org",
                                                       "password": PASSWORD})
        if response.status_code != 302:
            raise SystemExit(f"could not sign in: {response.status_code}")

    def _count(self, *_args) -> None:
        self.queries += 1

    def addresses(self, competition_id: int) -> list[tuple[str, str]]:
        with self.app.app_context():
            competition = db.session.get(Competition, competition_id)
            results = evaluation.results(competition)
            middle = results[len(results) // 2].bid.id
            second = results[1].bid.id
        base = f"/buyer/competitions/{competition_id}"
        matrix = self.browser.get(f"{base}/evaluation/matrix").get_data(as_text=True)
        ranking = self.browser.get(f"{base}/evaluation/ranking").get_data(as_text=True)

        def following(page: str, name: str) -> str:
            return re.search(rf'href="([^"]*{name}\?after=[^"]+)"', page).group(1).replace("&amp;", "&")

        return [
            ("overview (panel, progress, award)", f"{base}/evaluation"),
            ("who bid", f"{base}/evaluation/bidders"),
            ("matrix, first page", f"{base}/evaluation/matrix"),
            ("matrix, second page", following(matrix, "matrix")),
            ("one bid: content and marks", f"{base}/evaluation/bids/{middle}"),
            ("one bid: moderation", f"{base}/evaluation/bids/{middle}/moderation"),
            ("ranking, first page", f"{base}/evaluation/ranking"),
            ("ranking, second page", following(ranking, "ranking")),
            ("the award, to the second", f"{base}/award?bid={second}"),
        ]

    def measure(self, path: str, repeat: int) -> tuple[int, float, int]:
        """(queries, median ms, bytes) of ``repeat`` requests, after one to warm up."""
        response = self.browser.get(path)
        if response.status_code != 200:
            raise SystemExit(f"{path} answered {response.status_code}")
        times, queries = [], set()
        for _ in range(repeat):
            self.queries = 0
            started = time.perf_counter()
            body = self.browser.get(path).get_data()
            times.append((time.perf_counter() - started) * 1000)
            queries.add(self.queries)
        return max(queries), statistics.median(times), len(body)


def run(url: str, storage: Path, sizes: list[int], repeat: int) -> None:
    competitions = build(url, storage, sizes)
    pages = Pages(url, storage)
    small, large = sizes
    _, bare, _ = pages.measure(BARE, repeat * 4)
    rows = []
    for (label, small_path), (_, large_path) in zip(pages.addresses(competitions[small]),
                                                    pages.addresses(competitions[large])):
        queries_small, ms_small, _ = pages.measure(small_path, repeat)
        queries_large, ms_large, size = pages.measure(large_path, repeat)
        rows.append((label, queries_small, queries_large, ms_small, ms_large, size))
    with pages.app.app_context():
        db.engine.dispose()
    dialect = make_url(url).get_backend_name()
    print(f"\n{dialect}: bare route {bare:.1f} ms (median of {repeat * 4})")
    header = (f"{'page':<36} {'queries ' + f'{small:,}':>13} {'queries ' + f'{large:,}':>13} "
              f"{'ms ' + f'{small:,}':>9} {'ms ' + f'{large:,}':>9} {'× bare':>7} {'KB':>6}")
    print(header)
    print("-" * len(header))
    for label, queries_small, queries_large, ms_small, ms_large, size in rows:
        flag = "" if queries_small == queries_large else "  (queries differ)"
        print(f"{label:<36} {queries_small:>13} {queries_large:>13} {ms_small:>9.1f} {ms_large:>9.1f} "
              f"{ms_large / bare:>7.1f} {size / 1024:>6.0f}{flag}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", nargs="+", choices=("sqlite", "postgresql"), default=["sqlite", "postgresql"])
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/dps_bench_evaluation",
                        help="DROPPED and created again (default: %(default)s)")
    parser.add_argument("--sizes", nargs=2, type=int, default=[100, 1000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--repeat", type=int, default=15, help="requests per page (default: %(default)s)")
    args = parser.parse_args()
    print(f"{platform.node()}: {platform.processor() or platform.machine()}, Python {platform.python_version()}",
          file=sys.stderr)
    folder = Path(tempfile.mkdtemp(prefix="dps-bench-evaluation-"))
    try:
        for kind in args.databases:
            storage = folder / f"documents-{kind}"
            storage.mkdir()
            if kind == "sqlite":
                url = f"sqlite:///{folder / 'bench.sqlite3'}"
            else:
                parsed = make_url(args.postgres_url)
                admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
                    conn.execute(f'CREATE DATABASE "{parsed.database}"')
                url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
            run(url, storage, args.sizes, args.repeat)
            if kind == "postgresql":
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
