"""Cell values for the tabular exports (CSV and XLSX): one place that decides how a value is written.

A table's rows hold plain Python values (pence as ints, dates, aware datetimes, booleans, text);
each column's ``kind`` says what the value means, and the function for that kind turns it into a
cell: ``text_cell(kind)`` for CSV, ``excel_cell(kind)`` for XLSX. The writers look the function up
once per column, not once per cell, since an export calls it millions of times; ``as_text`` and
``as_excel`` convert a single value.

Spreadsheet programs run a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula (and
treat a leading tab or carriage return much the same), so text from users, supplier names, titles,
reasons, could run as a formula on an auditor's computer ("CSV injection", OWASP). Every *text*
cell is neutralised with a leading apostrophe, which spreadsheets take as "this is text". Numbers
are never touched, so amounts read back exactly.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Callable
from zoneinfo import ZoneInfo

LONDON = ZoneInfo("Europe/London")
KINDS = ("text", "money", "date", "datetime", "int", "bool")
# What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_TRIGGERS = "".join(FORMULA_TRIGGERS)
TWO_PLACES = Decimal("0.01")
# Excel's limit of characters (UTF-16 code units) in a cell, and what a longer text is cut to end with.
CELL_CHARACTER_LIMIT = 32_767
TRUNCATED = " [cut to fit Excel's cell limit: the CSV export has it in full]"


def neutralise(text: str) -> str:
    """Prefix a text that a spreadsheet would run as a formula with an apostrophe."""
    if text and text[0] in _TRIGGERS:
        return "'" + text
    return text


def pounds(pence: int) -> Decimal:
    """12345 pence -> Decimal('123.45'): exact, always two places."""
    return (Decimal(int(pence)) / 100).quantize(TWO_PLACES)


def pounds_text(pence: int) -> str:
    """12345 pence -> '123.45', -150 -> '-1.50': ``str(pounds(pence))``, in integer arithmetic."""
    if pence < 0:
        whole, pennies = divmod(-pence, 100)
        return f"-{whole}.{pennies:02d}"
    whole, pennies = divmod(pence, 100)
    return f"{whole}.{pennies:02d}"


def pounds_number(pence: int) -> float:
    """The amount in pounds as the double a spreadsheet stores: the one nearest the exact amount
    (Python's int / int is correctly rounded, so this is ``float(pounds(pence))``)."""
    return int(pence) / 100


def london(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: exports need aware datetimes (UTC)")
    return moment.astimezone(LONDON)


def london_iso(moment: datetime) -> str:
    """'2023-06-01T09:00:00+01:00': UK wall time with its offset, so it is unambiguous."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: exports need aware datetimes (UTC)")
    return moment.astimezone(LONDON).isoformat("T", "seconds")  # (positional: a little quicker)


def utc_iso(moment: datetime) -> str:
    """'2023-06-01T08:00:00+00:00'."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: exports need aware datetimes (UTC)")
    return moment.astimezone(timezone.utc).isoformat("T", "seconds")


def yes_no(value: bool | None) -> str:
    if value is None:
        return ""
    return "Yes" if value else "No"


def _london_date(value: date) -> date:
    """A date column's value: a date, or a moment given for it, which is its UK date."""
    if isinstance(value, datetime):
        return london(value).date()
    if not isinstance(value, date):
        raise ValueError(f"not a date: {value!r}")
    return value


# CSV: every cell a str, None an empty one. Only text is neutralised: a number or date is written
# in a form that cannot start with a formula trigger (amounts are never negative; a negative one
# would keep its minus sign so it still reads back exactly).

def _text_as_text(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text and text[0] in _TRIGGERS else text


def _money_as_text(value: int | None) -> str:
    return "" if value is None else pounds_text(value)


def _int_as_text(value: int | None) -> str:
    return "" if value is None else str(int(value))


def _date_as_text(value: date | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return london(value).date().isoformat()
    return value.isoformat()


def _datetime_as_text(value: datetime | None) -> str:
    return "" if value is None else london_iso(value)


TEXT_CELLS: dict[str, Callable[[object], str]] = {
    "text": _text_as_text, "money": _money_as_text, "date": _date_as_text, "datetime": _datetime_as_text,
    "int": _int_as_text, "bool": yes_no,
}


def fit_in_a_cell(text: str) -> str:
    """The text, or if Excel cannot hold it in one cell, as much as it can with TRUNCATED at the end."""
    if len(text) <= CELL_CHARACTER_LIMIT // 2:
        return text
    if len(text.encode("utf-16-le")) // 2 <= CELL_CHARACTER_LIMIT:
        return text
    keep = CELL_CHARACTER_LIMIT - len(TRUNCATED)
    cut = text[:keep]
    while len(cut.encode("utf-16-le")) // 2 > keep:  # characters outside the BMP count twice
        cut = cut[:-1]
    return cut + TRUNCATED


# XLSX: str (already neutralised, and cut to fit a cell), float pounds, int, a date, or a naive
# datetime in UK wall time (Excel has no time zones; headings say "UK time"); None is an empty cell.

def _text_as_excel(value: object) -> str | None:
    return None if value is None else fit_in_a_cell(neutralise(str(value)))


def _money_as_excel(value: int | None) -> float | None:
    return None if value is None else pounds_number(value)


def _int_as_excel(value: int | None) -> int | None:
    return None if value is None else int(value)


def _date_as_excel(value: date | None) -> date | None:
    return None if value is None else _london_date(value)


def _datetime_as_excel(value: datetime | None) -> datetime | None:
    return None if value is None else london(value).replace(tzinfo=None)


def _bool_as_excel(value: bool | None) -> str | None:
    return None if value is None else yes_no(value)


EXCEL_CELLS: dict[str, Callable[[object], object]] = {
    "text": _text_as_excel, "money": _money_as_excel, "date": _date_as_excel, "datetime": _datetime_as_excel,
    "int": _int_as_excel, "bool": _bool_as_excel,
}


def text_cell(kind: str) -> Callable[[object], str]:
    """The function writing a value of this kind as a CSV cell."""
    try:
        return TEXT_CELLS[kind]
    except KeyError:
        raise ValueError(f"unknown column kind {kind!r}") from None


def excel_cell(kind: str) -> Callable[[object], object]:
    """The function giving the XLSX value of a cell of this kind (None: an empty cell)."""
    try:
        return EXCEL_CELLS[kind]
    except KeyError:
        raise ValueError(f"unknown column kind {kind!r}") from None


def as_text(value: object, kind: str) -> str:
    """The CSV form of a value of this kind."""
    return text_cell(kind)(value)


def as_excel(value: object, kind: str) -> object:
    """The XLSX value of a cell of this kind."""
    return excel_cell(kind)(value)
