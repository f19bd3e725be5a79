{# The events an incremental session model aggregates: on a full build all of them; on an
   incremental run, all events of every session that has one newer than `watermark` (the newest
   event time the model already holds) minus lookback_hours. So a session split across two runs,
   or one that gets a late event, is rebuilt whole from all its events. #}
{% macro events_of_recent_sessions(events, watermark) -%}
    {%- if is_incremental() -%}
    select {{ events }}.*
    from {{ events }}
    inner join (
        select distinct session_id
        from {{ events }}
        where created_at > (select {{ dbt.dateadd('hour', -var('lookback_hours'), 'max(' ~ watermark ~ ')') }} from {{ this }})
    ) as recent_sessions on {{ events }}.session_id = recent_sessions.session_id
    {%- else -%}
    select * from {{ events }}
    {%- endif -%}
{%- endmacro %}
