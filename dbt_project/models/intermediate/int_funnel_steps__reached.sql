{{ config(materialized='table') }}

{# Every funnel of var('funnels'), path by path: when each path reached each step
   (macros/funnel_steps_reached.sql). The funnel marts count these rows. #}
with test_accounts as (
    select * from {{ ref('test_accounts') }}
),

events as (
    select events.*
    from {{ ref('stg_greenery__events') }} as events
    -- Known test accounts are not customers: their events count in no funnel.
    left join test_accounts on events.user_id = test_accounts.user_id
    where test_accounts.user_id is null
),

reached as (
    {{ funnel_steps_reached('events') }}
)

select * from reached
