{# dbt's is_incremental(), asked of the published relation: a staged build (see
   generate_alias_name.sql) builds on the history readers see, not on a previous staged build. #}
{% macro is_incremental() %}
    {%- if not execute -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set published = published_relation(this) -%}
    {%- set relation = adapter.get_relation(published.database, published.schema, published.identifier) -%}
    {{ return(relation is not none
              and relation.type == 'table'
              and model.config.materialized == 'incremental'
              and not should_full_refresh()) }}
{% endmacro %}
