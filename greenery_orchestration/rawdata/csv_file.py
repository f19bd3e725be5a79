"""One raw CSV read into DuckDB as text, or one line saying which line of which file is wrong.

DuckDB reads the file (in parallel, fast) and sets aside the lines it cannot read; those become a
message of our own. DuckDB's own messages are never passed on: they quote whole lines, and a
line of users.csv is somebody's name, e-mail and phone number.

Files are read as a spreadsheet saves them: with or without a UTF-8 byte-order mark, with LF or
CRLF line endings, or a mix of the two (a file edited on two systems).
"""

import csv
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

_CHUNK = 1 << 24  # bytes read at a time when scanning a file


class RawDataError(ValueError):
    """Input that cannot become a raw table; the message names the file, the line or column, and
    the cause (and a value only when it is not personal data)."""


def read_header(path: Path) -> list[str]:
    """The column names on line 1 (a byte-order mark is not part of the first name)."""
    try:
        with path.open("rb") as handle:
            first_line = handle.readline()
    except OSError as error:
        raise RawDataError(f"{path.name}: cannot be read ({error.strerror})") from None
    try:
        text = first_line.decode("utf-8-sig")
    except UnicodeDecodeError:
        message = f"{path.name}, line 1: the header is not UTF-8 text; save the file as UTF-8"
        raise RawDataError(message) from None
    return next(csv.reader([text]), [])


def stage_text(con: duckdb.DuckDBPyConnection, path: Path, into: str, header: list[str]) -> None:
    """Read the CSV at `path`, whose line 1 is `header`, into the temp table `into`: one varchar
    column per header name, one row per data line, in file order.

    Raises RawDataError naming the first line that is not a row of `len(header)` UTF-8 fields.
    """
    rejects = f"_rejects_{into}"
    con.execute(f"drop table if exists {rejects}")
    con.execute(f"drop table if exists {rejects}_scans")
    with _with_one_line_ending(path) as readable:
        try:
            con.execute(
                f"create or replace temp table {into} as select * from read_csv(?, header = true, "
                "delim = ',', quote = '\"', escape = '\"', columns = ?, "
                f"store_rejects = true, rejects_table = '{rejects}', rejects_scan = '{rejects}_scans')",
                [str(readable), {name: "VARCHAR" for name in header}],
            )
        except duckdb.IOException:
            raise  # the warehouse's disk, not the file: the caller says so
        except duckdb.Error:
            # DuckDB gave up on the whole file (it could not even sniff it): find the line ourselves.
            raise RawDataError(_diagnose(readable, path.name, len(header))) from None
    problem = _first_rejected_line(con, rejects, path.name, len(header))
    if problem:
        raise RawDataError(problem)


def _first_rejected_line(con, rejects: str, file_name: str, n_columns: int) -> str | None:
    ((bad_lines,),) = con.execute(f"select count(distinct line) from {rejects}").fetchall()
    if not bad_lines:
        return None
    ((line, error_type, column, detail),) = con.execute(
        f"select line, error_type, column_name, error_message from {rejects} "
        "order by line, column_idx limit 1"
    ).fetchall()
    in_all = f" ({bad_lines:,} unreadable lines in all)" if bad_lines > 1 else ""
    return f"{file_name}, line {line}: {_cause(error_type, column, detail, n_columns)}{in_all}"


def _cause(error_type: str, column: str | None, detail: str, n_columns: int) -> str:
    """DuckDB's reject, in our words. Only the field count is taken from its message."""
    found = re.search(r"Found: (\d+)", detail or "")
    fields = f"{found.group(1)} fields" if found else "a different number of fields"
    causes = {
        "TOO MANY COLUMNS": f"{fields} where the header has {n_columns} (a comma too many, or a value "
        "with a comma that is not quoted)",
        "MISSING COLUMNS": f"{fields} where the header has {n_columns}",
        "INVALID ENCODING": f"not UTF-8 text (column {column}); save the file as UTF-8",
        "UNQUOTED VALUE": f"a quote that is not closed, or text after a closing quote (column {column})",
        "LINE SIZE OVER MAXIMUM": "the line is longer than DuckDB reads (is the file a CSV?)",
    }
    return causes.get(error_type, f"unreadable ({error_type.lower()})")


def _diagnose(path: Path, file_name: str, n_columns: int) -> str:
    """Why the file cannot be read at all: the first line Python's csv module finds wrong."""
    line = 1
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, strict=True)
            for row in reader:
                if row and len(row) != n_columns:
                    return f"{file_name}, line {line}: {len(row)} fields where the header has {n_columns}"
                line = reader.line_num + 1
    except UnicodeDecodeError:
        return f"{file_name}: not UTF-8 text; save the file as UTF-8"
    except csv.Error as error:
        # Python's csv messages describe the syntax and never quote the data.
        if "unexpected end of data" in str(error):
            return f"{file_name}, line {line}: a quote opened on this line is never closed"
        return f"{file_name}, line {line}: not valid CSV ({error})"
    return f"{file_name}: DuckDB cannot read it as a CSV file (comma-separated, double-quoted)"


@contextmanager
def _with_one_line_ending(path: Path) -> Iterator[Path]:
    """The file itself, or, when it mixes line endings, a copy of it in a temporary folder with
    LF throughout (DuckDB expects one kind of line ending per file)."""
    if not _mixes_line_endings(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="greenery-csv-") as folder:
        copy = Path(folder) / path.name
        _write_with_lf(path, copy)
        yield copy


def _mixes_line_endings(path: Path) -> bool:
    """Whether the file has more than one of CRLF, LF alone and CR alone."""
    cr = lf = crlf = 0
    ended_with_cr = False
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            lf += chunk.count(b"\n")
            crs = chunk.count(b"\r")
            if crs or ended_with_cr:
                cr += crs
                crlf += chunk.count(b"\r\n") + (ended_with_cr and chunk.startswith(b"\n"))
            ended_with_cr = chunk.endswith(b"\r")
    return sum(1 for count in (crlf, lf - crlf, cr - crlf) if count) > 1


def _write_with_lf(source: Path, target: Path) -> None:
    with source.open("rb") as reading, target.open("wb") as writing:
        held = b""  # a CR at the end of a chunk may be the first half of a CRLF
        while chunk := reading.read(_CHUNK):
            chunk = held + chunk
            held = b"\r" if chunk.endswith(b"\r") else b""
            chunk = chunk[: len(chunk) - len(held)]
            writing.write(chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
        writing.write(held.replace(b"\r", b"\n"))
