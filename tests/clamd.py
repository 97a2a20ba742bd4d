"""A real ClamAV daemon for the tests (DESIGN 8: no mocks of what we talk to).

Debian's ``clamav-daemon`` provides ``/usr/sbin/clamd``. ``freshclam`` cannot download here, so
the fixture writes its own signature database: the EICAR test file's MD5 in a ``.hdb`` file. It
writes a ``clamd.conf`` with everything in a temporary folder (socket, database, no logging to
system paths), starts clamd in the foreground, waits until it answers PING and stops it at the end.

Without clamd: with ``CI=true`` the tests that need it fail, saying how to install it; elsewhere
they are skipped with that message (as ``.ci/run`` treats PostgreSQL).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dps import antivirus

CLAMD = os.environ.get("DPS_TEST_CLAMD", "/usr/sbin/clamd")
# The EICAR anti-virus test file: harmless, and recognised by every scanner as a test "virus".
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_SIGNATURE = "Eicar-Test-Signature"
INSTALL_HINT = "install it with `apt-get install -y clamav-daemon` (as root), or run `make test`"
START_SECONDS = 60  # loading even a one-line database takes clamd a moment on a busy machine


@dataclass
class Clamd:
    url: str
    socket_path: Path
    process: subprocess.Popen

    @property
    def running(self) -> bool:
        return self.process.poll() is None


def _missing(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {message}: the antivirus tests are required; {INSTALL_HINT}", pytrace=False)
    pytest.skip(f"{message}; {INSTALL_HINT}")


def start_clamd() -> Iterator[Clamd]:
    if not (os.path.isfile(CLAMD) and os.access(CLAMD, os.X_OK)):
        _missing(f"clamd is not installed at {CLAMD}")
    # AF_UNIX paths are limited to about 100 bytes: a short folder of our own, not pytest's tmp_path.
    folder = Path(tempfile.mkdtemp(prefix="dps-clamd-"))
    database = folder / "db"
    database.mkdir()
    (database / "dps-test.hdb").write_text(
        f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:{EICAR_SIGNATURE}\n")
    socket_path = folder / "clamd.sock"
    config = folder / "clamd.conf"
    config.write_text("\n".join([
        f"LocalSocket {socket_path}",
        "LocalSocketMode 600",
        "FixStaleSocket yes",
        f"DatabaseDirectory {database}",
        f"TemporaryDirectory {folder}",
        f"PidFile {folder / 'clamd.pid'}",
        "Foreground yes",
        "LogFile /dev/null",  # kept off syslog and /var/log; failures show on stderr below
        "LogSyslog no",
        "StreamMaxLength 64M",
        "MaxThreads 2",
        "ScanArchive yes",
        "Bytecode no",
        "",
    ]))
    stderr = (folder / "clamd.stderr").open("w+b")
    process = subprocess.Popen([CLAMD, "--config-file", str(config)], stdout=stderr, stderr=subprocess.STDOUT)
    url = f"unix://{socket_path}"
    daemon = Clamd(url, socket_path, process)
    try:
        deadline = time.monotonic() + START_SECONDS
        while not antivirus.ping(url, timeout=2):
            if process.poll() is not None or time.monotonic() > deadline:
                stderr.seek(0)
                output = stderr.read().decode("utf-8", "replace")[-2000:]
                pytest.fail(f"clamd did not start (exit status {process.poll()}):\n{output}", pytrace=False)
            time.sleep(0.1)
        yield daemon
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        stderr.close()
        shutil.rmtree(folder, ignore_errors=True)
