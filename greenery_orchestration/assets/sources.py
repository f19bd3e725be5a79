"""The raw tables, loaded outside Dagster, and the freshness gate in front of everything else."""

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource
from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets

from greenery_orchestration.assets.dbt import greenery_models, is_full_refresh, tests_on_raw_tables
from greenery_orchestration.assets.examples import failing_examples
from greenery_orchestration.dbt_errors import dbt_failure
from greenery_orchestration.project import EVERY_RAW_ROW, dbt_vars
from greenery_orchestration.settings import target
from greenery_orchestration.warehouse import (
    WAREHOUSE_POOL,
    Warehouse,
    WarehouseBusy,
    WarehouseUnusable,
    is_lock_conflict,
)

RAW_GROUP = "raw"
FRESHNESS_CHECK = "source_freshness"


def raw_manifest() -> tuple[dict, Any, Any]:
    return get_manifest_and_translator_from_dbt_assets([greenery_models])


def raw_source_specs() -> list[dg.AssetSpec]:
    """One spec per dbt source table, keyed as the models see it, documented from the dbt YAML."""
    manifest, translator, project = raw_manifest()
    return [
        _as_raw_table(translator.get_asset_spec(manifest, unique_id, project))
        for unique_id in manifest["sources"]
    ]


def freshness_criteria() -> dict[dg.AssetKey, dict]:
    """{raw asset key: the source's dbt freshness config}, for the sources that declare one."""
    manifest, translator, _ = raw_manifest()
    return {
        translator.get_asset_key(source): {
            "loaded_at_field": source["loaded_at_field"],
            "relation_name": source["relation_name"],
            **source["freshness"],
        }
        for source in manifest["sources"].values()
        if source.get("loaded_at_field") and (source.get("freshness") or {}).get("error_after", {}).get("count")
    }


def _as_raw_table(spec: dg.AssetSpec) -> dg.AssetSpec:
    # Keep the table name and column schema; drop dagster-dbt's bookkeeping of the dbt node.
    metadata = {k: v for k, v in spec.metadata.items() if not k.startswith("dagster_dbt/")}
    return spec.replace_attributes(
        group_name=RAW_GROUP,
        kinds={target()},
        metadata=metadata,
        owners=["team:data-platform"],
    )


class FreshnessGateConfig(dg.Config):
    allow_stale: bool = False
    """Report sources past their error threshold as a warning and let the chain go on."""


def raw_tests() -> dict[str, tuple[str, dg.AssetKey]]:
    """{dbt test id: (test name, raw asset key)} for every dbt test that reads raw tables only."""
    manifest, translator, _ = raw_manifest()
    return {
        unique_id: (node["name"], translator.get_asset_key(manifest["sources"][node["depends_on"]["nodes"][0]]))
        for unique_id, node in tests_on_raw_tables(manifest).items()
    }


# The gate's step: a run that ran it tested the raw rows loaded before it began (chain/publish.py).
GATE_STEP = "raw_data_gate"


def raw_data_gate() -> dg.AssetChecksDefinition:
    """The gate in front of everything that writes: the warehouse file is whole, every raw source
    with thresholds is fresh (its dbt freshness thresholds), and every dbt test on raw tables passes,
    each a blocking check of its raw table. The raw tests run here and only here."""
    tests = raw_tests()
    specs = [
        *(
            dg.AssetCheckSpec(
                FRESHNESS_CHECK, asset=key, blocking=True,
                description="The newest row is within the source's dbt freshness thresholds.",
            )
            for key in freshness_criteria()
        ),
        *(
            dg.AssetCheckSpec(name, asset=key, blocking=True, description=f"dbt test {name} on the raw table.")
            for name, key in tests.values()
        ),
    ]

    @dg.multi_asset_check(specs=specs, name=GATE_STEP, pool=WAREHOUSE_POOL)
    def _gate(
        context: dg.AssetCheckExecutionContext,
        config: FreshnessGateConfig,
        dbt: DbtCliResource,
        warehouse: dg.ResourceParam[Warehouse],
    ):
        _refuse_unusable_warehouse(warehouse)
        # The sources' dbt thresholds, judged as the freshness sensor judges them: one query per
        # source here, where `dbt source freshness` cost a dbt invocation (~3 s) per run.
        criteria = freshness_criteria()
        newest = _when_unlocked(lambda: warehouse.newest_loaded_at(criteria))
        checked_at = datetime.now(UTC)
        for key, criterion in criteria.items():
            yield _freshness_result(key, criterion, newest[key], checked_at, config.allow_stale)
        # `cautious`: the tests on raw tables alone, not the marts' reconciliations with raw. They
        # read the rows loaded since the last run with a gate began, or every row on a full refresh.
        every_row = dbt_vars(EVERY_RAW_ROW if is_full_refresh(context.run) else {})
        invocation = dbt.cli(
            ["test", "--select", "source:*", "--indirect-selection", "cautious", *every_row], raise_on_error=False
        )
        invocation.wait()
        if not (invocation.target_path / "run_results.json").exists():
            raise dbt_failure(invocation)
        results = invocation.get_artifact("run_results.json")["results"]
        examples = failing_examples(warehouse.read_sql, raw_manifest()[0], results)
        for result in results:
            if result["status"] != "error":
                yield _test_result(*tests[result["unique_id"]], result, examples.get(result["unique_id"], {}))
        # A test that could not run has no result: the step fails with dbt's cause instead (a
        # failed blocking check yielded first would fail it with Dagster's message).
        if any(result["status"] == "error" for result in results):
            raise dbt_failure(invocation, ignore_failed_tests=True)

    return _gate


def _test_result(name: str, key: dg.AssetKey, result: dict, examples: dict) -> dg.AssetCheckResult:
    status = result["status"]
    metadata = {"status": status, "dagster_dbt/failed_row_count": result.get("failures") or 0, **examples}
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=name,
        passed=status == "pass",
        severity=dg.AssetCheckSeverity.WARN if status == "warn" else dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
    )


def _refuse_unusable_warehouse(warehouse: Warehouse) -> None:
    """Stop the chain before any step writes when the warehouse is corrupt, truncated or empty."""
    try:
        _when_unlocked(warehouse.check_usable)
    except WarehouseUnusable as error:
        raise dg.Failure(description=str(error)) from None


def _when_unlocked(read: Callable[[], Any], wait_seconds: float = 120) -> Any:
    """`read()`, waiting while another process holds the DuckDB file's one lock: a sensor tick or a
    CLI command may hold it for a moment."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return read()
        except Exception as error:
            if not (isinstance(error, WarehouseBusy) or is_lock_conflict(error)) or time.monotonic() > deadline:
                raise
            time.sleep(1)


def _freshness_result(
    key: dg.AssetKey, criterion: dict, newest: datetime | None, checked_at: datetime, allow_stale: bool
) -> dg.AssetCheckResult:
    status, age = freshness_status(criterion, newest, checked_at)
    stale = status == "error"
    severity = dg.AssetCheckSeverity.WARN if (status == "warn" or allow_stale) else dg.AssetCheckSeverity.ERROR
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=FRESHNESS_CHECK,
        passed=status == "pass",
        severity=severity,
        description=None if status == "pass" else f"{key.to_user_string()} is {'stale' if stale else 'getting stale'}",
        metadata={
            "status": status,
            "max_loaded_at": "no rows" if newest is None else newest.replace(tzinfo=UTC).isoformat(),
            "age_hours": None if age is None else round(age / timedelta(hours=1), 1),
            "warn_after": _threshold(criterion.get("warn_after")),
            "error_after": _threshold(criterion.get("error_after")),
            "checked_at": checked_at.isoformat(timespec="seconds"),
            **({"allowed_stale": True} if stale and allow_stale else {}),
        },
    )


def freshness_status(criterion: dict, newest: datetime | None, now: datetime) -> tuple[str, timedelta | None]:
    """`error` for a source past its `error_after` (or without a row), `warn` past its
    `warn_after`, else `pass`, as dbt's freshness judges it; and the newest row's age."""
    age = None if newest is None else now.replace(tzinfo=None) - newest
    if age is None or age > freshness_limit(criterion["error_after"]):
        return "error", age
    if criterion.get("warn_after", {}).get("count") and age > freshness_limit(criterion["warn_after"]):
        return "warn", age
    return "pass", age


def freshness_limit(criterion: dict) -> timedelta:
    """A dbt freshness threshold (`{count: 24, period: hour}`) as a timedelta."""
    return timedelta(**{f"{criterion['period']}s": criterion["count"]})


def _threshold(criterion: dict | None) -> str:
    if not criterion or not criterion.get("count"):
        return "none"
    return f"{criterion['count']} {criterion['period']}(s)"
