"""`make run`, as a newcomer runs it: a few lines saying what was set up, and the address served
(here not port 5000) in what it prints and in the links of the emails the site sends."""
from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "copper kettle harbour lantern"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(port: int, tmp_path: Path, **env: str) -> tuple[subprocess.Popen, list[str]]:
    """`make run PORT=port` on a database of its own, until the server answers."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DPS_")}
    environment.update(DPS_DATABASE_URL=f"sqlite:///{tmp_path / 'dps.sqlite3'}",
                       DPS_STORAGE_URL=f"file://{tmp_path / 'documents'}", **env)
    process = subprocess.Popen(["make", "--no-print-directory", "run", f"PORT={port}", f"DEMO_PASSWORD={PASSWORD}"],
                               cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    lines: list[str] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "Running on http://" in line:
            return process, lines
    stop(process)
    pytest.fail("make run did not start the server:\n" + "\n".join(lines))


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def test_make_run_says_what_it_set_up_and_uses_the_port_served(tmp_path):
    port = free_port()
    process, lines = start(port, tmp_path)
    try:
        output = "\n".join(lines)
        assert len(lines) < 60, output
        assert re.search(r"^Virtual environment: \.venv, Python 3\.\d+", output, re.M), output
        assert re.search(r"^Styles: (built|up to date|not built|npm not found)", output, re.M), output
        assert "Database: DPS_DATABASE_URL, migrated to the latest version" in lines, output
        assert f"Demo data loaded. Sign in at http://127.0.0.1:{port}/sign-in with:" in lines, output
        assert f"Password for every demo sign-in: {PASSWORD}" in lines
        assert ":5000" not in output

        # A person asks for a new password on the site served: the emailed link uses its port.
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        page = browser.open(f"http://127.0.0.1:{port}/forgotten-password").read().decode()
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"csrf_token": token, "email": "buyer@oldham.example.org"}).encode()
        assert browser.open(f"http://127.0.0.1:{port}/forgotten-password", data=form).status == 200
        with sqlite3.connect(tmp_path / "dps.sqlite3") as database:
            (body,) = database.execute("SELECT body FROM outbox_messages WHERE to_address = ? "
                                       "ORDER BY id DESC LIMIT 1", ("buyer@oldham.example.org",)).fetchone()
        link = re.search(rf"http://127\.0\.0\.1:{port}(/reset-password/\S+)", body)
        assert link, body
        assert browser.open(f"http://127.0.0.1:{port}{link.group(1)}").status == 200
    finally:
        stop(process)

    # Again on the same database, with DPS_BASE_URL set by the user: it is kept.
    port = free_port()
    process, lines = start(port, tmp_path, DPS_BASE_URL="https://dps.example.org")
    stop(process)
    assert "Demo data: not loaded, the database already has data (`make reset-demo` starts again)." in lines
    assert "Sign in at https://dps.example.org/sign-in" in lines, "\n".join(lines)
