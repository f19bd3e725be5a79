with users as (
    select * from {{ ref('stg_greenery__users') }}
),

addresses as (
    select * from {{ ref('stg_greenery__addresses') }}
),

users_aggregated as (
    select * from {{ ref('int_users__aggregated') }}
),

test_accounts as (
    select * from {{ ref('test_accounts') }}
),

typical_sessions as (
    -- The median user's sessions, over the users who had any: robust to the few accounts far
    -- outside the rest. A statistic of all users, so this mart is rebuilt whole.
    select percentile_cont(0.5) within group (order by sessions) as median_sessions
    from users_aggregated
    where sessions > 0
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
        coalesce(users_aggregated.orders_placed, 0) as orders_placed,
        coalesce(users_aggregated.lifetime_order_total, 0) as lifetime_order_total,
        coalesce(users_aggregated.orders_placed, 0) > 1 as is_repeat_buyer,
        coalesce(users_aggregated.sessions, 0) as sessions,
        coalesce(
            users_aggregated.sessions > {{ var('high_volume_sessions_over_median') }} * typical_sessions.median_sessions,
            false
        ) as is_high_volume_user,
        test_accounts.user_id is not null as is_test_account,
        users.created_at,
        users.updated_at,
        users_aggregated.first_ordered_at,
        users_aggregated.last_ordered_at
    from users
    left join addresses on users.address_id = addresses.address_id
    left join users_aggregated on users.user_id = users_aggregated.user_id
    left join test_accounts on users.user_id = test_accounts.user_id
    cross join typical_sessions
)

select * from final
