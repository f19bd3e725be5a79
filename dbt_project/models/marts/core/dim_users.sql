with users as (
    select * from {{ ref('stg_greenery__users') }}
),

addresses as (
    select * from {{ ref('stg_greenery__addresses') }}
),

orders as (
    select * from {{ ref('stg_greenery__orders') }}
),

sessions as (
    select * from {{ ref('int_sessions__aggregated') }}
),

test_accounts as (
    select * from {{ ref('test_accounts') }}
),

sessions_per_user as (
    select
        user_id,
        count(*) as sessions
    from sessions
    group by user_id
),

typical_sessions as (
    -- The median user's sessions: robust to the few accounts far outside the rest.
    select percentile_cont(0.5) within group (order by sessions) as median_sessions
    from sessions_per_user
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
        cast(coalesce(sessions_per_user.sessions, 0) as bigint) as sessions,
        coalesce(
            sessions_per_user.sessions > {{ var('high_volume_sessions_over_median') }} * typical_sessions.median_sessions,
            false
        ) as is_high_volume_user,
        test_accounts.user_id is not null as is_test_account,
        users.created_at,
        users.updated_at,
        orders_per_user.first_ordered_at,
        orders_per_user.last_ordered_at
    from users
    left join addresses on users.address_id = addresses.address_id
    left join orders_per_user on users.user_id = orders_per_user.user_id
    left join sessions_per_user on users.user_id = sessions_per_user.user_id
    left join test_accounts on users.user_id = test_accounts.user_id
    cross join typical_sessions
)

select * from final
