{# dbt's accepted_values returns one row per bad *value*; this one returns every bad *row*, so a
   failure reports how many rows are wrong, which is what the person fixing the data needs. #}
{% test accepted_values(model, column_name, values, quote=True) %}
select {{ column_name }} as unexpected_value
from {{ model }}
where {{ column_name }} is not null
  and {{ column_name }} not in (
    {% for value in values -%}
        {% if quote %}'{{ value }}'{% else %}{{ value }}{% endif %}{{ ", " if not loop.last }}
    {%- endfor %}
  )
{% endtest %}
