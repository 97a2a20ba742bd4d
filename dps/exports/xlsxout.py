"""All the tabular reports as one Excel workbook, a sheet per report (DESIGN 6).

xlsxwriter in constant-memory mode writes each row to a temporary file as soon as the next row
starts, so memory stays flat however many rows there are. It writes to a file name, so the
workbook is made in a temporary folder and then copied into ``out`` in chunks.

Nothing in the data ever becomes a formula or a link: text goes through ``write_string`` (after
``cells.neutralise``, so it stays inert when the sheet is saved as CSV, and cut to Excel's limit of
characters in a cell, saying so), amounts through
``write_number`` in pounds with a £ format, dates as Excel dates; the workbook's own options turn
off xlsxwriter's guessing of formulas, links and numbers in strings as a second guard.

Taken for one agreement, the workbook holds the sheets that can be split by agreement, each
holding only that agreement's rows, and leaves the audit log out: it is one chain for the whole
service and cannot be cut to one agreement (the audit log export has it whole).
"""
from __future__ import annotations

import os
import tempfile
from typing import IO, Callable

import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from .. import clock
from . import Export, Filters, Progress, iter_chunks, no_progress, register
from .cells import excel_cell, neutralise
from .tables import TABLES, Table

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Excel's limit of rows per sheet (the header is one of them); its limit of characters per cell
# is the cells module's.
SHEET_ROW_LIMIT = 1_048_576
PROGRESS_EVERY = 500
WORKBOOK_OPTIONS = {
    "constant_memory": True,
    "strings_to_formulas": False,
    "strings_to_urls": False,
    "strings_to_numbers": False,
}
COLUMN_WIDTHS = {"text": 30, "money": 14, "date": 12, "datetime": 20, "int": 10, "bool": 8}
# The worksheet method that writes a column of each kind (its format: the workbook's for the kind).
WRITE_METHODS = {"text": "write_string", "bool": "write_string", "money": "write_number", "int": "write_number",
                 "date": "write_datetime", "datetime": "write_datetime"}


# A column's cell: how its value becomes an XLSX value, the method that writes that, and its format.
Cell = tuple[Callable[[object], object], Callable[..., int], Format | None]


class _Sheets:
    """The sheets of one table: a continuation sheet when Excel's row limit is reached."""

    def __init__(self, workbook: xlsxwriter.Workbook, table: Table, formats: dict[str, Format]):
        self.workbook, self.table, self.formats = workbook, table, formats
        self.part = 0
        self.sheet: Worksheet
        self.cells: list[Cell]
        self.row = 0
        self._new_sheet()

    def _new_sheet(self) -> None:
        self.part += 1
        name = self.table.sheet if self.part == 1 else f"{self.table.sheet[:25]} ({self.part})"
        self.sheet = sheet = self.workbook.add_worksheet(name)
        # Column widths before any row: constant-memory mode writes rows out as it goes.
        for index, column in enumerate(self.table.columns):
            sheet.set_column(index, index, COLUMN_WIDTHS[column.kind])
        for index, heading in enumerate(self.table.headings):
            sheet.write_string(0, index, neutralise(heading), self.formats["heading"])
        sheet.freeze_panes(1, 0)
        self.cells = [self._cell(column.kind) for column in self.table.columns]
        self.row = 1

    def _cell(self, kind: str) -> Cell:
        """Looked up once per column of the sheet, not once per cell."""
        return excel_cell(kind), getattr(self.sheet, WRITE_METHODS[kind]), self.formats.get(kind)

    def append(self, row: tuple) -> None:
        if self.row >= SHEET_ROW_LIMIT:
            self._new_sheet()
        r = self.row
        for col, (value, (convert, write, cell_format)) in enumerate(zip(row, self.cells, strict=True)):
            if value is not None:  # else an empty cell
                write(r, col, convert(value), cell_format)
        self.row = r + 1


def tables_for(filters: Filters) -> tuple[Table, ...]:
    """The sheets of the workbook: every report, or for one agreement those it can be split by."""
    if filters.agreement is None:
        return TABLES
    return tuple(table for table in TABLES if table.by_agreement)


def _subject(filters: Filters) -> str:
    subject = f"Period: {filters.period_label().replace('_', ' ')}"
    if filters.agreement:
        subject += f"; agreement: {filters.agreement}"
    return subject


def write_workbook(filters: Filters, out: IO[bytes], progress: Progress = no_progress,
                   tables: tuple[Table, ...] | None = None) -> None:
    if tables is None:
        tables = tables_for(filters)
    with tempfile.TemporaryDirectory(prefix="dps-xlsx-") as folder:
        path = os.path.join(folder, "export.xlsx")
        workbook = xlsxwriter.Workbook(path, {**WORKBOOK_OPTIONS, "tmpdir": folder})
        workbook.set_properties({
            "title": "CCIN Dynamic Purchasing System: reports",
            "subject": _subject(filters),
            "company": "Co-operative Councils' Innovation Network",
            # The service's clock, so a training sandbox's workbook carries its simulated date.
            "created": clock.now().replace(tzinfo=None),
        })
        formats = {  # made once: the heading's, and each kind's that has one
            "heading": workbook.add_format({"bold": True}),
            "money": workbook.add_format({"num_format": "£#,##0.00"}),
            "date": workbook.add_format({"num_format": "yyyy-mm-dd"}),
            "datetime": workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"}),
        }
        for table in tables:
            sheets = _Sheets(workbook, table, formats)
            pending = 0
            for row in table.rows(filters):
                sheets.append(row)
                pending += 1
                if pending == PROGRESS_EVERY:
                    progress(pending)
                    pending = 0
            if pending:
                progress(pending)
        workbook.close()
        with open(path, "rb") as made:
            for chunk in iter_chunks(made):
                out.write(chunk)


def count(filters: Filters) -> int:
    return sum(table.count(filters) for table in tables_for(filters))


XLSX = register(Export(
    name="xlsx",
    title="All reports (Excel workbook)",
    description=("One workbook with a sheet for each report: Transparency Code tenders and contracts, the contracts "
                 "register, the Contracts Finder due list, award notices by quarter and the audit log. Taken for one "
                 "agreement, it leaves out the audit log, which covers the whole service."),
    extension="xlsx",
    media_type=XLSX_MEDIA_TYPE,
    write=write_workbook,
    count=count,
))
