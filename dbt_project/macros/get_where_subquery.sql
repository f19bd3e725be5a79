{# dbt's get_where_subquery: what a generic test reads of the relation it tests.
   - A test of a raw table reads the rows loaded since the last run with a gate (raw_new_rows.sql).
   - A test of an incremental model reads the rows its newest build wrote (newest_build.sql): in a
     staged build on DuckDB that is its delta, the new and rebuilt rows, read alone rather than
     picked out of the staged view, whose every read scans the published table beside it
     (materializations/incremental.sql); elsewhere the rows stamped with the newest dbt_updated_at.
     A `unique` test of a model that appends (no unique_key) reads every row whose key those rows
     hold, so an appended row repeating an older row's key fails.
   - A `where` config narrows either. #}
{% macro default__get_where_subquery(relation) -%}
    {%- if not model.attached_node and model.sources -%}
        {%- set relation = raw_new_rows(relation) -%}
    {%- endif -%}
    {%- set conditions = [] -%}
    {%- if config.get('where') -%}
        {%- do conditions.append('(' ~ config.get('where') ~ ')') -%}
    {%- endif -%}
    {%- set tested = graph.nodes.get(model.attached_node) if model.attached_node else none -%}
    {%- if tested and tested.config.materialized == 'incremental' -%}
        {%- set delta = staged_delta(relation) -%}
        {%- if model.test_metadata.name == 'unique' and not tested.config.unique_key -%}
            {%- set newest = delta if delta is not none else '(select * from ' ~ relation
                ~ ' where dbt_updated_at = (select max(dbt_updated_at) from ' ~ relation ~ '))' -%}
            {%- do conditions.append(
                model.column_name ~ ' in (select ' ~ model.column_name ~ ' from ' ~ newest ~ ' as newest)') -%}
        {%- elif delta is not none -%}
            {%- set relation = delta -%}
        {%- else -%}
            {%- do conditions.append('dbt_updated_at = (select max(dbt_updated_at) from ' ~ relation ~ ')') -%}
        {%- endif -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ conditions | join(' and ') ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}
