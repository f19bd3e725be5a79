{# A view: the numbers are fct_funnel_steps' (counted once), this is one funnel of them. #}
{{ config(materialized='view') }}

{# The seed's funnel (var('funnels').sessions): sessions that viewed a page, then added to cart,
   then checked out, each step at or after the one before it. #}
with funnel_steps as (
    select * from {{ ref('fct_funnel_steps') }}
    where funnel_name = 'sessions'
),

final as (
    select
        step_number,
        funnel_step,
        units as sessions,
        conversion_from_previous,
        drop_off_from_previous,
        conversion_from_start,
        updated_at
    from funnel_steps
)

select * from final
