{# The events of customers: every event but those of known test accounts (seed test_accounts),
   which no funnel counts. #}
with events as (
    select * from {{ ref('stg_greenery__events') }}
),

test_accounts as (
    select * from {{ ref('test_accounts') }}
),

customer_events as (
    select events.*
    from events
    left join test_accounts on events.user_id = test_accounts.user_id
    where test_accounts.user_id is null
)

select * from customer_events
