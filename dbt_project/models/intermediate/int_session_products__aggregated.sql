{# merge_since (materializations/incremental.sql): a rebuilt session reads all its events, and
   events are only added, so a product's first event in it comes no later than in the row it
   replaces. #}
{{ config(
    materialized='incremental',
    unique_key=['session_id', 'product_id'],
    incremental_strategy='merge',
    on_schema_change='fail',
    meta={'merge_since': 'first_event_at'},
) }}

with events as (
    select * from {{ ref('int_customer_events__filtered') }}
    -- Known test accounts are not customers; a session already built keeps its rows until a full
    -- refresh. A shipping notice arrives days later: not something the visitor did.
    where event_type != 'package_shipped'
),

order_items as (
    select * from {{ ref('stg_greenery__order_items') }}
),

{#- Items of an order may arrive after its checkout: its session is rebuilt when they do. Those of
    an order whose checkout is among the new events are left out, as that session is rebuilt
    anyway: most runs then name no order here, and the look-up of their sessions (a scan of every
    session's order) finds nothing to read. #}
{%- set late_items = keys_loaded_since_last_build('greenery', 'order_items', 'order_id') %}
{%- if late_items is not none %}
{%- set late_items = late_items ~ ' except select order_id from ' ~ source('greenery', 'events')
    ~ ' where event_type = \'checkout\' and ' ~ loaded_since_last_build('greenery', 'events') %}
{%- endif %}

events_of_sessions as (
    {{ events_of_recent_sessions(
        'events', sessions=ref('int_sessions__aggregated'),
        also_where='order_id in (' ~ late_items ~ ')' if late_items is not none else none,
    ) }}
),

product_events_by_session as (
    select
        session_id,
        product_id,
        min(case when event_type = 'page_view' then created_at end) as first_viewed_at,
        min(created_at) as first_event_at,
        max(created_at) as last_event_at
    from events_of_sessions
    where product_id is not null
    group by session_id, product_id
),

{# The steps nest as in the session funnel (macros/funnel_steps_reached.sql): added to cart at or
   after the first view of the product, bought at a checkout at or after that add. #}
added_to_cart as (
    select
        viewed.session_id,
        viewed.product_id,
        min(adds.created_at) as first_added_at
    from product_events_by_session as viewed
    inner join events_of_sessions as adds
        on viewed.session_id = adds.session_id
        and viewed.product_id = adds.product_id
        and adds.event_type = 'add_to_cart'
        and adds.created_at >= viewed.first_viewed_at
    group by viewed.session_id, viewed.product_id
),

purchased as (
    select distinct
        added_to_cart.session_id,
        added_to_cart.product_id
    from added_to_cart
    inner join events_of_sessions as checkouts
        on added_to_cart.session_id = checkouts.session_id
        and checkouts.event_type = 'checkout'
        and checkouts.created_at >= added_to_cart.first_added_at
    inner join order_items
        on checkouts.order_id = order_items.order_id
        and added_to_cart.product_id = order_items.product_id
),

joined as (
    select
        product_events_by_session.session_id,
        product_events_by_session.product_id,
        product_events_by_session.first_viewed_at is not null as has_viewed,
        added_to_cart.session_id is not null as has_added_to_cart,
        purchased.session_id is not null as has_purchased,
        product_events_by_session.first_event_at,
        product_events_by_session.last_event_at,
        {{ build_started_at() }} as dbt_updated_at
    from product_events_by_session
    left join added_to_cart
        on product_events_by_session.session_id = added_to_cart.session_id
        and product_events_by_session.product_id = added_to_cart.product_id
    left join purchased
        on product_events_by_session.session_id = purchased.session_id
        and product_events_by_session.product_id = purchased.product_id
)

select * from joined
