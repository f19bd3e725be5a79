{# No `column_name` later than now + future_tolerance_hours (see macros/collect_freshness.sql). #}
{% test not_in_future(model, column_name) %}
select *
from {{ model }}
where {{ column_name }} > {{ greenery_future_limit() }}
{% endtest %}
