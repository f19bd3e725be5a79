{# The current time as a naive UTC timestamp, the type of every `_at` column here. #}
{% macro utc_now() -%}
    {{ return(adapter.dispatch('utc_now', 'greenery')()) }}
{%- endmacro %}

{% macro default__utc_now() -%}
    cast(timezone('UTC', now()) as timestamp)
{%- endmacro %}

{% macro snowflake__utc_now() -%}
    convert_timezone('UTC', current_timestamp())::timestamp_ntz
{%- endmacro %}
