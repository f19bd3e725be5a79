{# Rows dated in the future: a clock or time zone wrong upstream. Anything later than
   now + future_tolerance_hours (a var in dbt_project.yml) fails the source tests `not_in_future`,
   and `dbt source freshness` does not count it: one such row would otherwise make a stale
   source look fresh until its date comes. #}

{% macro greenery_future_limit() -%}
    {{ dbt.dateadd('hour', var('future_tolerance_hours'), utc_now()) }}
{%- endmacro %}


{# dbt renders a source's freshness `filter` when it parses the YAML, where the project's
   macros do not exist yet. So the sources YAML keeps the filter's Jinja for later
   ({% raw %}...{% endraw %}) and this override, which dbt calls in place of its own
   `collect_freshness` (the root project's macro wins), renders it at run time. The query itself
   is still the adapter's (dispatched as dbt does). #}
{% macro collect_freshness(source, loaded_at_field, filter) -%}
    {{ return(adapter.dispatch('collect_freshness', 'dbt')(source, loaded_at_field, render(filter) if filter else filter)) }}
{%- endmacro %}
