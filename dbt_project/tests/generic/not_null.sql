{# dbt's not_null returns the tested column alone (the whole row only when it stores failures);
   this returns the failing rows whole, so the chain can name one by its table's key
   (greenery_orchestration/assets/examples.py). #}
{% test not_null(model, column_name) %}
select *
from {{ model }}
where {{ column_name }} is null
{% endtest %}
