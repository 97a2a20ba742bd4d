"""Writing a ``Table`` as CSV, a row at a time (constant memory).

UTF-8 with a byte order mark, so Excel opens "£", "ô" and "Môn" as they are rather than guessing
a Windows code page; RFC 4180 quoting and line ends (the csv module's defaults). Every text cell
is neutralised (``cells.neutralise``); numbers and dates are written plainly (1234.56,
2023-06-01) so they read back exactly.
"""
from __future__ import annotations

import csv
import io
from typing import IO, TYPE_CHECKING

from . import Filters, Progress, no_progress
from .cells import as_text, neutralise

if TYPE_CHECKING:
    from .tables import Table

PROGRESS_EVERY = 500


def write_table(table: Table, filters: Filters, out: IO[bytes], progress: Progress = no_progress) -> int:
    """Write the header row and every row of ``table`` for ``filters`` into the binary file
    ``out`` (left open). Returns how many rows were written."""
    text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="")
    try:
        writer = csv.writer(text)
        writer.writerow([neutralise(heading) for heading in table.headings])
        kinds = [column.kind for column in table.columns]
        written = pending = 0
        for row in table.rows(filters):
            # strict: a row with a cell too many or too few is a bug, never a shifted column.
            writer.writerow([as_text(value, kind) for value, kind in zip(row, kinds, strict=True)])
            written += 1
            pending += 1
            if pending == PROGRESS_EVERY:
                progress(pending)
                pending = 0
        if pending:
            progress(pending)
        text.flush()
        return written
    finally:
        # Hand the binary file back to the caller open (closing the wrapper would close it).
        text.detach()
