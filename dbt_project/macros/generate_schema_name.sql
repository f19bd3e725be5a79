{# A folder's +schema is the schema itself (`marts`, not `main_marts`): the warehouse has one
   layout per environment, and environments are separate databases, not schema prefixes. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ custom_schema_name | trim if custom_schema_name is not none else target.schema }}
{%- endmacro %}
