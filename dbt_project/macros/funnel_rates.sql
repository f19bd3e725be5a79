{# The rate columns of a funnel whose rows are steps with a `count` column and a `step_number`,
   optionally one funnel per `partition_by` value (e.g. per day). #}
{% macro funnel_rates(count='sessions', partition_by=none, drop_off=true) -%}
    {%- set window -%}
        over ({% if partition_by %}partition by {{ partition_by }} {% endif %}order by step_number)
    {%- endset -%}
    {{ safe_divide(count, 'lag(' ~ count ~ ') ' ~ window) }} as conversion_from_previous,
    {%- if drop_off %}
    1 - {{ safe_divide(count, 'lag(' ~ count ~ ') ' ~ window) }} as drop_off_from_previous,
    {%- endif %}
    {{ safe_divide(count, 'first_value(' ~ count ~ ') ' ~ window) }} as conversion_from_start
{%- endmacro %}
