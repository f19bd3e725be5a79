{# The rows of a raw table a run reads, as a predicate on `relation` (a source of the node being
   compiled): those loaded after a bound, and those without a load marker (loaded before the
   loaders stamped rows). The bound is read first and written as a literal, so the scan skips
   what is older.

   For the tests on raw tables (raw_new_rows.sql) the bound is when the newest run whose gate
   tested the raw tables began (ops.publish_log.run_started_at, logged only by runs that ran the
   gate): that gate tested every row loaded before then, and a run publishes only after its gate
   passed; a row loaded while it went on is newer than its start, so the next gate reads it.

   With `history`, a copy keeping the rows read so far (the orders snapshot), the bound is the
   newest marker it holds: every load up to that one was read whole when it was taken, whatever
   runs of a few assets published since.

   None, for every row: with the var every_raw_row (a full refresh), without a publish log or a
   run start in it (a first run), or when the table or the history has no marker (data from
   before it). #}
{% macro loaded_since_last_run(relation, history=none) -%}
    {%- if not execute or var('every_raw_row', false) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set source = graph.sources[model.depends_on.nodes | select('in', graph.sources) | first] -%}
    {%- set marker = load_marker(source.source_name, source.name) -%}
    {%- if marker not in lowercase_columns(relation) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if history is not none -%}
        {%- if marker not in lowercase_columns(history) -%}
            {{ return(none) }}
        {%- endif -%}
        {%- set bound = run_query('select max(' ~ marker ~ ') from ' ~ history).columns[0].values()[0] -%}
    {%- else -%}
        {%- set publish_log = adapter.get_relation(database=relation.database, schema='ops', identifier='publish_log') -%}
        {%- if publish_log is none or 'run_started_at' not in lowercase_columns(publish_log) -%}
            {{ return(none) }}
        {%- endif -%}
        {%- set bound = run_query('select max(run_started_at) from ' ~ publish_log).columns[0].values()[0] -%}
    {%- endif -%}
    {%- if bound is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return('(' ~ marker ~ " > cast('" ~ bound.strftime("%Y-%m-%d %H:%M:%S.%f") ~ "' as " ~ dbt.type_timestamp() ~ ') or ' ~ marker ~ ' is null)') }}
{%- endmacro %}

{% macro lowercase_columns(relation) -%}
    {{ return(adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list) }}
{%- endmacro %}
