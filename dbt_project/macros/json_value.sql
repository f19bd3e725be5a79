{# The value at `key` of a JSON object held as text in `column`, as text (null when absent).
   Keys may hold dots (`raw.events`): they are quoted as one path step. #}
{% macro json_value(column, key) -%}
    {{ return(adapter.dispatch('json_value', 'greenery')(column, key)) }}
{%- endmacro %}

{% macro default__json_value(column, key) -%}
    json_extract_string({{ column }}, '$."{{ key }}"')
{%- endmacro %}

{% macro snowflake__json_value(column, key) -%}
    parse_json({{ column }}):"{{ key }}"::varchar
{%- endmacro %}
