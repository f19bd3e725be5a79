{# merge_since (materializations/incremental.sql): as in int_sessions__aggregated, a rebuilt
   session starts no later than the row it replaces. #}
{{ config(
    materialized='incremental',
    unique_key='session_id',
    incremental_strategy='merge',
    on_schema_change='fail',
    meta={'merge_since': 'session_started_at'},
) }}

with sessions as (
    select * from {{ ref('int_sessions__aggregated') }}
    {% if is_incremental() %}{% set since = last_build_started_at() %}{% if since is not none %}
    -- The sessions the intermediate model wrote since this model's newest build.
    where dbt_updated_at > {{ timestamp_literal(since) }}
    {% endif %}{% endif %}
),

final as (
    select
        session_id,
        user_id,
        order_id,
        page_views,
        add_to_carts,
        checkouts,
        has_page_view,
        has_add_to_cart,
        has_checkout,
        session_started_at,
        session_ended_at,
        cast(session_started_at as date) as session_date,
        {{ datediff('session_started_at', 'session_ended_at', 'second') }} as session_length_seconds,
        {{ build_started_at() }} as dbt_updated_at
    from sessions
)

select * from final
