{{ config(
    materialized='incremental',
    unique_key=['session_id', 'product_id'],
    incremental_strategy='merge',
    on_schema_change='fail',
) }}

with events as (
    select * from {{ ref('stg_greenery__events') }}
    where event_type != 'package_shipped'
),

order_items as (
    select * from {{ ref('stg_greenery__order_items') }}
),

events_of_sessions as (
    {{ events_of_recent_sessions('events', 'last_event_at', sessions=ref('int_sessions__aggregated')) }}
),

product_events_by_session as (
    select
        session_id,
        product_id,
        count(case when event_type = 'page_view' then 1 end) > 0 as has_viewed,
        count(case when event_type = 'add_to_cart' then 1 end) > 0 as has_added_to_cart,
        max(created_at) as last_event_at
    from events_of_sessions
    where product_id is not null
    group by session_id, product_id
),

products_purchased_by_session as (
    select distinct
        checkouts.session_id,
        order_items.product_id
    from events_of_sessions as checkouts
    inner join order_items on checkouts.order_id = order_items.order_id
    where checkouts.event_type = 'checkout'
),

joined as (
    select
        product_events_by_session.session_id,
        product_events_by_session.product_id,
        product_events_by_session.has_viewed,
        product_events_by_session.has_added_to_cart,
        products_purchased_by_session.product_id is not null as has_purchased,
        product_events_by_session.last_event_at,
        {{ build_started_at() }} as dbt_updated_at
    from product_events_by_session
    left join products_purchased_by_session
        on product_events_by_session.session_id = products_purchased_by_session.session_id
        and product_events_by_session.product_id = products_purchased_by_session.product_id
)

select * from joined
