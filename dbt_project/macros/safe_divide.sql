{# A rate as a double; null rather than a division error when the denominator is 0 or null. #}
{% macro safe_divide(numerator, denominator) -%}
    cast({{ numerator }} as double) / nullif({{ denominator }}, 0)
{%- endmacro %}
