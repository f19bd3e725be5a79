{# PII masking, driven by the `meta: {pii: true}` declarations on source and model columns.

   `dbt run-operation apply_pii_masking` creates the masking policies and attaches them to every
   declared column of every relation that exists. It is idempotent: policies are created only if
   missing and attached with FORCE, so a second run changes nothing. Only `pii_reader_role` reads
   clear values; everyone else sees a salted SHA-256, the same for the same value everywhere, so
   joins on a masked column still work. #}

{% macro pii_columns_by_relation() %}
    {#- [(relation, [column names])] for every source and model with PII columns. -#}
    {%- set found = [] -%}
    {%- for node in graph.sources.values() | list + graph.nodes.values() | list -%}
        {%- if node.resource_type in ['source', 'model', 'snapshot'] -%}
            {%- set columns = [] -%}
            {%- for column in node.columns.values() -%}
                {%- if (column.config.meta or column.meta or {}).get('pii') -%}
                    {%- do columns.append(column.name) -%}
                {%- endif -%}
            {%- endfor -%}
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

{% macro snowflake_pii_masking_sql(relations_and_columns) %}
    {#- The statements, in order: the policies, then one ALTER per PII column. -#}
    {%- set reader = env_var('GREENERY_PII_READER_ROLE', 'PII_READER') -%}
    {%- set salt = env_var('GREENERY_MASKING_SALT', 'greenery') | replace("'", "''") -%}
    {%- set policy_schema = target.database ~ '.' ~ env_var('GREENERY_POLICY_SCHEMA', 'governance') -%}
    {%- set statements = [
        "create schema if not exists " ~ policy_schema,
        "create masking policy if not exists " ~ policy_schema ~ ".pii_string as (val string) returns string -> "
            ~ "case when is_role_in_session('" ~ reader ~ "') then val "
            ~ "else sha2(val || '" ~ salt ~ "', 256) end",
        "create masking policy if not exists " ~ policy_schema ~ ".pii_number as (val number) returns number -> "
            ~ "case when is_role_in_session('" ~ reader ~ "') then val "
            ~ "else abs(hash(val || '" ~ salt ~ "')) % 100000 end",
    ] -%}
    {%- for relation, columns in relations_and_columns -%}
        {%- set types = {} -%}
        {%- for column in adapter.get_columns_in_relation(relation) -%}
            {%- do types.update({column.name | lower: column}) -%}
        {%- endfor -%}
        {%- set kind = 'view' if relation.is_view else 'table' -%}
        {%- for name in columns -%}
            {%- set policy = 'pii_number' if types.get(name | lower) and types[name | lower].is_number() else 'pii_string' -%}
            {%- do statements.append(
                "alter " ~ kind ~ " " ~ relation ~ " modify column " ~ name
                ~ " set masking policy " ~ policy_schema ~ "." ~ policy ~ " force"
            ) -%}
        {%- endfor -%}
    {%- endfor -%}
    {{ return(statements) }}
{% endmacro %}
