import re

import duckdb
import pandas as pd
import pytest

from greenery_orchestration.rawdata import csv_file
from greenery_orchestration.rawdata.load_csv import RawDataError, load_csv_dir
from greenery_orchestration.rawdata.load_log import LOAD_LOG
from greenery_orchestration.rawdata.schema import declared_columns, load_marker, raw_columns

TABLES = ["addresses", "events", "order_items", "orders", "products", "promos", "users"]


def _load(tmp_path, folder):
    with duckdb.connect(str(tmp_path / "prod.duckdb")) as connection:
        return load_csv_dir(connection, folder)


def _raw_counts(tmp_path):
    with duckdb.connect(str(tmp_path / "prod.duckdb"), read_only=True) as connection:
        return {t: connection.execute(f"select count(*) from raw.{t}").fetchall()[0][0] for t in TABLES}


def test_loads_the_seven_tables_with_declared_types(tmp_path, csv_dir, course_data):
    counts = _load(tmp_path, csv_dir)

    expected = {t: len(pd.read_csv(course_data / f"{t}.csv")) for t in TABLES}
    assert counts == expected
    with duckdb.connect(str(tmp_path / "prod.duckdb"), read_only=True) as connection:
        described = connection.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'raw' and table_name = 'orders' order by ordinal_position"
        ).fetchall()
        first = pd.read_csv(course_data / "events.csv", dtype=str).iloc[0]
        first_event_at = connection.execute(
            "select created_at from raw.events where event_id = ?", [first.event_id]
        ).fetchall()[0][0]
        stamps = connection.execute(f"select distinct {load_marker()} from raw.orders").fetchall()
        logged = connection.execute(f"select loaded_at from {LOAD_LOG}").fetchall()
    # The CSV's columns, then the load marker the loader adds: the load's time, on every row.
    assert [name for name, _ in described] == [*raw_columns()["orders"], load_marker()]
    assert list(declared_columns()["orders"]) == [name for name, _ in described]
    assert stamps == logged and len(logged) == 1
    assert dict(described)["created_at"] == "TIMESTAMP"
    assert dict(described)[load_marker()] == "TIMESTAMP"
    assert dict(described)["order_total"] == "DOUBLE"
    # Written 2021-02-11T23:30:33Z in the file: UTC, kept as a naive timestamp.
    assert first_event_at.isoformat() + "Z" == first.created_at


def test_timestamps_with_an_offset_become_utc(tmp_path, csv_dir):
    events = pd.read_csv(csv_dir / "events.csv", dtype=str)
    events.loc[0, "created_at"] = "2021-02-12T01:30:33+02:00"
    events.to_csv(csv_dir / "events.csv", index=False)

    _load(tmp_path, csv_dir)

    with duckdb.connect(str(tmp_path / "prod.duckdb"), read_only=True) as connection:
        (created_at,) = connection.execute(
            "select created_at from raw.events where event_id = ?", [events.loc[0, "event_id"]]
        ).fetchall()[0]
    assert str(created_at) == "2021-02-11 23:30:33"


def test_a_bad_value_names_file_column_line_value_and_count_and_loads_nothing(tmp_path, csv_dir):
    _load(tmp_path, csv_dir)
    before = _raw_counts(tmp_path)
    orders = pd.read_csv(csv_dir / "orders.csv", dtype=str)
    orders.loc[4, "order_total"] = "twelve dollars"
    orders.loc[9, "order_total"] = "n/a"
    orders.to_csv(csv_dir / "orders.csv", index=False)
    pd.read_csv(csv_dir / "users.csv").head(3).to_csv(csv_dir / "users.csv", index=False)

    with pytest.raises(RawDataError) as raised:
        _load(tmp_path, csv_dir)

    message = str(raised.value)
    assert "orders.csv" in message
    assert "order_total" in message
    assert "2 value(s)" in message
    assert "line 6" in message  # data row 4 (0-based) sits below the header on line 6
    assert "'twelve dollars'" in message
    assert _raw_counts(tmp_path) == before


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda f: f.drop(columns=["zipcode"]), "missing column(s) zipcode"),
        (lambda f: f.assign(county="x"), "unexpected column(s) county"),
        # The loader stamps each row with its load; a file cannot say when it was loaded.
        (lambda f: f.assign(_loaded_at="2026-03-01T00:00:00Z"), "unexpected column(s) _loaded_at"),
    ],
)
def test_a_wrong_header_is_named(tmp_path, csv_dir, change, expected):
    change(pd.read_csv(csv_dir / "addresses.csv", dtype=str)).to_csv(csv_dir / "addresses.csv", index=False)

    with pytest.raises(RawDataError, match=re.escape(expected)) as raised:
        _load(tmp_path, csv_dir)
    assert "addresses.csv" in str(raised.value)


def test_a_missing_file_is_named(tmp_path, csv_dir):
    (csv_dir / "promos.csv").unlink()

    with pytest.raises(RawDataError, match="promos.csv: file missing"):
        _load(tmp_path, csv_dir)
    assert not (tmp_path / "prod.duckdb").exists() or not _has_raw_schema(tmp_path)


def _has_raw_schema(tmp_path):
    with duckdb.connect(str(tmp_path / "prod.duckdb"), read_only=True) as connection:
        return bool(connection.execute(
            "select count(*) from information_schema.tables where table_schema = 'raw'"
        ).fetchall()[0][0])


def test_lines_are_counted_across_line_breaks_inside_quoted_values(tmp_path, csv_dir):
    products = pd.read_csv(csv_dir / "products.csv", dtype=str)
    products.loc[0, "name"] = "Pothos\n(golden,\nvariegated)"  # two line breaks, quoted
    products.loc[5, "price"] = "cheap"
    products.to_csv(csv_dir / "products.csv", index=False)

    # Row 5 sits on line 7 of a file without line breaks in values; two come before it here.
    with pytest.raises(RawDataError, match=re.escape("first at line 9: 'cheap'")):
        _load(tmp_path, csv_dir)


def test_a_repeated_column_is_named(tmp_path, csv_dir):
    promos = (csv_dir / "promos.csv").read_text().splitlines()
    promos = [line + ",x" for line in promos]
    promos[0] = promos[0].removesuffix(",x") + ",status"
    (csv_dir / "promos.csv").write_text("\n".join(promos) + "\n")

    with pytest.raises(RawDataError, match=re.escape("promos.csv, line 1: repeated column(s) status")):
        _load(tmp_path, csv_dir)


@pytest.mark.parametrize(
    ("content", "mixed"),
    [
        (b"a,b\r\n1,2\r\n3,4\r\n", False),
        (b"a,b\n1,2\n3,4\n", False),
        (b"a,b\r\n1,2\n3,4\r\n", True),
        (b"a,b\n1,2\n3,4\r\n", True),
        (b"a,b\r1,2\n3,4\n", True),
    ],
)
def test_mixed_line_endings_are_found_across_chunk_boundaries(tmp_path, monkeypatch, content, mixed):
    # Chunks of 1 to 5 bytes split every CRLF at some point.
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    for chunk in range(1, 6):
        monkeypatch.setattr(csv_file, "_CHUNK", chunk)
        assert csv_file._mixes_line_endings(path) == mixed, chunk
        csv_file._write_with_lf(path, tmp_path / "lf.csv")
        assert (tmp_path / "lf.csv").read_bytes() == b"a,b\n1,2\n3,4\n", chunk
