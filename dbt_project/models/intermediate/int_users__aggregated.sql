{{ config(
    materialized='incremental',
    unique_key='user_id',
    incremental_strategy='merge',
    on_schema_change='fail',
) }}

with sessions as (
    select * from {{ ref('int_sessions__aggregated') }}
    where user_id is not null
),

orders as (
    select * from {{ ref('fct_orders') }}
),

{% if is_incremental() %}{% set since = last_build_started_at() %}{% else %}{% set since = none %}{% endif -%}
{%- if since is not none %}
-- The users with a session or an order written since this model's newest build, rebuilt whole.
changed_users as (
    select user_id from sessions where dbt_updated_at > {{ timestamp_literal(since) }}
    union
    select user_id from orders where dbt_updated_at > {{ timestamp_literal(since) }}
),

{% endif -%}
sessions_per_user as (
    select
        user_id,
        count(*) as sessions
    from sessions
    {%- if since is not none %}
    where user_id in (select user_id from changed_users)
    {%- endif %}
    group by user_id
),

orders_per_user as (
    select
        user_id,
        count(*) as orders_placed,
        sum(order_total) as lifetime_order_total,
        min(created_at) as first_ordered_at,
        max(created_at) as last_ordered_at
    from orders
    where user_id is not null
    {%- if since is not none %}
        and user_id in (select user_id from changed_users)
    {%- endif %}
    group by user_id
),

final as (
    select
        coalesce(sessions_per_user.user_id, orders_per_user.user_id) as user_id,
        cast(coalesce(sessions_per_user.sessions, 0) as bigint) as sessions,
        cast(coalesce(orders_per_user.orders_placed, 0) as bigint) as orders_placed,
        coalesce(orders_per_user.lifetime_order_total, 0) as lifetime_order_total,
        orders_per_user.first_ordered_at,
        orders_per_user.last_ordered_at,
        {{ build_started_at() }} as dbt_updated_at
    from sessions_per_user
    full outer join orders_per_user on sessions_per_user.user_id = orders_per_user.user_id
)

select * from final
