"""Cell values for the tabular exports (CSV and XLSX): one place that decides how a value is written.

A table's rows hold plain Python values (pence as ints, dates, aware datetimes, booleans, text);
each column's ``kind`` says what the value means, and these functions turn it into a cell.

Spreadsheet programs run a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula (and
treat a leading tab or carriage return much the same), so text from users, supplier names, titles,
reasons, could run as a formula on an auditor's computer ("CSV injection", OWASP). Every *text*
cell is neutralised with a leading apostrophe, which spreadsheets take as "this is text". Numbers
are never touched, so amounts read back exactly.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
KINDS = ("text", "money", "date", "datetime", "int", "bool")
# What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
TWO_PLACES = Decimal("0.01")


def neutralise(text: str) -> str:
    """Prefix a text that a spreadsheet would run as a formula with an apostrophe."""
    if text and text[0] in FORMULA_TRIGGERS:
        return "'" + text
    return text


def pounds(pence: int) -> Decimal:
    """12345 pence -> Decimal('123.45'): exact, always two places."""
    return (Decimal(int(pence)) / 100).quantize(TWO_PLACES)


def london(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: exports need aware datetimes (UTC)")
    return moment.astimezone(LONDON)


def london_iso(moment: datetime) -> str:
    """'2023-06-01T09:00:00+01:00': UK wall time with its offset, so it is unambiguous."""
    return london(moment).isoformat(timespec="seconds")


def utc_iso(moment: datetime) -> str:
    """'2023-06-01T08:00:00+00:00'."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: exports need aware datetimes (UTC)")
    return moment.astimezone(ZoneInfo("UTC")).isoformat(timespec="seconds")


def yes_no(value: bool | None) -> str:
    if value is None:
        return ""
    return "Yes" if value else "No"


def as_text(value: object, kind: str) -> str:
    """The CSV form of a value of this kind. Only text is neutralised: a number or date is
    written in a form that cannot start with a formula trigger (amounts are never negative;
    a negative one would keep its minus sign so it still reads back exactly)."""
    if value is None:
        return ""
    if kind == "text":
        return neutralise(str(value))
    if kind == "money":
        return str(pounds(value))
    if kind == "int":
        return str(int(value))
    if kind == "date":
        if isinstance(value, datetime):
            value = london(value).date()
        return value.isoformat()
    if kind == "datetime":
        return london_iso(value)
    if kind == "bool":
        return yes_no(value)
    raise ValueError(f"unknown column kind {kind!r}")


def as_excel(value: object, kind: str) -> object:
    """The XLSX value of a cell: str (already neutralised), Decimal pounds, int, a date, or a
    naive datetime in UK wall time (Excel has no time zones; headings say "UK time")."""
    if value is None:
        return None
    if kind == "text":
        return neutralise(str(value))
    if kind == "money":
        return pounds(value)
    if kind == "int":
        return int(value)
    if kind == "date":
        if isinstance(value, datetime):
            return london(value).date()
        if not isinstance(value, date):
            raise ValueError(f"not a date: {value!r}")
        return value
    if kind == "datetime":
        return london(value).replace(tzinfo=None)
    if kind == "bool":
        return yes_no(value)
    raise ValueError(f"unknown column kind {kind!r}")
