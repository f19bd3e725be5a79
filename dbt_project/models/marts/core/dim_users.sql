with users as (
    select * from {{ ref('stg_greenery__users') }}
),

addresses as (
    select * from {{ ref('stg_greenery__addresses') }}
),

orders as (
    select * from {{ ref('stg_greenery__orders') }}
),

orders_per_user as (
    select
        user_id,
        count(*) as orders_placed,
        sum(order_total) as lifetime_order_total,
        min(created_at) as first_ordered_at,
        max(created_at) as last_ordered_at
    from orders
    group by user_id
),

final as (
    select
        users.user_id,
        users.address_id,
        users.first_name,
        users.last_name,
        users.email,
        users.phone_number,
        addresses.state,
        addresses.country,
        coalesce(orders_per_user.orders_placed, 0) as orders_placed,
        coalesce(orders_per_user.lifetime_order_total, 0) as lifetime_order_total,
        coalesce(orders_per_user.orders_placed, 0) > 1 as is_repeat_buyer,
        users.created_at,
        users.updated_at,
        orders_per_user.first_ordered_at,
        orders_per_user.last_ordered_at
    from users
    left join addresses on users.address_id = addresses.address_id
    left join orders_per_user on users.user_id = orders_per_user.user_id
)

select * from final
