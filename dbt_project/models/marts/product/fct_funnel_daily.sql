with steps_per_day as (
    select * from {{ ref('int_funnel_steps__counted') }}
),

final as (
    select
        session_date,
        cast(step_number as integer) as step_number,
        funnel_step,
        cast(sessions as bigint) as sessions,
        {{ funnel_rates(partition_by='session_date') }},
        {{ utc_now() }} as updated_at
    from steps_per_day
)

select * from final
