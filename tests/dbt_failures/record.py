"""Records what dbt leaves behind when a command fails, for tests/test_dbt_errors.py.

Each case runs real dbt on a sample warehouse broken in one way, then keeps from the invocation's
target folder the results of run_results.json (without the compiled SQL and timings) and the
error lines of dbt.log. Run as root, where the full disk can be a tmpfs:

    PYTHONPATH=$PWD .venv/bin/python -m tests.dbt_failures.record
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

HERE = Path(__file__).parent
KEPT_FIELDS = ("status", "message", "failures", "unique_id", "relation_name")


def _drop_column(table: str, column: str):
    return lambda database: _sql(database, f"alter table raw.{table} drop column {column}")


def _zero_quantities(database: Path) -> None:
    _sql(database, "update raw.order_items set quantity = 0 where product_id = (select min(product_id) from raw.order_items)")


def _sql(database: Path, statement: str) -> None:
    with duckdb.connect(str(database)) as connection:
        connection.execute(statement)


CASES = {
    # case: (how the warehouse is broken, the dbt command)
    "missing_column": (_drop_column("orders", "promo_id"), ["build"]),
    "test_error": (_drop_column("events", "event_type"), ["build"]),
    "failing_test": (_zero_quantities, ["build"]),
    "disk_full": (None, ["build"]),
    "unknown_macro": (None, ["run-operation", "no_such_macro"]),
}


def record(case: str, folder: Path) -> None:
    from greenery_orchestration.cli import main
    from greenery_orchestration.project import dbt_resource

    break_it, command = CASES[case]
    warehouse = folder / "warehouse"
    warehouse.mkdir()
    if case == "disk_full":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(warehouse)], check=True)
    try:
        os.environ["GREENERY_WAREHOUSE_DIR"] = str(warehouse)
        assert main(["sample", "--end", "2026-01-01"]) == 0
        if break_it:
            break_it(warehouse / "prod.duckdb")
        if case == "disk_full":  # the raw tables fit, the models do not
            free = shutil.disk_usage(warehouse).free
            (warehouse / "filler").write_bytes(b"\0" * (free - 1024 * 1024))
        invocation = dbt_resource().cli(command, raise_on_error=False).wait()
        assert not invocation.is_successful(), f"{case}: dbt succeeded"
    finally:
        if case == "disk_full":
            subprocess.run(["umount", str(warehouse)], check=True)
    kept = HERE / case
    shutil.rmtree(kept, ignore_errors=True)
    kept.mkdir()
    results = invocation.target_path / "run_results.json"
    if results.exists():
        run_results = json.loads(results.read_text())
        trimmed = [{field: result[field] for field in KEPT_FIELDS} for result in run_results["results"]]
        (kept / "run_results.json").write_text(json.dumps({"results": trimmed}, indent=1) + "\n")
    errors = [line for line in (invocation.target_path / "dbt.log").read_text().splitlines() if '"level": "error"' in line]
    (kept / "dbt.log").write_text("\n".join(errors) + "\n")
    (kept / "exit_code").write_text(f"{invocation.process.returncode}\n")


if __name__ == "__main__":
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    for name in sys.argv[1:] or CASES:
        with tempfile.TemporaryDirectory() as scratch:
            record(name, Path(scratch))
            print(f"recorded {name}")
