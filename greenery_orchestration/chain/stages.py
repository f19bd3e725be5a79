"""The chain's order, declared once: the stages of each job, in the order they run.

A stage's first assets (those that depend on no other asset of their stage) depend on every
asset of the stage before, so the order is lineage: Dagster runs the stages in turn, and a failed
step or a failed blocking check holds back everything after it. The jobs, the sensor that starts
the second job, and `greenery run` are derived from this list.
"""

import dagster as dg

from greenery_orchestration.assets.dbt import greenery_models, greenery_snapshots
from greenery_orchestration.assets.sources import raw_source_specs
from greenery_orchestration.chain.clone import environment_clones
from greenery_orchestration.chain.docs import dbt_docs
from greenery_orchestration.chain.masking import pii_masking
from greenery_orchestration.chain.publish import publish

Asset = dg.AssetsDefinition | dg.AssetSpec

# The raw tables come first: the gate is checks of them (assets/sources.py), so whatever
# depends on a raw table waits for its blocking checks.
PRODUCTION = {
    "greenery_production": [raw_source_specs(), [pii_masking], [greenery_snapshots], [greenery_models], [publish]],
    "greenery_docs_and_clone": [[dbt_docs], [environment_clones]],
}


def chained(stages: list[list[Asset]], after: list[Asset] = ()) -> list[list[Asset]]:
    """The stages with each stage's first assets depending on every asset of the stage before
    (the first stage on `after`, the last stage of the job before it)."""
    result, previous = [], _keys(after)
    for stage in stages:
        own = _keys(stage)
        result.append([_after(asset, previous, own) for asset in stage])
        previous = own
    return result


def _after(asset: Asset, previous: set[dg.AssetKey], stage: set[dg.AssetKey]) -> Asset:
    if not previous:
        return asset

    def first(spec: dg.AssetSpec) -> bool:
        return not any(dep.asset_key in stage for dep in spec.deps)

    def depend(spec: dg.AssetSpec) -> dg.AssetSpec:
        return spec.merge_attributes(deps=sorted(previous, key=str)) if first(spec) else spec

    if isinstance(asset, dg.AssetSpec):
        return depend(asset)
    specs = list(asset.specs)
    if all(previous <= {dep.asset_key for dep in spec.deps} for spec in specs if first(spec)):
        # dbt's assets get these deps from their translator, the way dagster-dbt offers
        # (assets/dbt.py, `follows`): rebuilding their specs here would re-validate dagster-dbt's
        # own metadata. A translator that disagrees with this list lands below and fails loudly.
        return asset
    return dg.map_asset_specs(depend, [asset])[0]


def _keys(assets: list[Asset]) -> set[dg.AssetKey]:
    return {key for asset in assets for key in ([asset.key] if isinstance(asset, dg.AssetSpec) else asset.keys)}


def _chain() -> dict[str, list[list[Asset]]]:
    jobs, after = {}, []
    for name, stages in PRODUCTION.items():
        jobs[name] = chained(stages, after)
        after = jobs[name][-1]
    return jobs


CHAIN = _chain()
JOB_NAMES = list(CHAIN)
ASSETS = [asset for stages in CHAIN.values() for stage in stages for asset in stage]
