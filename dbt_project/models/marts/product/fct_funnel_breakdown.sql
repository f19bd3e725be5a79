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

sessions as (
    select
        reached.path_id as session_id,
        case
            when users.first_ordered_at < reached.started_at then 'returning_buyer' else 'new_buyer'
        end as buyer_type,
        coalesce(users.state, 'unknown') as state,
        case when users.is_high_volume_user then 'true' else 'false' end as is_high_volume_user
    from reached
    left join users on reached.user_id = users.user_id
    where reached.step_number = 1
),

session_dimensions as (
    select session_id, 'buyer_type' as dimension, buyer_type as dimension_value from sessions
    union all
    select session_id, 'state', state from sessions
    union all
    select session_id, 'is_high_volume_user', is_high_volume_user from sessions
),

sessions_per_value_and_step as (
    select
        session_dimensions.dimension,
        session_dimensions.dimension_value,
        reached.step_number,
        count(*) as sessions
    from session_dimensions
    inner join reached on session_dimensions.session_id = reached.path_id
    group by session_dimensions.dimension, session_dimensions.dimension_value, reached.step_number
),

counted as (
    select
        dimension_values.dimension,
        dimension_values.dimension_value,
        steps.step_number,
        steps.funnel_step,
        coalesce(sessions_per_value_and_step.sessions, 0) as sessions
    from (select distinct dimension, dimension_value from session_dimensions) as dimension_values
    cross join steps
    left join sessions_per_value_and_step
        on dimension_values.dimension = sessions_per_value_and_step.dimension
        and dimension_values.dimension_value = sessions_per_value_and_step.dimension_value
        and steps.step_number = sessions_per_value_and_step.step_number
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
