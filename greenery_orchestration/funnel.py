"""The funnel marts as an analyst reads them: printed tables, Dagster table metadata, a chart."""

import base64
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
from tabulate import tabulate

from greenery_orchestration.marts import FUNNEL_MARTS, MART_FRESHNESS

MART_QUERIES = {
    "step": """
        select step_number, funnel_step, sessions,
               conversion_from_previous, drop_off_from_previous, conversion_from_start
        from {relation} order by step_number""",
    "user": """
        select step_number, funnel_step, users,
               conversion_from_previous, drop_off_from_previous, conversion_from_start
        from {relation} order by step_number""",
    "product": """
        select product_name, sessions_viewed, sessions_added_to_cart, sessions_purchased,
               view_to_cart_rate, cart_to_purchase_rate, view_to_purchase_rate, abandoned_cart_value
        from {relation} order by sessions_viewed desc, product_name""",
    "day": """
        select session_date, funnel_step, sessions,
               conversion_from_previous, conversion_from_start, conversion_from_previous_7d, is_conversion_anomaly
        from {relation} order by session_date, step_number""",
    "time": """
        select from_step, to_step, conversions, avg_seconds, median_seconds, p90_seconds
        from {relation} order by conversions desc, from_step, to_step""",
    "breakdown": """
        select dimension, dimension_value, funnel_step, sessions, conversion_from_previous, conversion_from_start
        from {relation} order by dimension, dimension_value, step_number""",
}


def read_funnel(
    query: Callable[[str], pd.DataFrame], by: str = "step", staged: Callable[[str, str], str] | None = None
) -> pd.DataFrame:
    """One funnel mart, `by` step (fct_funnel), product or day, read with `query`: as published,
    or as this run staged it, where `staged(schema, name)` says (the warehouse's staged_relation)."""
    relation = staged(*FUNNEL_MARTS[by].path) if staged else ".".join(FUNNEL_MARTS[by].path)
    return query(MART_QUERIES[by].format(relation=relation))


def as_text(frame: pd.DataFrame) -> str:
    """A plain-text table with rates as percentages and days as dates, for a terminal."""
    return tabulate(_for_people(frame), headers="keys", tablefmt="github", showindex=False)


def as_table_metadata(frame: pd.DataFrame) -> dg.TableMetadataValue:
    """The mart as a Dagster table, rates as percentages as in the terminal."""
    shown = _for_people(frame)
    records = [
        dg.TableRecord({k: _json_safe(v) for k, v in row.items()})
        for row in shown.to_dict(orient="records")
    ]
    columns = [
        dg.TableColumn(name, "string" if name in _rate_columns(frame) else str(dtype))
        for name, dtype in frame.dtypes.items()
    ]
    return dg.MetadataValue.table(records, schema=dg.TableSchema(columns))


def provenance(
    instance: dg.DagsterInstance, published: tuple[str, datetime] | None, now: datetime | None = None
) -> list[str]:
    """What a reader should know before the numbers: the run that published them and when (`published`,
    from the warehouse's publish log), whether a newer run failed or is under way, and whether
    they are older than the marts' freshness policy."""
    if published is None:
        return ["WARNING: no production run has published these marts (ops.publish_log is empty)."]
    now = now or datetime.now(UTC)
    run_id, built_at = published[0], published[1].replace(tzinfo=UTC)
    age = now - built_at
    lines = [f"Built by run {run_id[:8]} at {built_at:%Y-%m-%d %H:%M} UTC ({_duration(age)} ago)."]
    newest = instance.get_run_records(dg.RunsFilter(job_name="greenery_production"), limit=1)
    if newest and newest[0].dagster_run.run_id != run_id:
        run, started = newest[0].dagster_run, newest[0].start_time
        when = f" at {datetime.fromtimestamp(started, UTC):%Y-%m-%d %H:%M} UTC" if started else ""
        if run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            outcome = "failed" if run.status == dg.DagsterRunStatus.FAILURE else "was canceled"
            lines.append(f"WARNING: the newest run, {run.run_id[:8]}{when}, {outcome} and published nothing: "
                         "these numbers are older.")
        elif not run.is_finished:
            lines.append(f"Note: run {run.run_id[:8]}{when} is in progress; these numbers are from before it.")
    fail, warn = MART_FRESHNESS.fail_window.to_timedelta(), MART_FRESHNESS.warn_window.to_timedelta()
    if age > warn:
        level, limit = ("WARNING", fail) if age > fail else ("Note", warn)
        lines.append(
            f"{level}: built {_duration(age)} ago, older than the {_duration(limit)} the marts' freshness policy "
            f"allows (warn after {_duration(warn)}, fail after {_duration(fail)})."
        )
    return lines


def _duration(span: timedelta) -> str:
    seconds = max(0, int(span.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def _for_people(frame: pd.DataFrame) -> pd.DataFrame:
    """Rates as percentages, days (timestamps at midnight) as dates."""
    shown = frame.copy()
    for column in _rate_columns(shown):
        shown[column] = shown[column].map(lambda rate: "" if pd.isna(rate) else f"{rate:.1%}")
    for column in shown.columns:
        values = shown[column]
        if pd.api.types.is_datetime64_any_dtype(values) and (values.dropna() == values.dropna().dt.normalize()).all():
            shown[column] = values.dt.strftime("%Y-%m-%d")
    return shown


def funnel_chart_markdown(frame: pd.DataFrame, title: str) -> str:
    """A bar chart of sessions per step (or per product and step) as an inline PNG."""
    import matplotlib  # noqa: PLC0415 - heavy, and only needed after a materialization

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    if "product_name" in frame:
        counts = frame.set_index("product_name")[
            ["sessions_viewed", "sessions_added_to_cart", "sessions_purchased"]
        ].iloc[::-1]
        figure, axes = plt.subplots(figsize=(8, max(3, 0.28 * len(counts))))
        counts.plot.barh(ax=axes, width=0.8, color=["#9ccc65", "#43a047", "#1b5e20"])
        axes.set_ylabel("")
    else:
        figure, axes = plt.subplots(figsize=(7, 2.8))
        steps = frame.iloc[::-1]
        bars = axes.barh(steps["funnel_step"], steps["sessions"], color="#43a047")
        labels = [
            f"{sessions:,}  ({rate:.1%} of start)"
            for sessions, rate in zip(steps["sessions"], steps["conversion_from_start"])
        ]
        axes.bar_label(bars, labels=labels, padding=4)
        axes.set_xlim(0, steps["sessions"].max() * 1.45)
    axes.set_xlabel("sessions")
    axes.set_title(title)
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=96)
    plt.close(figure)
    encoded = base64.b64encode(png.getvalue()).decode()
    return f"![{title}](data:image/png;base64,{encoded})"


def _rate_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.endswith("_rate") or c.startswith(("conversion_", "drop_off_"))]


def _json_safe(value):
    """Plain Python values (rates to 4 decimals), missing values as None, anything else as text."""
    if pd.isna(value):
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return round(value, 4)
    return value if isinstance(value, (str, int, bool)) else str(value)
