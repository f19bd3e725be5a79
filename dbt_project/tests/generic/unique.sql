{# dbt's unique returns each repeated value as `unique_field`; this keeps the column's own name,
   so a repeated key is named as the key it is (greenery_orchestration/assets/examples.py). #}
{% test unique(model, column_name) %}
select
    {{ column_name }},
    count(*) as n_records
from {{ model }}
where {{ column_name }} is not null
group by {{ column_name }}
having count(*) > 1
{% endtest %}
