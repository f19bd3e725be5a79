{# The integers 0 .. count - 1 as rows of `n`, from cross joins of ten digits: plain SQL that
   DuckDB and Snowflake both run, for a spine of days without a package. #}
{% macro integers(count) -%}
    {%- set places = [1, (count - 1) | string | length] | max -%}
    select
        {% for place in range(places) -%}
        digits_{{ place }}.digit * {{ 10 ** place }}{% if not loop.last %} + {% endif %}
        {%- endfor %} as n
    from
        {% for place in range(places) -%}
        (select 0 as digit union all select 1 union all select 2 union all select 3 union all select 4
         union all select 5 union all select 6 union all select 7 union all select 8 union all select 9) as digits_{{ place }}
        {%- if not loop.last %}
        cross join
        {% endif %}
        {%- endfor %}
    where
        {% for place in range(places) -%}
        digits_{{ place }}.digit * {{ 10 ** place }}{% if not loop.last %} + {% endif %}
        {%- endfor %} < {{ count }}
{%- endmacro %}
