{# Each step counts only the sessions that passed the step before it for this product, in order:
   viewed it, then added it to cart, then bought it at a checkout. A session that added it and
   did not buy it abandoned it, one unit at the product's price. #}
with products as (
    select * from {{ ref('dim_products') }}
),

session_products as (
    select * from {{ ref('int_session_products__aggregated') }}
),

sessions_per_product as (
    select
        product_id,
        count(case when has_viewed then 1 end) as sessions_viewed,
        count(case when has_added_to_cart then 1 end) as sessions_added_to_cart,
        count(case when has_added_to_cart and has_purchased then 1 end) as sessions_purchased,
        count(case when has_added_to_cart and not has_purchased then 1 end) as sessions_abandoned_cart
    from session_products
    group by product_id
),

counted as (
    select
        products.product_id,
        products.product_name,
        coalesce(sessions_per_product.sessions_viewed, 0) as sessions_viewed,
        coalesce(sessions_per_product.sessions_added_to_cart, 0) as sessions_added_to_cart,
        coalesce(sessions_per_product.sessions_purchased, 0) as sessions_purchased,
        coalesce(sessions_per_product.sessions_abandoned_cart, 0) as sessions_abandoned_cart,
        products.price
    from products
    left join sessions_per_product on products.product_id = sessions_per_product.product_id
),

final as (
    select
        product_id,
        product_name,
        cast(sessions_viewed as bigint) as sessions_viewed,
        cast(sessions_added_to_cart as bigint) as sessions_added_to_cart,
        cast(sessions_purchased as bigint) as sessions_purchased,
        {{ safe_divide('sessions_added_to_cart', 'sessions_viewed') }} as view_to_cart_rate,
        {{ safe_divide('sessions_purchased', 'sessions_added_to_cart') }} as cart_to_purchase_rate,
        {{ safe_divide('sessions_purchased', 'sessions_viewed') }} as view_to_purchase_rate,
        cast(sessions_abandoned_cart as bigint) as sessions_abandoned_cart,
        cast(sessions_abandoned_cart * price as double) as abandoned_cart_value,
        {{ utc_now() }} as updated_at
    from counted
)

select * from final
