{#- On DuckDB "loaded since" is exact (macros/loaded_since.sql): the new events are appended, with
    no scan of the published ids to publish or clone them; none repeats an older event's id (the
    unique tests of the raw events and of this model read every row with a new id). On Snowflake
    it reaches lookback_hours further back, so events read again merge by id. #}
{{ config(
    materialized='incremental',
    incremental_strategy='append' if target.type == 'duckdb' else 'merge',
    unique_key=none if target.type == 'duckdb' else 'event_id',
    on_schema_change='fail',
) }}

{#- The events loaded since the newest build (their load marker), however late they happened:
    the delta is the new events alone. An event-time lookback rewrote the last lookback_hours of
    events on every run, 8x the new ones after +1% events at 10M. The earliest of them is looked
    up first and written in as a literal (as in macros/recent_sessions.sql): the scan of the
    events then skips every older block instead of matching all their ids (6.4 s of a +1% build
    at 70M events). The bound is the earliest of the new events themselves: it leaves none out. #}
{%- set loaded = loaded_since_last_build('greenery', 'events') %}
{%- if loaded and loaded != 'true' %}
{%- set new_events = source('greenery', 'events') ~ ' where ' ~ loaded %}
{%- set earliest = _first_value('select min(created_at) from ' ~ new_events) %}
{%- endif %}

with events as (
    select * from {{ ref('stg_greenery__events') }}
    {%- if loaded == 'true' %}
    {#- A raw table from before its load marker says no event is new: those not built yet are. #}
    where event_id not in (select event_id from {{ history_relation(this) }})
    {%- elif loaded and earliest is none %}
    where false
    {%- elif loaded %}
    where event_id in (select event_id from {{ new_events }})
        and created_at >= {{ timestamp_literal(earliest) }}
    {%- endif %}
),

final as (
    select
        event_id,
        session_id,
        user_id,
        product_id,
        order_id,
        event_type,
        page_url,
        created_at,
        cast(created_at as date) as event_date,
        {{ build_started_at() }} as dbt_updated_at
    from events
)

select * from final
