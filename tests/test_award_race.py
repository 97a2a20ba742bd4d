"""Many awards confirmed at the same moment never overspend an allocation (DESIGN 5).

A real gunicorn server (several worker processes, several threads each) serves the app on
127.0.0.1; one signed-in buyer fires every confirmation at once over HTTP. The allocation has
room for fewer call-offs than there are awards. Afterwards the call-off rows themselves (not only
the running total) must fit in the allocation, and no competition may have two awards or two
call-offs. Runs on SQLite (the test's database file) and on PostgreSQL (DPS_TEST_DATABASE_URL).
"""
from __future__ import annotations

import http.client
import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from dps import audit, clock
from dps.extensions import db
from dps.models import Allocation, Award, CallOff, Competition, PanelMember
from tests.applying import make_dps
from tests.conftest import DEFAULT_NOW, TEST_PASSWORD, set_clock
from tests.competing import make_allocation, make_bid, make_competition

PROJECT_ROOT = Path(__file__).resolve().parent.parent
AWARDS = 20
VALUE_PENCE = 1_000_00
ALLOCATION_PENCE = 7_500_00  # room for 7 of the 20
FITS = ALLOCATION_PENCE // VALUE_PENCE
SERVER_START_SECONDS = 30
REQUEST_SECONDS = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _csrf(page_html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page_html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def _build(app, factory) -> dict:
    """AWARDS competitions on one allocation, each with an award whose standstill has ended."""
    dps = make_dps(app)
    buyer_org = factory.organisation(name="Plymouth City Council")
    buyer = factory.user("buyer", organisation_id=buyer_org, name="Alice Moreno")
    supplier_org = factory.organisation(kind="supplier", membership=None, name="Brightwater Research Ltd")
    factory.user("supplier", organisation_id=supplier_org)
    allocation = make_allocation(app, buyer_org, amount_pence=ALLOCATION_PENCE, cap_pence=None)
    competitions = []
    for n in range(1, AWARDS + 1):
        competition_id = make_competition(app, lot_id=dps["lot1"], buyer_organisation_id=buyer_org,
                                          creator_id=buyer["id"], allocation_id=allocation, number=n)
        bid_id = make_bid(app, competition_id, supplier_org, VALUE_PENCE)
        competitions.append((competition_id, bid_id))
    with app.app_context():
        decided_at = clock.parse_london("2024-06-17T09:00")
        for competition_id, bid_id in competitions:
            competition = db.session.get(Competition, competition_id)
            competition.opened_at, competition.opened_by_id = decided_at, buyer["id"]
            db.session.add(PanelMember(competition_id=competition_id, user_id=buyer["id"], declared_at=decided_at,
                                       conflicted=False, declaration="No conflict."))
            db.session.add(Award(competition_id=competition_id, bid_id=bid_id, value_pence=VALUE_PENCE,
                                 decided_at=decided_at, decided_by_id=buyer["id"],
                                 standstill_ends_at=decided_at + timedelta(days=10)))
        db.session.commit()
    # Every standstill has ended; the clock is frozen there for the server too (its state is in
    # the database, which the server reads).
    set_clock(app, "2024-07-01T09:00")
    return {"buyer": buyer, "allocation": allocation, "competitions": [c for c, _ in competitions]}


def _start_server(app, database_url: str, port: int, log_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPS_")}
    env.update({
        "DPS_DATABASE_URL": database_url,
        "DPS_SECRET_KEY": app.config["SECRET_KEY"],
        "DPS_CLOCK": DEFAULT_NOW,  # must match the test app's, or the server would restart the clock
        "DPS_STORAGE_URL": app.config["DPS_STORAGE_URL"],
        "DPS_BASE_URL": "http://dps.test",
        "DPS_LOG_LEVEL": "WARNING",
    })
    log = open(log_path, "wb")
    try:
        # --preload builds the app once and forks the workers from it: four separate processes,
        # each with its own connections (create_app opens none), started in seconds rather than
        # the quarter-minute four cold imports take on a small test machine.
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", "4", "--threads", "4", "--preload",
             "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--graceful-timeout", "5", "dps:create_app()"],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()  # the child has its own copy


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=5)


def _wait_until_serving(server: subprocess.Popen, base: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server stopped at start:\n{log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{base}/sign-in", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the server did not answer within {SERVER_START_SECONDS}s:\n{log_path.read_text(errors='replace')}")


def _sign_in(base: str, email: str) -> tuple[urllib.request.OpenerDirector, http.cookiejar.CookieJar]:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{base}/sign-in", timeout=10) as response:
        token = _csrf(response.read().decode())
    data = urllib.parse.urlencode({"email": email, "password": TEST_PASSWORD, "csrf_token": token}).encode()
    with opener.open(f"{base}/sign-in", data=data, timeout=10) as response:
        assert response.status == 200 and "Sign out" in response.read().decode(), "sign-in failed"
    return opener, jar


def _confirm(port: int, path: str, cookie: str, token: str, start: threading.Barrier) -> tuple[int, str, str]:
    """One confirmation POST on its own connection; the barrier releases them all together."""
    return _post(port, path, cookie, {"csrf_token": token}, start)


def test_concurrent_confirmations_never_exceed_the_allocation(app, factory, database_url, tmp_path):
    world = _build(app, factory)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "gunicorn.log"
    server = _start_server(app, database_url, port, log_path)
    try:
        _wait_until_serving(server, base, log_path)
        opener, jar = _sign_in(base, world["buyer"]["email"])
        tokens = {}
        for competition_id in world["competitions"]:
            with opener.open(f"{base}/buyer/competitions/{competition_id}/evaluation", timeout=10) as response:
                page = response.read().decode()
            assert "Confirm the award and create the call-off" in page
            tokens[competition_id] = _csrf(page)
        cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
        start = threading.Barrier(AWARDS)
        with ThreadPoolExecutor(max_workers=AWARDS) as pool:
            futures = [pool.submit(_confirm, port, f"/buyer/competitions/{cid}/award/confirm", cookie, tokens[cid], start)
                       for cid in world["competitions"]]
            responses = [f.result(timeout=REQUEST_SECONDS) for f in futures]
    finally:
        _stop(server)

    accepted = [r for r in responses if r[0] == 302 and "/buyer/call-offs/" in r[1]]
    refused = [r for r in responses if r[0] == 400]
    assert len(accepted) == FITS, [(status, location) for status, location, _ in responses]
    assert len(refused) == AWARDS - FITS
    # A refused award tells the buyer how much is left: 7 × £1,000 committed, £500 of £7,500 left.
    for _, _, page in refused:
        assert "There is not enough left in “Community wealth building lab”: £500.00 remains" in page

    with app.app_context():
        allocation = db.session.get(Allocation, world["allocation"])
        rows = db.session.scalars(select(CallOff).where(CallOff.allocation_id == allocation.id)).all()
        total = sum(row.value_pence for row in rows)
        assert len(rows) == FITS
        assert total <= allocation.amount_pence
        assert total == allocation.committed_pence == FITS * VALUE_PENCE
        # No competition has two awards or two call-offs; each confirmed award has its call-off.
        assert db.session.execute(select(Award.competition_id).group_by(Award.competition_id)
                                  .having(func.count() > 1)).all() == []
        assert db.session.execute(select(CallOff.competition_id).group_by(CallOff.competition_id)
                                  .having(func.count() > 1)).all() == []
        confirmed = db.session.scalars(select(Award).where(Award.confirmed_at.is_not(None))).all()
        assert sorted(a.id for a in confirmed) == sorted(row.award_id for row in rows)
        # Every process appended to the one audit chain, in order.
        assert audit.verify_chain().ok


TEAM_CHANGES = 12


def _post(port: int, path: str, cookie: str, fields: dict, start: threading.Barrier) -> tuple[int, str, str]:
    body = urllib.parse.urlencode(fields)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_SECONDS)
    try:
        start.wait(timeout=REQUEST_SECONDS)
        connection.request("POST", path, body=body, headers={
            "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        return response.status, response.getheader("Location") or "", response.read().decode(errors="replace")
    finally:
        connection.close()


def test_confirmations_and_the_teams_budget_changes_at_once_never_fail_or_overspend(app, factory, database_url,
                                                                                    tmp_path):
    """Buyers confirm awards while the DPS team changes the same allocation's amount and its
    line's total: different kinds of request on the same rows, at the same moment. None may fail
    (no 5xx: no deadlock between them), and every level must hold, counted from the rows."""
    world = _build(app, factory)
    team = factory.user("dps_admin", email="team@dps.example.org")
    with app.app_context():
        line_id = db.session.get(Allocation, world["allocation"]).line_id
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "gunicorn.log"
    server = _start_server(app, database_url, port, log_path)
    try:
        _wait_until_serving(server, base, log_path)
        buyer, buyer_jar = _sign_in(base, world["buyer"]["email"])
        tokens = {}
        for competition_id in world["competitions"]:
            with buyer.open(f"{base}/buyer/competitions/{competition_id}/evaluation", timeout=10) as response:
                tokens[competition_id] = _csrf(response.read().decode())
        staff, staff_jar = _sign_in(base, team["email"])
        with staff.open(f"{base}/team/budget/allocations/{world['allocation']}", timeout=10) as response:
            team_token = _csrf(response.read().decode())
        buyer_cookie = "; ".join(f"{c.name}={c.value}" for c in buyer_jar)
        team_cookie = "; ".join(f"{c.name}={c.value}" for c in staff_jar)
        requests = [(f"/buyer/competitions/{cid}/award/confirm", buyer_cookie, {"csrf_token": tokens[cid]})
                    for cid in world["competitions"]]
        for n in range(TEAM_CHANGES):
            if n % 2:
                requests.append((f"/team/budget/lines/{line_id}/total", team_cookie,
                                 {"csrf_token": team_token, "total": ("12,000", "10,000", "9,000")[n % 3]}))
            else:
                requests.append((f"/team/budget/allocations/{world['allocation']}/amount", team_cookie,
                                 {"csrf_token": team_token, "amount": ("8,500", "7,500", "9,500")[n % 3]}))
        start = threading.Barrier(len(requests))
        with ThreadPoolExecutor(max_workers=len(requests)) as pool:
            futures = [pool.submit(_post, port, path, cookie, fields, start) for path, cookie, fields in requests]
            responses = [f.result(timeout=REQUEST_SECONDS) for f in futures]
    finally:
        _stop(server)

    statuses = [status for status, _, _ in responses]
    assert all(status in (302, 400) for status in statuses), (statuses, log_path.read_text(errors="replace")[-3000:])
    assert "Traceback" not in log_path.read_text(errors="replace")
    with app.app_context():
        from dps.models import BudgetLine

        allocation = db.session.get(Allocation, world["allocation"])
        line = db.session.get(BudgetLine, line_id)
        call_offs = db.session.scalars(select(CallOff).where(CallOff.allocation_id == allocation.id)).all()
        assert sum(c.value_pence for c in call_offs) == allocation.committed_pence <= allocation.amount_pence
        allocations = db.session.scalars(select(Allocation).where(Allocation.line_id == line.id)).all()
        assert sum(a.amount_pence for a in allocations) == line.allocated_pence <= line.total_pence
        assert len(call_offs) == sum(1 for status, location, _ in responses[:AWARDS]
                                     if status == 302 and "/buyer/call-offs/" in location)
        assert audit.verify_chain().ok
