with orders as (
    select * from {{ ref('stg_greenery__orders') }}
),

order_items as (
    select * from {{ ref('stg_greenery__order_items') }}
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
