{# dbt's accepted_values returns one row per bad *value*; this one returns every bad *row*, whole,
   so a failure reports how many rows are wrong, which is what the person fixing the data needs,
   and the chain can name one of them by its table's key (greenery_orchestration/assets/examples.py). #}
{% test accepted_values(model, column_name, values, quote=True) %}
select *
from {{ model }}
where {{ column_name }} is not null
  and {{ column_name }} not in (
    {% for value in values -%}
        {% if quote %}'{{ value }}'{% else %}{{ value }}{% endif %}{{ ", " if not loop.last }}
    {%- endfor %}
  )
{% endtest %}
