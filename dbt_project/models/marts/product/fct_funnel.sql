with steps_per_day as (
    select * from {{ ref('int_funnel_steps__counted') }}
),

steps as (
    select
        step_number,
        funnel_step,
        sum(sessions) as sessions
    from steps_per_day
    group by step_number, funnel_step
),

final as (
    select
        cast(step_number as integer) as step_number,
        funnel_step,
        cast(sessions as bigint) as sessions,
        {{ funnel_rates() }},
        {{ utc_now() }} as updated_at
    from steps
)

select * from final
