{# Every non-null `column_name` is a `field` of the source table `to` ('source_name.table_name'),
   like dbt's relationships test (relationships.sql), for a test from one source to another. One
   failing row per row without a match.

   The target is resolved with source() only when the test runs, so the test depends on its own
   source alone: dagster-dbt makes a source test a (blocking) asset check only when it has
   exactly one parent; a test on two sources would be logged as an observation and stop nothing. #}
{% test relationships_in_source(model, column_name, to, field) %}
{%- set target = source(*to.split('.')) if execute else none -%}
{{ test_relationships(model, column_name, target, field) }}
{% endtest %}
