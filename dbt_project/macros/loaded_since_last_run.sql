{# The rows of a raw table a run reads, as a predicate on `relation` (a source of the node being
   compiled): those loaded since the newest publishing run began, and those without a load marker
   (loaded before the loaders stamped rows). That run read every row loaded before it began (its
   gate tested them, its snapshot took their versions), and a run publishes only after its gate
   passed; a row loaded while it went on is newer than its start, so the next run reads it. The
   start is read as a literal, so the scan skips what is older.

   None, for every row: with the var every_raw_row (a full refresh), without a publish log (a
   first run), or when the log does not say when runs began or the table has no marker (data
   from before them). Read by raw_new_rows (the tests on raw tables) and the orders snapshot. #}
{% macro loaded_since_last_run(relation) -%}
    {%- if not execute or var('every_raw_row', false) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set source = graph.sources[model.depends_on.nodes | select('in', graph.sources) | first] -%}
    {%- set marker = (source.columns.values() | selectattr('meta.load_marker') | first).name -%}
    {%- set publish_log = adapter.get_relation(database=relation.database, schema='ops', identifier='publish_log') -%}
    {%- if publish_log is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set logged = adapter.get_columns_in_relation(publish_log) | map(attribute='name') | map('lower') | list -%}
    {%- set stamped = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
    {%- if 'run_started_at' not in logged or marker not in stamped -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set started = run_query('select max(coalesce(run_started_at, published_at)) from ' ~ publish_log).columns[0].values()[0] -%}
    {%- if started is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return('(' ~ marker ~ " > cast('" ~ started.strftime("%Y-%m-%d %H:%M:%S.%f") ~ "' as " ~ dbt.type_timestamp() ~ ') or ' ~ marker ~ ' is null)') }}
{%- endmacro %}
