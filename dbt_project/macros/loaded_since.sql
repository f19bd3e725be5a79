{# The distinct `key` values of the rows of source `source_name.table_name` loaded since this
   incremental model's newest build began, as a select; none on a full build or while the model is
   empty. A row's load marker (the raw column declared `meta: {load_marker: true}`) is its load's
   time: a later delivery of a row the model read before, an order updated in place, a row named
   before it arrived. Rows loaded before the marker existed are null and long built. A raw table
   from before the marker (no load since the upgrade gave it the column) gives every key.

   On Snowflake a load commits beside a running build, so the bound goes back lookback_hours
   more: a load stamped before a build began may have committed after the build read the raw
   tables. DuckDB has one writer per file and a loader stamps its load while it holds the file,
   so a load stamped before a build began committed before the build could open the file, and it
   read it. There the bound has no lookback: with one, the run after a first load of 100M events
   took every row as new and ran out of memory. #}
{% macro keys_loaded_since_last_build(source_name, table_name, key) -%}
    {%- set loaded = loaded_since_last_build(source_name, table_name) -%}
    {%- if loaded is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return('select distinct ' ~ key ~ ' from ' ~ source(source_name, table_name) ~ ' where ' ~ loaded) }}
{%- endmacro %}

{# The condition on the rows of that source loaded since this model's newest build began (see
   above), as SQL: `true` for a raw table from before its load marker; none on a full build or
   while the model is empty. #}
{% macro loaded_since_last_build(source_name, table_name) -%}
    {#- source() first: dbt records the dependency when it parses, where nothing is incremental. #}
    {%- set relation = source(source_name, table_name) -%}
    {%- set since = last_build_started_at() if is_incremental() else none -%}
    {%- if since is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set marker = load_marker(source_name, table_name) -%}
    {%- if marker | lower not in lowercase_columns(relation) -%}
        {{ return('true') }}
    {%- endif -%}
    {%- set bound = timestamp_literal(since) -%}
    {%- if target.type != 'duckdb' -%}
        {%- set bound = dbt.dateadd('hour', -var('lookback_hours'), bound) -%}
    {%- endif -%}
    {{ return(marker ~ ' > ' ~ bound) }}
{%- endmacro %}

{# The load marker column of a source table, as its YAML declares it. #}
{% macro load_marker(source_name, table_name) -%}
    {%- for node in graph.sources.values() if node.source_name == source_name and node.name == table_name -%}
        {%- for column in node.columns.values() -%}
            {%- if column.get('meta', {}).get('load_marker') or column.get('config', {}).get('meta', {}).get('load_marker') -%}
                {{ return(column.name) }}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error("source " ~ source_name ~ "." ~ table_name ~ " declares no column with meta load_marker") }}
{%- endmacro %}
