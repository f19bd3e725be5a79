{# A view: the numbers are fct_funnel_steps' (counted once), this is one funnel of them. #}
{{ config(materialized='view') }}

{# The user-level funnel (var('funnels').users_7_days): users who viewed a page, then added to
   cart, then checked out, each step at or after the one before it, within 7 days of their first
   page view in the data. #}
with funnel_steps as (
    select * from {{ ref('fct_funnel_steps') }}
    where funnel_name = 'users_7_days'
),

final as (
    select
        step_number,
        funnel_step,
        units as users,
        conversion_from_previous,
        drop_off_from_previous,
        conversion_from_start
    from funnel_steps
)

select * from final
