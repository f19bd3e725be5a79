{{ config(
    materialized='incremental',
    unique_key=['funnel_name', 'path_id'],
    incremental_strategy='delete+insert',
    on_schema_change='fail',
) }}

{# Every funnel of var('funnels'), path by path: when each path reached each step
   (macros/funnel_steps_reached.sql). The funnel marts count these rows.
   Incremental: the paths that new events can change are rebuilt whole, and replace all the rows
   of their path (a rebuilt path can reach fewer steps: an earlier start narrows its window). #}
{#- A relation, not a CTE: an incremental build looks its paths up in it first. #}
with reached as (
    {{ funnel_steps_reached(
        ref('int_customer_events__filtered'),
        since=lookback_start('reached_at') if is_incremental() else none,
    ) }}
),

final as (
    select
        *,
        {{ build_started_at() }} as dbt_updated_at
    from reached
)

select * from final
