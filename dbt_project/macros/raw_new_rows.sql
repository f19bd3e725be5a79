{# The rows of a raw table its tests read (get_where_subquery, newest_build.sql): those loaded since
   the newest publishing run began, and those without a load marker (loaded before the loaders
   stamped rows). That run's gate tested every row loaded before it began, and a run publishes
   only after its gate passed; a row loaded while it went on is newer than its start, so the next
   gate reads it. The start is read as a literal, so the scan skips what is older.

   `unique` reads every row whose key a new row holds, so a new row repeating an old key fails.
   relationships_in_source reads the new children against every parent (its `to` is the whole
   source); not_empty_nor_shrunk reads the whole table (tested_relation()).

   Every row: with the var every_raw_row (a full refresh), without a publish log (a first run),
   or when the log does not say when runs began or the table has no marker (data from before
   them). #}
{% macro raw_new_rows(relation) -%}
    {%- if not execute or var('every_raw_row', false) -%}
        {{ return(relation) }}
    {%- endif -%}
    {%- set source = graph.sources[model.depends_on.nodes[0]] -%}
    {%- set marker = (source.columns.values() | selectattr('meta.load_marker') | first).name -%}
    {%- set publish_log = adapter.get_relation(database=relation.database, schema='ops', identifier='publish_log') -%}
    {%- if publish_log is none -%}
        {{ return(relation) }}
    {%- endif -%}
    {%- set logged = adapter.get_columns_in_relation(publish_log) | map(attribute='name') | map('lower') | list -%}
    {%- set stamped = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
    {%- if 'run_started_at' not in logged or marker not in stamped -%}
        {{ return(relation) }}
    {%- endif -%}
    {%- set started = run_query('select max(coalesce(run_started_at, published_at)) from ' ~ publish_log).columns[0].values()[0] -%}
    {%- if started is none -%}
        {{ return(relation) }}
    {%- endif -%}
    {%- set new -%}
        ({{ marker }} > cast('{{ started.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as {{ dbt.type_timestamp() }}) or {{ marker }} is null)
    {%- endset -%}
    {%- if model.test_metadata.name == 'unique' -%}
        {%- set new = model.column_name ~ ' in (select ' ~ model.column_name ~ ' from ' ~ relation ~ ' where ' ~ new ~ ')' -%}
    {%- endif -%}
    {{ return('(select * from ' ~ relation ~ ' where ' ~ new ~ ') raw_new_rows') }}
{%- endmacro %}
