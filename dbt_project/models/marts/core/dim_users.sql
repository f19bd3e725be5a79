{{ config(
    materialized='incremental',
    unique_key='user_id',
    incremental_strategy='merge',
    on_schema_change='fail',
) }}

{%- set loaded_users = keys_loaded_since_last_build('greenery', 'users', 'user_id') %}
{%- set loaded_addresses = keys_loaded_since_last_build('greenery', 'addresses', 'address_id') %}

with users_aggregated as (
    select * from {{ ref('int_users__aggregated') }}
),

typical_sessions as (
    -- The median user's sessions, over the users who had any: robust to the few accounts far
    -- outside the rest. A statistic of all users, so a new median can turn anyone's flag.
    select
        {{ var('high_volume_sessions_over_median') }} * percentile_cont(0.5) within group (order by sessions)
            as high_volume_sessions
    from users_aggregated
    where sessions > 0
),

{%- if loaded_users is not none %}

-- Incremental: the users whose row, address or counts were written since the newest build, and
-- those whose high-volume flag the new median turns, rebuilt whole. A relisted test account
-- rebuilds everything (the models step's full refresh).
changed_users as (
    {{ loaded_users }}
    union
    select user_id from {{ ref('stg_greenery__users') }}
    where address_id in ({{ loaded_addresses }})
    union
    select user_id from users_aggregated
    where dbt_updated_at > {{ timestamp_literal(last_build_started_at()) }}
    union
    select built.user_id
    from {{ history_relation(this) }} as built
    cross join typical_sessions
    where built.is_high_volume_user != coalesce(built.sessions > typical_sessions.high_volume_sessions, false)
),
{%- endif %}

users as (
    select * from {{ ref('stg_greenery__users') }}
    {%- if loaded_users is not none %}
    where user_id in (select user_id from changed_users)
    {%- endif %}
),

addresses as (
    select * from {{ ref('stg_greenery__addresses') }}
),

test_accounts as (
    select * from {{ ref('test_accounts') }}
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
        coalesce(users_aggregated.sessions > typical_sessions.high_volume_sessions, false) as is_high_volume_user,
        test_accounts.user_id is not null as is_test_account,
        users.created_at,
        users.updated_at,
        users_aggregated.first_ordered_at,
        users_aggregated.last_ordered_at,
        {{ build_started_at() }} as dbt_updated_at
    from users
    left join addresses on users.address_id = addresses.address_id
    left join users_aggregated on users.user_id = users_aggregated.user_id
    left join test_accounts on users.user_id = test_accounts.user_id
    cross join typical_sessions
)

select * from final
