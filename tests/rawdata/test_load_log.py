"""ops.load_log: one row per load, written with the raw tables or not at all."""

import json
from datetime import UTC, datetime, timedelta

import duckdb
import pandas as pd
import pytest

from greenery_orchestration.rawdata.load_log import LOAD_LOG, load_time, newest_replacement_since, record_load
from greenery_orchestration.rawdata.sample import append_to_raw, write_sample
from greenery_orchestration.rawdata.schema import load_marker, raw_columns


def _log(database) -> list[dict]:
    with duckdb.connect(str(database), read_only=True) as connection:
        frame = connection.execute(f"select * from {LOAD_LOG} order by loaded_at").df()
    return frame.to_dict("records")


def _raw_counts(database) -> dict[str, int]:
    with duckdb.connect(str(database), read_only=True) as connection:
        return {t: connection.execute(f"select count(*) from raw.{t}").fetchall()[0][0] for t in raw_columns()}


def test_load_csv_then_append_log_a_replace_then_an_append_with_their_counts(workspace, course_data, csv_dir):
    started = datetime.now(UTC).replace(tzinfo=None)
    assert workspace.greenery("load-csv", str(course_data)).returncode == 0
    after_load = _raw_counts(workspace.database)
    appended = workspace.greenery("sample", "--append", "--hours", "2", "--seed", "3")
    assert appended.returncode == 0, appended.stderr
    after_append = _raw_counts(workspace.database)
    # A load that fails writes no row.
    orders = pd.read_csv(csv_dir / "orders.csv", dtype=str)
    orders.assign(order_cost="free").to_csv(csv_dir / "orders.csv", index=False)
    assert workspace.greenery("load-csv", str(csv_dir)).returncode == 2

    replace, append = _log(workspace.database)

    course_rows = {t: len(pd.read_csv(course_data / f"{t}.csv")) for t in raw_columns()}
    assert (replace["mode"], replace["source"]) == ("replace", "load-csv greenery")
    assert json.loads(replace["row_counts"]) == course_rows == after_load
    assert append["mode"] == "append"
    assert append["source"].startswith("sample --append seed=3 sessions-per-day=400 from 2021-02-12T")
    added = {t: after_append[t] - after_load[t] for t in raw_columns() if t not in ("products", "promos")}
    assert json.loads(append["row_counts"]) == added and added["events"] > 0
    assert started <= replace["loaded_at"] <= append["loaded_at"] <= datetime.now(UTC).replace(tzinfo=None)
    assert replace["load_id"] != append["load_id"]


def test_sample_logs_its_seed_window_and_end(workspace):
    made = workspace.greenery("sample", "--seed", "8", "--hours", "6", "--end", "2026-03-01T12:00:00+01:00")
    assert made.returncode == 0, made.stderr

    (load,) = _log(workspace.database)

    assert load["mode"] == "replace"
    assert load["source"] == "sample seed=8 hours=6 sessions-per-day=400 end=2026-03-01T11:00:00Z"
    assert json.loads(load["row_counts"]) == _raw_counts(workspace.database)


def test_the_newest_replacement_since_a_time_skips_appends_and_older_loads(tmp_path):
    with duckdb.connect(str(tmp_path / "prod.duckdb")) as connection:
        def query(sql):
            return connection.execute(sql).df()

        before = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)
        assert newest_replacement_since(query, before) is None  # no log yet
        record_load(connection, "replace", "load-csv first", {"events": 3}, loaded_at=load_time())
        replaced = newest_replacement_since(query, before)
        record_load(connection, "append", "sample --append", {"events": 2, "orders": 1}, loaded_at=load_time())

        assert before < replaced < datetime.now(UTC).replace(tzinfo=None)
        assert newest_replacement_since(query, before) == replaced  # the append is not a replacement
        assert newest_replacement_since(query, replaced) is None


def test_a_load_rolled_back_leaves_no_row(tmp_path):
    with duckdb.connect(str(tmp_path / "prod.duckdb")) as connection:
        record_load(connection, "replace", "first", {}, loaded_at=load_time())
        connection.execute("begin transaction")
        record_load(connection, "append", "second", {"events": 1}, loaded_at=load_time())
        connection.execute("rollback")

        assert connection.execute(f"select source from {LOAD_LOG}").fetchall() == [("first",)]


def test_an_unknown_mode_is_refused(tmp_path):
    with duckdb.connect(str(tmp_path / "prod.duckdb")) as connection, pytest.raises(ValueError, match="mode"):
        record_load(connection, "upsert", "x", {}, loaded_at=load_time())


# --- the load marker: which load wrote each raw row ------------------------------------------


def _stamps(database, tables=tuple(raw_columns())) -> dict[str, dict]:
    """{table: {load marker value: rows}}."""
    with duckdb.connect(str(database), read_only=True) as connection:
        return {
            table: dict(connection.execute(f"select {load_marker()}, count(*) from raw.{table} group by 1").fetchall())
            for table in tables
        }


def test_every_load_stamps_the_rows_it_writes_with_its_log_rows_time(workspace, course_data):
    assert workspace.greenery("load-csv", str(course_data)).returncode == 0
    after_load = _stamps(workspace.database)
    appended = workspace.greenery("sample", "--append", "--hours", "2", "--seed", "3")
    assert appended.returncode == 0, appended.stderr
    after_append = _stamps(workspace.database)
    sampled = workspace.greenery("sample", "--seed", "8", "--hours", "6", "--end", "2026-03-01T12:00:00Z")
    assert sampled.returncode == 0, sampled.stderr
    after_sample = _stamps(workspace.database)

    load, append, sample = _log(workspace.database)
    course_rows = {t: len(pd.read_csv(course_data / f"{t}.csv")) for t in raw_columns()}
    # load-csv: a replace stamps every row with its time.
    assert after_load == {table: {load["loaded_at"]: rows} for table, rows in course_rows.items()}
    # An append stamps the rows it adds; the rows before keep the stamp of the load that wrote them.
    added = json.loads(append["row_counts"])
    assert added["events"] > 0 and set(added) == set(raw_columns()) - {"products", "promos"}
    assert after_append == {
        table: {load["loaded_at"]: rows, **({append["loaded_at"]: added[table]} if table in added else {})}
        for table, rows in course_rows.items()
    }
    # `greenery sample` replaces: every row is its own, none is older.
    assert after_sample == {table: {sample["loaded_at"]: rows} for table, rows in json.loads(sample["row_counts"]).items()}
    assert load["loaded_at"] < append["loaded_at"] < sample["loaded_at"]


def test_an_append_to_raw_tables_from_before_the_marker_adds_it_null_on_their_rows(tmp_path):
    warehouse = tmp_path / "prod.duckdb"
    write_sample(warehouse, seed=2, hours=6, sessions_per_day=200, end=datetime(2026, 3, 1, tzinfo=UTC))
    with duckdb.connect(str(warehouse)) as connection:
        for table in raw_columns():
            connection.execute(f"alter table raw.{table} drop column {load_marker()}")
        before = {t: connection.execute(f"select count(*) from raw.{t}").fetchone()[0] for t in raw_columns()}

    appended = append_to_raw(warehouse, seed=2, hours=3, sessions_per_day=200, until=datetime(2026, 3, 2, tzinfo=UTC))

    (_, append) = _log(warehouse)
    assert _stamps(warehouse, appended.counts) == {
        table: {None: before[table], append["loaded_at"]: rows} for table, rows in appended.counts.items()
    }
    assert set(appended.counts) == set(raw_columns()) - {"products", "promos"}  # which it does not write
