{# How long sessions take between funnel steps (var('funnels').sessions): for every pair of
   steps, over the sessions that reached the later one, the seconds from reaching the earlier
   step to reaching the later one (each step reached at its first event at or after the step
   before it). A pair no session made has 0 conversions and no times. #}
with reached as (
    select * from {{ ref('int_funnel_steps__reached') }}
    where funnel_name = 'sessions'
),

steps as (
    {{ funnel_steps('sessions') }}
),

step_pairs as (
    select
        from_steps.step_number as from_step_number,
        from_steps.funnel_step as from_step,
        to_steps.step_number as to_step_number,
        to_steps.funnel_step as to_step
    from steps as from_steps
    inner join steps as to_steps on from_steps.step_number < to_steps.step_number
),

{#- One row per session with when it reached each step, rather than a join of the sessions'
    steps with each other on their string ids (the pattern that ran DuckDB out of memory in
    fct_funnel_breakdown at 70M events). #}
{%- set step_count = var('funnels')['sessions']['steps'] | length %}
reached_at_per_step as (
    select
        {%- for step_number in range(1, step_count + 1) %}
        max(case when step_number = {{ step_number }} then reached_at end) as reached_step_{{ step_number }}
        {%- if not loop.last %},{% endif %}
        {%- endfor %}
    from reached
    group by path_id
),

conversions as (
    {%- if step_count < 2 %}
    select 1 as from_step_number, 2 as to_step_number, 0 as seconds where false
    {%- endif %}
    {%- for from_step in range(1, step_count + 1) %}
    {%- for to_step in range(from_step + 1, step_count + 1) %}
    {%- if not (loop.first and from_step == 1) %}
    union all
    {%- endif %}
    select
        {{ from_step }} as from_step_number,
        {{ to_step }} as to_step_number,
        {{ dbt.datediff('reached_step_' ~ from_step, 'reached_step_' ~ to_step, 'second') }} as seconds
    from reached_at_per_step
    where reached_step_{{ from_step }} is not null and reached_step_{{ to_step }} is not null
    {%- endfor %}
    {%- endfor %}
),

times_per_pair as (
    select
        from_step_number,
        to_step_number,
        count(*) as conversions,
        avg(seconds) as avg_seconds,
        percentile_cont(0.5) within group (order by seconds) as median_seconds,
        percentile_cont(0.9) within group (order by seconds) as p90_seconds
    from conversions
    group by from_step_number, to_step_number
),

final as (
    select
        step_pairs.from_step,
        step_pairs.to_step,
        cast(coalesce(times_per_pair.conversions, 0) as bigint) as conversions,
        cast(times_per_pair.avg_seconds as double) as avg_seconds,
        cast(times_per_pair.median_seconds as double) as median_seconds,
        cast(times_per_pair.p90_seconds as double) as p90_seconds
    from step_pairs
    left join times_per_pair
        on step_pairs.from_step_number = times_per_pair.from_step_number
        and step_pairs.to_step_number = times_per_pair.to_step_number
)

select * from final
