"""Health endpoints for load balancers and monitoring (issue 14).

- ``GET /healthz``: the process answers. Reads nothing (no database, no session): a load
  balancer that restarts processes failing it never restarts one for a database outage.
- ``GET /readyz``: whether this process can serve: the database answers, document storage
  answers, the job queue answers, and the virus scanner answers when one is configured
  (``DPS_CLAMD_URL``). 200 when every check passes, else 503; the body says which failed.

Neither reads or writes the session, writes the audit log, or may be cached. Each check is short
(a ``SELECT 1``, one storage lookup, one queue lookup, one scanner PING) and says only "ok" or
the kind of failure, never a password or a host's address.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from ..extensions import csrf, db

bp = Blueprint("health", __name__)

# A key no document can have (server-made keys never start with a dot): looking it up proves the
# backend answers without reading or writing any document.
PROBE_KEY = "health/.readyz-probe"
SCANNER_TIMEOUT_SECONDS = 3


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/healthz")
@csrf.exempt
def healthz():
    return _no_store(jsonify(status="ok"))


def check_database() -> None:
    # Its own connection, not the request's session: nothing is left open or half-begun.
    with db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def check_storage() -> None:
    from ..storage import LocalStorage, StorageError, get_storage

    backend = get_storage()
    if isinstance(backend, LocalStorage):
        # The folder, or (before the first upload makes it) the nearest folder above it, must be
        # a folder this process can write to.
        folder = backend.root
        while not folder.exists() and folder.parent != folder:
            folder = folder.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise StorageError(f"{folder} is not a folder this process can write to")
    backend.exists(PROBE_KEY)  # StorageError when the folder or the bucket cannot be read


def check_queue() -> None:
    from ..jobs import HueyQueue, queue_of

    queue = queue_of(current_app)
    if isinstance(queue, HueyQueue):
        # The huey file's own database: one count of the pending jobs of each queue.
        for huey in queue._hueys.values():
            huey.storage.queue_size()
        return
    # procrastinate keeps its jobs in the service's PostgreSQL database.
    with db.engine.connect() as connection:
        connection.execute(text("SELECT 1 FROM procrastinate_jobs LIMIT 1"))


def check_scanner() -> None:
    """clamd answers PING, through the upload scanner's own client (dps.antivirus)."""
    from .. import antivirus

    if not antivirus.ping(current_app.config["DPS_CLAMD_URL"], SCANNER_TIMEOUT_SECONDS):
        raise ConnectionError("the virus scanner did not answer PING")


def checks() -> dict[str, Callable[[], None]]:
    found = {"database": check_database, "storage": check_storage, "queue": check_queue}
    if current_app.config.get("DPS_CLAMD_URL"):
        found["scanner"] = check_scanner
    return found


@bp.route("/readyz")
@csrf.exempt
def readyz():
    results = {}
    for name, check in checks().items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # any failure is "not ready", said without the details
            current_app.logger.warning("Readiness check %s failed: %s", name, exc)
            results[name] = {"status": "error", "error": type(exc).__name__}
        else:
            results[name] = {"status": "ok"}
        results[name]["milliseconds"] = round((time.perf_counter() - started) * 1000)
    ready = all(result["status"] == "ok" for result in results.values())
    response = jsonify(status="ok" if ready else "error", checks=results)
    response.status_code = 200 if ready else 503
    if not ready:
        response.headers["Retry-After"] = "30"
    return _no_store(response)
