"""The chain's order, declared once: the stages of each job, in the order they run.

Each stage starts after the one before it: its first assets (those that depend on no other asset
of their stage) depend on every asset of the stage before, so the order is lineage and Dagster
runs the stages in turn; a failed step or a failed blocking check holds back everything after it.
The jobs and `greenery run` are derived from this list; the sensor starts the second job when the
first succeeds.

A stage is a list of raw tables, or a step: a factory that takes the keys of the stage before as
its deps, or dbt's assets, which take them from their translator (the way dagster-dbt offers:
assets/dbt.py `follows`) and are checked against this list here.
"""

from collections.abc import Callable, Sequence

import dagster as dg

from greenery_orchestration.assets.dbt import greenery_models, greenery_snapshots
from greenery_orchestration.assets.sources import raw_source_specs
from greenery_orchestration.chain.clone import environment_clones
from greenery_orchestration.chain.docs import dbt_docs
from greenery_orchestration.chain.masking import pii_masking
from greenery_orchestration.chain.publish import publish

Stage = list[dg.AssetSpec] | dg.AssetsDefinition | Callable[[Sequence[dg.AssetKey]], dg.AssetsDefinition]

# The raw tables come first: the gate is checks of them (assets/sources.py), and a failed
# blocking check holds back whatever depends on its table.
JOBS: dict[str, list[Stage]] = {
    "greenery_production": [raw_source_specs(), pii_masking, greenery_snapshots, greenery_models, publish],
    "greenery_docs_and_clone": [dbt_docs, environment_clones],
}


def _keys(stage: list[dg.AssetSpec] | dg.AssetsDefinition) -> list[dg.AssetKey]:
    return sorted((spec.key for spec in stage) if isinstance(stage, list) else stage.keys, key=str)


def _follows(assets: dg.AssetsDefinition, previous: list[dg.AssetKey]) -> dg.AssetsDefinition:
    own = set(assets.keys)
    for spec in assets.specs:
        deps = {dep.asset_key for dep in spec.deps}
        if not deps & own and not set(previous) <= deps:
            raise ValueError(f"{spec.key.to_user_string()} must follow {[k.to_user_string() for k in previous]}")
    return assets


def _chain() -> dict[str, list[list[dg.AssetSpec] | dg.AssetsDefinition]]:
    chain, previous = {}, []
    for job, stages in JOBS.items():
        built = []
        for stage in stages:
            if isinstance(stage, dg.AssetsDefinition):
                stage = _follows(stage, previous)
            elif callable(stage):
                stage = stage(previous)
            built.append(stage)
            previous = _keys(stage)
        chain[job] = built
    return chain


CHAIN = _chain()
JOB_NAMES = list(CHAIN)
ASSETS = [asset for stages in CHAIN.values() for stage in stages for asset in (stage if isinstance(stage, list) else [stage])]
