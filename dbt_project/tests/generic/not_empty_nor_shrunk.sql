{# Volume: the source table is not empty, and holds no fewer than (100 - max_shrink_percent)% of
   the rows it had at the last successful publish (ops.publish_log: one row per publish,
   row_counts a JSON object {"raw.events": 32000, ...}). A replace recorded in the load log
   (ops.load_log, mode 'replace') after that publish was meant: it resets the baseline, and only
   emptiness is checked. Without a publish log (a first run) there is no baseline either.

   One failing row: the table, its rows now and at the last publish, that publish's run id.
   The failure count is the number of rows missing against the baseline (1 for an empty table
   without one), so the check line says how many rows went. #}
{% test not_empty_nor_shrunk(model, max_shrink_percent) %}
{{ config(fail_calc='coalesce(sum(rows_missing), 0)') }}
{#- Every row, not the new rows the source's other tests read (raw_new_rows.sql). -#}
{%- set table = tested_relation() -%}
{%- set table_key = (table.schema ~ '.' ~ table.identifier) | lower -%}
{%- set publish_log = adapter.get_relation(database=table.database, schema='ops', identifier='publish_log') if execute else none -%}
{%- set load_log = adapter.get_relation(database=table.database, schema='ops', identifier='load_log') if execute else none -%}
with now_rows as (
    select count(*) as rows_now from {{ table }}
),

{% if publish_log is not none %}
last_publish as (
    select run_id, published_at, cast({{ json_value('row_counts', table_key) }} as bigint) as rows_then
    from {{ publish_log }}
    order by published_at desc
    limit 1
),

baseline as (
    select
        run_id,
        {#- Without a load log (nothing loaded through the loader yet) no replace was recorded;
            and a CASE needs a WHEN. #}
        {% if load_log is not none %}
        case
            when exists (
                select 1 from {{ load_log }}
                where mode = 'replace' and loaded_at > last_publish.published_at
            ) then null
            else rows_then
        end
        {%- else %}
        rows_then
        {%- endif %} as rows_then
    from last_publish
),
{% else %}
baseline as (
    select cast(null as {{ dbt.type_string() }}) as run_id, cast(null as bigint) as rows_then
),
{% endif %}

compared as (
    select
        '{{ table_key }}' as raw_table,
        now_rows.rows_now,
        baseline.rows_then as rows_at_last_publish,
        baseline.run_id as last_publish_run_id,
        {{ max_shrink_percent }} as max_shrink_percent,
        case
            when baseline.rows_then > now_rows.rows_now then baseline.rows_then - now_rows.rows_now
            else 1
        end as rows_missing
    from now_rows
    left join baseline on 1 = 1
)

select *
from compared
where rows_now = 0
   or rows_now < rows_at_last_publish * (100 - {{ max_shrink_percent }}) / 100.0
{% endtest %}
