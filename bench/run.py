"""Benchmark of the greenery chain: generator, orchestration overhead, the floor, incremental
builds, the publish step, the size of prod, memory and start-up, at 1, 10 or 100 million events.

    .venv/bin/python bench/run.py --events 1M,10M        # 3 runs per size, medians
    .venv/bin/python bench/run.py --events 100M          # one run (about 45 minutes, ~74 GB of disk)

Prints a markdown table and writes the same figures as JSON to bench/results/. Not part of the
test suite. Every figure is the median of --repeat runs (3 below 100M events, 1 from 100M on).
Everything it writes (warehouses, Dagster instances, dbt target folders) lives under --workdir,
deleted at the end unless --keep.
"""

import argparse
import functools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DBT_DIR = REPO / "dbt_project"
RESULTS = REPO / "bench" / "results"
PYTHON = sys.executable
BIN = Path(sys.executable).parent
EVENTS_PER_SESSION = 6.2  # measured: ~3.2 page views, 1.7 adds, 0.62 checkouts, ~0.6 shipments
CHUNK_EVENTS = 3_000_000  # at most this many events generated at once (~0.43 GB per million)
# Disk a size needs at its fullest, after the +1% run: prod, dev and ci (~238 bytes per event each
# after a first run at 70M, 2026-12-05, each growing ~2% in the +1% run). The full refresh needs
# more and runs only where there is room (full_refresh_room).
DISK_BYTES_PER_EVENT = 740
MARGIN_BYTES = 3 * 1024**3
GIB = 1024**3

TARGETS = {  # at 100M events, on 2 cores
    "orchestration_overhead": 1.15,
    "marts_vs_floor": 1.5,
    "incremental_vs_full": 0.1,
    "peak_memory_gib": 4.0,
    "definitions_vs_import": 1.3,
}


# --------------------------------------------------------------------------- measuring


def _tree_rss(root: int) -> int:
    """Summed resident memory (bytes) of `root` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/statm") as f:
                pages = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def run(cmd: list[str], env: dict | None = None, cwd: Path | None = None, log: Path | None = None) -> dict:
    """Run a command; wall seconds, peak tree RSS (polled) and peak single-process RSS (wait4)."""
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115
    started = time.perf_counter()
    process = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    peak = [0]
    done = threading.Event()

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(process.pid))
            done.wait(0.25)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    poller.join()
    if log:
        out.close()
    return {
        "seconds": seconds,
        "returncode": process.returncode,
        "peak_tree_rss_bytes": peak[0],
        "peak_process_rss_bytes": usage.ru_maxrss * 1024,  # max over the process and waited descendants
    }


def check(result: dict, what: str, log: Path | None = None) -> dict:
    if result["returncode"] != 0:
        tail = log.read_text()[-3000:] if log and log.exists() else ""
        raise SystemExit(f"bench: {what} failed (exit {result['returncode']}); log {log}\n{tail}")
    return result


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------- data


def parse_size(text: str) -> int:
    text = text.strip().upper()
    factor = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("KMG")) * factor)


def label(events: int) -> str:
    if events % 1_000_000 == 0:
        return f"{events // 1_000_000}M"
    return f"{events // 1_000}K" if events % 1_000 == 0 else str(events)


def generate(path: Path, events: int, seed: int) -> dict:
    """`greenery sample` at `events`, in day-sized chunks ending an hour ago (room for the 1%
    hour, as appends never pass now): write_sample for the first day, append_sample (24 h after
    the newest event) for the rest. Runs in its own process.

    Each day's load is stamped (load marker and load log) an hour after its day ended, as a daily
    loader would have stamped it: the +1% run then finds what a scheduled run finds, the last
    day's load within its lookback (lookback_hours), not every row loaded minutes before the first
    build (a first bulk load, whose next run rebuilds what it loaded)."""
    days = max(3, -(-events // CHUNK_EVENTS))
    sessions_per_day = max(1, round(events / days / EVENTS_PER_SESSION))
    code = f"""
import json, time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from greenery_orchestration.rawdata import load_csv, sample
from greenery_orchestration.rawdata.sample import append_sample, write_sample
path, days, spd = Path({str(path)!r}), {days}, {sessions_per_day}
end = datetime.now(UTC) - timedelta(days=days - 1, hours=1)
loaded_at = [end.replace(tzinfo=None) + timedelta(hours=1)]
load_csv.load_time = sample.load_time = lambda: loaded_at[0]
start = time.perf_counter()
counts = write_sample(path, seed={seed}, sessions_per_day=spd, days=1, end=end)
events = counts["events"]
for _ in range(days - 1):
    loaded_at[0] += timedelta(days=1)
    events += append_sample(path, seed={seed}, hours=24, sessions_per_day=spd)["events"]
print(json.dumps({{"events": events, "seconds": time.perf_counter() - start}}))
"""
    path.unlink(missing_ok=True)
    log = path.with_suffix(".generate.log")
    result = run([PYTHON, "-c", code], log=log)
    check(result, "generator", log)
    measured = json.loads(log.read_text().strip().splitlines()[-1])
    return {
        "days": days,
        "sessions_per_day": sessions_per_day,
        "events": measured["events"],
        "seconds": measured["seconds"],
        "process_seconds": result["seconds"],
        "events_per_second": measured["events"] / measured["seconds"],
        "peak_tree_rss_bytes": result["peak_tree_rss_bytes"],
    }


def append_one_percent(path: Path, events: int, seed: int) -> int:
    """One hour more after the newest event, at a session rate giving ~1% more events."""
    sessions_per_day = max(1, round(0.01 * events * 24 / EVENTS_PER_SESSION))
    code = (
        "from pathlib import Path; from greenery_orchestration.rawdata.sample import append_sample; "
        f"print(append_sample(Path({str(path)!r}), seed={seed}, hours=1, sessions_per_day={sessions_per_day})['events'])"
    )
    out = subprocess.run([PYTHON, "-c", code], check=True, capture_output=True, text=True, cwd=REPO)
    return int(out.stdout.strip().splitlines()[-1])


def fresh_warehouse(folder: Path, events: int, seed: int, gens: list) -> Path:
    """A new warehouse folder whose prod.duckdb holds freshly generated raw tables (its figures
    appended to `gens`). Generated in place rather than copied from one source: a copy would sit
    beside the warehouse and its clones, ~7 GB more at 100M. Every warehouse of a size gets the
    same sessions per day; the events they hold vary a little (by ~0.03% at 100M), as the
    generator's random stream follows the clock."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    gens.append(generate(folder / "prod.duckdb", events, seed))
    # One salt for every side, so the clones do the same work.
    (folder / ".masking_salt").write_text("bench-salt\n")
    return folder


# --------------------------------------------------------------------------- the chain


def base_env(workdir: Path) -> dict:
    env = dict(os.environ)
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    env.pop("GREENERY_ALERT_URLS", None)  # a benchmark alerts nobody
    env.pop("DAGSTER_PG_HOST", None)
    return env


def greenery_run(warehouse: Path, home: Path, env: dict, full_refresh: bool = False) -> dict:
    """`greenery run` in its own process, with its own DAGSTER_HOME, warehouse and docs folder."""
    if home.exists():
        shutil.rmtree(home)
    env = {
        **env,
        "DAGSTER_HOME": str(home),
        "GREENERY_WAREHOUSE_DIR": str(warehouse),
        "GREENERY_DOCS_DIR": str(warehouse / "docs-site"),
    }
    log = home.with_suffix(".log")
    cmd = [str(BIN / "greenery"), "run", *(["--full-refresh"] if full_refresh else [])]
    result = check(run(cmd, env=env, cwd=REPO, log=log), "greenery run", log)
    result["steps"] = dagster_steps(home, env)
    return result


def dagster_steps(home: Path, env: dict) -> dict:
    """Seconds per run and per step, from the Dagster event log of the instance in `home`."""
    code = """
import json, dagster as dg
out = {}
with dg.DagsterInstance.get() as instance:
    for run in reversed(instance.get_runs()):  # oldest first: the chain's order
        starts, steps, bounds = {}, {}, []
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            kind = event.event_type_value
            if kind in ("RUN_START", "RUN_SUCCESS", "RUN_FAILURE"):
                bounds.append(entry.timestamp)
            elif kind == "STEP_START":
                starts[entry.step_key] = entry.timestamp
            elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and entry.step_key in starts:
                steps[entry.step_key] = entry.timestamp - starts[entry.step_key]
        out[run.job_name] = {"seconds": max(bounds) - min(bounds) if bounds else None, "steps": steps}
print(json.dumps(out))
"""
    out = subprocess.run([PYTHON, "-c", code], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


STAGED = ["--vars", "{staged: true}"]
RAW_TESTS = "<every test on raw tables, by name>"  # filled in from the manifest, as assets/dbt.py does
# The Dagster steps' dbt commands on DuckDB, in their order (assets/sources.py, assets/dbt.py,
# chain/docs.py; chain/masking.py runs none there); "freshness" and "publish" are the Python steps
# between them (the gate's freshness query, wap's publish).
BARE_DBT = [
    ("dbt test (raw tables)", ["test", "--select", "source:*", "--indirect-selection", "cautious"]),
    # After the raw tests, not before as in the gate: it reads the manifest their dbt invocation writes.
    ("freshness (one query per source)", "freshness"),
    ("dbt build snapshot, staged", ["build", "--select", "resource_type:snapshot", *STAGED]),
    ("dbt build models, staged, without the raw tests",
     ["build", *STAGED, "--exclude", "resource_type:snapshot", RAW_TESTS]),
    ("publish (wap.publish)", "publish"),
    ("dbt docs generate --static", ["docs", "generate", "--static"]),
]
BARE_BUILD = "dbt build models, staged, without the raw tests"
BARE_PUBLISH = "publish (wap.publish)"

# Run in a fresh Python process on the warehouse's prod.duckdb, with the dbt manifest at hand:
# the relations are every model and snapshot of the manifest, as dbt_relations gives them.
WAP_STEP = """
import json, sys, time
from datetime import datetime
from pathlib import Path
import duckdb
from greenery_orchestration import wap
from greenery_orchestration.marts import STAGED
from greenery_orchestration.settings import duckdb_config
what, prod, manifest = sys.argv[1], sys.argv[2], json.loads(Path(sys.argv[3]).read_text())
chain_started_at = datetime.fromisoformat(sys.argv[4])  # naive UTC, as the chain's run start
relations = []
for node in manifest["nodes"].values():
    if node["resource_type"] in ("model", "snapshot", "seed"):
        # A staged build's manifest names the staged relations (generate_alias_name.sql).
        relations.append(wap.relation(node, node["alias"].removesuffix(STAGED)))
started = time.perf_counter()
# Capped as the resource's connections are (warehouse_duckdb.duckdb_warehouse).
with duckdb.connect(prod, config=duckdb_config()) as connection:
    if what == "freshness":  # as the gate reads it (assets/sources.py freshness_criteria)
        from greenery_orchestration.warehouse import newest_sql
        for source in manifest["sources"].values():
            if source.get("loaded_at_field") and (source.get("freshness") or {}).get("error_after", {}).get("count"):
                connection.execute(newest_sql(source)).fetchall()
    else:
        wap.publish(connection, relations, "bench-bare", "bench", run_started_at=chain_started_at)
print(json.dumps({"seconds": time.perf_counter() - started, "relations": len(relations)}))
"""


def raw_test_names(manifest_path: Path) -> list[str]:
    """The dbt tests that read raw tables only (assets/dbt.py tests_on_raw_tables), by name."""
    manifest = json.loads(manifest_path.read_text())
    return sorted(
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test"
        and node["depends_on"]["nodes"]
        and all(parent.startswith("source.") for parent in node["depends_on"]["nodes"])
    )


def bare_chain(warehouse: Path, env: dict) -> dict:
    """The Dagster steps' commands run bare in sequence: dbt, wap's stage and publish, then the
    clones by calling clone_duckdb.clone."""
    env = {**env, "GREENERY_WAREHOUSE_DIR": str(warehouse)}
    target, logs = warehouse / "dbt-target", warehouse / "dbt-logs"
    steps, results, inner = {}, {}, {}
    started = time.perf_counter()
    # The bound of the next run's raw tests (ops.publish_log.run_started_at), as a run's start.
    chain_started_at = datetime.now(UTC).replace(tzinfo=None).isoformat()
    peak_tree = peak_process = 0
    for name, args in BARE_DBT:
        log = warehouse / f"bare-{len(steps)}.log"
        if isinstance(args, str):  # wap, in Python
            code = [PYTHON, "-c", WAP_STEP, args, str(warehouse / "prod.duckdb"), str(target / "manifest.json"),
                    chain_started_at]
            result = check(run(code, env=env, cwd=REPO, log=log), name, log)
            inner[name] = json.loads(log.read_text().strip().splitlines()[-1])["seconds"]
        else:
            if RAW_TESTS in args:
                i = args.index(RAW_TESTS)
                args = [*args[:i], *raw_test_names(target / "manifest.json"), *args[i + 1:]]
            cmd = [str(BIN / "dbt"), *args, "--target-path", str(target), "--log-path", str(logs)]
            # dbt appends every invocation's debug log to one file: this one's starts here.
            logged_from = (logs / "dbt.log").stat().st_size if (logs / "dbt.log").exists() else 0
            result = check(run(cmd, env=env, cwd=DBT_DIR, log=log), name, log)
            results[name] = dbt_timings(target) | {"slowest_statements": slowest_statements(logs / "dbt.log", logged_from)}
            (target / "run_results.json").unlink(missing_ok=True)
        steps[name] = result["seconds"]
        peak_tree = max(peak_tree, result["peak_tree_rss_bytes"])
        peak_process = max(peak_process, result["peak_process_rss_bytes"])
    clone = f"""
import json
from pathlib import Path
from greenery_orchestration.clone_duckdb import clone
from greenery_orchestration.chain.clone import table_changes
from greenery_orchestration.chain.masking import pii_columns
from greenery_orchestration.settings import masking_salt
w = Path({str(warehouse)!r})
manifest = json.loads(Path({str(target / "manifest.json")!r}).read_text())
clone(w / "prod.duckdb", [w / "dev.duckdb", w / "ci.duckdb"], pii_columns(manifest), masking_salt(w), table_changes(manifest))
"""
    log = warehouse / "bare-clone.log"
    result = check(run([PYTHON, "-c", clone], env=env, cwd=REPO, log=log), "clone", log)
    steps["clone prod to dev and ci"] = result["seconds"]
    peak_tree = max(peak_tree, result["peak_tree_rss_bytes"])
    return {
        "seconds": time.perf_counter() - started,
        "steps": steps,
        "dbt_timings": results,
        "wap_call_seconds": inner,  # the wap call alone, without starting Python and importing
        "peak_tree_rss_bytes": peak_tree,
        "peak_process_rss_bytes": peak_process,
    }


def dbt_timings(target: Path) -> dict:
    """From run_results.json: wall time of the invocation, the summed node time, and the slowest
    nodes (where a step's time goes)."""
    path = target / "run_results.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    nodes = sorted(((r.get("execution_time") or 0, r["unique_id"]) for r in data.get("results", [])), reverse=True)
    by_type: dict[str, float] = {}
    for seconds, unique_id in nodes:
        kind = unique_id.split(".")[0]
        by_type[kind] = by_type.get(kind, 0) + seconds
    return {
        "elapsed": data.get("elapsed_time"), "nodes": len(nodes), "node_seconds": sum(s for s, _ in nodes),
        "by_type": by_type, "slowest": {unique_id: round(seconds, 2) for seconds, unique_id in nodes[:10]},
    }


def slowest_statements(debug_log: Path, offset: int, most: int = 12) -> list[dict]:
    """The slowest SQL statements dbt ran, from its debug log after `offset`: each with its node
    and the statement's start. A node's time is often one statement: a look-up its Jinja runs
    while compiling, the model's own query, or a test's."""
    if not debug_log.exists():
        return []
    with debug_log.open(encoding="utf-8", errors="replace") as file:
        file.seek(offset)
        lines = file.read().splitlines()
    statements, node, sql = [], None, ""
    for number, line in enumerate(lines):
        if "[debug]" in line and (opened := re.search(r"\bOn (\S+): (.*)", line)):
            node, sql = opened.group(1), opened.group(2)
            for following in lines[number + 1 : number + 40]:
                if "[debug]" in following or "[info" in following:
                    break
                sql += " " + following.strip()
        elif (status := re.search(r"SQL status: \S+ in ([0-9.]+) seconds", line)) and node:
            text = " ".join(re.sub(r"/\* \{.*?\} \*/", "", sql).split())
            statements.append({"seconds": float(status.group(1)), "node": node, "sql": text[:200]})
    return sorted(statements, key=lambda s: -s["seconds"])[:most]


# --------------------------------------------------------------------------- the floor

FLOOR_SQL = """
create schema floor;
create table floor.fct_sessions as
with s as (
    select
        session_id,
        min(user_id) as user_id,
        max(case when event_type = 'checkout' then order_id end) as order_id,
        count(*) filter (where event_type = 'page_view') as page_views,
        count(*) filter (where event_type = 'add_to_cart') as add_to_carts,
        count(*) filter (where event_type = 'checkout') as checkouts,
        min(created_at) as session_started_at,
        max(created_at) as session_ended_at
    from raw.events
    where event_type != 'package_shipped'
    group by session_id
)
select session_id, user_id, order_id, page_views, add_to_carts, checkouts,
       page_views > 0 as has_page_view, add_to_carts > 0 as has_add_to_cart,
       checkouts > 0 as has_checkout, session_started_at, session_ended_at,
       cast(session_started_at as date) as session_date,
       date_diff('second', session_started_at, session_ended_at) as session_length_seconds
from s;
create table floor.fct_funnel_daily as
with d as (
    select session_date,
           count(*) filter (where has_page_view) as v,
           count(*) filter (where has_add_to_cart) as a,
           count(*) filter (where has_checkout) as c
    from floor.fct_sessions group by session_date
), steps as (
    select session_date, 1 as step_number, 'page_view' as funnel_step, v as sessions from d
    union all select session_date, 2, 'add_to_cart', a from d
    union all select session_date, 3, 'checkout', c from d
)
select session_date, step_number, funnel_step, sessions,
       sessions::double / nullif(lag(sessions) over w, 0) as conversion_from_previous,
       1 - sessions::double / nullif(lag(sessions) over w, 0) as drop_off_from_previous,
       sessions::double / nullif(first_value(sessions) over w, 0) as conversion_from_start
from steps
window w as (partition by session_date order by step_number);
create table floor.fct_funnel as
with steps as (
    select step_number, funnel_step, sum(sessions)::bigint as sessions
    from floor.fct_funnel_daily group by all
)
select step_number, funnel_step, sessions,
       sessions::double / nullif(lag(sessions) over w, 0) as conversion_from_previous,
       1 - sessions::double / nullif(lag(sessions) over w, 0) as drop_off_from_previous,
       sessions::double / nullif(first_value(sessions) over w, 0) as conversion_from_start
from steps
window w as (order by step_number);
create table floor.fct_product_funnel as
with sp as (
    select session_id, product_id,
           bool_or(event_type = 'page_view') as has_viewed,
           bool_or(event_type = 'add_to_cart') as has_added_to_cart
    from raw.events
    where product_id is not null and event_type != 'package_shipped'
    group by all
), bought as (
    select distinct e.session_id, i.product_id
    from raw.events e join raw.order_items i using (order_id)
    where e.event_type = 'checkout'
), per_product as (
    select sp.product_id,
           count(*) filter (where has_viewed) as sessions_viewed,
           count(*) filter (where has_viewed and has_added_to_cart) as sessions_added_to_cart,
           count(*) filter (where has_viewed and has_added_to_cart and bought.product_id is not null)
               as sessions_purchased
    from sp left join bought using (session_id, product_id)
    group by sp.product_id
)
select p.product_id, p.name as product_name,
       coalesce(sessions_viewed, 0) as sessions_viewed,
       coalesce(sessions_added_to_cart, 0) as sessions_added_to_cart,
       coalesce(sessions_purchased, 0) as sessions_purchased,
       sessions_added_to_cart::double / nullif(sessions_viewed, 0) as view_to_cart_rate,
       sessions_purchased::double / nullif(sessions_added_to_cart, 0) as cart_to_purchase_rate,
       sessions_purchased::double / nullif(sessions_viewed, 0) as view_to_purchase_rate
from raw.products p left join per_product using (product_id);
"""


def floor(raw: Path, folder: Path) -> dict:
    """The hand-written SQL above, in one DuckDB process, reading the raw tables of `raw`
    (attached read-only, before any run changes them) into a file of its own."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    path = folder / "handwritten.duckdb"
    code = f"""
import duckdb, sys
with duckdb.connect({str(path)!r}) as connection:
    connection.execute("set TimeZone = 'UTC'")
    connection.execute("attach '{raw}' as source (read_only)")
    connection.execute("create schema raw")
    for table in ("events", "order_items", "products"):
        connection.execute(f"create view raw.{{table}} as select * from source.raw.{{table}}")
    connection.execute(sys.stdin.read())
"""
    log = folder / "floor.log"
    started = time.perf_counter()
    process = subprocess.run([PYTHON, "-c", code], input=FLOOR_SQL, text=True, capture_output=True)
    seconds = time.perf_counter() - started
    log.write_text(process.stdout + process.stderr)
    if process.returncode:
        raise SystemExit(f"bench: the floor SQL failed\n{process.stderr[-3000:]}")
    return {"seconds": seconds, "path": str(path)}


def compare_marts(floor_db: Path, prod_db: Path) -> dict:
    """The funnel rows of the floor against the marts dbt built: the same numbers?"""
    import duckdb  # noqa: PLC0415

    queries = {
        "fct_funnel": "select step_number, funnel_step, sessions, round(conversion_from_previous, 9), "
        "round(conversion_from_start, 9) from {s}.fct_funnel order by step_number",
        "fct_funnel_daily": "select session_date, step_number, sessions, round(conversion_from_previous, 9) "
        "from {s}.fct_funnel_daily order by all",
        "fct_product_funnel": "select product_id, sessions_viewed, sessions_added_to_cart, sessions_purchased "
        "from {s}.fct_product_funnel order by product_id",
        "fct_sessions": "select count(*), sum(page_views), sum(add_to_carts), sum(checkouts), "
        "sum(session_length_seconds), count(distinct session_date) from {s}.fct_sessions",
    }
    out = {}
    with duckdb.connect() as connection:
        connection.execute(f"attach '{floor_db}' as f (read_only)")
        connection.execute(f"attach '{prod_db}' as p (read_only)")
        for name, sql in queries.items():
            a = connection.execute(sql.format(s="f.floor")).fetchall()
            b = connection.execute(sql.format(s="p.marts")).fetchall()
            out[name] = {"equal": a == b, "rows": len(a)}
        out["funnel"] = connection.execute(
            "select step_number, funnel_step, sessions from p.marts.fct_funnel order by 1"
        ).fetchall()
    out["funnel"] = [list(row) for row in out["funnel"]]
    return out


# --------------------------------------------------------------------------- start-up


def startup(repeat: int, env: dict) -> dict:
    def times(code):
        return [check(run([PYTHON, "-c", code], env=env, cwd=REPO), code)["seconds"] for _ in range(repeat)]

    imports = times("import dagster_dbt")
    definitions = times("from greenery_orchestration.definitions import defs; defs()")
    return {"import_dagster_dbt": imports, "load_definitions": definitions}


# --------------------------------------------------------------------------- one size


def repeats(events: int, args) -> int:
    """Runs per figure at this size: --repeat, else 3 below 100M events and 1 from there on."""
    return args.repeat or (3 if events < 100_000_000 else 1)


def bench_size(events: int, args, workdir: Path, save) -> dict:
    """Every figure at one size, in the order that holds the least on disk at once: each warehouse
    is generated in its own folder and deleted as soon as it is measured, so that 100M events
    (prod, dev and ci ~22 GiB each) fit on a 75 GB disk. The full refresh holds prod's published
    models and their rebuilt copies at once, then writes both clones again: it runs only where
    the disk has room for that (`full_refresh_room`); where it has not, the incremental run is
    compared with the first run, a full build of the same data too. `save(rec)` writes the figures
    so far after each phase, so a run that dies or is stopped keeps what it measured."""
    env = base_env(workdir)
    size_dir = workdir / label(events)
    size_dir.mkdir(parents=True, exist_ok=True)
    gens: list = []
    rec: dict = {"events_requested": events, "repeats": [], "generator": gens}
    n = repeats(events, args)
    for i in range(n):
        r: dict = {}
        rec["repeats"].append(r)
        tag = f"[{label(events)} {i + 1}/{n}]"
        print(f"{tag} generator...", flush=True)
        dag_wh = fresh_warehouse(size_dir / "dagster", events, args.seed, gens)
        rec["events"] = gens[-1]["events"]
        rec["raw_bytes"] = (dag_wh / "prod.duckdb").stat().st_size
        r["raw_used_bytes"] = warehouse_bytes(dag_wh).get("prod_used_blocks")
        save(rec)
        print(f"{tag}   {gens[-1]['events']:,} events; floor SQL...", flush=True)
        r["floor"] = floor(dag_wh / "prod.duckdb", size_dir / "floor")
        save(rec)
        print(f"{tag}   {r['floor']['seconds']:.1f} s; greenery run (Dagster)...", flush=True)
        r["dagster"] = greenery_run(dag_wh, size_dir / "home-full", env)
        r["dagster"]["bytes"] = warehouse_bytes(dag_wh)
        r["compare"] = compare_marts(Path(r["floor"]["path"]), dag_wh / "prod.duckdb")
        shutil.rmtree(size_dir / "floor", ignore_errors=True)
        save(rec)
        print(f"{tag}   {r['dagster']['seconds']:.1f} s, the floor's numbers: "
              f"{all(v['equal'] for k, v in r['compare'].items() if k != 'funnel')}; +1% events...", flush=True)
        r["appended_events"] = append_one_percent(dag_wh / "prod.duckdb", events, args.seed)
        # The clones stay: an incremental run brings them up to date in place.
        r["incremental"] = greenery_run(dag_wh, size_dir / "home-incr", env)
        r["incremental"]["bytes"] = warehouse_bytes(dag_wh)
        save(rec)
        print(f"{tag}   incremental {r['incremental']['seconds']:.1f} s; full refresh...", flush=True)
        room = full_refresh_room(dag_wh, r["incremental"]["bytes"], r["raw_used_bytes"])
        if room["enough"]:
            # A full refresh restamps every row, so each table is copied whole: without the old
            # clones they are written as new files rather than beside the old rows in place.
            drop_clones(dag_wh)
            r["full_refresh"] = greenery_run(dag_wh, size_dir / "home-fr", env, full_refresh=True)
            r["full_refresh"]["bytes"] = warehouse_bytes(dag_wh)
            print(f"{tag}   full refresh {r['full_refresh']['seconds']:.1f} s; bare chain...", flush=True)
        else:
            r["full_refresh_skipped"] = room
            needed = "an unknown amount" if room["needed"] is None else f"~{room['needed'] / GIB:.0f} GiB"
            print(f"{tag}   full refresh skipped: it needs {needed}, "
                  f"{room['free'] / GIB:.0f} GiB free without the clones; bare chain...", flush=True)
        save(rec)
        shutil.rmtree(dag_wh, ignore_errors=True)
        bare_wh = fresh_warehouse(size_dir / "bare", events, args.seed, gens)
        r["bare"] = bare_chain(bare_wh, env)
        r["bare"]["bytes"] = warehouse_bytes(bare_wh)
        save(rec)
        print(f"{tag}   {r['bare']['seconds']:.1f} s; +1% events, bare chain again (incremental)...", flush=True)
        # The clones stay: the incremental run updates them as a scheduled run would.
        r["bare_appended_events"] = append_one_percent(bare_wh / "prod.duckdb", events, args.seed)
        r["bare_incremental"] = bare_chain(bare_wh, env)
        r["bare_incremental"]["bytes"] = warehouse_bytes(bare_wh)
        shutil.rmtree(bare_wh)
        save(rec)
        print(f"{tag}   bare incremental {r['bare_incremental']['seconds']:.1f} s", flush=True)
    return summarize(rec)


def full_refresh_room(folder: Path, files: dict, raw_bytes: int | None) -> dict:
    """Whether the disk holds a full refresh of this warehouse: every model built again beside the
    published ones (prod's used blocks less its raw tables, less the free blocks it reuses), then
    dev and ci written whole again once the old ones are dropped, and a margin (DuckDB's spill
    comes before the clones, the instances and logs are small). `files`: warehouse_bytes(folder)."""
    clones = files.get("dev.duckdb", 0) + files.get("ci.duckdb", 0)
    free = shutil.disk_usage(folder).free + clones
    prod, used = files["prod.duckdb"], files.get("prod_used_blocks")
    if used is None or raw_bytes is None:  # prod unreadable: no estimate, no full refresh
        return {"enough": False, "needed": None, "free": free}
    growth = max(used - raw_bytes - (prod - used), 0)
    needed = growth + clones + MARGIN_BYTES
    return {"enough": needed <= free, "needed": needed, "free": free}


def warehouse_bytes(folder: Path) -> dict:
    """Size of each DuckDB file, and of the blocks prod uses (DuckDB keeps freed blocks in the file)."""
    sizes = {path.name: path.stat().st_size for path in sorted(folder.glob("*.duckdb"))}
    code = (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
        "print(c.execute('select block_size * used_blocks from pragma_database_size()').fetchone()[0])"
    )
    out = subprocess.run([PYTHON, "-c", code, str(folder / "prod.duckdb")], capture_output=True, text=True)
    if out.returncode == 0:
        sizes["prod_used_blocks"] = int(out.stdout.strip().splitlines()[-1])
    return sizes


def drop_clones(folder: Path) -> None:
    for environment in ("dev", "ci"):
        (folder / f"{environment}.duckdb").unlink(missing_ok=True)


# Dagster's step keys (assets/sources.py, assets/dbt.py, chain/publish.py).
GATE_STEP = "raw_data_gate"  # the warehouse file, the freshness query, the dbt tests on raw tables
BUILD_STEP = "build_models"  # dbt build of every model, staged, with its tests (not the raw tables')
PUBLISH_STEP = "governance__publish"  # wap.publish


def _dagster_step(run_rec: dict, key: str):
    return run_rec["steps"].get("greenery_production", {}).get("steps", {}).get(key)


def _models_step(run_rec: dict):
    """The `dbt build` of every model: the `build_models` step of greenery_production."""
    return _dagster_step(run_rec, BUILD_STEP)


def _outside_steps(run_rec: dict):
    """Seconds of `greenery run` outside any Dagster step: imports, dbt parse, loading the
    definitions, run bookkeeping, printing the funnel."""
    inside = sum(t for job in run_rec["steps"].values() for t in job["steps"].values())
    return run_rec["seconds"] - inside


def _step_seconds(run_rec: dict, phase: str) -> dict:
    """{step: seconds} of one phase: the bare chain's commands, or every step of the Dagster jobs."""
    steps = run_rec[phase]["steps"]
    if phase.startswith("bare"):
        return steps
    return {key: seconds for job in steps.values() for key, seconds in job["steps"].items()}


# Per-step medians, of the first run and of the incremental run (+1% events), through Dagster and bare.
PROFILE_PHASES = (
    ("dagster", "dagster_step_"),
    ("bare", "bare_step_"),
    ("incremental", "incremental_dagster_step_"),
    ("bare_incremental", "incremental_bare_step_"),
)


def summarize(rec: dict) -> dict:
    """Medians over the repeats; a figure whose phase did not finish (a stopped run) is left out."""
    reps = rec["repeats"]

    def med(figure):
        values = []
        for r in reps:
            try:
                values.append(figure(r))
            except (KeyError, TypeError, ZeroDivisionError):
                pass
        return median(values) if values else None

    def peak(kinds, field):
        values = [r[k][field] for r in reps for k in kinds if k in r]
        return max(values) / GIB if values else None

    m = {"runs": len(reps)}
    m["generator_events_per_second"] = median(g["events_per_second"] for g in rec["generator"])
    m["dagster_chain_seconds"] = med(lambda r: r["dagster"]["seconds"])
    m["bare_chain_seconds"] = med(lambda r: r["bare"]["seconds"])
    m["orchestration_overhead"] = med(lambda r: r["dagster"]["seconds"] / r["bare"]["seconds"])
    m["dagster_build_step_seconds"] = med(lambda r: _models_step(r["dagster"]))
    m["dagster_gate_step_seconds"] = med(lambda r: _dagster_step(r["dagster"], GATE_STEP))
    m["publish_full_dagster_seconds"] = med(lambda r: _dagster_step(r["dagster"], PUBLISH_STEP))
    m["publish_incremental_dagster_seconds"] = med(lambda r: _dagster_step(r["incremental"], PUBLISH_STEP))
    m["publish_full_refresh_dagster_seconds"] = med(lambda r: _dagster_step(r["full_refresh"], PUBLISH_STEP))
    m["publish_full_bare_seconds"] = med(lambda r: r["bare"]["steps"][BARE_PUBLISH])
    m["publish_incremental_bare_seconds"] = med(lambda r: r["bare_incremental"]["steps"][BARE_PUBLISH])
    m["publish_full_wap_call_seconds"] = med(lambda r: r["bare"]["wap_call_seconds"][BARE_PUBLISH])
    m["publish_incremental_wap_call_seconds"] = med(lambda r: r["bare_incremental"]["wap_call_seconds"][BARE_PUBLISH])
    m["bare_incremental_chain_seconds"] = med(lambda r: r["bare_incremental"]["seconds"])
    m["incremental_orchestration_overhead"] = med(lambda r: r["incremental"]["seconds"] / r["bare_incremental"]["seconds"])
    m["dagster_outside_steps_seconds"] = med(lambda r: _outside_steps(r["dagster"]))
    m["incremental_outside_steps_seconds"] = med(lambda r: _outside_steps(r["incremental"]))
    for phase, prefix in PROFILE_PHASES:
        keys = list(dict.fromkeys(key for r in reps if phase in r for key in _step_seconds(r, phase)))
        for key in keys:
            m[f"{prefix}{key}_seconds"] = med(lambda r, phase=phase, key=key: _step_seconds(r, phase)[key])
    m["bare_dbt_build_seconds"] = med(lambda r: r["bare"]["steps"][BARE_BUILD])
    m["floor_seconds"] = med(lambda r: r["floor"]["seconds"])
    m["marts_vs_floor"] = med(lambda r: _models_step(r["dagster"]) / r["floor"]["seconds"])
    compared = [v["equal"] for r in reps for k, v in r.get("compare", {}).items() if k != "funnel"]
    m["floor_same_numbers"] = all(compared) if compared else None
    m["incremental_chain_seconds"] = med(lambda r: r["incremental"]["seconds"])
    m["full_refresh_chain_seconds"] = med(lambda r: r["full_refresh"]["seconds"])
    m["incremental_vs_full"] = med(lambda r: r["incremental"]["seconds"] / r["full_refresh"]["seconds"])
    m["incremental_build_step_seconds"] = med(lambda r: _models_step(r["incremental"]))
    m["full_refresh_build_step_seconds"] = med(lambda r: _models_step(r["full_refresh"]))
    m["incremental_vs_full_build_step"] = med(
        lambda r: _models_step(r["incremental"]) / _models_step(r["full_refresh"])
    )
    # Where the disk had no room for the full refresh (full_refresh_room), the first run stands in.
    m["incremental_vs_first_run"] = med(lambda r: r["incremental"]["seconds"] / r["dagster"]["seconds"])
    m["incremental_vs_first_run_build_step"] = med(
        lambda r: _models_step(r["incremental"]) / _models_step(r["dagster"])
    )
    m["full_refresh_vs_first_run"] = med(lambda r: r["full_refresh"]["seconds"] / r["dagster"]["seconds"])
    m["appended_events"] = med(lambda r: r["appended_events"])
    m["peak_memory_gib"] = peak(("dagster", "incremental", "full_refresh"), "peak_tree_rss_bytes")
    m["peak_single_process_gib"] = peak(("dagster", "incremental", "full_refresh"), "peak_process_rss_bytes")
    m["bare_peak_memory_gib"] = peak(("bare",), "peak_tree_rss_bytes")
    m["raw_gib"] = rec["raw_bytes"] / GIB if "raw_bytes" in rec else None
    sized = [r["dagster"]["bytes"] for r in reps if "bytes" in r.get("dagster", {})]
    m["warehouse_gib"] = (
        " / ".join(f"{sized[-1].get(f'{name}.duckdb', 0) / GIB:.2f}" for name in ("prod", "dev", "ci")) if sized else None
    )
    for phase in ("dagster", "incremental", "full_refresh", "bare", "bare_incremental"):
        m[f"prod_gib_after_{phase}"] = med(lambda r, phase=phase: r[phase]["bytes"]["prod.duckdb"] / GIB)
        m[f"prod_used_gib_after_{phase}"] = med(lambda r, phase=phase: r[phase]["bytes"]["prod_used_blocks"] / GIB)
    m["prod_after_incremental_vs_first"] = med(
        lambda r: r["incremental"]["bytes"]["prod.duckdb"] / r["dagster"]["bytes"]["prod.duckdb"]
    )
    rec["medians"] = m
    return rec


# --------------------------------------------------------------------------- report


def verdict(value, target):
    if value is None:
        return "n/a"
    return "met" if value <= target else "missed"


def table(results: dict) -> str:
    sizes = list(results["sizes"])
    head = "| figure | target (at 100M) | " + " | ".join(sizes) + " |"
    lines = [head, "|---" * (2 + len(sizes)) + "|"]

    def row(name, target, fmt, key, target_key=None, judged=lambda medians: True):
        cells = []
        for size in sizes:
            medians = results["sizes"][size]["medians"]
            value = tuple(medians.get(k) for k in key) if isinstance(key, tuple) else medians.get(key)
            value = None if isinstance(value, tuple) and None in value else value
            cell = fmt(value) if value is not None else "n/a"
            if target_key and judged(medians):
                cell += f" ({verdict(value, TARGETS[target_key])})"
            cells.append(cell)
        lines.append(f"| {name} | {target} | " + " | ".join(cells) + " |")

    def sec(v):
        return f"{v:.1f} s"

    def ratio(v):
        return f"{v:.2f}x" if v >= 0.1 else f"{v:.3f}x"

    def no_full_refresh(medians):
        return medians.get("full_refresh_chain_seconds") is None

    def publish(v):
        return f"Dagster step {v[0]:.1f} s; bare {v[1]:.1f} s (the wap.publish call {v[2]:.1f} s)"

    def pair_gib(v):
        return f"{v[0]:.2f} / {v[1]:.2f} GiB"

    row("runs (median of)", "", str, "runs")
    row("events generated", "", lambda v: f"{v:,}", "events_for_table")
    row("generator (events/s)", "", lambda v: f"{v:,.0f}", "generator_events_per_second")
    row("raw tables (DuckDB file)", "", lambda v: f"{v:.2f} GiB", "raw_gib")
    row("prod / dev / ci files after a run (GiB)", "", str, "warehouse_gib")
    row("first run through Dagster (`greenery run`), a full build", "", sec, "dagster_chain_seconds")
    row("same commands + clones, bare", "", sec, "bare_chain_seconds")
    row("orchestration overhead", "≤ 1.15x", ratio, "orchestration_overhead", "orchestration_overhead")
    row("models step through Dagster (dbt build)", "", sec, "dagster_build_step_seconds")
    row("publish (full build)", "", publish,
        ("publish_full_dagster_seconds", "publish_full_bare_seconds", "publish_full_wap_call_seconds"))
    row("publish (incremental, +1%)", "", publish,
        ("publish_incremental_dagster_seconds", "publish_incremental_bare_seconds", "publish_incremental_wap_call_seconds"))
    row("floor: one DuckDB SQL script", "", sec, "floor_seconds")
    row("marts vs floor", "≤ 1.5x", ratio, "marts_vs_floor", "marts_vs_floor")
    row("floor gives the same funnel rows", "", lambda v: "yes" if v else "NO", "floor_same_numbers")
    row("prod file after the first run / after +1% incremental", "", pair_gib,
        ("prod_gib_after_dagster", "prod_gib_after_incremental"))
    row("+1% events, incremental `greenery run`", "", sec, "incremental_chain_seconds")
    row("+1% events, same commands bare", "", sec, "bare_incremental_chain_seconds")
    row("same data, `greenery run --full-refresh`", "", sec, "full_refresh_chain_seconds")
    row("incremental vs full refresh (whole chain)", "≤ 0.1x", ratio, "incremental_vs_full", "incremental_vs_full")
    row("incremental vs full refresh (models step only)", "≤ 0.1x", ratio, "incremental_vs_full_build_step",
        "incremental_vs_full")
    row("full refresh vs first run", "", ratio, "full_refresh_vs_first_run")
    row("incremental vs first run (whole chain)", "≤ 0.1x where no full refresh", ratio, "incremental_vs_first_run",
        "incremental_vs_full", no_full_refresh)
    row("incremental vs first run (models step only)", "≤ 0.1x where no full refresh", ratio,
        "incremental_vs_first_run_build_step", "incremental_vs_full", no_full_refresh)
    row("peak memory of `greenery run` (process tree)", "≤ 4 GiB", lambda v: f"{v:.2f} GiB", "peak_memory_gib",
        "peak_memory_gib")
    row("load Dagster definitions", "", sec, "load_definitions_seconds")
    row("`import dagster_dbt` alone", "", sec, "import_seconds")
    row("definitions vs bare import", "≤ 1.3x", ratio, "definitions_vs_import", "definitions_vs_import")
    return "\n".join(lines)


def profile_table(results: dict) -> str:
    """Where the time of the chain goes, per step, Dagster against bare (medians, seconds), in the
    first run and in the incremental run (+1% events)."""
    sizes = list(results["sizes"])
    rows = {"dagster_outside_steps": ("dagster_outside_steps_seconds", "incremental_outside_steps_seconds")}
    for size in sizes:
        for key in results["sizes"][size]["medians"]:
            for prefix in ("dagster_step_", "bare_step_"):
                if key.startswith(prefix):
                    rows.setdefault(key.removesuffix("_seconds"), (key, "incremental_" + key))
    head = " | ".join(f"{size} first run | {size} +1% incremental" for size in sizes)
    lines = [f"| step (median seconds) | {head} |", "|---" * (1 + 2 * len(sizes)) + "|"]
    for name, keys in rows.items():
        name = name.replace("dagster_step_", "Dagster step ").replace("bare_step_", "bare: ")
        name = name.replace("dagster_outside_steps", "`greenery run` outside steps (imports, dbt parse, definitions)")
        cells = []
        for size in sizes:
            medians = results["sizes"][size]["medians"]
            cells += [f"{medians[key]:.1f}" if medians.get(key) is not None else "n/a" for key in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def finish_startup(rec: dict, s: dict | None) -> None:
    m = rec["medians"]
    m["events_for_table"] = rec["events"]
    if s:
        m["import_seconds"] = median(s["import_dagster_dbt"])
        m["load_definitions_seconds"] = median(s["load_definitions"])
        m["definitions_vs_import"] = m["load_definitions_seconds"] / m["import_seconds"]


def commit() -> str:
    """The commit measured, marked `+changes` when the working tree differs from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True)
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "") if head.returncode == 0 else "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description=__doc__.split("\n\n")[0],
        epilog="Targets (at 100M events, 2 cores): " + ", ".join(f"{k} <= {v}" for k, v in TARGETS.items()),
    )
    parser.add_argument("--events", default="1M", help="comma-separated sizes, e.g. 1M,10M,100M (default 1M)")
    parser.add_argument(
        "--repeat", type=int, help="runs per figure, the median reported (default 3 below 100M events, 1 from 100M)"
    )
    parser.add_argument("--startup-repeat", type=int, default=3, help="fresh processes per start-up figure (default 3)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", default="/tmp/greenery-bench", help="scratch folder (default /tmp/greenery-bench)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs, warehouses, instances)")
    parser.add_argument(
        "--duckdb-memory-limit",
        help="e.g. 2GB: sets GREENERY_DUCKDB_MEMORY_LIMIT, which the dbt profile and the clones read "
        "(default there: 3GB)",
    )
    parser.add_argument("--report", metavar="JSON", nargs="+",
                        help="print the tables of results files again (re-summarized), their sizes side by side, and exit")
    args = parser.parse_args(argv)
    if args.report:
        results = {"sizes": {}}
        for path in args.report:
            one = json.loads(Path(path).read_text())
            for size, rec in one["sizes"].items():
                if size in results["sizes"]:
                    raise SystemExit(f"bench: {size} is in more than one of the files given to --report")
                summarize(rec)
                finish_startup(rec, one.get("startup"))  # each size with its own run's start-up
                results["sizes"][size] = rec
            print(f"{path}: commit {one['commit']}, {one['started_at']}, {', '.join(one['sizes'])}")
        print()
        print(table(results))
        print()
        print(profile_table(results))
        return 0
    sizes = [parse_size(s) for s in args.events.split(",")]
    workdir = Path(args.workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    free = shutil.disk_usage(workdir).free
    for events in sizes:
        if events * DISK_BYTES_PER_EVENT > free:
            raise SystemExit(f"bench: {label(events)} events need ~{events * DISK_BYTES_PER_EVENT / 1e9:.0f} GB "
                             f"free under {workdir}, and {free / 1e9:.0f} GB are")
    if args.duckdb_memory_limit:
        os.environ["GREENERY_DUCKDB_MEMORY_LIMIT"] = args.duckdb_memory_limit
    # Parse the dbt project first, as `greenery` does: the bare chain's Python steps import the
    # definitions' modules, which read the manifest (a fresh clone has none).
    subprocess.run(
        [PYTHON, "-c", "from greenery_orchestration.project import prepare_manifest; prepare_manifest()"],
        env=base_env(workdir), cwd=REPO, check=True,
    )

    results = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "commit": commit(),
        "args": vars(args),
        "targets": TARGETS,
        "sizes": {},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"bench-{'-'.join(label(e) for e in sizes)}-{stamp}.json"

    def save(rec=None, events=None):
        if rec is not None:
            results["sizes"][label(events)] = rec
        out.write_text(json.dumps(results, indent=2, default=str))

    try:
        for events in sizes:
            rec = bench_size(events, args, workdir, functools.partial(save, events=events))
            results["sizes"][label(events)] = rec
        n = args.startup_repeat
        print(f"start-up ({n} fresh processes each)...", flush=True)
        # The definitions read the manifest `greenery run` parsed.
        s = startup(n, base_env(workdir))
        results["startup"] = s
        for rec in results["sizes"].values():
            finish_startup(rec, s)
    finally:
        results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        save()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table(results))
    print()
    print(profile_table(results))
    print(f"\n{', '.join(results['sizes'])} events, commit {results['commit']}, {results['machine']['cpus']} CPUs, "
          f"{results['machine']['memory_gib']} GiB, {results['started_at']}. JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
