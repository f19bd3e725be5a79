"""`greenery load-csv` and `greenery sample` as a user runs them: real files, a real warehouse file,
the real command in its own process. Bad input is one line on stderr, exit code 2, and every
raw table (and the load log) stays as the previous good load left it."""

import re
import resource
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from greenery_orchestration.rawdata.load_log import LOAD_LOG
from greenery_orchestration.rawdata.sample import write_sample
from greenery_orchestration.rawdata.schema import raw_columns
from tests.rawdata.conftest import workspace_in

PII = {"first_name", "last_name", "email", "phone_number"}


def edit_line(path: Path, line: int, edit) -> bytes:
    """Replace file line `line` (1-based, the header is line 1) by `edit(line bytes without its
    line ending)`; returns the original line."""
    lines = path.read_bytes().split(b"\n")
    original = lines[line - 1]
    ending = b"\r" if original.endswith(b"\r") else b""
    lines[line - 1] = edit(original.removesuffix(b"\r")) + ending
    path.write_bytes(b"\n".join(lines))
    return original


def assert_refused(result: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit code 2 and one line on stderr holding every `expected` text, without a traceback."""
    error = result.stderr.strip()
    assert result.returncode == 2, result.stderr
    assert "\n" not in error and error.startswith("greenery: "), error
    assert "Traceback" not in error
    for text in expected:
        assert text in error, error
    return error


def assert_no_personal_data(error: str, users_csv: Path, rows: list[int]) -> None:
    """No e-mail or phone number of any user in `error`, nor a name on the data rows `rows`."""
    users = pd.read_csv(users_csv, dtype=str)
    for column in ["email", "phone_number"]:
        for value in users[column].dropna():
            assert value not in error, column
    for row in rows:
        for column in ["first_name", "last_name"]:
            assert not re.search(rf"\b{re.escape(users.loc[row, column])}\b", error), column


# --- load-csv: input that cannot load ------------------------------------------------------


def test_a_byte_that_is_not_utf8_early_in_products_is_named(loaded, csv_dir):
    before = loaded.fingerprint()
    edit_line(csv_dir / "products.csv", 3, lambda line: line.replace(b",", b"\xe9,", 2))  # Latin-1 é

    result = loaded.greenery("load-csv", str(csv_dir))

    assert_refused(result, "products.csv, line 3: not UTF-8 text", "save the file as UTF-8", "unchanged")
    assert loaded.fingerprint() == before


@pytest.mark.parametrize(("table", "line"), [("users", 6), ("events", 40)])
def test_a_row_with_one_field_too_many_is_named_without_anyones_data(loaded, csv_dir, course_data, table, line):
    before = loaded.fingerprint()
    edit_line(csv_dir / f"{table}.csv", line, lambda text: text + b",extra")
    columns = len(raw_columns()[table])

    result = loaded.greenery("load-csv", str(csv_dir))

    expected = f"{table}.csv, line {line}: {columns + 1} fields where the header has {columns} "
    error = assert_refused(result, expected)
    assert "extra" not in error
    assert_no_personal_data(error, course_data / "users.csv", rows=[line - 3, line - 2, line - 1])
    assert loaded.fingerprint() == before


def test_a_bad_zipcode_is_counted_and_placed_but_never_shown(loaded, csv_dir):
    before = loaded.fingerprint()
    addresses = pd.read_csv(csv_dir / "addresses.csv", dtype=str)
    addresses.loc[[7, 20], "zipcode"] = ["9O21O", "1234-5678"]  # letters O, and a ZIP+4
    addresses.to_csv(csv_dir / "addresses.csv", index=False)

    result = loaded.greenery("load-csv", str(csv_dir))

    error = assert_refused(
        result, "addresses.csv, column zipcode: 2 value(s) do not parse as integer; first at line 9",
        "zipcode is personal data",
    )
    assert "9O21O" not in error and "1234" not in error
    assert loaded.fingerprint() == before


def test_a_long_bad_value_of_a_column_that_is_not_personal_is_shown_cut_short(loaded, csv_dir):
    orders = pd.read_csv(csv_dir / "orders.csv", dtype=str)
    orders.loc[0, "order_total"] = "about " + "twelve " * 20 + "dollars"
    orders.to_csv(csv_dir / "orders.csv", index=False)

    error = assert_refused(loaded.greenery("load-csv", str(csv_dir)), "orders.csv, column order_total")

    assert "first at line 2: 'about twelve twelve twelve twelve twelve'... (153 characters)" in error


def test_a_quote_that_is_never_closed_is_named(loaded, csv_dir):
    before = loaded.fingerprint()
    edit_line(csv_dir / "orders.csv", 12, lambda line: line.replace(b",", b',"', 1))

    error = assert_refused(loaded.greenery("load-csv", str(csv_dir)), "orders.csv, line 12: ")

    assert "quote" in error
    assert loaded.fingerprint() == before


def test_a_folder_that_does_not_exist_is_named(loaded, tmp_path):
    before = loaded.fingerprint()

    result = loaded.greenery("load-csv", str(tmp_path / "no-such-folder"))

    assert_refused(result, f"{tmp_path / 'no-such-folder'}: the folder does not exist", "unchanged")
    assert loaded.fingerprint() == before


# --- load-csv: files as spreadsheets save them load normally -------------------------------


def _tables_only(fingerprint: dict) -> dict:
    return {table: rows for table, rows in fingerprint.items() if table != LOAD_LOG}


def test_a_byte_order_mark_and_crlf_as_excel_writes_them_load_like_the_plain_file(loaded, csv_dir):
    course = _tables_only(loaded.fingerprint())
    events = csv_dir / "events.csv"
    events.write_bytes(b"\xef\xbb\xbf" + events.read_bytes().replace(b"\n", b"\r\n"))

    result = loaded.greenery("load-csv", str(csv_dir))

    assert result.returncode == 0, result.stderr
    assert _tables_only(loaded.fingerprint()) == course


def test_mixed_line_endings_load_like_the_plain_file(loaded, csv_dir):
    course = _tables_only(loaded.fingerprint())
    for table in ["users", "products"]:  # the course's users.csv is CRLF, products.csv LF
        path = csv_dir / f"{table}.csv"
        lines = path.read_bytes().replace(b"\r\n", b"\n").split(b"\n")
        endings = [b"\r\n" if number % 3 else b"\n" for number in range(len(lines))]
        path.write_bytes(b"".join(line + ending for line, ending in zip(lines, endings)))

    result = loaded.greenery("load-csv", str(csv_dir))

    assert result.returncode == 0, result.stderr
    assert _tables_only(loaded.fingerprint()) == course
    with duckdb.connect(str(loaded.database), read_only=True) as connection:
        carriage_returns = connection.execute(
            "select count(*) from raw.users where address_id like '%' || chr(13) || '%'"
        ).fetchall()[0][0]
    assert carriage_returns == 0


# --- a full disk --------------------------------------------------------------------------

SMALL_DISK = 4 * 1024 * 1024  # holds the course data (~2.4 MB), not a 20,000-sessions day


def _limited_file_size():
    # SIGXFSZ would kill the process; ignored, a write past the limit fails with EFBIG instead.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (SMALL_DISK, SMALL_DISK))


@pytest.fixture(params=["tmpfs", "file size limit"])
def small_disk(request, tmp_path):
    """A warehouse folder that fills up after ~4 MB: a real 4 MB tmpfs where this process may
    mount one (as root), and always a file-size limit on the greenery process (RLIMIT_FSIZE), the
    way to fill a disk without root."""
    folder = tmp_path / "small"
    folder.mkdir()
    if request.param == "file size limit":
        yield folder, _limited_file_size
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK}", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder, None
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture(scope="module")
def big_csv_dir(tmp_path_factory) -> Path:
    """A day of a busy shop as CSVs: ~12 MB once in a warehouse."""
    folder = tmp_path_factory.mktemp("big_csv")
    write_sample(folder, seed=9, days=1, sessions_per_day=20_000, end=datetime(2026, 1, 1, tzinfo=UTC))
    return folder


@pytest.mark.parametrize(
    "command", [["sample", "--days", "1", "--sessions-per-day", "20000"], ["load-csv", "BIG"]]
)
def test_a_full_disk_is_one_line_naming_the_warehouse_and_changes_nothing(
    small_disk, tmp_path, course_data, big_csv_dir, command
):

    folder, preexec = small_disk
    space = workspace_in(tmp_path)
    space.env["GREENERY_WAREHOUSE_DIR"] = str(folder)
    space.warehouse = folder
    assert space.greenery("load-csv", str(course_data), preexec_fn=preexec).returncode == 0
    before = space.fingerprint()

    command = [str(big_csv_dir) if part == "BIG" else part for part in command]
    result = space.greenery(*command, preexec_fn=preexec)

    error = assert_refused(result, f"could not write {folder / 'prod.duckdb'}: ", "raw tables are unchanged")
    assert "the disk is full" in error or "largest size" in error
    assert space.fingerprint() == before


# --- sample --end and --append ------------------------------------------------------------


def _raw_rows(database: Path) -> dict[str, list]:
    with duckdb.connect(str(database), read_only=True) as connection:
        return {
            table: connection.execute(f"select {', '.join(columns)} from raw.{table} order by all").fetchall()
            for table, columns in raw_columns().items()
        }


def test_the_same_seed_and_end_give_the_same_raw_tables(tmp_path):
    first, second = workspace_in(tmp_path / "first"), workspace_in(tmp_path / "second")

    for space, end in [(first, "2026-01-01T00:00:00Z"), (second, "2026-01-01")]:
        result = space.greenery("sample", "--seed", "5", "--days", "1", "--end", end)
        assert result.returncode == 0, result.stderr
        assert "ending 2026-01-01 00:00:00 UTC" in result.stdout

    assert _raw_rows(first.database) == _raw_rows(second.database)
    with duckdb.connect(str(first.database), read_only=True) as connection:
        newest = connection.execute("select max(created_at) from raw.events").fetchall()[0][0]
    assert datetime(2025, 12, 31, 20) < newest <= datetime(2026, 1, 1)


def test_an_end_that_is_not_a_date_is_refused(workspace):
    result = workspace.greenery("sample", "--end", "next tuesday")
    assert result.returncode == 2
    assert "not an ISO date or date-time: 'next tuesday'" in result.stderr


ORPHANS = {
    "event product": "select product_id from raw.events where product_id is not null "
    "except select product_id from raw.products",
    "event order": "select order_id from raw.events where order_id is not null "
    "except select order_id from raw.orders",
    "event user": "select user_id from raw.events where user_id is not null except select user_id from raw.users",
    "item product": "select product_id from raw.order_items except select product_id from raw.products",
    "item order": "select order_id from raw.order_items except select order_id from raw.orders",
    "order user": "select user_id from raw.orders except select user_id from raw.users",
    "order promo": "select promo_id from raw.orders where promo_id is not null "
    "except select promo_id from raw.promos",
    "user address": "select address_id from raw.users except select address_id from raw.addresses",
}


def _appended_window(stdout: str) -> tuple[datetime, datetime]:
    (start, end) = re.search(r"Appended (\S+ \S+) to (\S+ \S+) UTC", stdout).groups()
    return datetime.fromisoformat(start), datetime.fromisoformat(end)


def test_append_to_the_course_data_refers_only_to_rows_that_exist(loaded):
    with duckdb.connect(str(loaded.database), read_only=True) as connection:
        ((newest_course_event,),) = connection.execute("select max(created_at) from raw.events").fetchall()
        catalogue = connection.execute("select * from raw.products order by all").fetchall()

    result = loaded.greenery("sample", "--append", "--hours", "6", "--sessions-per-day", "2000")

    assert result.returncode == 0, result.stderr
    start, end = _appended_window(result.stdout)
    assert start == newest_course_event + timedelta(seconds=1)
    assert end == newest_course_event + timedelta(hours=6, seconds=1)
    with duckdb.connect(str(loaded.database), read_only=True) as connection:
        for name, sql in ORPHANS.items():
            assert connection.execute(sql).fetchall() == [], name
        appended = connection.execute(
            "select count(*), min(created_at), max(created_at), count(distinct product_id) "
            "from raw.events where created_at > ?", [newest_course_event]
        ).fetchall()[0]
        assert connection.execute("select * from raw.products order by all").fetchall() == catalogue
        assert connection.execute("select count(*) = count(distinct event_id) from raw.events").fetchall()[0][0]
    events, first, last, products = appended
    assert events > 100 and start <= first and last <= end
    assert products > 20  # the course's own products are browsed


def test_append_never_writes_past_now(workspace):
    three_hours_ago = datetime.now(UTC) - timedelta(hours=3)
    made = workspace.greenery("sample", "--days", "1", "--end", three_hours_ago.isoformat())
    assert made.returncode == 0, made.stderr

    result = workspace.greenery("sample", "--append", "--hours", "8")
    now = datetime.now(UTC).replace(tzinfo=None)

    assert result.returncode == 0, result.stderr
    start, end = _appended_window(result.stdout)
    assert now - timedelta(minutes=5) < end <= now  # 8 hours asked, cut at now
    with duckdb.connect(str(workspace.database), read_only=True) as connection:
        for table, column in [("events", "created_at"), ("orders", "created_at"), ("orders", "delivered_at"),
                              ("users", "updated_at")]:
            (later,) = connection.execute(f"select count(*) from raw.{table} where {column} > ?", [end]).fetchone()
            assert later == 0, f"{table}.{column}"
        for name, sql in ORPHANS.items():
            assert connection.execute(sql).fetchall() == [], name


def test_append_when_the_data_already_ends_now_says_there_is_nothing_to_append(workspace):
    made = workspace.greenery("sample", "--days", "1")
    assert made.returncode == 0, made.stderr
    before = workspace.fingerprint()

    result = workspace.greenery("sample", "--append")

    assert result.returncode == 0, result.stderr
    assert "Nothing to append: less than an hour lies between the newest raw event" in result.stdout
    assert workspace.fingerprint() == before


def test_append_without_raw_data_says_what_to_do(workspace):
    result = workspace.greenery("sample", "--append")
    assert_refused(result, "no warehouse at", "greenery sample")


def test_a_conversion_factor_that_makes_no_rate_is_refused_in_one_line(workspace):
    result = workspace.greenery("sample", "--conversion", "checkout=2")
    assert result.returncode == 2
    (error,) = [line for line in result.stderr.splitlines() if not line.startswith(("usage:", " "))]
    assert error == ("greenery sample: error: argument --conversion: checkout=2 would make the checkout rate "
                     "154.0% (it is 77%): the factor must lie between 0 and 1.29")
    assert not workspace.database.exists()
