{# The whole relation of the model a generic test is attached to, through `ref`, so whatever
   alias the model is built under; of a source test, the raw table. A test's `model` argument is
   narrowed by `get_where_subquery` (a `where` config; for incremental models, the newest build's
   rows, see get_where_subquery.sql; for raw tables, the new rows, see raw_new_rows.sql); a test that
   must see every row (a reconciliation, a volume test) reads this instead.
   Call it from the test's body: there `model` is the test node, as in get_where_subquery. #}
{% macro tested_relation() -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if not model.attached_node and model.sources | length == 1 -%}
        {{ return(source(*model.sources[0])) }}
    {%- endif -%}
    {%- set tested = graph.nodes.get(model.attached_node) if model.attached_node else none -%}
    {%- if tested is none or tested.resource_type not in ['model', 'snapshot', 'seed'] -%}
        {% do exceptions.raise_compiler_error("tested_relation(): " ~ model.name ~ " is not attached to a model") %}
    {%- endif -%}
    {{ return(ref(tested.package_name, tested.name, v=tested.version) if tested.version else ref(tested.package_name, tested.name)) }}
{%- endmacro %}
