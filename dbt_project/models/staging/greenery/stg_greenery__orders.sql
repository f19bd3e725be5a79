with source as (
    select * from {{ source('greenery', 'orders') }}
),

renamed as (
    select
        order_id,
        user_id,
        promo_id,
        address_id,
        status as order_status,
        tracking_id,
        shipping_service,
        order_cost,
        shipping_cost,
        order_total,
        created_at,
        estimated_delivery_at,
        delivered_at
    from source
)

select * from renamed
