{{ config(
    materialized='incremental',
    unique_key='event_id',
    incremental_strategy='merge',
    on_schema_change='fail',
) }}

{#- The events loaded since the newest build (their load marker), however late they happened:
    the delta is the new events alone. An event-time lookback rewrote the last lookback_hours of
    events on every run, 8x the new ones after +1% events at 10M. #}
{%- set loaded = keys_loaded_since_last_build('greenery', 'events', 'event_id') %}

with events as (
    select * from {{ ref('stg_greenery__events') }}
    {%- if loaded %}
    where event_id in ({{ loaded }})
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
