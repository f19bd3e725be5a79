{# Write-audit-publish: a production build (`--vars '{staged: true}'`) writes every model and
   snapshot under `<name>__staged`, beside the relation readers use, and refs resolve to those
   staged names, so the whole build and its tests read what this build wrote. Readers see
   nothing of it until the publish step renames the staged relations over the published ones in
   one transaction (greenery_orchestration/wap.py). Without the var (a developer's
   `dbt build`, `dbt docs generate`) names are dbt's own. #}
{% macro generate_alias_name(custom_alias_name=none, node=none) -%}
    {%- set name = default__generate_alias_name(custom_alias_name, node) | trim -%}
    {%- if var('staged', false) and node.resource_type in ['model', 'snapshot'] -%}
        {{ name ~ staged_suffix() }}
    {%- else -%}
        {{ name }}
    {%- endif -%}
{%- endmacro %}

{% macro staged_suffix() -%}
    {{ return('__staged') }}
{%- endmacro %}

{# The relation readers use for `relation`, staged or not: where an incremental model's
   history is. #}
{% macro published_relation(relation) -%}
    {%- set identifier = relation.identifier -%}
    {%- if identifier.endswith(staged_suffix()) -%}
        {%- set identifier = identifier[:-(staged_suffix() | length)] -%}
    {%- endif -%}
    {{ return(relation.incorporate(path={'identifier': identifier})) }}
{%- endmacro %}
