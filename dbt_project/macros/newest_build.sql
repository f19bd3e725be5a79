{# Tests of an incremental model read the rows its newest build wrote, not the whole table.
   Every incremental model stamps the rows it writes with `dbt_updated_at = build_started_at()`,
   one value per dbt invocation: after an incremental run the tests see the new and rebuilt rows
   (the merge restamps what it updates), after a full refresh they see every row. What an earlier
   build wrote was tested by that build. #}

{% macro build_started_at() -%}
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
{%- endmacro %}

{# When the newest build of this incremental model started (its `dbt_updated_at`, read from its
   history: see is_incremental.sql), as a datetime; none while it is empty. Rows of its inputs
   stamped later were written since. #}
{% macro last_build_started_at() -%}
    {{ return(_first_value("select max(dbt_updated_at) from " ~ history_relation(this))) }}
{%- endmacro %}
