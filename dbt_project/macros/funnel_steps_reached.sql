{# When each path through a funnel reached each of its steps: one row per funnel, path and step
   reached, from the relation `events` (event_id, session_id, user_id, event_type, created_at).

   A path is what one window covers: a session (window `session`), or a unit (user or session)
   from its first step on for `window` minutes. The path starts at its first event of the first
   step (`ordered`) or of any step (`any`). It reaches step k when it reached step k-1 and has an
   event of step k in the window: at or after the step before it (`ordered`), or anywhere in the
   window (`any`). So steps nest, and a step never counts more paths than the one before it.
   `unit_id` is what the funnel counts: the session or the user of the path.

   With `new_events` (an incremental build of the model that holds the paths, `this`: the raw
   events loaded since its newest build, as a relation), only the paths those events can change
   are rebuilt: see _events_of_open_paths. #}
{% macro funnel_steps_reached(events, new_events=none) -%}
    {%- for name, funnel in var('funnels').items() %}
    {%- if not loop.first %}
    union all
    {% endif -%}
    select * from ({{ _funnel_paths(name, funnel, events, new_events) }}) as {{ name }}
    {%- endfor %}
{%- endmacro %}

{% macro _funnel_paths(name, funnel, events, new_events) -%}
    {%- set steps = funnel['steps'] -%}
    {%- set ordered = _funnel_setting(name, funnel, 'order', ['ordered', 'any']) == 'ordered' -%}
    {%- set unit = _funnel_unit(name, funnel) ~ '_id' -%}
    {%- set window = _funnel_window(name, funnel) -%}
    {%- set path = _path_column(name, funnel) -%}
    with
    {%- if new_events is not none %}
    open_path_events as (
        {{ _events_of_open_paths(name, funnel, events, path, new_events) }}
    ),
    {%- set events = 'open_path_events' %}
    {%- endif %}
    {#- Who a path belongs to, apart: the steps below carry only its id and times, so their joins
        and groups stay narrow (string ids carried through every step ran DuckDB out of memory
        at 100M events). #}
    path_units as (
        select
            {{ path }} as path_id,
            min({{ unit }}) as unit_id,
            min(user_id) as user_id
        from {{ events }}
        where event_type in ({{ _quoted_list(steps[:1] if ordered else steps) }})
        group by {{ path }}
    ),

    path_starts as (
        select
            {{ path }} as path_id,
            min(created_at) as started_at,
            min(created_at) as reached_at
        from {{ events }}
        where event_type in ({{ _quoted_list(steps[:1] if ordered else steps) }})
        group by {{ path }}
    ),
    {%- for step in steps %}

    step_{{ loop.index }} as (
        {%- if loop.first and ordered %}
        select * from path_starts
        {%- else %}
        select
            previous.path_id,
            previous.started_at,
            {% if ordered -%}
            min(step_events.created_at)
            {%- else -%}
            case when min(step_events.created_at) > previous.reached_at then min(step_events.created_at) else previous.reached_at end
            {%- endif %} as reached_at
        from {{ 'path_starts' if loop.first else 'step_' ~ (loop.index - 1) }} as previous
        inner join {{ events }} as step_events
            on step_events.{{ path }} = previous.path_id
            and step_events.event_type = '{{ step }}'
            and step_events.created_at >= previous.{{ 'reached_at' if ordered else 'started_at' }}
            {%- if window != 'session' %}
            and step_events.created_at <= {{ dbt.dateadd('minute', window, 'previous.started_at') }}
            {%- endif %}
        group by previous.path_id, previous.started_at, previous.reached_at
        {%- endif %}
    ),
    {%- endfor %}

    steps_reached as (
        {%- for step in steps %}
        select
            {{ loop.index }} as step_number,
            '{{ step }}' as funnel_step,
            path_id,
            started_at,
            reached_at
        from step_{{ loop.index }}
        {%- if not loop.last %}
        union all
        {%- endif %}
        {%- endfor %}
    ),

    reached as (
        select
            '{{ name }}' as funnel_name,
            '{{ unit[:-3] }}' as counting_unit,
            steps_reached.step_number,
            steps_reached.funnel_step,
            steps_reached.path_id,
            path_units.unit_id,
            path_units.user_id,
            steps_reached.started_at,
            steps_reached.reached_at
        from steps_reached
        inner join path_units on steps_reached.path_id = path_units.path_id
    )

    select * from reached
{%- endmacro %}

{# The events that can change a path of funnel `name`, as a subquery: every event from the
   path's start on, of each path with a step event in `new_events`, however late it happened. A
   window-funnel path keeps its rows when the new event falls after its window closed (an event
   that starts the path earlier is not after it). For an `ordered` funnel a path's start is its
   step-1 row, built before or among the new events. The earliest of those starts is looked up
   first and written as a literal, so the scan skips every older block. #}
{% macro _events_of_open_paths(name, funnel, events, path, new_events) -%}
    {%- set window = _funnel_window(name, funnel) -%}
    {%- set history = history_relation(this) -%}
    {%- set new_steps -%}
        select {{ path }} as path_id, created_at from {{ new_events }} as new_events
        where event_type in ({{ _quoted_list(funnel['steps']) }})
    {%- endset -%}
    {%- set new_paths -%}
        select distinct new_steps.path_id from ({{ new_steps }}) as new_steps
        {%- if window != 'session' %}
        where not exists (
            select 1 from {{ history }} as built
            where built.funnel_name = '{{ name }}' and built.step_number = 1
                and built.path_id = new_steps.path_id
                and new_steps.created_at > {{ dbt.dateadd('minute', window, 'built.started_at') }}
        )
        {%- endif %}
    {%- endset -%}
    {%- set starts = [
        _first_value("select min(created_at) from (" ~ new_steps ~ ") as new_steps"),
        _first_value(
            "select min(started_at) from " ~ history ~ " where funnel_name = '" ~ name
            ~ "' and step_number = 1 and path_id in (" ~ new_paths ~ ")"
        ),
    ] | reject('none') | list -%}
    select funnel_events.*
    from {{ events }} as funnel_events
    inner join ({{ new_paths }}) as open_paths on funnel_events.{{ path }} = open_paths.path_id
    {%- if starts %}
    where funnel_events.created_at >= {{ timestamp_literal(starts | min) }}
    {%- endif %}
{%- endmacro %}

{# What a path of the funnel is: a session (window `session`), or the unit from its first step
   on. The session or the unit id: where it is the unit id, a funnel has one path per unit. #}
{% macro _path_column(name, funnel) -%}
    {{ return('session_id' if _funnel_window(name, funnel) == 'session' else _funnel_unit(name, funnel) ~ '_id') }}
{%- endmacro %}

{# What a path of the funnel covers: `session` (the default) or a number of minutes. #}
{% macro _funnel_window(name, funnel) -%}
    {%- set window = funnel.get('window', 'session') -%}
    {%- if window != 'session' and not (window is number and window > 0) -%}
        {{ exceptions.raise_compiler_error("funnel " ~ name ~ ": window must be `session` or a number of minutes, not " ~ window) }}
    {%- endif -%}
    {{ return(window) }}
{%- endmacro %}

{# What the funnel counts: `session` (the default) or `user`. #}
{% macro _funnel_unit(name, funnel) -%}
    {{ return(_funnel_setting(name, funnel, 'unit', ['session', 'user'])) }}
{%- endmacro %}

{# The names of the funnels with one path per unit: they count a step's paths, not distinct units. #}
{% macro funnels_with_one_path_per_unit() -%}
    {%- set names = [] -%}
    {%- for name, funnel in var('funnels').items() -%}
        {%- if _path_column(name, funnel) == _funnel_unit(name, funnel) ~ '_id' -%}
            {%- do names.append(name) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(names) }}
{%- endmacro %}

{# The steps of every funnel, or of the funnel `name`, reached or not: one row per funnel and step. #}
{% macro funnel_steps(name=none) -%}
    {%- set funnels = var('funnels') if name is none else {name: var('funnels')[name]} -%}
    {%- for funnel_name, funnel in funnels.items() %}
    {%- set outer = loop %}
    {%- for step in funnel['steps'] %}
    {%- if not (outer.first and loop.first) %}
    union all
    {%- endif %}
    select
        '{{ funnel_name }}' as funnel_name,
        '{{ _funnel_unit(funnel_name, funnel) }}' as counting_unit,
        {{ loop.index }} as step_number,
        '{{ step }}' as funnel_step
    {%- endfor %}
    {%- endfor %}
{%- endmacro %}

{% macro _funnel_setting(name, funnel, setting, allowed) -%}
    {%- set value = funnel.get(setting, allowed[0]) -%}
    {%- if value not in allowed -%}
        {{ exceptions.raise_compiler_error("funnel " ~ name ~ ": " ~ setting ~ " must be one of " ~ allowed | join(', ') ~ ", not " ~ value) }}
    {%- endif -%}
    {{ return(value) }}
{%- endmacro %}

{% macro _quoted_list(values) -%}
    {%- for value in values %}'{{ value }}'{% if not loop.last %}, {% endif %}{% endfor -%}
{%- endmacro %}
