{# No `column_name` later than now + future_tolerance_hours (see macros/collect_freshness.sql). A failing row
   is the row's key (`key`, e.g. event_id) and its time: never anything else of the row. #}
{% test not_in_future(model, column_name, key) %}
select
    {{ key }} as example_key,
    {{ column_name }} as future_value
from {{ model }}
where {{ column_name }} > {{ greenery_future_limit() }}
{% endtest %}
