"""The Snowflake production target, run on fakesnow: Snowflake's SQL, emulated on DuckDB.

The seven raw tables go into a fakesnow database (schema RAW), the course data when it is there,
else a synthetic shop; then dbt runs on the `snowflake` output of profiles.yml, in a subprocess
under `python -m fakesnow --db_path DIR -m dbt.cli.main ...`, with GREENERY_SNOWFLAKE_EMULATED=true
adding the few macro overrides fakesnow needs to dbt's macro paths (dbt_project/emulation/).
The database lives in files under DIR, so every dbt invocation, and this process between them,
sees the same data. Nothing connects anywhere: fakesnow replaces snowflake.connector.connect.

What fakesnow cannot run (masking policies, the clone and its grants) is checked as SQL, parsed
with sqlglot's Snowflake dialect; the masking statements the emulation skips are read from dbt's
debug log, to see where each build runs them. Write-audit-publish's schema clones and swaps are
tested through the real clients, in snowflake_server/test_wap_snowflake.py.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from greenery_orchestration.assets.examples import EXAMPLE, failing_examples
from greenery_orchestration.warehouse_snowflake import snowflake_clone_sql
from greenery_orchestration.chain.masking import pii_columns
from greenery_orchestration.marts import FUNNEL_MARTS
from greenery_orchestration.rawdata.load_csv import load_csv_dir, replace_raw_tables, typed_select
from greenery_orchestration.rawdata.load_log import load_time
from greenery_orchestration.rawdata.sample import sample_tables
from greenery_orchestration.rawdata.schema import declared_columns, raw_columns
from greenery_orchestration.settings import DBT_PROJECT_DIR, REPO_DIR
from greenery_orchestration.warehouse import warehouse_resource
from tests.slices import sliced_events, sliced_tables

COURSE_DATA = REPO_DIR.parent / "shared" / "greenery"

pytestmark = [
    # fakesnow's own, on every query it runs in this process, and on write_pandas under pandas 3.
    pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning"),
    pytest.mark.filterwarnings("ignore:For backward compatibility, 'str' dtypes"),
]
DATABASE = "GREENERY"
READER_ROLE = "ANALYST_PII_READER"
SALT = "pepper'salt"  # a quote in it: the policy must escape it
DBT_TIMEOUT_SECONDS = 240  # a dbt invocation here takes 4-8 s; never wait forever on one

# The emulated Snowflake account. fakesnow ignores the credentials; they only have to be there.
EMULATED_SNOWFLAKE_ENV = {
    "GREENERY_TARGET": "snowflake",
    "GREENERY_SNOWFLAKE_EMULATED": "true",
    "SNOWFLAKE_ACCOUNT": "fakesnow",
    "SNOWFLAKE_USER": "fake",
    "SNOWFLAKE_PASSWORD": "snow",
    "SNOWFLAKE_ROLE": "TRANSFORMER",
    "SNOWFLAKE_WAREHOUSE": "COMPUTE_WH",
    "SNOWFLAKE_DATABASE": DATABASE,
}

# Every column declared `meta: {pii: true}`, as (schema, relation, column, kind, policy).
EXPECTED_PII = {
    *(("RAW", "USERS", c, "table", "pii_string") for c in ["first_name", "last_name", "email", "phone_number"]),
    ("RAW", "ADDRESSES", "address", "table", "pii_string"),
    ("RAW", "ADDRESSES", "zipcode", "table", "pii_number"),  # an integer upstream
    *(("STAGING", "STG_GREENERY__USERS", c, "view", "pii_string") for c in ["first_name", "last_name", "email", "phone_number"]),
    ("STAGING", "STG_GREENERY__ADDRESSES", "address", "view", "pii_string"),
    ("STAGING", "STG_GREENERY__ADDRESSES", "zipcode", "view", "pii_string"),  # text, zero-padded
    *(("MARTS", "DIM_USERS", c, "table", "pii_string") for c in ["first_name", "last_name", "email", "phone_number"]),
}


# --- running dbt on the emulated Snowflake ---------------------------------------------------


@dataclass
class DbtRun:
    returncode: int
    events: list[dict]  # dbt's JSON log lines
    stdout: str
    stderr: str

    def messages(self, tail: int = 40) -> str:
        lines = [e["info"]["msg"] for e in self.events] or self.stdout.splitlines()
        return "\n".join(lines[-tail:]) + "\n" + self.stderr[-2000:]


@dataclass
class EmulatedSnowflake:
    """A fakesnow database folder, and dbt run against it."""

    db_path: Path
    target_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        # No SNOWFLAKE_* of the caller's own (a real account, a key file) reaches the emulation.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SNOWFLAKE_", "GREENERY_", "DBT_"))}
        return {
            **inherited,
            **EMULATED_SNOWFLAKE_ENV,
            "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
            "DBT_TARGET_PATH": str(self.target_path),
            "DBT_LOG_PATH": str(self.target_path / "logs"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "PYTHONWARNINGS": "ignore",  # runpy's and fakesnow's, on every statement
            **self.extra_env,
        }

    def dbt(self, *args: str) -> DbtRun:
        command = [sys.executable, "-m", "fakesnow", "--db_path", str(self.db_path), "-m", "dbt.cli.main", *args]
        done = subprocess.run(
            command, cwd=DBT_PROJECT_DIR, env=self.environment(), capture_output=True, text=True,
            timeout=DBT_TIMEOUT_SECONDS, check=False,
        )
        events = []
        for line in done.stdout.splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return DbtRun(done.returncode, events, done.stdout, done.stderr)

    def query(self, sql: str, params=None) -> list[tuple]:
        with self.connection() as connection:
            return connection.cursor().execute(sql, params).fetchall()

    @contextmanager
    def connection(self):
        """A Snowflake connection to the emulated database, in this process (no dbt running):
        fakesnow patched in, and out again with its DuckDB closed, releasing the database file."""
        import fakesnow
        import snowflake.connector

        with fakesnow.patch(db_path=self.db_path):
            connection = snowflake.connector.connect(database=DATABASE, schema="RAW")
            try:
                yield connection
            finally:
                connection.close()

    def copy(self, folder: Path) -> "EmulatedSnowflake":
        """The same database in a folder of its own, for a test that changes it."""
        shutil.copytree(self.db_path, folder / "db")
        return EmulatedSnowflake(folder / "db", self.target_path, dict(self.extra_env))


def load_raw_tables(emulated: EmulatedSnowflake, tables: dict[str, pd.DataFrame]) -> None:
    """Create the raw tables with the declared types, then write the rows (write_pandas)."""
    import snowflake.connector.pandas_tools

    with emulated.connection() as connection:
        cursor = connection.cursor()
        cursor.execute("create schema if not exists raw")
        for table, columns in declared_columns().items():
            declared = ", ".join(f"{name} {data_type}" for name, data_type in columns.items())
            cursor.execute(f"create or replace table raw.{table} ({declared})")
            success, _, rows, _ = snowflake.connector.pandas_tools.write_pandas(
                connection, tables[table], table, database=DATABASE, schema="RAW"
            )
            assert success and rows == len(tables[table])


def typed_raw_tables(fill) -> dict[str, pd.DataFrame]:
    """The raw tables as the DuckDB loader types them (`fill` writes them into DuckDB's raw)."""
    with duckdb.connect() as connection:
        fill(connection)
        return {table: connection.execute(f"select * from raw.{table}").df() for table in raw_columns()}


def sample_raw_tables(end: datetime) -> dict[str, pd.DataFrame]:
    def fill(connection):
        for table, rows in sample_tables(seed=11, days=2, sessions_per_day=60, end=end).items():
            connection.register(f"sample_{table}", rows)
        replace_raw_tables(connection, {table: f"sample_{table}" for table in raw_columns()})

    return typed_raw_tables(fill)


def expected_funnel(events: pd.DataFrame) -> list[int]:
    """Sessions with at least one page_view, add_to_cart, checkout: the funnel, straight from raw."""
    return [int(events.loc[events.event_type == step, "session_id"].nunique())
            for step in ["page_view", "add_to_cart", "checkout"]]


def order_updates(orders: pd.DataFrame, course: bool) -> pd.DataFrame:
    """Three orders going from preparing to shipped: the course's own change, or three of ours."""
    if course:
        updates = pd.read_csv(COURSE_DATA / "order_updates.csv")
        updates["estimated_delivery_at"] = pd.to_datetime(updates.estimated_delivery_at, utc=True).dt.tz_localize(None)
        return updates
    preparing = orders[orders.status == "preparing"].sort_values("order_id").head(3)
    assert len(preparing) == 3
    return pd.DataFrame({
        "order_id": preparing.order_id.tolist(),
        "tracking_id": [f"track-{i}" for i in range(3)],
        "shipping_service": "ups",
        "estimated_delivery_at": (preparing.created_at + timedelta(days=5)).tolist(),
        "status": "shipped",
    })


# --- fixtures --------------------------------------------------------------------------------


@dataclass
class BuiltWarehouse:
    emulated: EmulatedSnowflake
    course: bool  # the course data, or (when it is absent) a synthetic shop ending now
    tables: dict[str, pd.DataFrame]
    build: DbtRun
    results: list[dict]  # run_results.json of the build
    manifest: dict  # the manifest parsed for the Snowflake target


@pytest.fixture(scope="module")
def target_path(tmp_path_factory) -> Path:
    """dbt's target folder for this module (its partial parse is shared by every invocation)."""
    return tmp_path_factory.mktemp("snowflake_target")


@pytest.fixture(scope="module")
def built(tmp_path_factory, target_path) -> BuiltWarehouse:
    """The raw tables loaded into the emulated Snowflake and `dbt build` run, once a module."""
    course = (COURSE_DATA / "events.csv").exists()
    if course:
        tables = typed_raw_tables(lambda connection: load_csv_dir(connection, COURSE_DATA))
    else:
        tables = sample_raw_tables(end=datetime.now(timezone.utc))
    folder = tmp_path_factory.mktemp("fakesnow") / "db"
    folder.mkdir()
    emulated = EmulatedSnowflake(folder, target_path)
    load_raw_tables(emulated, tables)
    build = emulated.dbt("build", "--log-format", "json")
    results = json.loads((target_path / "run_results.json").read_text())["results"]
    manifest = json.loads((target_path / "manifest.json").read_text())
    return BuiltWarehouse(emulated, course, tables, build, results, manifest)


# --- the build, the snapshot, freshness --------------------------------------------------------


def test_dbt_build_passes_every_model_test_and_contract(built):
    assert built.build.returncode == 0, built.build.messages()
    results, manifest = built.results, built.manifest
    assert {r["status"] for r in results} <= {"success", "pass"}, [
        (r["unique_id"], r["status"], r["message"]) for r in results if r["status"] not in ("success", "pass")
    ]
    expected = {uid for uid, node in manifest["nodes"].items() if node["resource_type"] in ("model", "test", "snapshot", "seed")}
    assert {r["unique_id"] for r in results} == expected
    assert sum(node["resource_type"] == "model" for node in manifest["nodes"].values()) == 24
    # The Snowflake target builds without a dbt deprecation or warning, like the DuckDB one.
    warnings = [e["info"]["msg"] for e in built.build.events
                if "Deprecation" in e["info"]["name"] or e["info"]["level"] in ("warn", "error")]
    assert warnings == []


def test_the_sources_and_models_live_in_the_snowflake_database(built):
    manifest = built.manifest
    sources = {s["name"]: s["relation_name"] for s in manifest["sources"].values()}
    assert sources == {table: f"{DATABASE}.raw.{table}" for table in raw_columns()}
    assert manifest["nodes"]["model.greenery.fct_funnel"]["relation_name"] == f"{DATABASE}.marts.fct_funnel"
    relations = built.emulated.query(
        "select table_schema, table_name from information_schema.tables where table_schema = 'MARTS'"
    )
    marts = {  # the tables: fakesnow lists views apart
        node["name"].upper() for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["schema"] == "marts" and node["config"]["materialized"] != "view"
    }
    assert len(marts) == 10
    assert {name for _, name in relations} == marts


def test_the_funnel_is_the_one_duckdb_gives(built):
    assert built.build.returncode == 0, built.build.messages()
    funnel = built.emulated.query("select step_number, funnel_step, sessions from marts.fct_funnel order by step_number")
    assert [step for _, step, _ in funnel] == ["page_view", "add_to_cart", "checkout"]
    sessions = [count for _, _, count in funnel]
    assert sessions == expected_funnel(built.tables["events"])
    if built.course:
        assert sessions == [578, 467, 361]  # what the DuckDB target gives on the course data


def test_snapshot_twice_gives_exactly_the_updated_orders_a_second_version(built, tmp_path):
    assert built.build.returncode == 0, built.build.messages()  # the build ran the first snapshot
    emulated = built.emulated.copy(tmp_path)
    orders = len(built.tables["orders"])

    unchanged = emulated.dbt("snapshot")
    assert unchanged.returncode == 0, unchanged.messages()
    assert emulated.query("select count(*), count(distinct order_id) from snapshots.orders_snapshot") == [(orders, orders)]

    updates = order_updates(built.tables["orders"], built.course)
    loaded_at = load_time()  # stamped as a load writes them: the snapshot reads the orders loaded since
    with emulated.connection() as connection:
        cursor = connection.cursor()
        for row in updates.itertuples():
            cursor.execute(
                "update raw.orders set tracking_id = %s, shipping_service = %s, estimated_delivery_at = %s, "
                "status = %s, _loaded_at = %s where order_id = %s",
                (row.tracking_id, row.shipping_service, row.estimated_delivery_at.to_pydatetime(), row.status,
                 loaded_at, row.order_id),
            )
            assert cursor.rowcount == 1
    changed = emulated.dbt("snapshot")
    assert changed.returncode == 0, changed.messages()

    versions = emulated.query(
        "select order_id, count(*), count(dbt_valid_to), max(case when dbt_valid_to is null then status end), "
        "min(case when dbt_valid_to is not null then status end) "
        "from snapshots.orders_snapshot group by order_id having count(*) > 1 order by order_id"
    )
    assert [v[0] for v in versions] == sorted(updates.order_id)
    assert all(v[1:] == (2, 1, "shipped", "preparing") for v in versions), versions
    assert emulated.query("select count(distinct order_id) from snapshots.orders_snapshot") == [(orders,)]
    # The staging table the emulation makes instead of a temporary one is gone again.
    assert emulated.query(
        "select table_name from information_schema.tables where table_schema = 'SNAPSHOTS'"
    ) == [("ORDERS_SNAPSHOT",)]


def _freshness(emulated: EmulatedSnowflake) -> dict[str, str]:
    run = emulated.dbt("source", "freshness")
    sources = json.loads((emulated.target_path / "sources.json").read_text())["results"]
    statuses = {r["unique_id"].rsplit(".", 1)[1]: r["status"] for r in sources}
    assert run.returncode == (1 if "error" in statuses.values() else 0), run.messages()
    return statuses


def test_source_freshness_on_the_loaded_data(built):
    # The course data ends in February 2021: stale. The synthetic shop ends now: fresh.
    expected = "error" if built.course else "pass"
    assert _freshness(built.emulated) == {"events": expected, "orders": expected}


def test_source_freshness_passes_on_fresh_data(tmp_path, target_path):
    folder = tmp_path / "db"
    folder.mkdir()
    emulated = EmulatedSnowflake(folder, target_path)
    load_raw_tables(emulated, sample_raw_tables(end=datetime.now(timezone.utc)))
    assert _freshness(emulated) == {"events": "pass", "orders": "pass"}


def test_a_failed_raw_test_names_one_of_its_rows_through_the_snowflake_resource(tmp_path, target_path, monkeypatch):
    """The chain reads the example key of a failed test through dagster-snowflake's resource, as
    it does on DuckDB through dagster-duckdb's: the test's compiled SQL, on the emulated Snowflake."""
    folder = tmp_path / "db"
    folder.mkdir()
    emulated = EmulatedSnowflake(folder, target_path)
    tables = sample_raw_tables(end=datetime.now(timezone.utc))
    events = tables["events"]
    checkouts = sorted(events.event_id[events.event_type == "checkout"])
    events.loc[events.event_id.isin(checkouts[:2]), "order_id"] = None
    events.loc[events.event_id == checkouts[2], "order_id"] = "no-such-order"
    load_raw_tables(emulated, tables)
    tested = emulated.dbt("test", "--select", "source:greenery.events")
    assert tested.returncode == 1, tested.messages()
    results = json.loads((target_path / "run_results.json").read_text())["results"]
    manifest = json.loads((target_path / "manifest.json").read_text())

    for name, value in EMULATED_SNOWFLAKE_ENV.items():
        monkeypatch.setenv(name, value)
    import fakesnow

    with fakesnow.patch(db_path=str(folder)):
        resource = warehouse_resource().process_config_and_initialize()  # as a run gets it
        examples = failing_examples(resource.read_sql, manifest, results)

    named = {manifest["nodes"][test]["name"]: example[EXAMPLE] for test, example in examples.items()}
    assert named.keys() == {
        "source_not_null_greenery_events_order_id__checkout_and_package_shipped",
        "source_relationships_greenery_events_order_id__greenery_orders",
    }
    without_order = named["source_not_null_greenery_events_order_id__checkout_and_package_shipped"]
    assert without_order in {f"event_id {event}" for event in checkouts[:2]}
    assert named["source_relationships_greenery_events_order_id__greenery_orders"] == f"event_id {checkouts[2]}"


# --- incremental models: three deliveries, then one full refresh ---------------------------------

# Each incremental model, and where dbt writes the SQL it last ran for it (under target/run/greenery).
INCREMENTAL_MODELS = {
    "marts.fct_events": "marts/core/fct_events.sql",
    "intermediate.int_sessions__aggregated": "intermediate/int_sessions__aggregated.sql",
    "intermediate.int_session_products__aggregated": "intermediate/int_session_products__aggregated.sql",
    "marts.fct_sessions": "marts/core/fct_sessions.sql",
    "marts.fct_orders": "marts/core/fct_orders.sql",
    "intermediate.int_users__aggregated": "intermediate/int_users__aggregated.sql",
    "intermediate.int_funnel_steps__reached": "intermediate/int_funnel_steps__reached.sql",
}
# A funnel path's rows are replaced together (delete+insert by funnel and path); the rest merge.
DELETE_INSERT_MODELS = {"intermediate.int_funnel_steps__reached"}


def typed_rows(table: str, rows: pa.Table) -> pd.DataFrame:
    """A delivery's rows of a raw table as the DuckDB loader types and stamps them, loaded now."""
    with duckdb.connect() as connection:
        connection.register("delivery", rows)
        return connection.execute(typed_select(table, "delivery", load_time())).df()


def append_raw_rows(emulated: EmulatedSnowflake, table: str, rows: pd.DataFrame) -> None:
    """Add rows to a raw table loaded before: a later delivery of its data."""
    import snowflake.connector.pandas_tools

    with emulated.connection() as connection:
        success, _, written, _ = snowflake.connector.pandas_tools.write_pandas(
            connection, rows, table.upper(), database=DATABASE, schema="RAW"
        )
        assert success and written == len(rows)


def compared_relations(emulated: EmulatedSnowflake) -> list[str]:
    """Every mart (the funnel marts among them), and every incremental model."""
    marts = emulated.query("select table_name from information_schema.tables where table_schema = 'MARTS'")
    funnel_marts = (f"marts.{key.path[-1]}" for key in FUNNEL_MARTS.values())
    return sorted({*(f"marts.{name.lower()}" for name, in marts), *funnel_marts, *INCREMENTAL_MODELS})


def relation_rows(emulated: EmulatedSnowflake, relation: str) -> pd.DataFrame:
    """All rows but `updated_at` and `dbt_updated_at` (the time of the build), sorted by every column, floats last."""
    with emulated.connection() as connection:
        frame = connection.cursor().execute(f"select * from {relation}").fetch_pandas_all()
    frame = frame.drop(columns=[c for c in frame.columns if c.lower() in ("updated_at", "dbt_updated_at")])
    floats = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    frame = frame[[c for c in frame.columns if c not in floats] + floats]
    return frame.sort_values(list(frame.columns), kind="stable").reset_index(drop=True)


def assert_same_rows(incremental: pd.DataFrame, full: pd.DataFrame, relation: str) -> None:
    """Row for row: exactly, but floating-point columns up to a relative 1e-9."""
    assert list(incremental.columns) == list(full.columns), relation
    assert len(incremental) == len(full), relation
    floats = [c for c in full.columns if pd.api.types.is_float_dtype(full[c])]
    exact = [c for c in full.columns if c not in floats]
    pd.testing.assert_frame_equal(incremental[exact], full[exact], check_exact=True, obj=relation)
    pd.testing.assert_frame_equal(incremental[floats], full[floats], check_exact=False, rtol=1e-9, atol=0, obj=relation)


def test_three_incremental_builds_equal_one_full_refresh(tmp_path, target_path):
    raw = sample_tables(seed=3, days=2, sessions_per_day=300, end=datetime.now(timezone.utc))
    slices = sliced_events(raw["events"])
    sliced = sliced_tables(raw, slices)

    def fill(connection):
        for table, rows in raw.items():
            connection.register(f"sample_{table}", rows)
        replace_raw_tables(connection, {table: f"sample_{table}" for table in raw_columns()})

    tables = typed_raw_tables(fill)  # typed as the loader types them, then cut as the slices are
    events = tables["events"]
    assert events.event_id.is_unique
    deliveries = [events[events.event_id.isin(d.column("event_id").to_pylist())] for d in slices.deliveries]
    assert [len(d) for d in deliveries] == [d.num_rows for d in slices.deliveries]
    assert sum(map(len, deliveries)) == len(events)

    # A: every raw table delivery by delivery (orders, items and users after the events naming
    # them, an order shipped in the last), `dbt build` after each.
    (tmp_path / "a").mkdir()
    incremental = EmulatedSnowflake(tmp_path / "a", target_path)
    load_raw_tables(incremental, {table: typed_rows(table, rows) for table, rows in sliced.rows[0].items()})
    for number, delivery in enumerate(sliced.rows):
        if number:
            for table, rows in delivery.items():
                append_raw_rows(incremental, table, typed_rows(table, rows))
        if number == len(sliced.rows) - 1:
            changed = typed_rows("orders", sliced.changed_order)
            incremental.query("delete from raw.orders where order_id = %s", [changed.order_id[0]])
            append_raw_rows(incremental, "orders", changed)
        # An id named before its row arrives fails the references' tests, and a failed test
        # skips what follows it: they judge the data, here the merges are under test.
        run = incremental.dbt("build", "--exclude", "test_name:relationships", "test_name:relationships_in_source")
        assert run.returncode == 0, f"delivery {number + 1}:\n{run.messages()}"
        # The first build creates the incremental models; the next two merge into them.
        for model, path in INCREMENTAL_MODELS.items():
            executed = " ".join((target_path / "run" / "greenery" / "models" / path).read_text().split()).lower()
            merged = (f"delete from {DATABASE.lower()}.{model} " if model in DELETE_INSERT_MODELS
                      else f"merge into {DATABASE.lower()}.{model} as dbt_internal_dest")
            assert (merged in executed) == (number > 0), model
    assert incremental.query("select count(*) from raw.events") == [(len(events),)]

    # B: every event at once, and a full refresh.
    (tmp_path / "b").mkdir()
    full = EmulatedSnowflake(tmp_path / "b", target_path)
    load_raw_tables(full, tables)
    run = full.dbt("build", "--full-refresh")
    assert run.returncode == 0, run.messages()

    relations = compared_relations(full)
    assert relations == compared_relations(incremental) and len(relations) == 16  # 12 marts, 4 intermediate
    rows = {}
    for relation in relations:
        rows[relation] = relation_rows(incremental, relation), relation_rows(full, relation)
        assert len(rows[relation][1]), relation
        assert_same_rows(*rows[relation], relation)
    # The views the emulation makes instead of temporary ones are gone again.
    assert incremental.query("select table_name from information_schema.tables where table_name like '%DBT_TMP'") == []

    # The session split across the first two deliveries, and the late event and its session:
    # in A, whole, with every one of their events, and as in B.
    late = events[events.event_id == slices.late_event_id].iloc[0]
    assert late.created_at < deliveries[1].created_at.max()  # older than events A had already seen
    split = events[events.session_id == slices.split_session_id]
    assert split.event_id.isin(deliveries[0].event_id).any() and split.event_id.isin(deliveries[1].event_id).any()
    (sessions, full_sessions), (fct_events, full_fct_events) = rows["marts.fct_sessions"], rows["marts.fct_events"]
    for session_id in (slices.split_session_id, late.session_id):
        found = sessions[sessions.SESSION_ID == session_id].reset_index(drop=True)
        assert len(found) == 1, session_id
        assert_same_rows(found, full_sessions[full_sessions.SESSION_ID == session_id].reset_index(drop=True), session_id)
        own = events[(events.session_id == session_id) & (events.event_type != "package_shipped")]
        assert found.PAGE_VIEWS[0] + found.ADD_TO_CARTS[0] + found.CHECKOUTS[0] == len(own)
        assert (found.SESSION_STARTED_AT[0], found.SESSION_ENDED_AT[0]) == (own.created_at.min(), own.created_at.max())
    found = fct_events[fct_events.EVENT_ID == slices.late_event_id].reset_index(drop=True)
    assert len(found) == 1
    assert_same_rows(found, full_fct_events[full_fct_events.EVENT_ID == slices.late_event_id].reset_index(drop=True),
                     slices.late_event_id)
    assert (found.SESSION_ID[0], found.CREATED_AT[0]) == (late.session_id, late.created_at)
    # The order that shipped after its first delivery, as the raw table holds it in the end.
    orders = rows["marts.fct_orders"][0]
    shipped = orders[orders.ORDER_ID == sliced.changed_order.column("order_id")[0].as_py()]
    assert shipped.ORDER_STATUS.tolist() == ["shipped"]


# --- PII masking: the SQL Snowflake gets, and the step on the emulation ----------------------


MASKING_INLINE = "{{ tojson(snowflake_pii_masking_sql(pii_columns_by_relation())) }}"
POLICY = re.compile(
    r"create masking policy if not exists (?P<name>\S+) as \(val (?P<type>string|number)\) "
    r"returns (?P<returns>string|number) -> (?P<body>.+)",
    re.S,
)
ALTER = re.compile(
    r"alter (?P<kind>table|view) (?P<relation>\S+) modify column (?P<column>\w+) "
    r"set masking policy (?P<policy>\S+) force"
)


@pytest.fixture(scope="module")
def masking_statements(built) -> list[str]:
    """The statements `apply_pii_masking` runs on Snowflake, rendered against the built database."""
    assert built.build.returncode == 0, built.build.messages()
    emulated = EmulatedSnowflake(
        built.emulated.db_path, built.emulated.target_path,
        {"GREENERY_PII_READER_ROLE": READER_ROLE, "GREENERY_MASKING_SALT": SALT},
    )
    run = emulated.dbt("compile", "--quiet", "--output", "json", "--inline", MASKING_INLINE)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    compiled = json.loads(run.stdout[run.stdout.index("{"): run.stdout.rindex("}") + 1])["compiled"]
    return json.loads(compiled)


def _parse(statement: str) -> exp.Expression:
    parsed = sqlglot.parse_one(statement, read="snowflake")
    assert parsed is not None
    if isinstance(parsed, exp.Command):  # sqlglot keeps what it has no grammar for verbatim
        assert " ".join(f"{parsed.this} {parsed.expression}".split()).lower() == " ".join(statement.split()).lower()
    return parsed


def test_masking_sql_creates_the_policy_schema_and_two_policies_idempotently(masking_statements):
    schema, *policies = masking_statements[:3]
    created = _parse(schema)
    assert isinstance(created, exp.Create) and created.kind == "SCHEMA" and created.args["exists"]
    assert created.this.sql("snowflake") == f"{DATABASE}.governance"

    found = {}
    for statement in policies:
        _parse(statement)  # sqlglot 30 has no grammar for masking policies: exact text below
        match = POLICY.fullmatch(statement)
        assert match, statement
        assert match["type"] == match["returns"]
        body = sqlglot.parse_one(match["body"], read="snowflake")  # the policy body is plain SQL
        assert isinstance(body, exp.Case)
        (role_check,) = [f for f in body.find_all(exp.Anonymous) if f.name.lower() == "is_role_in_session"]
        assert [a.this for a in role_check.expressions] == [READER_ROLE]  # only the reader sees clear values
        assert SALT in {literal.this.replace("''", "'") for literal in body.find_all(exp.Literal) if literal.is_string}
        found[match["name"]] = match["type"]
    assert found == {f"{DATABASE}.governance.pii_string": "string", f"{DATABASE}.governance.pii_number": "number"}
    assert sum(s.startswith("create") for s in masking_statements) == 3


def test_masking_sql_attaches_a_policy_to_every_declared_pii_column_exactly_once(masking_statements, built):
    attached = []
    for statement in masking_statements[3:]:
        _parse(statement)
        match = ALTER.fullmatch(statement)
        assert match, statement  # `... set masking policy ... force`: a second run changes nothing
        relation = exp.to_table(match["relation"], dialect="snowflake")
        assert relation.catalog == DATABASE
        attached.append((relation.db, relation.name, match["column"], match["kind"], match["policy"].rsplit(".", 1)[1]))
    assert len(attached) == len(EXPECTED_PII) and set(attached) == EXPECTED_PII  # one ALTER per column

    # ... and that is every column the dbt YAML declares PII, on sources and models alike.
    assert declared_pii(built.manifest) == {(s, r, c) for s, r, c, _, _ in attached}


def declared_pii(manifest: dict) -> set[tuple[str, str, str]]:
    """(SCHEMA, RELATION, column) of every source, model and snapshot column declared PII."""
    return {
        (*(part.upper() for part in relation.split(".")), column)
        for relation, columns in pii_columns(manifest).items()
        for column in columns
    }


def test_the_masking_step_runs_on_the_emulation(built, tmp_path):
    # fakesnow has no masking policies: the emulation skips those statements, so the chain's
    # `dbt run-operation apply_pii_masking` step still runs end to end there.
    emulated = built.emulated.copy(tmp_path)
    emulated.extra_env.update(GREENERY_PII_READER_ROLE=READER_ROLE, GREENERY_MASKING_SALT=SALT)
    run = emulated.dbt("run-operation", "apply_pii_masking", "--log-format", "json", "--debug")
    assert run.returncode == 0, run.messages()
    messages = [e["info"]["msg"] for e in run.events]
    assert f"Masking: {3 + len(EXPECTED_PII)} statement(s) applied." in messages
    skipped = [m for m in messages if m.startswith("Emulated Snowflake: fakesnow has no masking policies")]
    assert len(skipped) == 2 + len(EXPECTED_PII)
    assert "pepper" not in run.stdout + run.stderr  # the salt is never logged, not even at debug level
    assert ("GOVERNANCE",) in emulated.query("select schema_name from information_schema.schemata")


SKIPPED = "Emulated Snowflake: fakesnow has no masking policies; skipped: "


def skipped_alters(run: DbtRun) -> list[tuple[int, str | None, str]]:
    """(position in dbt's log, node, statement) of each ALTER ... SET MASKING POLICY the emulation
    skipped in `run`, which Snowflake would have run there."""
    return [
        (index, event["data"].get("node_info", {}).get("unique_id"), event["info"]["msg"].removeprefix(SKIPPED))
        for index, event in enumerate(run.events)
        if event["info"]["msg"].startswith(SKIPPED + "alter ")
    ]


def created_at(run: DbtRun, node: str, relation: exp.Table) -> int | None:
    """Where in dbt's log `node` last ran CREATE OR REPLACE of `relation`."""
    found = None
    for index, event in enumerate(run.events):
        if event["info"]["name"] == "SQLQuery" and event["data"].get("node_info", {}).get("unique_id") == node:
            words = event["data"]["sql"].lower().split()
            if words[:3] == ["create", "or", "replace"] and relation.sql("snowflake").lower() in words[:6]:
                found = index
    return found


def test_every_build_attaches_the_policies_again_right_after_each_relation_is_built(built, tmp_path):
    # On Snowflake a relation rebuilt by CREATE OR REPLACE has lost its policies, and the clones
    # made after the build would carry clear PII. Two runs of the chain's dbt steps, from a
    # database holding only the raw tables: the masking step, then the build.
    assert built.build.returncode == 0, built.build.messages()
    emulated = EmulatedSnowflake(tmp_path, built.emulated.target_path,
                                 {"GREENERY_PII_READER_ROLE": READER_ROLE, "GREENERY_MASKING_SALT": SALT})
    load_raw_tables(emulated, built.tables)
    declared = declared_pii(built.manifest)
    sources = {(schema, relation, column) for schema, relation, column in declared if schema == "RAW"}
    built_nodes = {uid: node for uid, node in built.manifest["nodes"].items() if node["resource_type"] in ("model", "snapshot")}
    assert all(  # the snapshot declares no PII today; it gets the hook all the same
        [hook["sql"] for hook in node["config"]["post-hook"]] == ["{{ pii_masking_hook(this, model) }}"]
        for node in built_nodes.values()
    )
    assert len(declared - sources) == 10

    for number in (1, 2):
        masking = emulated.dbt("run-operation", "apply_pii_masking", "--log-format", "json", "--debug")
        assert masking.returncode == 0, f"run {number}:\n{masking.messages()}"
        build = emulated.dbt("build", "--log-format", "json", "--debug")
        assert build.returncode == 0, f"run {number}:\n{build.messages()}"
        assert "pepper" not in build.stdout + build.stderr  # the salt, as in the masking step

        attached = {"masking": [], "build": []}
        for step, run in [("masking", masking), ("build", build)]:
            for index, node, statement in skipped_alters(run):
                _parse(statement)
                match = ALTER.fullmatch(statement)
                assert match and match["policy"].startswith(f"{DATABASE}.governance.pii_"), statement
                relation = exp.to_table(match["relation"], dialect="snowflake")
                attached[step].append((relation.db.upper(), relation.name.upper(), match["column"]))
                if step == "build":
                    # By the post-hook of the node that built the relation, after it built it.
                    assert exp.to_table(built_nodes[node]["relation_name"], dialect="snowflake") == relation
                    built_at = created_at(run, node, relation)
                    if built_at is None:  # merged into, not replaced: the policies stay, attached again
                        assert number == 2 and built_nodes[node]["config"]["materialized"] == "incremental", statement
                    else:
                        assert built_at < index, statement
        # The build: each declared column of each model and snapshot, once. The masking step:
        # the raw tables, and what an earlier build left.
        assert sorted(attached["build"]) == sorted(declared - sources), f"run {number}"
        assert set(attached["masking"]) == (sources if number == 1 else declared), f"run {number}"


def test_the_clones_are_made_after_every_build_and_its_masking():
    # The post-hooks run inside the models' step, so the clones must come after every model.
    from greenery_orchestration.assets.dbt import greenery_models, greenery_snapshots
    from greenery_orchestration.chain.masking import PII_MASKING_KEY
    from greenery_orchestration.chain.docs import DBT_DOCS_KEY
    from greenery_orchestration.definitions import defs
    from greenery_orchestration.jobs import greenery_docs_and_clone, greenery_production
    from greenery_orchestration.wap import PUBLISH_KEY

    graph = defs().resolve_asset_graph()
    clones = {dg.AssetKey(["environments", environment]) for environment in ("dev", "ci")}
    for clone in clones:
        assert graph.get(clone).parent_keys == {DBT_DOCS_KEY}
    assert graph.get(DBT_DOCS_KEY).parent_keys == {PUBLISH_KEY}
    assert graph.get(PUBLISH_KEY).parent_keys == {*greenery_models.keys, *greenery_snapshots.keys}
    assert PII_MASKING_KEY in graph.get(dg.AssetKey(["snapshots", "orders_snapshot"])).parent_keys
    # Two jobs: the clones' runs only after a production run succeeded (sensors.py).
    production = greenery_production.selection.resolve(graph)
    assert {*greenery_models.keys, *greenery_snapshots.keys, PII_MASKING_KEY, PUBLISH_KEY} <= production
    assert greenery_docs_and_clone.selection.resolve(graph) == {DBT_DOCS_KEY, *clones}


# --- the emulation itself ------------------------------------------------------------------------

OVERRIDES_INLINE = """
{%- set target_relation = api.Relation.create(database=target.database, schema="snapshots", identifier="orders_snapshot") -%}
{%- set staging = api.Relation.create(database=target.database, schema="snapshots", identifier="orders_snapshot__dbt_tmp") -%}
{%- set columns = ['"ORDER_ID"', '"STATUS"'] -%}
{%- set model = api.Relation.create(database=target.database, schema="marts", identifier="fct_sessions") -%}
{%- set new_rows = api.Relation.create(database=target.database, schema="marts", identifier="fct_sessions__dbt_tmp") -%}
{%- set model_columns = [api.Column.create("SESSION_ID", "varchar"), api.Column.create("PAGE_VIEWS", "number")] -%}
{%- set keys = ["session_id", "page_views"] -%}
{{ tojson({
    "temporary": [snowflake__create_table_temporary_sql(staging, "select 1 as a"),
                  dbt.snowflake__create_table_temporary_sql(staging, "select 1 as a")],
    "merge": [snowflake__snapshot_merge_sql(target_relation, staging, columns),
              dbt.snowflake__snapshot_merge_sql(target_relation, staging, columns)],
    "view": [snowflake__create_view_as_with_temp_flag(new_rows, "select 1 as a", True),
             dbt.snowflake__create_view_as_with_temp_flag(new_rows, "select 1 as a", True)],
    "plain_view": [snowflake__create_view_as_with_temp_flag(new_rows, "select 1 as a"),
                   dbt.snowflake__create_view_as_with_temp_flag(new_rows, "select 1 as a")],
    "incremental_merge": [snowflake__get_merge_sql(model, new_rows, "session_id", model_columns, none),
                          dbt.snowflake__get_merge_sql(model, new_rows, "session_id", model_columns, none)],
    "composite_merge": [snowflake__get_merge_sql(model, new_rows, keys, model_columns, none),
                        dbt.snowflake__get_merge_sql(model, new_rows, keys, model_columns, none)],
    "transaction": [snowflake_dml_explicit_transaction("delete from x"),
                    dbt.snowflake_dml_explicit_transaction("delete from x")],
}) }}
"""


# Every macro dbt_project/emulation/ defines.
EMULATION_MACROS = {
    "snowflake__create_table_temporary_sql", "snowflake__create_view_as_with_temp_flag", "snowflake__post_snapshot",
    "snowflake__snapshot_merge_sql", "snowflake__get_merge_sql", "snowflake_dml_explicit_transaction",
    "run_query", "run_hooks", "greenery_skipped_masking",
}


def _emulation_macros(manifest: dict) -> set[str]:
    return {macro["name"] for macro in manifest["macros"].values()
            if macro["package_name"] == "greenery" and macro["original_file_path"].startswith("emulation/")}


def test_real_snowflake_loads_none_of_the_emulation(built):
    assert _emulation_macros(built.manifest) == EMULATION_MACROS  # loaded when emulated
    # GREENERY_SNOWFLAKE_EMULATED unset: emulation/ is no macro path, no macro of the project
    # shadows what it overrides, and dbt-snowflake still writes the SQL the emulation rewrites.
    # (Rendered on fakesnow, which only answers the metadata queries; one thread, see profiles.yml.)
    emulated = EmulatedSnowflake(built.emulated.db_path, built.emulated.target_path,
                                 {"GREENERY_SNOWFLAKE_EMULATED": "false", "SNOWFLAKE_THREADS": "1"})
    run = emulated.dbt("compile", "--quiet", "--output", "json", "--inline", OVERRIDES_INLINE)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    manifest = json.loads((emulated.target_path / "manifest.json").read_text())
    assert _emulation_macros(manifest) == set()
    assert not {m["name"] for m in manifest["macros"].values() if m["package_name"] == "greenery"} & EMULATION_MACROS
    rendered = json.loads(json.loads(run.stdout[run.stdout.index("{"): run.stdout.rindex("}") + 1])["compiled"])
    for ours, dbt_snowflakes in rendered.values():
        assert ours == dbt_snowflakes
    assert "create or replace temporary table" in rendered["temporary"][0]
    assert rendered["merge"][0].split()[0] == "begin;" and rendered["merge"][0].split()[-1] == "commit;"
    assert 'values ("ORDER_ID", "STATUS")' in rendered["merge"][0]
    assert "create or replace temporary view GREENERY.marts.fct_sessions__dbt_tmp" in " ".join(rendered["view"][0].split())
    for merge in ("incremental_merge", "composite_merge"):
        statement = " ".join(rendered[merge][0].split())
        assert statement.startswith("begin; merge into GREENERY.marts.fct_sessions as DBT_INTERNAL_DEST")
        assert statement.endswith('values ("SESSION_ID", "PAGE_VIEWS") ; commit;'), statement


# --- the clone, and the profile -----------------------------------------------------------------


def test_clone_sql_is_snowflake_sql():
    create, usage, *grants = snowflake_clone_sql("PROD", "DEV", "DEV_ROLE")
    clone = _parse(create)
    assert isinstance(clone, exp.Create) and clone.kind == "DATABASE" and clone.args["replace"]
    assert clone.this.name == "DEV" and clone.args["clone"].this.name == "PROD"
    granted = _parse(usage)
    assert isinstance(granted, exp.Grant) and granted.args["kind"] == "DATABASE"
    assert granted.args["securable"].name == "DEV"
    assert [p.this.name for p in granted.args["principals"]] == ["DEV_ROLE"]
    assert [(p.this.name, p.args["kind"]) for p in granted.args["principals"]] == [("DEV_ROLE", "ROLE")]
    for statement, (privilege, kind) in zip(grants, [("usage", "schemas"), ("select", "tables"), ("select", "views")]):
        _parse(statement)  # `grant ... on all ... in database`: no sqlglot grammar, exact text
        assert statement == f"grant {privilege} on all {kind} in database DEV to role DEV_ROLE"


def _rendered_credentials(env: dict[str, str]):
    from dbt.config.profile import Profile, read_profile
    from dbt.config.renderer import ProfileRenderer
    from dbt_common.context import set_invocation_context

    set_invocation_context(env)
    target, data = Profile.render_profile(read_profile(str(DBT_PROJECT_DIR))["greenery"], "greenery", None, ProfileRenderer({}))
    return target, data["threads"], Profile._credentials_from_profile(data, "greenery", target)


def test_the_snowflake_profile_takes_a_password_or_a_key_pair(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = tmp_path / "rsa_key.p8"
    key.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"phrase"),
    ))
    base = {"GREENERY_TARGET": "snowflake", "SNOWFLAKE_ACCOUNT": "acme-prod", "SNOWFLAKE_USER": "dbt",
            "SNOWFLAKE_ROLE": "TRANSFORMER", "SNOWFLAKE_WAREHOUSE": "TRANSFORMING", "SNOWFLAKE_DATABASE": "PROD"}

    target, threads, credentials = _rendered_credentials(base | {"SNOWFLAKE_PASSWORD": "pw"})
    assert (target, threads) == ("snowflake", 4)
    assert (credentials.account, credentials.user, credentials.role, credentials.warehouse,
            credentials.database, credentials.schema) == ("acme-prod", "dbt", "TRANSFORMER", "TRANSFORMING", "PROD", "public")
    auth = credentials.auth_args()
    assert auth["password"] == "pw" and auth["private_key"] is None

    _, _, credentials = _rendered_credentials(base | {
        "SNOWFLAKE_PASSWORD": "ignored", "SNOWFLAKE_PRIVATE_KEY_PATH": str(key),
        "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "phrase", "SNOWFLAKE_SCHEMA": "analytics",
    })
    auth = credentials.auth_args()
    assert "password" not in auth and isinstance(auth["private_key"], bytes)  # the connector then uses key-pair auth
    assert credentials.schema == "analytics"

    # Neither: no password at all (dbt would otherwise send the template's own text as one).
    _, _, credentials = _rendered_credentials(base)
    assert "password" not in credentials.auth_args() and not credentials.password

    # The emulation runs one thread: fakesnow attaches a database on first use, not thread-safely.
    _, threads, _ = _rendered_credentials(base | {"SNOWFLAKE_PASSWORD": "pw", "GREENERY_SNOWFLAKE_EMULATED": "true"})
    assert threads == 1


def test_the_snowflake_profile_goes_where_settings_say(monkeypatch):
    # dbt and the Python side (settings.snowflake_endpoint, the resource) read the same three
    # variables; unset or empty, the connector builds the account's own https URL.
    from greenery_orchestration.settings import snowflake_endpoint

    base = {"GREENERY_TARGET": "snowflake", "SNOWFLAKE_ACCOUNT": "acme-prod", "SNOWFLAKE_USER": "dbt",
            "SNOWFLAKE_PASSWORD": "pw", "SNOWFLAKE_ROLE": "TRANSFORMER", "SNOWFLAKE_WAREHOUSE": "TRANSFORMING",
            "SNOWFLAKE_DATABASE": "PROD"}
    endpoints = {
        "127.0.0.1:8080 over http": {"SNOWFLAKE_HOST": "127.0.0.1", "SNOWFLAKE_PORT": "8080", "SNOWFLAKE_PROTOCOL": "http"},
        "a private link": {"SNOWFLAKE_HOST": "acme-prod.privatelink.snowflakecomputing.com"},
        "unset": {},
        "empty": {"SNOWFLAKE_HOST": "", "SNOWFLAKE_PORT": "", "SNOWFLAKE_PROTOCOL": ""},
    }
    for name, variables in endpoints.items():
        _, _, credentials = _rendered_credentials(base | variables)
        passed = {k: v for k, v in credentials.auth_args().items() if k in ("host", "port", "protocol")}
        for variable in ("SNOWFLAKE_HOST", "SNOWFLAKE_PORT", "SNOWFLAKE_PROTOCOL"):
            monkeypatch.delenv(variable, raising=False)
        for variable, value in variables.items():
            monkeypatch.setenv(variable, value)
        assert passed == snowflake_endpoint(), name
        assert passed == {k.removeprefix("SNOWFLAKE_").lower(): int(v) if k == "SNOWFLAKE_PORT" else v
                          for k, v in variables.items() if v}, name
