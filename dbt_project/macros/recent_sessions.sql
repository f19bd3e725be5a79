{# The events an incremental session model aggregates: on a full build all of them; on an
   incremental run, all events of every session that has one newer than `watermark` (the newest
   event time the model already holds) minus lookback_hours. So a session split across two runs,
   or one that gets a late event, is rebuilt whole from all its events.

   Both bounds are looked up before the model's query and written into it as literals, so the
   scan of the events skips every block older than the oldest recent session: the cost follows
   the new data, not all of it. `sessions` holds session_started_at for the sessions built so
   far. A session it does not know has only events that arrived since the last run, and those
   (like every late event) are newer than the watermark minus the lookback. Shipping notices,
   days after their session, are not session activity here, as in both models. `also_where`
   (a condition on the columns of `sessions`) names more sessions to rebuild whole, whatever their
   events' age.

   The earliest start is two look-ups, one per kind of session, each a semi-join on its own key:
   right after a first load, every session with an order is one to rebuild, and one union of
   both kinds of session id (~10M strings at 100M events) ran out of DuckDB's memory. #}
{% macro events_of_recent_sessions(events, watermark, sessions, also_where=none) -%}
    {%- if is_incremental() -%}
    {%- set since = lookback_start(watermark) -%}
    {%- if since is none -%}
    select * from {{ events }}
    {%- else -%}
    {%- set recent -%}
        select session_id from {{ ref('stg_greenery__events') }}
        where event_type != 'package_shipped' and created_at > {{ timestamp_literal(since) }}
    {%- endset -%}
    {%- set starts = [since, _first_value(
        "select min(session_started_at) from " ~ sessions ~ " where session_id in (" ~ recent ~ ")"
    )] -%}
    {%- if also_where -%}
        {%- do starts.append(_first_value(
            "select min(session_started_at) from " ~ sessions ~ " where " ~ also_where
        )) -%}
    {%- endif -%}
    {%- set earliest = starts | reject('none') | min -%}
    select {{ events }}.*
    from {{ events }}
    inner join (
        select distinct session_id
        from {{ events }}
        where created_at > {{ timestamp_literal(since) }}
        {%- if also_where %}
        union
        select session_id from {{ sessions }} where {{ also_where }}
        {%- endif %}
    ) as recent_sessions on {{ events }}.session_id = recent_sessions.session_id
    where {{ events }}.created_at >= {{ timestamp_literal(earliest) }}
    {%- endif -%}
    {%- else -%}
    select * from {{ events }}
    {%- endif -%}
{%- endmacro %}

{# The newest `watermark` this incremental model holds (in its history: see is_incremental.sql),
   minus lookback_hours, as a datetime (none while the model is empty). Written into queries as a
   literal, not a subquery, so that the scan below it can skip old blocks. #}
{% macro lookback_start(watermark) -%}
    {{ return(_first_value(
        "select " ~ dbt.dateadd('hour', -var('lookback_hours'), 'max(' ~ watermark ~ ')') ~ " from " ~ history_relation(this)
    )) }}
{%- endmacro %}

{% macro _first_value(sql) -%}
    {{ return(run_query(sql).columns[0].values()[0]) }}
{%- endmacro %}

{% macro timestamp_literal(value) -%}
    cast('{{ value.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
{%- endmacro %}
