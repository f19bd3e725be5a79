{# Write-audit-publish: a production build (`--vars '{staged: true}'`) writes every model and
   snapshot where readers do not look, and refs resolve there, so the whole build and its tests
   read what this build wrote. Readers see nothing of it until the publish step. Without the var
   (a developer's `dbt build`, `dbt docs generate`) names are dbt's own.

   Where a staged build writes depends on what the warehouse can publish atomically:
   - DuckDB renames tables within a schema in one transaction but cannot rename a schema, so a
     relation is staged as `<name>__staged` beside the published one (this macro), and
     greenery_orchestration/wap.py renames it over the published one.
   - Snowflake swaps whole schemas but commits each DDL statement, so the build goes into
     `<schema>__staged` schemas under the published names (generate_schema_name.sql), each a
     zero-copy clone of its published schema, and greenery_orchestration/wap_snowflake.py swaps
     each with its published schema. #}
{% macro generate_alias_name(custom_alias_name=none, node=none) -%}
    {%- set name = default__generate_alias_name(custom_alias_name, node) | trim -%}
    {%- if staged_build(node) and not stages_schemas() -%}
        {{ name ~ staged_suffix() }}
    {%- else -%}
        {{ name }}
    {%- endif -%}
{%- endmacro %}

{% macro staged_suffix() -%}
    {{ return('__staged') }}
{%- endmacro %}

{# Whether `node` is written by a staged build: the models, the snapshot and the seeds, never tests. #}
{% macro staged_build(node) -%}
    {{ return(var('staged', false) and node is not none and node.resource_type in ['model', 'snapshot', 'seed']) }}
{%- endmacro %}

{# Whether a staged build goes into `<schema>__staged` schemas (Snowflake) rather than under
   `<name>__staged` names beside the published relations (DuckDB). #}
{% macro stages_schemas() -%}
    {{ return(adapter.dispatch('stages_schemas', 'greenery')()) }}
{%- endmacro %}

{% macro default__stages_schemas() -%}
    {{ return(false) }}
{%- endmacro %}

{% macro snowflake__stages_schemas() -%}
    {{ return(true) }}
{%- endmacro %}

{# The relation readers use for `relation`, staged or not. #}
{% macro published_relation(relation) -%}
    {%- set suffix = staged_suffix() -%}
    {%- set identifier, schema = relation.identifier, relation.schema -%}
    {%- if identifier.endswith(suffix) -%}
        {%- set identifier = identifier[:-(suffix | length)] -%}
    {%- endif -%}
    {%- if schema.endswith(suffix) -%}
        {%- set schema = schema[:-(suffix | length)] -%}
    {%- endif -%}
    {{ return(relation.incorporate(path={'schema': schema, 'identifier': identifier})) }}
{%- endmacro %}

{# Where the history an incremental model builds on is: what is_incremental() asks about, what
   the lookback reads. On DuckDB the published relation (a staged build writes only the new rows
   beside it). On Snowflake `relation` itself: its staged schema starts as a zero-copy clone of
   the published one, and dbt-snowflake's materialization merges into `this`, so asking anything
   else could filter the new rows as if incremental while the materialization builds the table
   whole (a staged schema that was not cloned first). #}
{% macro history_relation(relation) -%}
    {{ return(adapter.dispatch('history_relation', 'greenery')(relation)) }}
{%- endmacro %}

{% macro default__history_relation(relation) -%}
    {{ return(published_relation(relation)) }}
{%- endmacro %}

{% macro snowflake__history_relation(relation) -%}
    {{ return(relation) }}
{%- endmacro %}
