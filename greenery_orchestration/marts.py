"""What the marts promise their readers: how fresh they are, and which mart answers which question.

Light on purpose (no dbt, no pandas): `greenery funnel` reads it without loading the definitions.
"""

from datetime import timedelta

import dagster as dg

# The schedule runs every 3 hours by day and pauses 9 hours at night: a mart older than one
# missed run warns, older than the night plus a missed run fails.
MART_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=12), warn_window=timedelta(hours=4))

# The funnel marts by what `greenery funnel --by` calls them.
FUNNEL_MARTS = {
    "step": dg.AssetKey(["marts", "fct_funnel"]),
    "user": dg.AssetKey(["marts", "fct_funnel_users"]),
    "product": dg.AssetKey(["marts", "fct_product_funnel"]),
    "day": dg.AssetKey(["marts", "fct_funnel_daily"]),
    "time": dg.AssetKey(["marts", "fct_funnel_time_to_convert"]),
    "breakdown": dg.AssetKey(["marts", "fct_funnel_breakdown"]),
}

# The column every incremental model stamps its rows with: when the build that wrote them started
# (dbt_project/macros/newest_build.sql).
BUILD_STAMP = "dbt_updated_at"

# What a production build calls a relation until it is published: the suffix
# dbt_project/macros/generate_alias_name.sql gives its name on DuckDB (wap.py), and
# generate_schema_name.sql its schema on Snowflake (wap_snowflake.py).
STAGED = "__staged"
