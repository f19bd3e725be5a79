{# The events an incremental session model aggregates: on a full build all of them; on an
   incremental run, all events of every session with an event loaded since the model's newest
   build (loaded_since.sql), however late it happened. So a session split across two runs, or one
   that gets a late event, is rebuilt whole from all its events. Shipping notices, days after
   their session, are not session activity here, as in both models. `sessions` holds
   session_started_at for the sessions built so far; `also_where` (a condition on its columns)
   names more sessions to rebuild whole.

   The earliest event to read is looked up before the model's query and written into it as a
   literal, so the scan of the events skips every block older than it: the cost follows the new
   data, not all of it. It is the earliest of the new events and of the starts of the known
   sessions they belong to, each a look-up of its own (one union of every session id, ~10M
   strings right after a first load of 100M events, ran out of DuckDB's memory). An event-time
   lookback (every session with an event in the last lookback_hours) rebuilt ~8x the new
   sessions after +1% events. #}
{% macro events_of_recent_sessions(events, sessions, also_where=none) -%}
    {%- set loaded = loaded_since_last_build('greenery', 'events') -%}
    {%- if loaded is none -%}
    select * from {{ events }}
    {%- else -%}
    {%- set new_activity -%}
        {{ source('greenery', 'events') }} where {{ loaded }} and event_type != 'package_shipped'
    {%- endset -%}
    {%- set starts = [
        _first_value("select min(created_at) from " ~ new_activity),
        _first_value(
            "select min(session_started_at) from " ~ sessions
            ~ " where session_id in (select session_id from " ~ new_activity ~ ")"
        ),
    ] -%}
    {%- if also_where -%}
        {%- do starts.append(_first_value(
            "select min(session_started_at) from " ~ sessions ~ " where " ~ also_where
        )) -%}
    {%- endif -%}
    {%- set starts = starts | reject('none') | list -%}
    select {{ events }}.*
    from {{ events }}
    inner join (
        select distinct session_id from {{ new_activity }}
        {%- if also_where %}
        union
        select session_id from {{ sessions }} where {{ also_where }}
        {%- endif %}
    ) as recent_sessions on {{ events }}.session_id = recent_sessions.session_id
    {%- if starts %}
    where {{ events }}.created_at >= {{ timestamp_literal(starts | min) }}
    {%- endif %}
    {%- endif -%}
{%- endmacro %}

{% macro _first_value(sql) -%}
    {{ return(run_query(sql).columns[0].values()[0]) }}
{%- endmacro %}

{% macro timestamp_literal(value) -%}
    cast('{{ value.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
{%- endmacro %}
