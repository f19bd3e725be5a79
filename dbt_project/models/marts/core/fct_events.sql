{{ config(
    materialized='incremental',
    unique_key='event_id',
    incremental_strategy='merge',
    on_schema_change='fail',
) }}

with events as (
    select * from {{ ref('stg_greenery__events') }}
    {% if is_incremental() %}{% set since = lookback_start('created_at') %}{% if since is not none %}
    -- New events, and late ones up to lookback_hours behind the newest already here.
    where created_at > {{ timestamp_literal(since) }}
    {% endif %}{% endif %}
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
