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

{#- Steps nest (a session reaches a step only after the one before it), so a session counts on
    every step up to its furthest: one row per session, its dimensions counted per furthest step,
    and no join of the sessions back to their steps (at 70M events that join of string ids ran
    DuckDB out of memory). #}
furthest_steps as (
    select
        -- The same on every step of a path.
        min(user_id) as user_id,
        min(started_at) as started_at,
        max(step_number) as furthest_step
    from reached
    group by path_id
),

sessions as (
    select
        furthest_steps.furthest_step,
        case
            when users.first_ordered_at < furthest_steps.started_at then 'returning_buyer' else 'new_buyer'
        end as buyer_type,
        coalesce(users.state, 'unknown') as state,
        case when users.is_high_volume_user then 'true' else 'false' end as is_high_volume_user
    from furthest_steps
    left join users on furthest_steps.user_id = users.user_id
),

session_dimensions as (
    select furthest_step, 'buyer_type' as dimension, buyer_type as dimension_value from sessions
    union all
    select furthest_step, 'state', state from sessions
    union all
    select furthest_step, 'is_high_volume_user', is_high_volume_user from sessions
),

sessions_per_value_and_furthest_step as (
    select
        dimension,
        dimension_value,
        furthest_step,
        count(*) as sessions
    from session_dimensions
    group by dimension, dimension_value, furthest_step
),

counted as (
    select
        dimension_values.dimension,
        dimension_values.dimension_value,
        steps.step_number,
        steps.funnel_step,
        coalesce(sum(sessions_per_value_and_furthest_step.sessions), 0) as sessions
    from (select distinct dimension, dimension_value from sessions_per_value_and_furthest_step) as dimension_values
    cross join steps
    left join sessions_per_value_and_furthest_step
        on dimension_values.dimension = sessions_per_value_and_furthest_step.dimension
        and dimension_values.dimension_value = sessions_per_value_and_furthest_step.dimension_value
        and sessions_per_value_and_furthest_step.furthest_step >= steps.step_number
    group by dimension_values.dimension, dimension_values.dimension_value, steps.step_number, steps.funnel_step
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
