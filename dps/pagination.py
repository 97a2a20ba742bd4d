"""Keyset pagination for the lists of the service (DESIGN 10: no page grows with the data).

The audit log pages by row id (``dps.services.audit_log``); the other lists are sorted by
something people read (a name, a due date), so their pages follow the whole sort key instead:

- A list is a ``SELECT`` without ORDER BY and a sort key: columns (optionally ``.desc()``), the
  last of them unique (an id), none of them NULL. A page is
  ``WHERE <filters> AND <key beyond the cursor> ORDER BY <key> LIMIT size + 1``, never OFFSET (an
  OFFSET reads and throws away every row before the page); the extra row says whether there is a
  next page.
- The cursor is the sort key of the row a page starts from, as base64url JSON: opaque to
  whoever reads the address, safe in a URL, and checked on the way back in (the number of values,
  each value's type, integers that fit 64 bits, strings without NUL). A cursor that does not
  pass gives the first page, never an error.
- "Previous" reads the same key backwards from the first row of the page and turns the rows
  round; "is there a page before this one" is one EXISTS. The total is one COUNT of the same
  statement; after the first page the same COUNT also counts the rows before the cursor, so the
  page can say where it is ("Showing 51 to 100 of 1,234") without another query.

So a page costs the same few queries whatever the size of the list: the count, the page, and
(after the first page) one EXISTS. Which indexes make each of them cheap is the caller's business.
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from flask import url_for
from sqlalchemy import BigInteger, Select, and_, case, func, literal, or_, select
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression
from sqlalchemy.types import TypeDecorator

from .extensions import db

PAGE_SIZE = 50
# Beyond this a cursor is not one this service made (a sort key of a name or two and ids: names
# are at most 200 characters). It stays inside a request line gunicorn accepts (4094 bytes).
MAX_CURSOR_LENGTH = 3500
_MAX_STRING = 1000
_INT_LIMIT = 2 ** 63 - 1
# An INTEGER column (every id but the audit log's) holds 32 bits on PostgreSQL, which refuses to
# compare it with anything larger: a cursor's value for such a key must fit it (issue 14).
_INTEGER_LIMIT = 2 ** 31 - 1
# Searches are by a few words of a name: anything longer is cut to this.
MAX_SEARCH_LENGTH = 200


class _Key:
    """One column of a sort key: the expression, its direction, and the Python type of its values."""

    def __init__(self, expression: ColumnElement):
        descending = False
        if isinstance(expression, UnaryExpression) and expression.modifier in (operators.desc_op, operators.asc_op):
            descending = expression.modifier is operators.desc_op
            expression = expression.element
        if hasattr(expression, "__clause_element__"):  # a mapped attribute, User.id
            expression = expression.__clause_element__()
        self.expression = expression
        self.descending = descending
        column_type = expression.type
        # The largest value of the column, for the cursor's check (a BIGINT: 64 bits).
        self.int_limit = _INT_LIMIT if isinstance(column_type, BigInteger) else _INTEGER_LIMIT
        if isinstance(column_type, TypeDecorator):  # UTCDateTime: the values are its impl's
            column_type = column_type.impl_instance
        try:
            self.python_type = column_type.python_type
        except NotImplementedError:
            self.python_type = None
        if self.python_type not in (bool, int, str, date, datetime):
            # func.lower(x) has no type unless given one: func.lower(x, type_=String).
            raise TypeError(f"give the sort key {expression} a type a cursor can hold "
                            "(bool, int, str, date or datetime)")

    def ordered(self, backwards: bool):
        return self.expression.desc() if self.descending != backwards else self.expression.asc()

    def beyond(self, value, backwards: bool, strict: bool, column: ColumnElement | None = None):
        """This column (or ``column``, the same value read from a subquery) past ``value`` in
        reading order (backwards: before it)."""
        expression = self.expression if column is None else column
        later = self.descending == backwards  # the column grows in the direction of reading
        if strict:
            return expression > value if later else expression < value
        return expression >= value if later else expression <= value


def _beyond(keys: list[_Key], pivot: Sequence, backwards: bool, columns: Sequence[ColumnElement] | None = None):
    """Rows strictly past ``pivot`` in the key's order: (k1 > v1) OR (k1 = v1 AND k2 > v2) OR ...

    Spelt out rather than as a row-value comparison, so columns may run in different directions;
    the first, non-strict term on its own is the range an index on the key can read. ``columns``:
    the key's values as a subquery selects them, compared instead of the key's own expressions."""
    read = list(columns) if columns is not None else [key.expression for key in keys]
    terms = []
    for i, key in enumerate(keys):
        equal_before = [read[j] == pivot[j] for j in range(i)]
        terms.append(and_(*equal_before, key.beyond(pivot[i], backwards, strict=True, column=read[i])))
    if len(keys) == 1:
        return terms[0]
    return and_(keys[0].beyond(pivot[0], backwards, strict=False, column=read[0]), or_(*terms))


# Cursors ---------------------------------------------------------------------------------------

def _encode_value(value):
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    if isinstance(value, date):
        return {"d": value.isoformat()}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise TypeError(f"a sort key value of type {type(value).__name__} cannot go in a cursor")


def encode_cursor(values: Sequence) -> str:
    """The sort key of a row as an opaque, URL-safe token."""
    text = json.dumps([_encode_value(v) for v in values], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def _decode_value(raw, expected: type, int_limit: int = _INT_LIMIT):
    if expected is datetime:
        if not (isinstance(raw, dict) and set(raw) == {"t"} and isinstance(raw["t"], str)):
            return None, False
        try:
            moment = datetime.fromisoformat(raw["t"])
        except ValueError:
            return None, False
        return moment, moment.tzinfo is not None  # moments are stored in UTC, never naive
    if expected is date:
        if not (isinstance(raw, dict) and set(raw) == {"d"} and isinstance(raw["d"], str)):
            return None, False
        try:
            return date.fromisoformat(raw["d"]), True
        except ValueError:
            return None, False
    if expected is bool:
        return raw, isinstance(raw, bool)
    if expected is int:
        return raw, isinstance(raw, int) and not isinstance(raw, bool) and -int_limit <= raw <= int_limit
    if expected is str:
        if not isinstance(raw, str) or len(raw) > _MAX_STRING or "\x00" in raw:
            return None, False
        try:
            raw.encode("utf-8")  # JSON can spell lone surrogates, which no database takes
        except UnicodeEncodeError:
            return None, False
        return raw, True
    return None, False


def decode_cursor(token: str | None, types: Sequence[type], int_limits: Sequence[int] | None = None) -> tuple | None:
    """The sort key in ``token`` if it is a well-formed one for a key of these types, else None.
    ``int_limits``: for each value, the largest integer its column holds (default: 64 bits)."""
    if not token or len(token) > MAX_CURSOR_LENGTH:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(raw, list) or len(raw) != len(types):
        return None
    values = []
    limits = int_limits if int_limits is not None else [_INT_LIMIT] * len(types)
    for item, expected, limit in zip(raw, types, limits):
        value, ok = _decode_value(item, expected, limit)
        if not ok:
            return None
        values.append(value)
    return tuple(values)


# Searching -------------------------------------------------------------------------------------

def clean_search(text: str | None) -> str:
    """A search box's text: control characters (NUL breaks PostgreSQL) made spaces, spaces tidied,
    cut to MAX_SEARCH_LENGTH."""
    printable = "".join(ch if ch.isprintable() else " " for ch in (text or ""))
    return " ".join(printable.split())[:MAX_SEARCH_LENGTH]


def contains(column: ColumnElement, text: str):
    """``column`` contains ``text``, ignoring case; ``%`` and ``_`` in ``text`` match themselves.

    lower() on both sides, in SQL, so the two are folded by the same rules (SQLite folds only
    ASCII; PostgreSQL folds all of Unicode)."""
    escaped = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return func.lower(column).like(func.lower(literal(f"%{escaped}%")), escape="/")


# Pages -----------------------------------------------------------------------------------------

@dataclass
class Page:
    rows: list[Any]
    # How many rows the whole list has (every page, with the same filters).
    total: int
    # The token to pass as ``after`` for the next page / ``before`` for the previous one; None
    # when there is no such page.
    next_cursor: str | None = None
    previous_cursor: str | None = None
    # An ``after`` or ``before`` was given that is not a cursor of this list: the first page is shown.
    cursor_refused: bool = False
    # How many rows of the list come before this page.
    offset: int = 0

    @property
    def paged(self) -> bool:
        return self.next_cursor is not None or self.previous_cursor is not None

    @property
    def first(self) -> int:
        """The position in the whole list of this page's first row, counting from 1."""
        return self.offset + 1

    @property
    def last(self) -> int:
        """The position in the whole list of this page's last row."""
        return self.offset + len(self.rows)

    def navigation(self, endpoint: str, *, label: str, **values) -> dict | None:
        """Parameters for govukPagination: Previous and Next links to ``endpoint`` with ``values``
        (the route's arguments and the filters, which so stay the same from page to page).
        None when the list fits on one page."""
        kept = {key: value for key, value in values.items() if value not in (None, "")}
        params: dict[str, Any] = {"landmarkLabel": label}
        if self.previous_cursor is not None:
            params["previous"] = {"href": url_for(endpoint, **kept, before=self.previous_cursor)}
        if self.next_cursor is not None:
            params["next"] = {"href": url_for(endpoint, **kept, after=self.next_cursor)}
        return params if len(params) > 1 else None


def count(stmt: Select) -> int:
    """How many rows ``stmt`` returns."""
    return db.session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0


def keyset_page(stmt: Select, order: Sequence[ColumnElement], *, after: str | None = None,
                before: str | None = None, size: int = PAGE_SIZE) -> Page:
    """One page of ``stmt`` in the order of ``order``.

    ``stmt`` has no ORDER BY or LIMIT; ``order`` is its sort key, the last column unique, none
    NULL, each typed (``func.lower(x, type_=String)``). ``after``: the page following that cursor;
    ``before``: the page preceding it; neither (or a cursor that does not parse): the first page.
    The rows are what ``stmt`` selects: one entity or value each, or a tuple for several."""
    keys = [_Key(expression) for expression in order]
    types = [key.python_type for key in keys]
    limits = [key.int_limit for key in keys]
    width = len(stmt.column_descriptions)  # entities or columns selected (an entity is one)
    labelled = stmt.add_columns(*(key.expression.label(f"keyset_{i}") for i, key in enumerate(keys)))

    def fetch(pivot: tuple | None, backwards: bool) -> list:
        query = labelled if pivot is None else labelled.where(_beyond(keys, pivot, backwards))
        return db.session.execute(query.order_by(*(key.ordered(backwards) for key in keys)).limit(size + 1)).all()

    def entity(row):
        return row[0] if width == 1 else tuple(row[:width])

    def key_of(row) -> tuple:
        return tuple(row[width:])

    def any_beyond(pivot: tuple, backwards: bool) -> bool:
        return bool(db.session.scalar(select(stmt.order_by(None).where(_beyond(keys, pivot, backwards)).exists())))

    def counted(pivot: tuple | None, backwards: bool) -> tuple[int, int]:
        """How many rows the list has and how many of them lie past ``pivot``: one COUNT."""
        if pivot is None:
            return count(stmt), 0
        rows = labelled.order_by(None).subquery()
        past = _beyond(keys, pivot, backwards, [rows.c[f"keyset_{i}"] for i in range(len(keys))])
        total, beyond = db.session.execute(select(func.count(), func.count(case((past, 1)))).select_from(rows)).one()
        return total, beyond

    refused = False
    total = None
    if before is not None and after is None:
        pivot = decode_cursor(before, types, limits)
        refused = pivot is None
        if pivot is not None:
            total, earlier = counted(pivot, backwards=True)
            found = fetch(pivot, backwards=True)
            # Fewer than a page before the cursor: that is the start of the list, and the first
            # page (below) is what "previous" means, full.
            if len(found) >= size:
                rows = list(reversed(found[:size]))
                return Page(
                    [entity(r) for r in rows], total, offset=earlier - size,
                    next_cursor=encode_cursor(key_of(rows[-1])) if any_beyond(key_of(rows[-1]), False) else None,
                    previous_cursor=encode_cursor(key_of(rows[0])) if len(found) > size else None)
        after = None
    pivot = decode_cursor(after, types, limits) if after is not None else None
    refused = refused or (after is not None and pivot is None)
    offset = 0
    if pivot is not None:
        # The rows before the page are those not past the cursor (its row ended the page before).
        total, later = counted(pivot, backwards=False)
        offset = total - later
    elif total is None:  # a "previous" that came back to the start has counted already
        total, _ = counted(None, backwards=False)
    found = fetch(pivot, backwards=False)
    rows = found[:size]
    page = Page([entity(r) for r in rows], total, cursor_refused=refused, offset=offset,
                next_cursor=encode_cursor(key_of(rows[-1])) if len(found) > size else None)
    if pivot is not None:
        # Rows before this page: before its first row, or (an empty page past the end of a list
        # that has shrunk) before the cursor itself.
        start = key_of(rows[0]) if rows else pivot
        if any_beyond(start, backwards=True):
            page.previous_cursor = encode_cursor(start)
    return page
