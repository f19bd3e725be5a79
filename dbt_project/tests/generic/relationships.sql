{# dbt's relationships returns the unmatched values alone; this returns the rows that hold them,
   so the chain can name one by its table's key (greenery_orchestration/assets/examples.py). #}
{% test relationships(model, column_name, to, field) %}
with child as (
    select *
    from {{ model }}
    where {{ column_name }} is not null
)

select *
from child
where not exists (
    select 1 from {{ to }} as parent
    where parent.{{ field }} = child.{{ column_name }}
)
{% endtest %}
