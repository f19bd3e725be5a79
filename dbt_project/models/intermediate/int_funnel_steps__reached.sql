{{ config(materialized='table') }}

{# Every funnel of var('funnels'), path by path: when each path reached each step
   (macros/funnel_steps_reached.sql). The funnel marts count these rows. #}
with events as (
    select * from {{ ref('int_customer_events__filtered') }}
),

reached as (
    {{ funnel_steps_reached('events') }}
)

select * from reached
