{# dbt's is_incremental(), asked of the relation that holds the model's history (see
   history_relation in generate_alias_name.sql): on DuckDB the published one, so a staged build
   builds on the history readers see, not on a previous staged build; on Snowflake the staged
   clone of it. #}
{% macro is_incremental() %}
    {%- if not execute -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set history = history_relation(this) -%}
    {%- set relation = adapter.get_relation(history.database, history.schema, history.identifier) -%}
    {{ return(relation is not none
              and relation.type == 'table'
              and model.config.materialized == 'incremental'
              and not should_full_refresh()) }}
{% endmacro %}
