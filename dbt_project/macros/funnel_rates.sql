{# The rate columns of a funnel whose rows are steps with a `sessions` count and a
   `step_number`, optionally one funnel per `partition_by` value (e.g. per day). #}
{% macro funnel_rates(partition_by=none) -%}
    {%- set window -%}
        over ({% if partition_by %}partition by {{ partition_by }} {% endif %}order by step_number)
    {%- endset -%}
    {{ safe_divide('sessions', 'lag(sessions) ' ~ window) }} as conversion_from_previous,
    1 - {{ safe_divide('sessions', 'lag(sessions) ' ~ window) }} as drop_off_from_previous,
    {{ safe_divide('sessions', 'first_value(sessions) ' ~ window) }} as conversion_from_start
{%- endmacro %}
