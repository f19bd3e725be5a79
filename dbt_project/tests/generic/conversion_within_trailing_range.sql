{# The newest complete day's conversion at each step lies within its trailing range: the rows of
   that day that the model flags `is_conversion_anomaly` fail (the rule and its
   var('conversion_anomaly') live in fct_funnel_daily, once). Only that day: an older anomaly was
   reported when it was the newest, and the day still filling up is not judged.

   Each failing row says what it is in `description` (meta `describes_failing_rows`), which the
   check and the alert show instead of a row key (greenery_orchestration/assets/examples.py). #}
{% test conversion_within_trailing_range(model) %}
{{ config(meta={'describes_failing_rows': 'description'}) }}
{%- set anomaly = var('conversion_anomaly') %}
with newest_complete_day as (
    select max(session_date) as session_date
    from {{ model }}
    where is_complete_day
),

anomalies as (
    select
        days.*,
        lag(days.funnel_step) over (partition by days.session_date order by days.step_number) as previous_step,
        {%- for share in ['conversion_from_previous', 'expected_conversion_low', 'expected_conversion_high'] %}
        {#- One decimal on either warehouse: 0.3125 -> 31.3% #}
        cast(cast(round(days.{{ share }} * 100, 1) as decimal(10, 1)) as {{ dbt.type_string() }}) || '%' as {{ share }}_percent
        {%- if not loop.last %},{% endif %}
        {%- endfor %}
    from {{ model }} as days
    inner join newest_complete_day on days.session_date = newest_complete_day.session_date
)

select
    session_date,
    step_number,
    funnel_step,
    conversion_from_previous,
    expected_conversion_low,
    expected_conversion_high,
    funnel_step || ' on ' || cast(session_date as {{ dbt.type_string() }}) || ': '
        || conversion_from_previous_percent || ' of ' || previous_step || ' sessions, expected '
        || expected_conversion_low_percent || '–' || expected_conversion_high_percent
        || ' (mean ± {{ anomaly["standard_deviations"] }} sd of the {{ anomaly["trailing_days"] }} days before)'
        as description
from anomalies
where is_conversion_anomaly
{% endtest %}
