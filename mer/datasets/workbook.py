"""Annotation workbooks (.xlsx, and .xls through xlrd) as rows of named cells, and the cell values they hold.

The datasets' spreadsheets were typed by hand: headers may sit below a preamble (SAMM's
is on row 14), columns differ in case and spacing between releases, and numbers come
as ints, floats or text. Everything here tolerates that; a column the loader needs and
cannot find is the one fatal problem.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from mer.common.errors import MerError

# How far down a preamble may push the header.
HEADER_SEARCH_ROWS = 30
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class Table:
    path: Path
    header_row: int  # 1-based sheet row of the header
    columns: tuple[str, ...]  # every named column, required ones in their canonical spelling
    rows: tuple[tuple[int, dict[str, object]], ...]  # (1-based sheet row, cells by column)


def _key(text: object) -> str:
    return " ".join(str(text).split()).lower() if text is not None else ""


def sheet_values(path: Path, sheet: str | Sequence[str] | None = None) -> list[tuple]:
    """Every row of one sheet of an .xlsx or .xls workbook, as cell values: the sheet named
    `sheet` (case and spacing ignored; given several names, the first present), else the
    first. Raises MerError naming the file when it cannot be read or has no such sheet."""
    path = Path(path)
    wanted = [_key(name) for name in ([sheet] if isinstance(sheet, str) else sheet or [])]
    if path.suffix.lower() == ".xls":
        import xlrd

        try:
            book = xlrd.open_workbook(str(path))
        except (xlrd.XLRDError, OSError, ValueError) as error:
            raise MerError(f"{path}: not a readable .xls workbook ({error}); "
                           "point data.annotation at the dataset's annotation file") from error
        names = book.sheet_names()
        chosen = _sheet_named(path, names, wanted)
        found = book.sheet_by_name(chosen)
        return [tuple(None if cell.ctype == xlrd.XL_CELL_EMPTY else cell.value for cell in found.row(r))
                for r in range(found.nrows)]
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, OSError, KeyError) as error:
        raise MerError(f"{path}: not a readable .xlsx workbook ({error}); "
                       "point data.annotation at the dataset's annotation file") from error
    try:
        found = workbook[_sheet_named(path, workbook.sheetnames, wanted)]
        return [tuple(row) for row in found.iter_rows(values_only=True)]
    finally:
        workbook.close()


def _sheet_named(path: Path, names: Sequence[str], wanted: Sequence[str]) -> str:
    if not wanted:
        return names[0]
    by_key = {_key(name): name for name in names}
    for key in wanted:
        if key in by_key:
            return by_key[key]
    raise MerError(f"{path}: no sheet named {' or '.join(repr(k) for k in wanted)} (sheets: {list(names)}); "
                   "point data.annotation at the dataset's annotation file")


def read_table(path: Path, required: Sequence[str], sheet: str | Sequence[str] | None = None) -> Table:
    """One sheet of `path` (see `sheet_values`), its header found as the row holding most
    `required` columns.

    Raises MerError naming the file and the first required column that is missing."""
    path = Path(path)
    values = sheet_values(path, sheet)
    wanted = {_key(name): name for name in required}
    scores = [(sum(_key(cell) in wanted for cell in row), -i) for i, row in enumerate(values[:HEADER_SEARCH_ROWS])]
    if not scores:
        raise MerError(f"{path}: the sheet is empty; expected a header with {list(required)}")
    best = -max(scores)[1]
    header = values[best]
    found = {_key(cell) for cell in header}
    missing = [name for name in required if _key(name) not in found]
    if missing:
        raise MerError(
            f"{path}: column {missing[0]!r} is missing (header on row {best + 1}: "
            f"{[c for c in header if c is not None]}); the loader needs {list(required)}"
        )
    names = {i: wanted.get(_key(cell), " ".join(str(cell).split())) for i, cell in enumerate(header) if _key(cell)}
    rows = []
    for offset, row in enumerate(values[best + 1:], start=best + 2):
        cells = {name: (row[i] if i < len(row) else None) for i, name in names.items()}
        # Trailing blank rows are common in hand-edited sheets: not worth a report.
        if all(cell is None or _key(cell) == "" for cell in cells.values()):
            continue
        rows.append((offset, cells))
    return Table(path, best + 1, tuple(names.values()), tuple(rows))


def cell_int(value: object) -> int | None:
    """An integer cell (46, 46.0, '46', ' 46 '), else None ('/', '', '-', text)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def cell_text(value: object) -> str:
    """A cell as stripped text; integer-valued floats lose their '.0' (Excel stores 6 as 6.0)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def cell_number_in(value: object) -> int | None:
    """The first run of digits in a cell: 6, '006', 's01' and 'sub01' all name subject 6 or 1."""
    match = _DIGITS.search(cell_text(value))
    return int(match.group()) if match else None
