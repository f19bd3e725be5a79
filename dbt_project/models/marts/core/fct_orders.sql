{{ config(
    materialized='incremental',
    unique_key='order_id',
    incremental_strategy='merge',
    on_schema_change='fail',
) }}

{%- set changed_orders = keys_loaded_since_last_build('greenery', 'orders', 'order_id') %}
{%- set changed_items = keys_loaded_since_last_build('greenery', 'order_items', 'order_id') %}

with
{%- if changed_orders is not none %}
-- Incremental: the orders whose row or items were loaded since the newest build, rebuilt whole.
changed_orders as (
    {{ changed_orders }}
    union
    {{ changed_items }}
),

{%- endif %}

orders as (
    select * from {{ ref('stg_greenery__orders') }}
    {%- if changed_orders is not none %}
    where order_id in (select order_id from changed_orders)
    {%- endif %}
),

order_items as (
    select * from {{ ref('stg_greenery__order_items') }}
    {%- if changed_orders is not none %}
    where order_id in (select order_id from changed_orders)
    {%- endif %}
),

promos as (
    select * from {{ ref('stg_greenery__promos') }}
),

items_per_order as (
    select
        order_id,
        count(*) as products_ordered,
        sum(quantity) as units_ordered
    from order_items
    group by order_id
),

final as (
    select
        orders.order_id,
        orders.user_id,
        orders.address_id,
        orders.promo_id,
        orders.order_status,
        orders.shipping_service,
        orders.tracking_id,
        coalesce(items_per_order.products_ordered, 0) as products_ordered,
        cast(coalesce(items_per_order.units_ordered, 0) as bigint) as units_ordered,
        orders.order_cost,
        orders.shipping_cost,
        coalesce(promos.discount, 0) as promo_discount,
        orders.order_total,
        orders.promo_id is not null as has_promo,
        orders.delivered_at is not null as is_delivered,
        orders.created_at,
        orders.estimated_delivery_at,
        orders.delivered_at,
        {{ build_started_at() }} as dbt_updated_at
    from orders
    left join items_per_order on orders.order_id = items_per_order.order_id
    left join promos on orders.promo_id = promos.promo_id
)

select * from final
