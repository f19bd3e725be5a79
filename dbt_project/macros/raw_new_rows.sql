{# The rows of a raw table its tests read (get_where_subquery.sql): those a run
   reads (loaded_since_last_run.sql), or every row.

   `unique` reads every row whose key a new row holds, so a new row repeating an old key fails.
   relationships_in_source reads the new children against every parent (its `to` is the whole
   source); not_empty_nor_shrunk reads the whole table (tested_relation()). #}
{% macro raw_new_rows(relation) -%}
    {%- set new = loaded_since_last_run(relation) -%}
    {%- if new is none -%}
        {{ return(relation) }}
    {%- endif -%}
    {%- if model.test_metadata.name == 'unique' -%}
        {%- set new = model.column_name ~ ' in (select ' ~ model.column_name ~ ' from ' ~ relation ~ ' where ' ~ new ~ ')' -%}
    {%- endif -%}
    {{ return('(select * from ' ~ relation ~ ' where ' ~ new ~ ') raw_new_rows') }}
{%- endmacro %}
