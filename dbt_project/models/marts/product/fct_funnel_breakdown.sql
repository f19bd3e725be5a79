{# The seed's funnel (var('funnels').sessions) broken down by who the session's user is:
   - buyer_type: `returning_buyer` when the user had an order created before the session's first
     page view, else `new_buyer`;
   - state: of the user's address (`unknown` without one);
   - is_high_volume_user: `true` or `false` (dim_users).
   One row per dimension, value and step, zero included. #}
with reached as (
    select * from {{ ref('int_funnel_steps__reached') }}
    where funnel_name = 'sessions'
),

users as (
    select * from {{ ref('dim_users') }}
),

steps as (
    {{ funnel_steps('sessions') }}
),

{#- A path has a row per step it reached, each with its user and start: a step counts its rows
    per dimension value. No group by path (10M string ids at 70M events), and no join of the
    sessions back to their steps (that join ran DuckDB out of memory at 70M events). #}
steps_reached as (
    select
        reached.step_number,
        case
            when users.first_ordered_at < reached.started_at then 'returning_buyer' else 'new_buyer'
        end as buyer_type,
        coalesce(users.state, 'unknown') as state,
        case when users.is_high_volume_user then 'true' else 'false' end as is_high_volume_user
    from reached
    left join users on reached.user_id = users.user_id
),

sessions_per_step_and_values as (
    select
        step_number,
        buyer_type,
        state,
        is_high_volume_user,
        count(*) as sessions
    from steps_reached
    group by step_number, buyer_type, state, is_high_volume_user
),

sessions_per_dimension_value_and_step as (
    select step_number, 'buyer_type' as dimension, buyer_type as dimension_value, sum(sessions) as sessions
    from sessions_per_step_and_values
    group by step_number, buyer_type
    union all
    select step_number, 'state', state, sum(sessions)
    from sessions_per_step_and_values
    group by step_number, state
    union all
    select step_number, 'is_high_volume_user', is_high_volume_user, sum(sessions)
    from sessions_per_step_and_values
    group by step_number, is_high_volume_user
),

counted as (
    select
        dimension_values.dimension,
        dimension_values.dimension_value,
        steps.step_number,
        steps.funnel_step,
        coalesce(sessions_per_dimension_value_and_step.sessions, 0) as sessions
    from (select distinct dimension, dimension_value from sessions_per_dimension_value_and_step) as dimension_values
    cross join steps
    left join sessions_per_dimension_value_and_step
        on dimension_values.dimension = sessions_per_dimension_value_and_step.dimension
        and dimension_values.dimension_value = sessions_per_dimension_value_and_step.dimension_value
        and steps.step_number = sessions_per_dimension_value_and_step.step_number
),

final as (
    select
        dimension,
        dimension_value,
        cast(step_number as integer) as step_number,
        funnel_step,
        cast(sessions as bigint) as sessions,
        {{ funnel_rates('sessions', partition_by='dimension, dimension_value', drop_off=false) }}
    from counted
)

select * from final
