{# Every funnel of var('funnels'), step by step: the units (sessions or users) that reached each
   step, zero included. #}
with reached as (
    select * from {{ ref('int_funnel_steps__reached') }}
),

steps as (
    {{ funnel_steps() }}
),

{#- A funnel with one path per unit counts rows, not distinct ids: a distinct count hashes every
    session id (this model took 11.3 s of the +1% build at 70M events with one). #}
{%- set counted_by_row = funnels_with_one_path_per_unit() %}
{%- set counted_distinct = var('funnels').keys() | reject('in', counted_by_row) | list %}
units_per_step as (
    {%- if counted_by_row %}
    select
        funnel_name,
        step_number,
        count(*) as units
    from reached
    where funnel_name in ({{ _quoted_list(counted_by_row) }})
    group by funnel_name, step_number
    {%- endif %}
    {%- if counted_by_row and counted_distinct %}
    union all
    {%- endif %}
    {%- if counted_distinct %}
    select
        funnel_name,
        step_number,
        count(distinct unit_id) as units
    from reached
    where funnel_name in ({{ _quoted_list(counted_distinct) }})
    group by funnel_name, step_number
    {%- endif %}
),

counted as (
    select
        steps.funnel_name,
        steps.counting_unit,
        steps.step_number,
        steps.funnel_step,
        coalesce(units_per_step.units, 0) as units
    from steps
    left join units_per_step
        on steps.funnel_name = units_per_step.funnel_name
        and steps.step_number = units_per_step.step_number
),

final as (
    select
        funnel_name,
        counting_unit,
        cast(step_number as integer) as step_number,
        funnel_step,
        cast(units as bigint) as units,
        {{ funnel_rates('units', partition_by='funnel_name') }},
        {{ utc_now() }} as updated_at
    from counted
)

select * from final
