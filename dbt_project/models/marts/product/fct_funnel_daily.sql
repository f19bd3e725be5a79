{# The seed's funnel per UTC day its sessions started (at their first page view): every day
   from the first to the newest, a day without sessions included, with trailing 7-day
   conversion, and each complete day's conversion judged against the days before it
   (var('conversion_anomaly')). Each session has one start day, so summing days gives distinct
   sessions over any period. #}
{%- set anomaly = var('conversion_anomaly') %}
{%- set trailing_days -%}
    over (
        partition by step_number order by session_date
        rows between {{ anomaly['trailing_days'] }} preceding and 1 preceding
    )
{%- endset %}

with reached as (
    select * from {{ ref('int_funnel_steps__reached') }}
    where funnel_name = 'sessions'
),

steps as (
    {{ funnel_steps('sessions') }}
),

sessions_per_day_and_step as (
    select
        cast(started_at as date) as session_date,
        step_number,
        count(*) as sessions
    from reached
    group by cast(started_at as date), step_number
),

date_range as (
    select min(session_date) as first_day, max(session_date) as newest_day
    from sessions_per_day_and_step
),

days as (
    select cast({{ dbt.dateadd('day', 'day_numbers.n', 'date_range.first_day') }} as date) as session_date
    from date_range
    -- 100,000 days: some 270 years of sessions.
    cross join ({{ integers(100000) }}) as day_numbers
    where day_numbers.n <= {{ dbt.datediff('date_range.first_day', 'date_range.newest_day', 'day') }}
),

counted as (
    select
        days.session_date,
        steps.step_number,
        steps.funnel_step,
        coalesce(sessions_per_day_and_step.sessions, 0) as sessions
    from days
    cross join steps
    left join sessions_per_day_and_step
        on days.session_date = sessions_per_day_and_step.session_date
        and steps.step_number = sessions_per_day_and_step.step_number
),

with_trailing_week as (
    select
        *,
        -- Every day has a row, so 7 rows are 7 days.
        sum(sessions) over (
            partition by step_number order by session_date rows between 6 preceding and current row
        ) as sessions_7d,
        lag(sessions) over (partition by session_date order by step_number) as previous_step_sessions
    from counted
),

with_rates as (
    select
        *,
        {{ funnel_rates('sessions', partition_by='session_date') }},
        {{ safe_divide('sessions_7d', 'lag(sessions_7d) over (partition by session_date order by step_number)') }}
            as conversion_from_previous_7d,
        {{ safe_divide('sessions_7d', 'first_value(sessions_7d) over (partition by session_date order by step_number)') }}
            as conversion_from_start_7d
    from with_trailing_week
),

judged_rates as (
    -- Only days with enough sessions at the step before say what a normal rate is.
    select
        *,
        case
            when previous_step_sessions >= {{ anomaly['min_sessions'] }} then conversion_from_previous
        end as judged_conversion
    from with_rates
),

with_trailing_range as (
    select
        *,
        avg(judged_conversion) {{ trailing_days }} as trailing_mean,
        stddev_samp(judged_conversion) {{ trailing_days }} as trailing_stddev,
        count(judged_conversion) {{ trailing_days }} as trailing_judged_days
    from judged_rates
),

final as (
    select
        session_date,
        cast(step_number as integer) as step_number,
        funnel_step,
        cast(sessions as bigint) as sessions,
        conversion_from_previous,
        drop_off_from_previous,
        conversion_from_start,
        cast(sessions_7d as bigint) as sessions_7d,
        conversion_from_previous_7d,
        conversion_from_start_7d,
        case when trailing_judged_days >= {{ anomaly['min_history_days'] }}
            then trailing_mean - {{ anomaly['standard_deviations'] }} * trailing_stddev
        end as expected_conversion_low,
        case when trailing_judged_days >= {{ anomaly['min_history_days'] }}
            then trailing_mean + {{ anomaly['standard_deviations'] }} * trailing_stddev
        end as expected_conversion_high,
        -- The newest day is still filling up: only days before it are complete.
        session_date < max(session_date) over () as is_complete_day,
        coalesce(
            session_date < max(session_date) over ()
            and judged_conversion is not null
            and trailing_judged_days >= {{ anomaly['min_history_days'] }}
            and (
                judged_conversion < trailing_mean - {{ anomaly['standard_deviations'] }} * trailing_stddev
                or judged_conversion > trailing_mean + {{ anomaly['standard_deviations'] }} * trailing_stddev
            ),
            false
        ) as is_conversion_anomaly,
        {{ utc_now() }} as updated_at
    from with_trailing_range
)

select * from final
