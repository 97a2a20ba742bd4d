"""Writing a ``Table`` as CSV, a row at a time (constant memory).

UTF-8 with a byte order mark, so Excel opens "£", "ô" and "Môn" as they are rather than guessing
a Windows code page; RFC 4180 quoting and line ends (the csv module's defaults). Every text cell
is neutralised (``cells.neutralise``); numbers and dates are written plainly (1234.56,
2023-06-01) so they read back exactly.

The rows are written into a text buffer, handed to the binary file encoded, in chunks of about
64 KiB: a ``TextIOWrapper`` on a file that can also be read would encode each row on its own and
reset its decoder at every write.
"""
from __future__ import annotations

import codecs
import csv
import io
from operator import call
from typing import IO, TYPE_CHECKING

from . import Filters, Progress, no_progress
from .cells import neutralise, text_cell

if TYPE_CHECKING:
    from .tables import Table

PROGRESS_EVERY = 500
CHUNK_CHARACTERS = 64 * 1024


def write_table(table: Table, filters: Filters, out: IO[bytes], progress: Progress = no_progress) -> int:
    """Write the header row and every row of ``table`` for ``filters`` into the binary file
    ``out`` (left open). Returns how many rows were written."""
    buffer = io.StringIO()
    writerow = csv.writer(buffer).writerow

    def hand_over() -> None:
        out.write(buffer.getvalue().encode("utf-8"))
        buffer.seek(0)
        buffer.truncate()

    out.write(codecs.BOM_UTF8)
    writerow([neutralise(heading) for heading in table.headings])
    cells = [text_cell(column.kind) for column in table.columns]
    width = len(cells)
    written = pending = 0
    for row in table.rows(filters):
        if len(row) != width:  # a cell too many or too few is a bug, never a shifted column
            raise ValueError(f"{table.name}: a row of {len(row)} cells for {width} columns")
        writerow(map(call, cells, row))
        if buffer.tell() >= CHUNK_CHARACTERS:
            hand_over()
        pending += 1
        if pending == PROGRESS_EVERY:
            written += pending
            progress(pending)
            pending = 0
    hand_over()
    if pending:
        written += pending
        progress(pending)
    return written
