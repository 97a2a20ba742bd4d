"""Public OCDS endpoints: /ocds/releases.json and /ocds/records.json (published information only).

Anyone may read them, signed in or not; they hold what is published anyway (see dps.exports.ocds,
"public mode"). Each answer is written into a temporary file first and validated release by
release as it is written, so a failed export hands out nothing but an error naming the field; the
file is then streamed back 64 KiB at a time, so memory stays flat however large it is.

These reads are not audit events, unlike a team member taking an export: anyone on the internet
can call them, as often as they like, and each would add a row to the append-only log.

``?agreement=REF`` narrows a package to one published agreement's DPS process and its
mini-competitions. A reference that names no published agreement is a 404 naming the parameter,
the same for a draft's as for one that does not exist, so drafts stay unseen.

Each answer is a page: at most ``ocds.PAGE_SIZE`` releases (or records) of the period, in the
package's stable order. When there are more, the package's ``links.next`` is the absolute address
of the next page: the same period and agreement and an opaque ``after`` cursor. A cursor that is
not one a page gave (cut short, edited, for the other endpoint) is a 400 naming ``after``.
"""
from __future__ import annotations

import os
import tempfile
from datetime import date

from flask import Blueprint, Response, current_app, jsonify, request

from ..database import read_only_transaction
from ..exports import ExportInvalid, Filters, iter_chunks
from ..exports.deliver import EARLIEST_DAY, LATEST_DAY
from ..exports.ocds import BadCursor, NothingToExport, Position, write_page
from ..services import agreements as agreements_service

bp = Blueprint("ocds", __name__, url_prefix="/ocds")

CHUNK_SIZE = 64 * 1024
# Short: the data changes as the DPS works, but many readers in a minute can share one answer.
CACHE_SECONDS = 300


class BadParameter(ValueError):
    def __init__(self, message: str, parameter: str | None = None, status: int = 400):
        super().__init__(message)
        self.parameter = parameter
        self.status = status


def _day(name: str) -> date | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        if len(raw) != 10:
            raise ValueError
        day = date.fromisoformat(raw)
    except ValueError:
        raise BadParameter(f"The '{name}' parameter must be a date in the form YYYY-MM-DD, like 2024-04-01 "
                           f"(it was {raw[:40]!r})", name) from None
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        # Also keeps "the day after" (Filters.end_utc) a real date: 9999-12-31 has none.
        raise BadParameter(f"The '{name}' parameter must be a date between {EARLIEST_DAY.isoformat()} and "
                           f"{LATEST_DAY.isoformat()}", name)
    return day


def _agreement() -> str | None:
    """The reference of the published agreement ``?agreement=`` names (any case), or None for all."""
    raw = (request.args.get("agreement") or "").strip()
    if not raw:
        return None
    found = agreements_service.by_reference(raw) if len(raw) <= 50 else None
    if found is None or found.published_at is None:
        # Not found, rather than a bad request: the parameter is well formed, but names nothing
        # published (a draft's reference reads exactly like an unknown one).
        raise BadParameter(f"The 'agreement' parameter must be the reference of a published agreement, like "
                           f"CCIN-DPS-2020: no published agreement has the reference {raw[:50]!r}", "agreement", 404)
    return found.reference


def _period() -> Filters:
    start, end = _day("from"), _day("to")
    try:
        return Filters(start, end)
    except ValueError as exc:
        raise BadParameter(f"The 'to' date must be the same as or after the 'from' date ({exc})", "to") from None


def _after(kind: str) -> Position | None:
    """The position ``?after=`` names: where the page before ended."""
    raw = request.args.get("after")
    if raw is None or raw == "":
        return None
    try:
        return Position.from_cursor(kind, raw)
    except BadCursor:
        raise BadParameter(f"The 'after' parameter must be a cursor exactly as the links.next of a page of "
                           f"{kind}.json gave it (it was {raw[:40]!r})", "after") from None


def _error(status: int, message: str, field: str | None = None) -> Response:
    body = {"error": message}
    if field:
        body["parameter"] = field
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _serve(kind: str) -> Response:
    try:
        filters = _period()
        after = _after(kind)
    except BadParameter as exc:
        return _error(exc.status, str(exc), exc.parameter)
    tmp = tempfile.TemporaryFile(prefix=f"dps-ocds-public-{kind}-")
    try:
        with read_only_transaction():  # on SQLite, never holds up the site's writers
            filters = Filters(filters.start, filters.end, _agreement())
            write_page(kind, filters, tmp, after=after)
        tmp.flush()
    except BadParameter as exc:
        tmp.close()
        return _error(exc.status, str(exc), exc.parameter)
    except NothingToExport as exc:
        tmp.close()
        return _error(404, exc.message)
    except ExportInvalid as exc:
        tmp.close()
        current_app.logger.error("Public OCDS %s export failed validation: %s", kind, exc.message)
        return _error(500, f"The OCDS data failed validation, so none is served: {exc.message}")
    except BaseException:
        tmp.close()
        raise
    size = os.fstat(tmp.fileno()).st_size
    tmp.seek(0)
    response = Response(iter_chunks(tmp, CHUNK_SIZE), content_type="application/json",
                        direct_passthrough=True)
    response.call_on_close(tmp.close)
    response.headers["Content-Length"] = str(size)
    response.headers["Content-Disposition"] = f'inline; filename="ccin-dps-{kind}-{filters.label()}.json"'
    response.headers["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/releases.json")
def releases():
    """A page of the OCDS release package of every published release dated in the period."""
    return _serve("releases")


@bp.get("/records.json")
def records():
    """A page of the OCDS record package: each contracting process with a published release in the period."""
    return _serve("records")
