{# The model agrees with what it is built from: `measure` (an aggregate) over every row of the
   model, optionally `model_where`, equals `to_measure` over `to`, optionally `to_where`, within
   `tolerance`. It reads the whole model, not the rows of its newest build that the other tests
   of an incremental model read (newest_build.sql), through `ref`, so under any alias.

   One failing row: the two numbers and their difference. The failure count is the absolute
   difference when the measures count rows (`counts: true`, e.g. events or orders missing),
   so the check line says how many; otherwise 1. #}
{% test reconciles_with(model, measure, to, to_measure, model_where=none, to_where=none, tolerance=0, counts=true) %}
{{ config(fail_calc='coalesce(sum(failing_count), 0)') }}
with in_model as (
    select {{ measure }} as value
    from {{ tested_relation() }}
    {% if model_where %}where {{ model_where }}{% endif %}
),

in_source as (
    select {{ to_measure }} as value
    from {{ to }}
    {% if to_where %}where {{ to_where }}{% endif %}
),

compared as (
    select
        in_model.value as in_model,
        in_source.value as in_source,
        coalesce(in_model.value, 0) - coalesce(in_source.value, 0) as difference
    from in_model
    cross join in_source
)

select
    in_model,
    in_source,
    difference,
    {% if counts %}cast(abs(difference) as bigint){% else %}1{% endif %} as failing_count
from compared
where abs(difference) > {{ tolerance }}
{% endtest %}
