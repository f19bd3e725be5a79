"""Write-audit-publish on the Snowflake target, through its real clients against fakesnow's HTTP
server: wap_snowflake.stage() and publish() on the connector's connection, a staged `dbt build`
(dbt-snowflake in a subprocess, `--vars '{staged: true}'`) in between.

fakesnow cannot clone or swap schemas, nor grant: with GREENERY_SNOWFLAKE_EMULATED=true the module
runs the nearest statements it can (snowflake_emulation.py) and returns the real ones, which are
parsed here as Snowflake SQL. Everything else (the data, the views, the log) is read back as is.
"""

import hashlib
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from snowflake.connector.pandas_tools import write_pandas
from sqlglot import exp

from greenery_orchestration import wap
from greenery_orchestration.project import STAGED_VARS
from greenery_orchestration.rawdata.load_csv import load_csv_dir
from greenery_orchestration.rawdata.load_log import load_time
from greenery_orchestration.rawdata.sample import append_to_raw, write_sample
from greenery_orchestration.rawdata.schema import declared_columns, load_marker, raw_columns
from greenery_orchestration.wap_snowflake import (
    PUBLISH_LOG_COLUMNS,
    Published,
    dbt_schemas,
    future_grant_sql,
    last_publish,
    masking_sql,
    published_view_sql,
    publish,
    publish_order,
    schema_grant_sql,
    stage,
)
from tests.test_snowflake import COURSE_DATA, _parse, expected_funnel

DATABASE = "GREENERY_WAP"  # its own: test_real_clients.py fills GREENERY on the same server
DBT = str(Path(sys.executable).with_name("dbt"))
DBT_TIMEOUT_SECONDS = 300  # a staged build here takes 15-30 s; never wait forever on one
STAGED = STAGED_VARS
SCHEMAS = ["staging", "snapshots", "intermediate", "marts"]
KEYS = {"users": "user_id", "addresses": "address_id", "orders": "order_id", "events": "event_id"}

@pytest.fixture(scope="module")
def emulated():
    """This process runs wap_snowflake against fakesnow, as the dbt subprocesses do."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GREENERY_SNOWFLAKE_EMULATED", "true")
        yield


@dataclass
class Shop:
    course: bool  # the course data, or (when it is absent) a synthetic shop
    duckdb_path: Path  # the raw tables as the loader types them; append_to_raw adds to them
    target: Path  # dbt's target folder, shared by every invocation (one partial parse)


@dataclass
class FirstPublish:
    shop: Shop
    staged: list[str]  # the statements stage() returned
    manifest: dict  # of the staged build
    view_ddl: str  # dbt-snowflake's own CREATE VIEW of a view that reads another model, as the build ran it
    published: Published
    started: datetime  # when the run began (naive UTC), as the publish logs it


def raw_frames(path: Path, where: dict[str, str] | None = None) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return {
            table: connection.execute(f"select * from raw.{table} {(where or {}).get(table, '')}").df()
            for table in raw_columns()
        }


def write_raw(connection, frames: dict[str, pd.DataFrame], create: bool) -> None:
    """Into RAW the way production loads Snowflake (write_pandas), creating the tables first or appending."""
    cursor = connection.cursor()
    if create:
        cursor.execute("create schema if not exists raw")
    for table, frame in frames.items():
        if create:
            declared = ", ".join(f"{name} {data_type}" for name, data_type in declared_columns()[table].items())
            cursor.execute(f"create or replace table raw.{table} ({declared})")
        if len(frame):
            # Unquoted: the frame's lower-case names resolve to the table's columns, as on Snowflake.
            success, _, rows, _ = write_pandas(
                connection, frame, table.upper(), database=DATABASE, schema="RAW", quote_identifiers=False,
            )
            assert success and rows == len(frame), table


def dbt(server, shop: Shop, *args: str):
    done = server.run(
        [DBT, *args, *STAGED], timeout=DBT_TIMEOUT_SECONDS,
        env={"SNOWFLAKE_DATABASE": DATABASE, "DBT_TARGET_PATH": str(shop.target),
             "DBT_LOG_PATH": str(shop.target / "logs"), "DBT_USE_COLORS": "false"},
    )
    results = json.loads((shop.target / "run_results.json").read_text())["results"]
    return done, {r["unique_id"]: r["status"] for r in results}


def rows(connection, sql: str) -> list[tuple]:
    return connection.cursor().execute(sql).fetchall()


def funnel(connection, schema: str = "marts") -> list[int]:
    return [count for (count,) in rows(connection, f"select sessions from {schema}.fct_funnel order by step_number")]


def published_state(connection) -> dict[str, tuple]:
    """Every relation in the published schemas, by name: a view's definition, a table's columns and a
    digest of its rows (sorted, so the order rows come back in does not matter)."""
    listed = ", ".join(f"'{schema.upper()}'" for schema in SCHEMAS)
    state = {
        f"{schema}.{name}": ("view", definition)
        for schema, name, definition in rows(
            connection, f"select table_schema, table_name, view_definition from information_schema.views "
            f"where table_schema in ({listed})")
    }
    for schema, name in rows(connection, f"select table_schema, table_name from information_schema.tables "
                             f"where table_schema in ({listed}) and table_type = 'BASE TABLE'"):
        cursor = connection.cursor().execute(f"select * from {schema}.{name}")
        columns = [column[0] for column in cursor.description]
        found = sorted(repr(row) for row in cursor.fetchall())
        state[f"{schema}.{name}"] = ("table", columns, len(found), hashlib.sha256("\n".join(found).encode()).hexdigest())
    return state


def published_log(connection) -> list[tuple]:
    return rows(connection, f"select run_id, code_version, row_counts from {wap.PUBLISH_LOG} order by published_at")


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Shop:
    folder = tmp_path_factory.mktemp("wap_snowflake")
    course = (COURSE_DATA / "events.csv").exists()
    path = folder / "prod.duckdb"  # not raw.duckdb: the catalog would shadow schema raw
    if course:
        with duckdb.connect(str(path)) as connection:
            load_csv_dir(connection, COURSE_DATA)
    else:
        write_sample(path, seed=11, days=2, sessions_per_day=60, end=datetime.now(UTC) - timedelta(hours=12))
    return Shop(course, path, folder / "target")


@pytest.fixture(scope="module")
def first(snowflake_server, emulated, shop, dbt_manifest) -> FirstPublish:
    """The raw tables loaded, then a production run's three steps: stage, staged build, publish."""
    schemas = dbt_schemas(json.loads(dbt_manifest.read_text()))
    assert schemas == SCHEMAS
    with snowflake_server.in_process(), snowflake_server.connect(DATABASE, schema="RAW") as connection:
        write_raw(connection, raw_frames(shop.duckdb_path), create=True)
        started = datetime.now(UTC).replace(tzinfo=None)
        staged = stage(connection, DATABASE, schemas)
    build, results = dbt(snowflake_server, shop, "build")
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-2000:] + snowflake_server.server_log()
    assert set(results.values()) <= {"success", "pass"}
    manifest = json.loads((shop.target / "manifest.json").read_text())
    view_ddl = (shop.target / "run" / "greenery" / "models" / "marts" / "product" / "fct_funnel.sql").read_text()
    with snowflake_server.in_process(), snowflake_server.connect(DATABASE, schema="RAW") as connection:
        published = publish(connection, DATABASE, schemas, "run-1", "code-1", run_started_at=started)
    return FirstPublish(shop, staged, manifest, view_ddl, published, started)


def test_a_staged_build_writes_into_staged_schemas_and_its_publish_gives_the_duckdb_funnel(snowflake_server, first):
    # The build wrote every model and the snapshot into `<schema>__staged`, under their own names.
    built = [node for node in first.manifest["nodes"].values() if node["resource_type"] in ("model", "snapshot")]
    assert len(built) == 25  # 24 models, the snapshot
    assert {node["schema"] for node in built} == {f"{schema}__staged" for schema in SCHEMAS}
    assert all(node["alias"] == node["name"] for node in built)

    events = raw_frames(first.shop.duckdb_path)["events"]
    with snowflake_server.in_process(), snowflake_server.connect(DATABASE, schema="RAW") as connection:
        assert funnel(connection) == expected_funnel(events)
        if first.shop.course:
            assert funnel(connection) == [578, 467, 361]  # what the DuckDB target gives on the course data
        # Published: every layer under its own name, nothing staged left, every view on published names.
        schemas = {name for (name,) in rows(connection, "select schema_name from information_schema.schemata")}
        assert {schema.upper() for schema in SCHEMAS} <= schemas
        assert not [name for name in schemas if name.endswith("__STAGED")]
        views = rows(connection, "select table_schema, table_name, view_definition from information_schema.views "
                     "where table_schema in ('STAGING', 'MARTS')")
        assert len(views) == 9  # the staging models, fct_funnel and fct_funnel_users
        assert not [name for _, name, definition in views if "__STAGED" in definition.upper()]
        # A view that reads another model reads the published one.
        assert rows(connection, "select sessions from marts.fct_funnel where step_number = 1") == \
            rows(connection, "select sum(sessions) from marts.fct_funnel_daily where step_number = 1")
        # The publish log: one row, the counts of every table as published, raw included.
        ((run_id, code_version, counts),) = published_log(connection)
        assert (run_id, code_version) == ("run-1", "code-1")
        assert json.loads(counts) == first.published.row_counts
        assert rows(connection, f"select run_started_at from {wap.PUBLISH_LOG}") == [(first.started,)]
        tables = {f"{schema}.{name}".lower() for schema, name in rows(
            connection, "select table_schema, table_name from information_schema.tables "
            "where table_type = 'BASE TABLE' and table_schema not in ('OPS', 'INFORMATION_SCHEMA')")}
        # raw 7, marts 10 (2 are views), intermediate 4, the snapshot, the seed
        assert first.published.row_counts.keys() == tables and len(tables) == 7 + 10 + 4 + 1 + 1
        assert first.published.row_counts["marts.fct_events"] == first.published.row_counts["raw.events"] == len(events)
        assert first.published.row_counts["snapshots.orders_snapshot"] == len(raw_frames(first.shop.duckdb_path)["orders"])
        assert last_publish(connection, DATABASE)[0] == "run-1"
        columns = rows(connection, "select column_name, data_type from information_schema.columns "
                       "where table_schema = 'OPS' and table_name = 'PUBLISH_LOG' order by ordinal_position")
    # The same table as on DuckDB (wap.create_publish_log).
    with duckdb.connect() as local:
        wap.create_publish_log(local)
        duckdb_columns = local.execute("select column_name, data_type from duckdb_columns() "
                                       "where table_name = 'publish_log' order by column_index").fetchall()
    assert [name.lower() for name, _ in columns] == [name for name, _ in duckdb_columns] == list(PUBLISH_LOG_COLUMNS)
    assert [t for _, t in columns] == ["TEXT", "TIMESTAMP_NTZ", "TEXT", "TEXT", "TIMESTAMP_NTZ"]
    # naive, like TIMESTAMP_NTZ
    assert [t for _, t in duckdb_columns] == ["VARCHAR", "TIMESTAMP", "VARCHAR", "VARCHAR", "TIMESTAMP"]


def test_stage_and_publish_return_the_snowflake_statements(first):
    # stage(): per schema, created if never published, then a zero-copy clone.
    assert len(first.staged) == 2 * len(SCHEMAS)
    for schema, (create, clone) in zip(SCHEMAS, zip(first.staged[::2], first.staged[1::2], strict=True), strict=True):
        created = _parse(create)
        assert isinstance(created, exp.Create) and created.kind == "SCHEMA" and created.args["exists"]
        assert (created.this.catalog, created.this.db) == (DATABASE, schema)
        cloned = _parse(clone)
        assert isinstance(cloned, exp.Create) and cloned.kind == "SCHEMA" and cloned.args["replace"]
        assert (cloned.this.catalog, cloned.this.db) == (DATABASE, f"{schema}__staged")
        source = cloned.args["clone"].this
        assert (source.db, source.name) == (DATABASE, schema)  # a name in two parts, read as db.table

    statements = first.published.statements
    swaps = [s for s in statements if s.startswith("alter schema")]
    assert swaps == [f"alter schema {DATABASE}.{schema}__staged swap with {DATABASE}.{schema}" for schema in SCHEMAS]
    for swap in swaps:
        assert isinstance(_parse(swap), exp.Command)  # no sqlglot grammar for SWAP WITH: exact text above
        assert statements[statements.index(swap) - 1] == f"create schema if not exists {swap.split()[-1]}"
    # Marts last: readers of the marts see them change in this one statement, after everything else.
    assert statements.index(swaps[-1]) > max(statements.index(s) for s in swaps[:-1])

    # The views that read another model, created again on the published names once all is swapped:
    # from fakesnow's text of them here, from dbt-snowflake's own DDL (Snowflake keeps it) there.
    views = [s for s in statements if s.lower().startswith("create or replace view")]
    assert views and all(statements.index(v) > statements.index(swaps[-1]) for v in views)
    on_snowflake = published_view_sql(first.view_ddl, SCHEMAS)
    assert "__staged" in first.view_ddl and "__staged" not in on_snowflake
    for statement in [*views, on_snowflake]:
        view = _parse(statement)
        assert isinstance(view, exp.Create) and view.kind == "VIEW" and view.args["replace"]
        assert view.this.db.lower() in SCHEMAS
        read = {table.db.lower() for table in view.expression.find_all(exp.Table) if table.db}
        assert read and read <= set(SCHEMAS)

    # The log row, then the leftovers dropped.
    create_schema, create_table, *alters, insert = statements[statements.index(views[-1]) + 1:-len(SCHEMAS)]
    drops = statements[-len(SCHEMAS):]
    assert isinstance(_parse(create_schema), exp.Create) and _parse(create_schema).this.db == "ops"
    table = _parse(create_table)
    assert isinstance(table, exp.Create) and table.args["exists"]
    assert [(c.name, c.args["kind"]) for c in table.this.expressions] == [
        (name, exp.DataType.build(data_type, dialect="snowflake")) for name, data_type in PUBLISH_LOG_COLUMNS.items()]
    # A log from before a column gains it.
    assert [_parse(alter).this.name for alter in alters] == ["publish_log"] * len(PUBLISH_LOG_COLUMNS)
    inserted = _parse(insert)
    assert isinstance(inserted, exp.Insert)
    values = [value.sql("snowflake") for value in inserted.expression.expressions[0].expressions]
    assert values[0] == "'run-1'" and values[2] == "'code-1'"
    assert json.loads(inserted.expression.expressions[0].expressions[3].this) == first.published.row_counts
    assert len(drops) == len(SCHEMAS)
    for schema, drop in zip(SCHEMAS, drops, strict=True):
        dropped = _parse(drop)
        assert isinstance(dropped, exp.Drop) and dropped.kind == "SCHEMA" and dropped.args["cascade"]
        (name,) = dropped.args["tables"]
        assert (name.catalog, name.db) == (DATABASE, f"{schema}__staged")
    # fakesnow has no grants: none were read, none granted again (see the rendering below).
    assert not [s for s in [*first.staged, *statements] if s.startswith("grant")]


def test_what_a_swap_leaves_behind_is_granted_and_masked_again():
    # What publish() grants again after a swap: SHOW GRANTS ON SCHEMA's rows, ownership aside ...
    shown = [
        {"privilege": "OWNERSHIP", "granted_on": "SCHEMA", "name": "GREENERY.MARTS", "granted_to": "ROLE",
         "grantee_name": "TRANSFORMER", "grant_option": "true"},
        {"privilege": "USAGE", "granted_on": "SCHEMA", "name": "GREENERY.MARTS", "granted_to": "ROLE",
         "grantee_name": "ANALYST", "grant_option": "false"},
        {"privilege": "USAGE", "granted_on": "SCHEMA", "name": "GREENERY.MARTS", "granted_to": "DATABASE_ROLE",
         "grantee_name": "GREENERY.READER", "grant_option": "false"},
        {"privilege": "MONITOR", "granted_on": "SCHEMA", "name": "GREENERY.MARTS", "granted_to": "ROLE",
         "grantee_name": "Ops Team", "grant_option": "true"},
    ]
    granted = schema_grant_sql("GREENERY.marts", shown)
    assert granted == [
        "grant usage on schema GREENERY.marts to role ANALYST",
        "grant usage on schema GREENERY.marts to database role GREENERY.READER",
        'grant monitor on schema GREENERY.marts to role "Ops Team" with grant option',
    ]
    assert isinstance(_parse(granted[1]), exp.Command)  # no sqlglot grammar for DATABASE ROLE: exact text above
    for statement, (privilege, grantee) in zip(granted[::2], [("USAGE", "ANALYST"), ("MONITOR", "Ops Team")], strict=True):
        parsed = _parse(statement)
        assert isinstance(parsed, exp.Grant) and parsed.args["kind"] == "SCHEMA"
        assert [p.this.sql("snowflake") for p in parsed.args["privileges"]] == [privilege]
        assert parsed.args["securable"].sql("snowflake") == "GREENERY.marts"
        (principal,) = parsed.args["principals"]
        assert principal.this.sql("snowflake").replace('"', "") == grantee
    # ... and SHOW FUTURE GRANTS IN SCHEMA's (stage() gives them to the staged schema too).
    future = future_grant_sql("GREENERY.marts__staged", [
        {"privilege": "SELECT", "grant_on": "TABLE", "name": "GREENERY.MARTS.<TABLE>", "grant_to": "ROLE",
         "grantee_name": "ANALYST", "grant_option": "false"},
        {"privilege": "SELECT", "grant_on": "MATERIALIZED_VIEW", "name": "GREENERY.MARTS.<MATERIALIZED_VIEW>",
         "grant_to": "ROLE", "grantee_name": "ANALYST", "grant_option": "false"},
    ])
    assert future == [
        "grant select on future tables in schema GREENERY.marts__staged to role ANALYST",
        "grant select on future materialized views in schema GREENERY.marts__staged to role ANALYST",
    ]
    for statement in future:
        _parse(statement)  # no sqlglot grammar for ON FUTURE: the exact text above

    # CREATE OR REPLACE VIEW drops the view's masking policies: publish() attaches them again.
    (attached,) = masking_sql("GREENERY.intermediate.int_users", [
        {"policy_db": "GREENERY", "policy_schema": "GOVERNANCE", "policy_name": "PII_STRING",
         "policy_kind": "MASKING_POLICY", "ref_column_name": "EMAIL"},
        {"policy_db": "GREENERY", "policy_schema": "GOVERNANCE", "policy_name": "ROWS",
         "policy_kind": "ROW_ACCESS_POLICY", "ref_column_name": None},
    ])
    _parse(attached)
    assert attached == ("alter view GREENERY.intermediate.int_users modify column EMAIL "
                        "set masking policy GREENERY.GOVERNANCE.PII_STRING force")


def test_the_publish_order_puts_the_marts_last():
    assert publish_order(["marts", "intermediate", "staging", "snapshots", "marts"]) == SCHEMAS
    assert publish_order(["marts", "extra", "staging"]) == ["staging", "extra", "marts"]
    with pytest.raises(ValueError, match="not a plain Snowflake identifier"):
        publish_order(["marts; drop database prod"])


def test_a_failed_build_publishes_nothing_and_the_next_run_builds_incrementally(snowflake_server, first):
    """An order item of an unknown product fails a test of the build, while an order that shipped gives
    the snapshot a new version: nothing of it is published. The next run, on repaired and appended
    data, merges into the incremental models what is new, as a full refresh would have built them."""
    shop = first.shop
    raw = raw_frames(shop.duckdb_path)
    order = raw["order_items"].order_id.value_counts().index[0]
    shipped, edited = sorted(raw["orders"][raw["orders"].status == "preparing"].order_id)[:2]
    with snowflake_server.in_process(), snowflake_server.connect(DATABASE, schema="RAW") as connection:
        before = published_state(connection)
        # views: staging 7, intermediate 1, marts 2; tables: marts 10, intermediate 4, the snapshot, the seed
        assert len(before) == 10 + 16
        cursor = connection.cursor()
        cursor.execute("insert into raw.order_items (order_id, product_id, quantity) values (%s, 'no-such-product', 50)",
                       (order,))
        cursor.execute("update raw.orders set status = 'shipped', tracking_id = 'T-1', shipping_service = 'ups', "
                       f"{load_marker()} = %s where order_id = %s", (load_time(), shipped))  # as a load stamps it
        # The same change edited in place, unstamped: the snapshot, reading the orders loaded since
        # the last publishing run began, does not see it.
        cursor.execute("update raw.orders set status = 'shipped' where order_id = %s", (edited,))
        stage(connection, DATABASE, SCHEMAS)

    failed, results = dbt(snowflake_server, shop, "build")
    assert failed.returncode == 1, failed.stdout[-5000:]
    assert {test: status for test, status in results.items() if status not in ("success", "pass", "skipped")} == {
        next(test for test in results if ".relationships_stg_greenery__order_items_product_id" in test): "fail"}

    with snowflake_server.in_process(), snowflake_server.connect(DATABASE, schema="RAW") as connection:
        # No publish: every published relation as it was, rows and definitions; one publish logged.
        assert published_state(connection) == before
        assert len(published_log(connection)) == 1
        # The failed build, kept for inspection in the staged schemas.
        assert rows(connection, "select count(*) from staging__staged.stg_greenery__order_items "
                    "where product_id = 'no-such-product'") == [(1,)]
        versions = [rows(connection, f"select count(*) from {schema}.orders_snapshot where order_id = '{order}'")[0][0]
                    for order in (shipped, edited) for schema in ("snapshots", "snapshots__staged")]
        assert versions == [1, 2, 1, 1]

        # The next run: the bad row removed (the shipped order stays), a few more hours of the shop.
        connection.cursor().execute("delete from raw.order_items where product_id = 'no-such-product'")
        newest = raw["events"].created_at.max()
        appended = append_to_raw(shop.duckdb_path, seed=5, hours=8, sessions_per_day=300,
                                 until=newest.to_pydatetime().replace(tzinfo=UTC) + timedelta(hours=8))
        assert appended.counts["events"] > 0
        new = raw_frames(shop.duckdb_path)
        added = {table: new[table][~new[table][key].isin(raw[table][key])] for table, key in KEYS.items()}
        added["order_items"] = new["order_items"][new["order_items"].order_id.isin(added["orders"].order_id)]
        added = {table: frame.reset_index(drop=True) for table, frame in added.items()}
        assert {table: len(frame) for table, frame in added.items()} == {
            table: appended.counts[table] for table in added}
        write_raw(connection, added, create=False)
        started = datetime.now(UTC).replace(tzinfo=None)
        stage(connection, DATABASE, SCHEMAS)

    second, results = dbt(snowflake_server, shop, "build")
    assert second.returncode == 0, second.stdout[-5000:]
    executed = " ".join((shop.target / "run" / "greenery" / "models" / "marts" / "core" / "fct_events.sql")
                        .read_text().split()).lower()
    assert f"merge into {DATABASE.lower()}.marts__staged.fct_events as dbt_internal_dest" in executed

    with snowflake_server.in_process(), snowflake_server.connect(DATABASE, schema="RAW") as connection:
        published = publish(connection, DATABASE, SCHEMAS, "run-3", "code-1", run_started_at=started)
        events = new["events"]
        assert published.row_counts["marts.fct_events"] == len(events)
        assert funnel(connection) == expected_funnel(events)
        # Merged (above): the events loaded since the last build get this run's stamp. On Snowflake that
        # bound goes back lookback_hours (macros/loaded_since.sql): here every event is that recent.
        stamps = rows(connection, "select dbt_updated_at, count(*) from marts.fct_events group by 1 order by 1")
        assert stamps[-1][1] >= appended.counts["events"]
        assert rows(connection, f"select count(*) from snapshots.orders_snapshot where order_id = '{shipped}'") == [(2,)]
        assert [run for run, _, _ in published_log(connection)] == ["run-1", "run-3"]
        assert last_publish(connection, DATABASE)[0] == "run-3"

        # What a full refresh builds from the same raw tables, staged beside it: the same rows.
        stage(connection, DATABASE, SCHEMAS)
    full, _ = dbt(snowflake_server, shop, "run", "--full-refresh", "--select", "fct_events")
    assert full.returncode == 0, full.stdout[-5000:]
    with snowflake_server.in_process(), snowflake_server.connect(DATABASE, schema="RAW") as connection:
        incremental, rebuilt = (
            connection.cursor().execute(f"select * exclude (dbt_updated_at) from {schema}.fct_events order by event_id")
            .fetch_pandas_all()
            for schema in ("marts", "marts__staged")
        )
        assert len(rows(connection, "select distinct dbt_updated_at from marts__staged.fct_events")) == 1
    assert len(incremental) == len(events)
    pd.testing.assert_frame_equal(incremental, rebuilt, check_exact=True)


def test_a_staged_snapshot_that_was_not_staged_first_stops_before_writing(snowflake_server, first):
    # Without stage() dbt would start a new snapshot in snapshots__staged, and publishing it would
    # retire the order history: the snapshot's pre-hook stops it.
    with snowflake_server.in_process(), snowflake_server.connect(DATABASE, schema="RAW") as connection:
        connection.cursor().execute(f"drop schema if exists {DATABASE}.snapshots__staged cascade")
        history = rows(connection, "select count(*) from snapshots.orders_snapshot")
    done, results = dbt(snowflake_server, first.shop, "snapshot")
    assert done.returncode == 1
    assert set(results.values()) == {"error"}
    assert (f"{DATABASE}.snapshots__staged.orders_snapshot is missing while {DATABASE}.snapshots.orders_snapshot "
            "holds the history: stage the build first") in " ".join(done.stdout.split())
    with snowflake_server.in_process(), snowflake_server.connect(DATABASE, schema="RAW") as connection:
        assert rows(connection, "select count(*) from information_schema.tables where table_schema = 'SNAPSHOTS__STAGED'") == [(0,)]
        assert rows(connection, "select count(*) from snapshots.orders_snapshot") == history
        # Nor does publish() swap in what is not there: it refuses before changing anything.
        before = published_state(connection)
        # dbt made the schema it built into: there, but not a clone of the published one.
        with pytest.raises(wap.NothingStaged, match=rf"^{DATABASE}\.snapshots__staged lacks orders_snapshot of "
                           rf"{DATABASE}\.snapshots: not staged by wap_snowflake\.stage\(\), nothing was published$"):
            publish(connection, DATABASE, SCHEMAS, "run-4", "code-1", run_started_at=datetime.now(UTC).replace(tzinfo=None))
        connection.cursor().execute(f"drop schema {DATABASE}.snapshots__staged cascade")
        with pytest.raises(wap.NothingStaged, match=rf"^{DATABASE}\.snapshots__staged is missing: not staged"):
            publish(connection, DATABASE, SCHEMAS, "run-4", "code-1", run_started_at=datetime.now(UTC).replace(tzinfo=None))
        assert published_state(connection) == before
        assert [run for run, _, _ in published_log(connection)] == ["run-1", "run-3"]
