{# Sessions that reached each funnel step, per day the session started. Each session has one
   start day, so summing days gives distinct sessions over any period. #}
with sessions as (
    select * from {{ ref('int_sessions__aggregated') }}
),

sessions_per_day as (
    select
        cast(session_started_at as date) as session_date,
        count(case when has_page_view then 1 end) as page_view_sessions,
        count(case when has_add_to_cart then 1 end) as add_to_cart_sessions,
        count(case when has_checkout then 1 end) as checkout_sessions
    from sessions
    group by cast(session_started_at as date)
),

steps as (
    select session_date, 1 as step_number, 'page_view' as funnel_step, page_view_sessions as sessions
    from sessions_per_day
    union all
    select session_date, 2, 'add_to_cart', add_to_cart_sessions
    from sessions_per_day
    union all
    select session_date, 3, 'checkout', checkout_sessions
    from sessions_per_day
)

select * from steps
