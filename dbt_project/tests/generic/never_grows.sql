{# Down the funnel (ordered by `order_by`), `column_name` never exceeds the step before it. #}
{% test never_grows(model, column_name, order_by, partition_by=none) %}
with steps as (
    select
        *,
        lag({{ column_name }}) over (
            {% if partition_by %} partition by {{ partition_by }} {% endif %}
            order by {{ order_by }}
        ) as previous_step_value
    from {{ model }}
)

select *
from steps
where {{ column_name }} > previous_step_value
{% endtest %}
