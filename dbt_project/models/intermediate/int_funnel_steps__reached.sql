{# merge_since (materializations/incremental.sql): a rebuilt path reads its events from its start
   on, and events are only added, so it starts no later than the rows it replaces. #}
{{ config(
    materialized='incremental',
    unique_key=['funnel_name', 'path_id'],
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    meta={'merge_since': 'started_at'},
) }}

{# Every funnel of var('funnels'), path by path: when each path reached each step
   (macros/funnel_steps_reached.sql). The funnel marts count these rows.
   Incremental: the paths that the events loaded since the newest build can change, however late
   they happened, are rebuilt whole, and replace all the rows of their path (a rebuilt path can
   reach fewer steps: an earlier start narrows its window). #}
{%- set loaded = loaded_since_last_build('greenery', 'events') %}
{%- set new_events = none if loaded is none else
    '(select * from ' ~ source('greenery', 'events') ~ ' where ' ~ loaded ~ ')' %}

with reached as (
    {{ funnel_steps_reached(ref('int_customer_events__filtered'), new_events=new_events) }}
),

final as (
    select
        *,
        {{ build_started_at() }} as dbt_updated_at
    from reached
)

select * from final
