#!/usr/bin/env python
"""Time the public OCDS endpoints and the team's OCDS exports on benchmark data (issue 10).

Run it on a database filled by ``flask --app dps demo scale`` with the same DPS_CLOCK, e.g.

    DPS_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/bench_ocds DPS_CLOCK=2024-06-03T09:00 \\
        .venv/bin/flask --app dps demo scale --factor 10
    .venv/bin/python scripts/benchmark_ocds.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_ocds

Each page is requested in-process (Flask's test client, so no network and no server) against a
bare route of the same app measured in the same run: the first request warms up, one more counts
the SQL statements, then ``--repeat`` are timed and the median is shown. The exports are the
team's release and record packages of ``--export-from``/``--export-to``, written once each to a
throw-away file, timed and counted the same way.

A script, not a test: the figures depend on the machine and the load on it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_app(database_url: str, clock: str):
    from dps import create_app

    app = create_app({"DPS_DATABASE_URL": database_url, "DPS_SECRET_KEY": "benchmark-only-not-a-secret",
                      "DPS_CLOCK": clock, "DPS_SMTP_URL": None, "DPS_LOG_LEVEL": "WARNING"})
    app.add_url_rule("/benchmark/bare", "benchmark_bare", lambda: "ok")
    return app


class Statements:
    """Counts the SQL statements the app's engine runs while it is on."""

    def __init__(self, app):
        from dps.extensions import db

        with app.app_context():
            self.engine = db.engine
        self.count = 0

    def _seen(self, *args) -> None:
        self.count += 1

    def __enter__(self):
        self.count = 0
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


def page(app, client, path: str, repeat: int) -> tuple[int, float, int, dict | None]:
    """(queries, median ms, bytes, the JSON answer) of GET ``path``."""
    client.get(path)
    with Statements(app) as statements:
        response = client.get(path)
    if response.status_code != 200:
        raise SystemExit(f"{path}: {response.status_code} {response.get_data(as_text=True)[:300]}")
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(path).get_data()
        times.append(time.perf_counter() - started)
    return statements.count, statistics.median(times) * 1000, len(response.get_data()), response.get_json(silent=True)


def export(app, kind: str, start: date, end: date) -> tuple[int, float, int, int]:
    """(queries, ms, bytes, releases or records) of the team's export of ``kind``."""
    from dps.exports import Filters, ocds

    with app.app_context(), tempfile.TemporaryFile() as out, Statements(app) as statements:
        started = time.perf_counter()
        written = ocds.write_package(kind, Filters(start, end), out)
        seconds = time.perf_counter() - started
        return statements.count, seconds * 1000, out.tell(), written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--clock", default="2024-06-03T09:00", help="the DPS_CLOCK the data was built with")
    parser.add_argument("--from", dest="start", default="2024-05-01", help="the public pages' period (18 days)")
    parser.add_argument("--to", dest="end", default="2024-05-18")
    parser.add_argument("--export-from", default="2024-01-01", help="the exports' period (a quarter)")
    parser.add_argument("--export-to", default="2024-03-31")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--no-exports", action="store_true")
    args = parser.parse_args()

    app = make_app(args.database_url, args.clock)
    client = app.test_client()
    rows = []
    queries, bare, size, _ = page(app, client, "/benchmark/bare", args.repeat * 4)
    rows.append(("bare route", queries, bare, size))
    period = f"from={args.start}&to={args.end}"
    for label, path in ((f"releases {args.start} to {args.end}", f"/ocds/releases.json?{period}"),
                        (f"records {args.start} to {args.end}", f"/ocds/records.json?{period}"),
                        ("releases, no period", "/ocds/releases.json")):
        queries, ms, size, body = page(app, client, path, args.repeat)
        rows.append((f"{label}, page 1", queries, ms, size))
        later = (body or {}).get("links", {}).get("next")
        if later:
            address = urlsplit(later)
            queries, ms, size, _ = page(app, client, f"{address.path}?{address.query}", args.repeat)
            rows.append((f"{label}, page 2", queries, ms, size))
    print(f"{'page':<42} {'queries':>7} {'median ms':>10} {'x bare':>7} {'KB':>8}")
    for label, queries, ms, size in rows:
        print(f"{label:<42} {queries:>7} {ms:>10.1f} {ms / bare:>7.1f} {size / 1024:>8.0f}")
    if args.no_exports:
        return
    start, end = date.fromisoformat(args.export_from), date.fromisoformat(args.export_to)
    print(f"\n{'team export ' + args.export_from + ' to ' + args.export_to:<42} {'queries':>7} {'s':>10} "
          f"{'items':>7} {'MB':>8}")
    for kind in ("releases", "records"):
        queries, ms, size, written = export(app, kind, start, end)
        print(f"{kind:<42} {queries:>7} {ms / 1000:>10.2f} {written:>7} {size / 1024 / 1024:>8.1f}")


if __name__ == "__main__":
    main()
