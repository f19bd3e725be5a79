{# merge_since (materializations/incremental.sql): events are only added, so a rebuilt session
   starts no later than the row it replaces. #}
{{ config(
    materialized='incremental',
    unique_key='session_id',
    incremental_strategy='merge',
    on_schema_change='fail',
    meta={'merge_since': 'session_started_at'},
) }}

with events as (
    select * from {{ ref('stg_greenery__events') }}
    -- A shipping notice arrives days later; it is not something the visitor did.
    where event_type != 'package_shipped'
),

events_of_sessions as (
    {{ events_of_recent_sessions('events', sessions=history_relation(this)) }}
),

sessions_aggregated as (
    select
        session_id,
        -- A session belongs to one user; `any_value` would hide it if not, the tests guard it.
        min(user_id) as user_id,
        max(case when event_type = 'checkout' then order_id end) as order_id,
        count(case when event_type = 'page_view' then 1 end) as page_views,
        count(case when event_type = 'add_to_cart' then 1 end) as add_to_carts,
        count(case when event_type = 'checkout' then 1 end) as checkouts,
        min(created_at) as session_started_at,
        max(created_at) as session_ended_at
    from events_of_sessions
    group by session_id
),

flagged as (
    select
        *,
        page_views > 0 as has_page_view,
        add_to_carts > 0 as has_add_to_cart,
        checkouts > 0 as has_checkout,
        {{ build_started_at() }} as dbt_updated_at
    from sessions_aggregated
)

select * from flagged
