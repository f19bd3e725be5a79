{# Tests of an incremental model read the rows its newest build wrote, not the whole table.
   Every incremental model stamps the rows it writes with `dbt_updated_at = build_started_at()`,
   one value per dbt invocation: after an incremental run the tests see the new and rebuilt rows
   (the merge restamps what it updates), after a full refresh they see every row. What an earlier
   build wrote was tested by that build. #}

{% macro build_started_at() -%}
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
{%- endmacro %}

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
        {%- do conditions.append('dbt_updated_at = (select max(dbt_updated_at) from ' ~ relation ~ ')') -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ conditions | join(' and ') ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}

{# When the newest build of this incremental model started (its `dbt_updated_at`, read from its
   history: see is_incremental.sql), as a datetime; none while it is empty. Rows of its inputs
   stamped later were written since. #}
{% macro last_build_started_at() -%}
    {{ return(_first_value("select max(dbt_updated_at) from " ~ history_relation(this))) }}
{%- endmacro %}
