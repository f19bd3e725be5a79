{# PII masking, driven by the `meta: {pii: true}` declarations on source, model and snapshot
   columns (the only place PII is declared).

   On Snowflake a masking policy belongs to the object it was attached to: a model rebuilt by
   CREATE OR REPLACE (a table, a view) comes back without it. So the policies are attached twice:
   - `dbt run-operation apply_pii_masking`, before the build, creates the policies and attaches
     them to every declared column of every relation that exists (the raw sources, which dbt
     never rebuilds, included);
   - the post-hook `pii_masking_hook` (dbt_project.yml) attaches them again to each model and
     snapshot right after it is built, in every run, so no rebuilt relation, and no clone made of
     it, is left with clear PII. It fails the model if the policies do not exist yet.
   Both are idempotent: policies are created only if missing and attached with FORCE, so a second
   run changes nothing. Only `pii_reader_role` reads clear values; everyone else sees a salted
   SHA-256, the same for the same value everywhere, so joins on a masked column still work. #}

{% macro pii_columns(node) %}
    {#- The names of the columns `node` (as in `graph`, or `model`) declares PII. -#}
    {%- set columns = [] -%}
    {%- for column in node.columns.values() -%}
        {%- if (column.config.meta or column.meta or {}).get('pii') -%}
            {%- do columns.append(column.name) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(columns) }}
{% endmacro %}

{% macro pii_columns_by_relation() %}
    {#- [(relation, [column names])] for every source, model and snapshot with PII columns. -#}
    {%- set found = [] -%}
    {%- for node in graph.sources.values() | list + graph.nodes.values() | list -%}
        {%- if node.resource_type in ['source', 'model', 'snapshot'] -%}
            {%- set columns = pii_columns(node) -%}
            {%- if columns -%}
                {%- set relation = adapter.get_relation(
                    database=node.database,
                    schema=node.schema,
                    identifier=(node.identifier if node.resource_type == 'source' else node.alias)
                ) -%}
                {%- if relation is not none -%}
                    {%- do found.append((relation, columns)) -%}
                {%- endif -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(found) }}
{% endmacro %}

{% macro apply_pii_masking() %}
    {{ return(adapter.dispatch('apply_pii_masking', 'greenery')()) }}
{% endmacro %}

{% macro default__apply_pii_masking() %}
    {{ log("No masking policies on " ~ target.type ~ ": prod keeps clear values, and every other
        environment gets masked values when it is cloned from prod.", info=true) }}
{% endmacro %}

{% macro snowflake__apply_pii_masking() %}
    {%- set statements = snowflake_pii_masking_sql(pii_columns_by_relation()) -%}
    {%- for statement in statements -%}
        {% do run_query(statement) %}
    {%- endfor -%}
    {{ log("Masking: " ~ statements | length ~ " statement(s) applied.", info=true) }}
{% endmacro %}

{% macro pii_masking_hook(relation, node) %}
    {#- The post-hook's SQL for `relation` (`this`), just built from `node` (`model`). -#}
    {{ return(adapter.dispatch('pii_masking_hook', 'greenery')(relation, node)) }}
{% endmacro %}

{% macro default__pii_masking_hook(relation, node) %}
    {#- No policies outside Snowflake: DuckDB's prod keeps clear values, its clones are masked. -#}
    {{ return('') }}
{% endmacro %}

{% macro snowflake__pii_masking_hook(relation, node) %}
    {%- set columns = pii_columns(node) -%}
    {%- if not execute or not columns -%}
        {{ return('') }}
    {%- endif -%}
    {#- `this` carries no type, and the relation cache learns of a new one only once its
        materialization returns, after the hooks. -#}
    {%- set relation = relation.incorporate(type='view' if node.config.materialized == 'view' else 'table') -%}
    {{ return(snowflake_pii_column_sql(relation, columns) | join(';\n')) }}
{% endmacro %}

{% macro snowflake_pii_masking_sql(relations_and_columns) %}
    {#- What apply_pii_masking runs, in order: the policies, then one ALTER per PII column. -#}
    {%- set statements = snowflake_pii_policy_sql() -%}
    {%- for relation, columns in relations_and_columns -%}
        {%- do statements.extend(snowflake_pii_column_sql(relation, columns)) -%}
    {%- endfor -%}
    {{ return(statements) }}
{% endmacro %}

{% macro snowflake_pii_policy_schema() %}
    {{ return(target.database ~ '.' ~ env_var('GREENERY_POLICY_SCHEMA', 'governance')) }}
{% endmacro %}

{% macro snowflake_pii_policy_sql() %}
    {#- The policy schema and the two policies, created only if missing. -#}
    {%- set reader = env_var('GREENERY_PII_READER_ROLE', 'PII_READER') -%}
    {%- set salt = env_var('GREENERY_MASKING_SALT', 'greenery') | replace("'", "''") -%}
    {%- set policy_schema = snowflake_pii_policy_schema() -%}
    {{ return([
        "create schema if not exists " ~ policy_schema,
        "create masking policy if not exists " ~ policy_schema ~ ".pii_string as (val string) returns string -> "
            ~ "case when is_role_in_session('" ~ reader ~ "') then val "
            ~ "else sha2(val || '" ~ salt ~ "', 256) end",
        "create masking policy if not exists " ~ policy_schema ~ ".pii_number as (val number) returns number -> "
            ~ "case when is_role_in_session('" ~ reader ~ "') then val "
            ~ "else abs(hash(val || '" ~ salt ~ "')) % 100000 end",
    ]) }}
{% endmacro %}

{% macro snowflake_pii_column_sql(relation, columns) %}
    {#- One ALTER per column of `relation`, with the policy for the column's type. FORCE replaces
        whatever policy the column had, so attaching again changes nothing. -#}
    {%- set policy_schema = snowflake_pii_policy_schema() -%}
    {%- set types = {} -%}
    {%- for column in adapter.get_columns_in_relation(relation) -%}
        {%- do types.update({column.name | lower: column}) -%}
    {%- endfor -%}
    {%- set kind = 'view' if relation.is_view else 'table' -%}
    {%- set statements = [] -%}
    {%- for name in columns -%}
        {%- set policy = 'pii_number' if types.get(name | lower) and types[name | lower].is_number() else 'pii_string' -%}
        {%- do statements.append(
            "alter " ~ kind ~ " " ~ relation ~ " modify column " ~ name
            ~ " set masking policy " ~ policy_schema ~ "." ~ policy ~ " force"
        ) -%}
    {%- endfor -%}
    {{ return(statements) }}
{% endmacro %}
