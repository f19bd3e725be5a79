{% snapshot orders_snapshot %}
{# SQL rather than a YAML snapshot, which can only name its relation: a run reads the orders loaded
   after the newest load the history holds (loaded_since_last_run.sql), not every order; a run of
   a few assets that did not build the snapshot moves nothing. An order it does not read keeps its
   current version: hard_deletes 'ignore' (the default in dbt-core 1.11,
   BaseAdapter.get_hard_deletes_behavior; stated because the filter relies on it) closes no
   version whose row is missing from the query. A snapshot not built yet (a first run, or none
   staged) reads every order, as does a full refresh. #}
{{ config(
    unique_key='order_id',
    strategy='check',
    check_cols=['status', 'tracking_id', 'shipping_service', 'estimated_delivery_at', 'delivered_at'],
    hard_deletes='ignore',
) }}

{%- set orders = source('greenery', 'orders') -%}
{%- set history = load_relation(history_relation(this)) if execute else none -%}
{%- set loaded = loaded_since_last_run(orders, history=history) if history is not none else none %}

select * from {{ orders }}
{%- if loaded %}
where {{ loaded }}
{%- endif %}

{% endsnapshot %}
