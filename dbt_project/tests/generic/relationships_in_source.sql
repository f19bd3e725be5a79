{# Every non-null `column_name` is a `field` of the source table `to` ('source_name.table_name'),
   like dbt's relationships test, for a test from one source to another. One failing row per
   row without a match: its key (`key`) and the value that matched nothing.

   The target is resolved with source() only when the test runs, so the test depends on its own
   source alone: dagster-dbt makes a source test a (blocking) asset check only when it has
   exactly one parent; a test on two sources would be logged as an observation and stop nothing. #}
{% test relationships_in_source(model, column_name, to, field, key) %}
{%- set target = source(*to.split('.')) if execute else none -%}
with child as (
    select {{ key }} as example_key, {{ column_name }} as value
    from {{ model }}
    where {{ column_name }} is not null
)

select example_key, value as missing_value
from child
where not exists (
    select 1 from {{ target }} as parent
    where parent.{{ field }} = child.value
)
{% endtest %}
