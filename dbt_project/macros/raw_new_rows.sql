{# The rows of a raw table its tests read (get_where_subquery.sql): those a run
   reads (loaded_since_last_run.sql), or every row.

   `unique` reads every row whose key a new row holds, so a new row repeating an old key fails;
   `unique_combination_of_columns` every row whose first column a new row holds (a superset of
   the rows sharing a new row's combination).
   relationships_in_source reads the new children against every parent (its `to` is the whole
   source); not_empty_nor_shrunk reads the whole table (tested_relation()). #}
{% macro raw_new_rows(relation) -%}
    {%- set new = loaded_since_last_run(relation) -%}
    {%- if new is none -%}
        {{ return(relation) }}
    {%- endif -%}
    {%- set keys = {
        'unique': [model.column_name],
        'unique_combination_of_columns': model.test_metadata.kwargs.get('combination_of_columns'),
    }.get(model.test_metadata.name) -%}
    {%- if keys -%}
        {%- set new = keys[0] ~ ' in (select ' ~ keys[0] ~ ' from ' ~ relation ~ ' where ' ~ new ~ ')' -%}
    {%- endif -%}
    {{ return('(select * from ' ~ relation ~ ' where ' ~ new ~ ') raw_new_rows') }}
{%- endmacro %}
