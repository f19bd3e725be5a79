with events as (
    select * from {{ ref('stg_greenery__events') }}
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
        cast(created_at as date) as event_date
    from events
)

select * from final
