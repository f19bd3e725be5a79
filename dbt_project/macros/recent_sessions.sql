{# The sessions an incremental run must rebuild whole: those with an event newer than
   `watermark` (the newest event the model has already seen) minus lookback_hours. A session
   split across two runs, or one that gets a late event, is rebuilt from all its events. #}
{% macro recent_sessions(events, watermark) -%}
    select distinct session_id
    from {{ events }}
    where created_at > (select {{ dbt.dateadd('hour', -var('lookback_hours'), 'max(' ~ watermark ~ ')') }} from {{ this }})
{%- endmacro %}
