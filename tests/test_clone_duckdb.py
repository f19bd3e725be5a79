"""A clone brings each environment up to date in place, copying only the new rows of the stamped
tables; what it cannot update in place it writes whole. Expected contents are computed here, from
prod's rows and hashlib, not by the code under test."""

import hashlib
import subprocess
import sys
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from greenery_orchestration import clone_duckdb
from greenery_orchestration.clone_duckdb import clone
from greenery_orchestration.warehouse import Changes

SALT = "pepper"
# As pii_columns reads the dbt YAML: views declare the PII columns they pass on.
PII = {
    "raw.users": ["email"],
    "staging.stg_users": ["email"],
    "marts.session_emails": ["email"],
    "reports.daily_emails": ["email"],
}
CHANGES = {
    "raw.users": Changes("_loaded_at"),
    "raw.events": Changes("_loaded_at"),
    "raw.orders": Changes("_loaded_at"),
    "marts.fct_sessions": Changes("dbt_updated_at", ("session_id",)),
}
FIRST_LOAD, FIRST_BUILD = datetime(2026, 3, 1, 9), datetime(2026, 3, 1, 10)
NEXT_LOAD, NEXT_BUILD = FIRST_LOAD + timedelta(hours=3), FIRST_BUILD + timedelta(hours=3)


def _masked(value) -> str | None:
    return None if value is None else "masked_" + hashlib.sha256(f"{SALT}{value}".encode()).hexdigest()[:16]


@pytest.fixture
def prod(tmp_path):
    """Three raw tables stamped at load, an incremental model stamped at build and merged by key,
    a plain table, and two views, one over the other."""
    path = tmp_path / "prod.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.execute(
            "create schema raw; create schema staging; create schema marts;"
            "create table raw.users as select 'u' || i as user_id, 'user' || i || '@example.com' as email, "
            f"  {_at(FIRST_LOAD)} as _loaded_at from range(4) as r(i);"
            "create table raw.events as select 'e' || i as event_id, 'u' || (i % 4) as user_id, "
            f"  {_at(FIRST_LOAD)} as _loaded_at from range(10) as r(i);"
            "create table raw.orders as select 'o' || i as order_id, i * 1.5 as total, "
            f"  {_at(FIRST_LOAD)} as _loaded_at from range(3) as r(i);"
            "create table marts.fct_sessions as select 's' || i as session_id, 'u' || (i % 4) as user_id, "
            f"  i as pageviews, {_at(FIRST_BUILD)} as dbt_updated_at from range(5) as r(i);"
            "create table marts.dim_products as select 'p' || i as product_id, i as stock from range(3) as r(i);"
            "create view staging.stg_users as select user_id, email from raw.users;"
            # a view over a view, named so that it sorts (and is first tried) before the one it reads
            "create view marts.session_emails as select s.session_id, u.email "
            "  from marts.fct_sessions as s join staging.stg_users as u using (user_id);"
        )
    return path


def _at(moment: datetime) -> str:
    return f"timestamp '{moment}'"


def _write(path, sql: str):
    with duckdb.connect(str(path)) as connection:
        connection.execute(sql)


def _new_rows_in_prod(prod):
    """The next load and build: rows appended to the raw tables, one session updated, one added."""
    load, build = _at(NEXT_LOAD), _at(NEXT_BUILD)
    _write(
        prod,
        f"insert into raw.users values ('u4', 'user4@example.com', {load}), ('u5', 'user5@example.com', {load});"
        f"insert into raw.events select 'e' || i, 'u' || (i % 6), {load} from range(10, 13) as r(i);"
        f"update marts.fct_sessions set pageviews = 40, dbt_updated_at = {build} where session_id = 's1';"
        f"insert into marts.fct_sessions values ('s5', 'u5', 7, {build});",
    )


def _relations(path) -> dict[str, list[tuple]]:
    """Every table's and view's rows, sorted, by 'schema.name'."""
    with duckdb.connect(str(path), read_only=True) as connection:
        names = connection.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_catalog = current_database() order by 1"
        ).fetchall()
        return {name: sorted(connection.execute(f"select * from {name}").fetchall()) for (name,) in names}


def _expected(prod) -> dict[str, list[tuple]]:
    """prod's relations as a clone must hold them: the PII columns hashed with the salt."""
    expected = {}
    with duckdb.connect(str(prod), read_only=True) as connection:
        names = connection.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_catalog = current_database() order by 1"
        ).fetchall()
        for (name,) in names:
            cursor = connection.execute(f"select * from {name}")
            columns = [column[0] for column in cursor.description]
            masked = {columns.index(column) for column in PII.get(name, [])}
            expected[name] = sorted(
                tuple(_masked(value) if i in masked else value for i, value in enumerate(row))
                for row in cursor.fetchall()
            )
    return expected


def _counts(prod) -> dict[str, int]:
    with duckdb.connect(str(prod), read_only=True) as connection:
        tables = connection.execute("select schema_name || '.' || table_name from duckdb_tables()").fetchall()
        return {name: connection.execute(f"select count(*) from {name}").fetchone()[0] for (name,) in tables}


def test_a_new_environment_is_written_whole_once_and_copied_to_the_others(prod, tmp_path):
    dev, ci = tmp_path / "dev.duckdb", tmp_path / "ci.duckdb"

    cloned = clone(prod, [dev, ci], PII, SALT, CHANGES)

    assert {path: c.in_place for path, c in cloned.items()} == {dev: False, ci: False}
    assert cloned[dev].rows == cloned[ci].rows == _counts(prod)
    assert _relations(dev) == _relations(ci) == _expected(prod)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ci.duckdb", "dev.duckdb", "prod.duckdb"]


def test_a_second_clone_copies_only_the_new_rows_in_place(prod, tmp_path):
    dev, ci = tmp_path / "dev.duckdb", tmp_path / "ci.duckdb"
    clone(prod, [dev, ci], PII, SALT, CHANGES)
    inodes = {path: path.stat().st_ino for path in (dev, ci)}
    _new_rows_in_prod(prod)

    cloned = clone(prod, [dev, ci], PII, SALT, CHANGES)

    new_rows = {"raw.users": 2, "raw.events": 3, "raw.orders": 0, "marts.fct_sessions": 2}
    for path in (dev, ci):
        assert cloned[path].in_place
        assert cloned[path].rows == {**new_rows, "marts.dim_products": 3}  # the plain table whole
        assert path.stat().st_ino == inodes[path]
        assert _relations(path) == _expected(prod)
    assert sorted(p.name for p in tmp_path.iterdir() if ".partial" in p.name) == []
    # Merged by key: the updated session replaced its old row.
    sessions = {row[0]: row for row in _relations(dev)["marts.fct_sessions"]}
    assert len(sessions) == 6 and sessions["s1"] == ("s1", "u1", 40, NEXT_BUILD)
    # The views read the updated tables, masked.
    assert ("s5", _masked("user5@example.com")) in _relations(dev)["marts.session_emails"]


def test_a_snapshots_new_versions_and_the_versions_they_closed_are_copied_in_place(prod, tmp_path):
    """A snapshot run stamps an order's new version with its time and closes the old version at
    that time: both rows change, one of them written by an earlier run."""
    changes = {**CHANGES, "snapshots.orders": Changes("dbt_updated_at", ("dbt_scd_id",), closed_by="dbt_valid_to")}
    first = _at(FIRST_BUILD)
    _write(prod, "create schema snapshots; create table snapshots.orders as "
           f"select 'o' || i || '-1' as dbt_scd_id, 'o' || i as order_id, 'preparing' as status, {first} as dbt_updated_at, "
           f"{first} as dbt_valid_from, null::timestamp as dbt_valid_to from range(3) as r(i)")
    dev = tmp_path / "dev.duckdb"
    clone(prod, [dev], PII, SALT, changes)
    build = _at(NEXT_BUILD)
    _write(prod, f"update snapshots.orders set dbt_valid_to = {build} where order_id = 'o1';"
           f"insert into snapshots.orders values ('o1-2', 'o1', 'shipped', {build}, {build}, null)")

    cloned = clone(prod, [dev], PII, SALT, changes)

    assert cloned[dev].in_place and cloned[dev].rows["snapshots.orders"] == 2
    assert _relations(dev) == _expected(prod)
    assert ("o1-1", "o1", "preparing", FIRST_BUILD, FIRST_BUILD, NEXT_BUILD) in _relations(dev)["snapshots.orders"]


def test_a_merge_bounded_by_since_replaces_rows_from_the_new_rows_earliest_on(prod, tmp_path):
    """With `since` the clone matches only its rows from the new rows' earliest value on: a new
    row whose value moved earlier replaces its row in place; one whose value moved later (what a
    model declaring `merge_since` promises never happens) leaves its old row unmatched, so the
    counts differ from prod's and the table is copied whole rather than kept with a duplicate."""
    dev = tmp_path / "dev.duckdb"
    changes = {**CHANGES, "marts.fct_sessions": Changes("dbt_updated_at", ("session_id",), since="pageviews")}
    clone(prod, [dev], PII, SALT, changes)
    build = NEXT_BUILD + timedelta(hours=3)
    _write(prod, f"update marts.fct_sessions set pageviews = 0, dbt_updated_at = {_at(NEXT_BUILD)} where session_id = 's2';"
                 f"insert into marts.fct_sessions values ('s5', 'u1', 7, {_at(NEXT_BUILD)});")

    earlier = clone(prod, [dev], PII, SALT, changes)[dev]
    assert earlier.in_place and earlier.rows["marts.fct_sessions"] == 2
    assert _relations(dev) == _expected(prod)

    # s1 from 1 page view to 40: the new rows' earliest is 9, above s1's old row.
    _write(prod, f"update marts.fct_sessions set pageviews = 40, dbt_updated_at = {_at(build)} where session_id = 's1';"
                 f"insert into marts.fct_sessions values ('s6', 'u2', 9, {_at(build)});")
    later = clone(prod, [dev], PII, SALT, changes)[dev]
    assert later.rows["marts.fct_sessions"] == 7  # every row: copied whole
    assert _relations(dev) == _expected(prod)


def test_a_clone_with_nothing_new_copies_no_stamped_row(prod, tmp_path):
    dev = tmp_path / "dev.duckdb"
    clone(prod, [dev], PII, SALT, CHANGES)

    cloned = clone(prod, [dev], PII, SALT, CHANGES)

    assert cloned[dev] == clone_duckdb.Cloned(dict.fromkeys(CHANGES, 0) | {"marts.dim_products": 3}, in_place=True)
    assert _relations(dev) == _expected(prod)


def test_tables_whose_rows_are_not_prods_older_ones_are_copied_whole(prod, tmp_path, monkeypatch):
    dev = tmp_path / "dev.duckdb"
    clone(prod, [dev], PII, SALT, CHANGES)
    _new_rows_in_prod(prod)
    # A full refresh restamped every session; prod lost an event (and got new ones); a column was
    # added to the orders; someone wrote a clear email into the clone's users.
    _write(prod, f"update marts.fct_sessions set dbt_updated_at = {_at(NEXT_BUILD + timedelta(hours=1))}")
    _write(prod, "delete from raw.events where event_id = 'e0'")
    _write(prod, "alter table raw.orders add column note varchar default 'gift'")
    _write(dev, f"insert into raw.users values ('x', 'clear@example.com', {_at(FIRST_LOAD)})")
    refused = {}

    def copy_new_rows(connection, table, change):
        refused[table.name] = copied = copy(connection, table, change)
        return copied

    copy = clone_duckdb._copy_new_rows
    monkeypatch.setattr(clone_duckdb, "_copy_new_rows", copy_new_rows)

    cloned = clone(prod, [dev], PII, SALT, CHANGES)

    counts = _counts(prod)
    assert cloned[dev].rows == counts  # every table copied whole
    assert cloned[dev].rows["raw.events"] == 12 and cloned[dev].rows["raw.users"] == 6
    # Whole, not merged: the restamped sessions too, though merging them would come to the same rows.
    assert refused == {"users": None, "events": None, "fct_sessions": None}  # orders: not tried, new columns
    assert _relations(dev) == _expected(prod)
    assert cloned[dev].in_place


def test_a_new_salt_or_a_newly_declared_pii_column_masks_every_row_again(prod, tmp_path):
    dev = tmp_path / "dev.duckdb"
    clone(prod, [dev], PII, "an older salt", CHANGES)
    _new_rows_in_prod(prod)

    cloned = clone(prod, [dev], PII, SALT, CHANGES)

    assert cloned[dev].rows["raw.users"] == 6
    assert _relations(dev) == _expected(prod)


def test_tables_and_views_prod_dropped_are_dropped_and_new_ones_appear(prod, tmp_path):
    dev = tmp_path / "dev.duckdb"
    clone(prod, [dev], PII, SALT, CHANGES)
    _write(
        prod,
        "drop view marts.session_emails; drop table marts.dim_products; drop table raw.orders;"
        "create schema reports; create table reports.daily as select 1 as day, 2 as sessions;"
        "create view reports.daily_emails as select u.email, d.sessions from staging.stg_users as u, reports.daily as d;",
    )

    cloned = clone(prod, [dev], PII, SALT, CHANGES)

    assert cloned[dev].in_place
    assert set(cloned[dev].rows) == {"raw.users", "raw.events", "marts.fct_sessions", "reports.daily"}
    relations = _relations(dev)
    assert relations == _expected(prod)
    assert "marts.dim_products" not in relations and "marts.session_emails" not in relations
    # The new view reads the masked users.
    assert relations["reports.daily_emails"] == sorted((_masked(f"user{i}@example.com"), 2) for i in range(4))


@pytest.mark.parametrize("fails_in", ["_copy_new_rows", "_copy_whole", "create_views"])
def test_a_failed_update_leaves_the_environment_as_it_was(prod, tmp_path, monkeypatch, fails_in):
    dev = tmp_path / "dev.duckdb"
    clone(prod, [dev], PII, SALT, CHANGES)
    before = _relations(dev)
    _new_rows_in_prod(prod)
    _write(prod, "drop table raw.orders; create table marts.new as select 1 as n")

    calls = []

    def failing(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("disk on fire")

    where = clone_duckdb.wap if fails_in == "create_views" else clone_duckdb
    with monkeypatch.context() as patch:
        patch.setattr(where, fails_in, failing)
        with pytest.raises(RuntimeError, match="disk on fire"):
            clone(prod, [dev], PII, SALT, CHANGES)

    assert calls  # it failed where it was meant to
    assert _relations(dev) == before
    assert not (tmp_path / "dev.duckdb.partial").exists()
    # And the next clone brings it up to date in place.
    assert clone(prod, [dev], PII, SALT, CHANGES)[dev].in_place
    assert _relations(dev) == _expected(prod)


def test_a_failed_clone_leaves_the_previous_environment(prod, tmp_path):
    dev = tmp_path / "dev.duckdb"
    clone(prod, [dev], PII, SALT, CHANGES)
    before = _relations(dev)

    with pytest.raises(duckdb.Error):
        clone(tmp_path / "missing.duckdb", [dev], {}, SALT, CHANGES)

    assert _relations(dev) == before


@contextmanager
def _reader(path):
    """Another process holding `path` open read-only, answering one query per line."""
    process = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys\n"
         "c = duckdb.connect(sys.argv[1], read_only=True)\n"
         "print('open', flush=True)\n"
         "for line in sys.stdin:\n"
         "    print(repr(c.execute(line).fetchall()), flush=True)\n",
         str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )

    def query(sql: str) -> str:
        process.stdin.write(sql + "\n")
        process.stdin.flush()
        return process.stdout.readline().strip()

    try:
        assert process.stdout.readline().strip() == "open"
        yield query
    finally:
        process.communicate("", timeout=30)


def test_an_environment_a_reader_holds_open_is_written_whole_and_the_reader_keeps_the_old_one(prod, tmp_path):
    dev, ci = tmp_path / "dev.duckdb", tmp_path / "ci.duckdb"
    clone(prod, [dev, ci], PII, SALT, CHANGES)
    _new_rows_in_prod(prod)

    inode = dev.stat().st_ino
    with _reader(dev) as query:
        assert query("select count(*) from raw.users") == "[(4,)]"
        cloned = clone(prod, [dev, ci], PII, SALT, CHANGES)
        assert query("select count(*) from raw.users") == "[(4,)]"  # the old file, whole

    assert not cloned[dev].in_place and cloned[dev].rows == _counts(prod)
    assert dev.stat().st_ino != inode  # a new file moved over the old one
    assert cloned[ci].in_place and cloned[ci].rows["raw.users"] == 2
    assert _relations(dev) == _relations(ci) == _expected(prod)
    assert not (tmp_path / "dev.duckdb.partial").exists()


def test_a_view_that_reads_another_database_fails_the_clone(tmp_path):
    prod, other, dev = tmp_path / "prod.duckdb", tmp_path / "other.duckdb", tmp_path / "dev.duckdb"
    _write(other, "create table secrets as select 'a@example.com' as email")
    _write(prod, f"attach '{other}' as other (read_only); create view leak as select email from other.secrets")

    with pytest.raises(duckdb.Error):
        clone(prod, [dev], {}, SALT, {})

    assert not dev.exists() and not (tmp_path / "dev.duckdb.partial").exists()


def test_a_view_that_reads_another_database_fails_an_update_in_place(prod, tmp_path):
    other, dev = tmp_path / "other.duckdb", tmp_path / "dev.duckdb"
    clone(prod, [dev], PII, SALT, CHANGES)
    before = _relations(dev)
    _write(other, "create table secrets as select 'a@example.com' as email")
    _write(prod, f"attach '{other}' as other (read_only); create view raw.leak as select email from other.secrets")

    with pytest.raises(duckdb.Error):
        clone(prod, [dev], PII, SALT, CHANGES)

    assert _relations(dev) == before


def test_environments_updated_in_place_are_updated_side_by_side_each_with_a_share_of_the_memory(
    prod, tmp_path, monkeypatch
):
    import threading

    dev, ci = tmp_path / "dev.duckdb", tmp_path / "ci.duckdb"
    clone(prod, [dev, ci], PII, SALT, CHANGES)
    _new_rows_in_prod(prod)
    monkeypatch.setenv("GREENERY_DUCKDB_MEMORY_LIMIT", "2GB")
    both_started = threading.Barrier(2, timeout=30)  # broken unless the two run at once
    limits = []
    update = clone_duckdb._bring_up_to_date

    def side_by_side(connection, *args):
        limits.append(connection.execute("select current_setting('memory_limit')").fetchone()[0])
        both_started.wait()
        return update(connection, *args)

    monkeypatch.setattr(clone_duckdb, "_bring_up_to_date", side_by_side)
    cloned = clone(prod, [dev, ci], PII, SALT, CHANGES)

    with duckdb.connect(config={"memory_limit": "1GB"}) as connection:
        half = connection.execute("select current_setting('memory_limit')").fetchone()[0]
    assert limits == [half, half]
    for path in (dev, ci):
        assert cloned[path].in_place and _relations(path) == _expected(prod)


def test_one_environments_failed_update_leaves_it_as_it_was_and_the_others_are_cloned(prod, tmp_path, monkeypatch):
    dev, ci, qa = tmp_path / "dev.duckdb", tmp_path / "ci.duckdb", tmp_path / "qa.duckdb"
    clone(prod, [dev, ci], PII, SALT, CHANGES)
    before = _relations(dev)
    _new_rows_in_prod(prod)
    update = clone_duckdb._bring_up_to_date

    def failing_in_dev(connection, *args):
        (path,) = connection.execute("select path from duckdb_databases() where database_name = current_database()").fetchone()
        if path == str(dev):
            raise RuntimeError("disk on fire")
        return update(connection, *args)

    monkeypatch.setattr(clone_duckdb, "_bring_up_to_date", failing_in_dev)
    with pytest.raises(RuntimeError, match="disk on fire"):
        clone(prod, [dev, ci, qa], PII, SALT, CHANGES)

    assert _relations(dev) == before
    assert _relations(ci) == _relations(qa) == _expected(prod)  # updated in place, and written whole


@pytest.mark.parametrize(
    ("existing", "note"),
    [
        (["dev", "ci"], "ci was not updated either: disk on fire under ci"),
        (["dev"], "ci was not updated either: disk on fire under ci.duckdb"),  # its .partial, written whole
    ],
    ids=["both-updated-in-place", "one-written-whole"],
)
def test_when_several_environments_fail_the_error_raised_names_each(prod, tmp_path, monkeypatch, existing, note):
    dev, ci = tmp_path / "dev.duckdb", tmp_path / "ci.duckdb"
    clone(prod, [tmp_path / f"{name}.duckdb" for name in existing], PII, SALT, CHANGES)
    before = {name: _relations(tmp_path / f"{name}.duckdb") for name in existing}
    _new_rows_in_prod(prod)

    def failing(connection, *args):
        (path,) = connection.execute("select path from duckdb_databases() where database_name = current_database()").fetchone()
        raise RuntimeError(f"disk on fire under {Path(path).stem}")

    monkeypatch.setattr(clone_duckdb, "_bring_up_to_date", failing)
    with pytest.raises(RuntimeError, match="disk on fire under dev") as raised:
        clone(prod, [dev, ci], PII, SALT, CHANGES)

    assert raised.value.__notes__ == [note]
    assert {name: _relations(tmp_path / f"{name}.duckdb") for name in existing} == before
    assert ci.exists() == ("ci" in existing) and not list(tmp_path.glob("*.partial"))


def test_a_signal_during_the_updates_interrupts_them_and_leaves_the_environments_as_they_were(
    prod, tmp_path, monkeypatch
):
    import os
    import signal
    import threading
    import time

    class Stop(Exception):
        pass

    dev, ci = tmp_path / "dev.duckdb", tmp_path / "ci.duckdb"
    clone(prod, [dev, ci], PII, SALT, CHANGES)
    before = {path: _relations(path) for path in (dev, ci)}
    _new_rows_in_prod(prod)

    def endless(connection, views):  # the tables' new rows are in: a query runs until interrupted
        connection.execute("select count(*) from range(10000000000000)")

    def stop(signum, frame):
        raise Stop

    previous = signal.signal(signal.SIGUSR1, stop)
    monkeypatch.setattr(clone_duckdb.wap, "create_views", endless)
    threading.Timer(1, os.kill, (os.getpid(), signal.SIGUSR1)).start()
    started = time.monotonic()
    try:
        with pytest.raises(Stop):
            clone(prod, [dev, ci], PII, SALT, CHANGES)
    finally:
        signal.signal(signal.SIGUSR1, previous)

    assert time.monotonic() - started < 30  # the count alone takes hours
    assert {path: _relations(path) for path in (dev, ci)} == before


def test_the_memory_limit_is_read_in_duckdbs_units_and_a_bad_one_is_named(monkeypatch):
    from greenery_orchestration.settings import duckdb_config

    for limit, share in [("3GB", "1500000000B"), ("2.5 GiB", f"{int(2.5 * 2**30) // 2}B"), ("800m", "400000000B"),
                         ("2 gigabytes", "1000000000B"), ("50%", "25.0%"), ("-1", "-1")]:
        monkeypatch.setenv("GREENERY_DUCKDB_MEMORY_LIMIT", limit)
        assert duckdb_config()["memory_limit"] == limit
        assert duckdb_config(at_once=2)["memory_limit"] == share
        duckdb.connect(config=duckdb_config(at_once=2)).close()  # DuckDB takes it
    monkeypatch.setenv("GREENERY_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="GREENERY_DUCKDB_MEMORY_LIMIT: not an amount of memory: 'lots'"):
        duckdb_config(at_once=2)
