{# A folder's +schema is the schema itself (`marts`, not `main_marts`): the warehouse has one
   layout per environment, and environments are separate databases, not schema prefixes.
   A staged build on Snowflake writes models and the snapshot into `<schema>__staged`
   (write-audit-publish, see generate_alias_name.sql). #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set schema = custom_schema_name | trim if custom_schema_name is not none else target.schema -%}
    {%- if staged_build(node) and stages_schemas() -%}
        {{ schema ~ staged_suffix() }}
    {%- else -%}
        {{ schema }}
    {%- endif -%}
{%- endmacro %}
