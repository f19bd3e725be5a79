{# dbt's is_incremental(), asked of the relation that holds the model's history (see
   history_relation in generate_alias_name.sql): on DuckDB the published one, so a staged build
   builds on the history readers see, not on a previous staged build; on Snowflake the staged
   clone of it. `dbt docs generate` compiles every model as a full build: the docs show what a
   model computes from all its inputs, not the increment of a run that is not happening, and
   compiling that increment ran its look-ups against the warehouse (1-2 s at 30-70M events). #}
{% macro is_incremental() %}
    {%- if not execute or flags.WHICH == 'generate' -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set history = history_relation(this) -%}
    {%- set relation = adapter.get_relation(history.database, history.schema, history.identifier) -%}
    {{ return(relation is not none
              and relation.type == 'table'
              and model.config.materialized == 'incremental'
              and not should_full_refresh()) }}
{% endmacro %}
