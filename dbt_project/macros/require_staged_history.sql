{# A snapshot is history: unlike a model it cannot be rebuilt from the raw tables. A staged build
   on Snowflake adds to the snapshot in `snapshots__staged`, which wap_snowflake.stage() cloned
   from the published schema. Without that clone dbt would start a new snapshot there, holding
   only today's versions, and publishing it would retire the history: so the snapshot's pre-hook
   stops the build instead. (On DuckDB the snapshot stages only its changes beside the published history: nothing here.) #}
{% macro require_staged_history(relation) -%}
    {%- if execute and var('staged', false) and stages_schemas() -%}
        {%- set published = published_relation(relation) -%}
        {%- if adapter.get_relation(relation.database, relation.schema, relation.identifier) is none
              and adapter.get_relation(published.database, published.schema, published.identifier) is not none -%}
            {%- do exceptions.raise_compiler_error(
                relation ~ " is missing while " ~ published ~ " holds the history: stage the build first "
                ~ "(greenery_orchestration.wap_snowflake.stage clones " ~ published.schema ~ " to "
                ~ relation.schema ~ ")") -%}
        {%- endif -%}
    {%- endif -%}
    {{ return('') }}
{%- endmacro %}
