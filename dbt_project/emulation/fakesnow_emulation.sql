{# Emulated Snowflake: the overrides that let the `snowflake` target run on fakesnow (Snowflake's
   SQL translated onto DuckDB), for tests and local runs without a Snowflake account, with dbt
   in fakesnow's process or talking to fakesnow's HTTP server through the real connector:

       GREENERY_TARGET=snowflake GREENERY_SNOWFLAKE_EMULATED=true SNOWFLAKE_ACCOUNT=... (any values) \
       python -m fakesnow --db_path DIR -m dbt.cli.main build

   (DIR holds fakesnow's database files, one per Snowflake database, shared by every invocation.
   For the server, tests/snowflake_server/fakesnow_server.py and SNOWFLAKE_HOST/PORT/PROTOCOL.)

   This folder is a macro path only when GREENERY_SNOWFLAKE_EMULATED=true (dbt_project.yml), so
   on real Snowflake none of it is parsed. `dbt.<name>` reaches the adapter's own macro, which a
   same-named macro here shadows. The overrides: temporary tables (+ post_snapshot) and views, the
   snapshot MERGE and the incremental one, explicit transactions, masking-policy statements
   (queries and hooks). Each says below what fakesnow cannot do without it. #}


{# Temporary tables (the snapshot's staging table; incremental models' temp relations).
   Snowflake creates a session-scoped temporary table in any schema; DuckDB only in its own
   `temp` catalog, so `create or replace temporary table DB.SCHEMA.X` fails on fakesnow
   ("TEMPORARY table names can *only* use the "temp" catalog"). Emulated, it is dbt-snowflake's
   own statement without `temporary`: an ordinary table beside the target, which
   `snowflake__post_snapshot` below drops again. #}
{% macro snowflake__create_table_temporary_sql(relation, compiled_code) -%}
    {%- set statement = dbt.snowflake__create_table_temporary_sql(relation, compiled_code) -%}
    {%- if 'create or replace temporary table' not in statement -%}
        {% do exceptions.raise_compiler_error(
            "fakesnow emulation: dbt-snowflake's temporary table DDL changed: " ~ statement) %}
    {%- endif -%}
    {{ return(statement | replace('create or replace temporary table', 'create or replace table')) }}
{%- endmacro %}


{# Temporary views (the relation an incremental model's new rows are selected into before its
   MERGE). Snowflake creates a session-scoped temporary view in any schema; DuckDB, like its
   temporary tables, only in its `temp` catalog, so `create or replace temporary view
   DB.SCHEMA.X__dbt_tmp` fails on fakesnow the same way. Emulated, it is dbt-snowflake's own
   statement for an ordinary view (`is_temporary` false), which the incremental materialization
   drops again once merged (`drop_relation_if_exists(tmp_relation)`). Views that are not
   temporary (every view model) render exactly as dbt-snowflake renders them. #}
{% macro snowflake__create_view_as_with_temp_flag(relation, sql, is_temporary=False) -%}
    {{ return(dbt.snowflake__create_view_as_with_temp_flag(relation, sql, False)) }}
{%- endmacro %}


{# The other half of the temporary-table emulation: drop the snapshot's staging table once the
   snapshot is merged (Snowflake drops a temporary table with its session; dbt-snowflake has no
   post_snapshot of its own, dbt's default does nothing). #}
{% macro snowflake__post_snapshot(staging_relation) -%}
    {% do adapter.drop_relation(staging_relation) %}
{%- endmacro %}


{# The snapshot's MERGE. dbt writes `when not matched then insert (cols) values (cols)` with
   bare column names, which Snowflake resolves against the source; fakesnow rewrites a MERGE
   into DuckDB statements joining source and target, where a bare name both have is ambiguous
   ("Ambiguous reference to column name"). Emulated, it is dbt-snowflake's own MERGE with the
   inserted values qualified by the source alias (which means the same on Snowflake). #}
{% macro snowflake__snapshot_merge_sql(target, source, insert_cols) -%}
    {%- set statement = dbt.snowflake__snapshot_merge_sql(target, source, insert_cols) -%}
    {%- set bare = "values (" ~ insert_cols | join(', ') ~ ")" -%}
    {%- set qualified = [] -%}
    {%- for column in insert_cols -%}
        {%- do qualified.append("DBT_INTERNAL_SOURCE." ~ column) -%}
    {%- endfor -%}
    {%- if bare not in statement -%}
        {% do exceptions.raise_compiler_error("fakesnow emulation: dbt's snapshot MERGE changed: " ~ statement) %}
    {%- endif -%}
    {{ return(statement | replace(bare, "values (" ~ qualified | join(', ') ~ ")")) }}
{%- endmacro %}


{# The incremental MERGE (incremental_strategy='merge' with a unique_key, one column or
   several). The same bare `when not matched then insert (cols) values (cols)` as the
   snapshot's, and the same "Ambiguous reference to column name" on fakesnow. Emulated, it is
   dbt-snowflake's own MERGE with the inserted values (the last parenthesised column list)
   qualified by the source alias, which means the same on Snowflake. Without a unique_key
   dbt-snowflake writes a plain INSERT, left as it is. #}
{% macro snowflake__get_merge_sql(target, source_sql, unique_key, dest_columns, incremental_predicates) -%}
    {%- set statement = dbt.snowflake__get_merge_sql(
        target, source_sql, unique_key, dest_columns, incremental_predicates) -%}
    {%- if unique_key -%}
        {%- set names = dest_columns | map(attribute='name') | list -%}
        {%- set bare = "(" ~ get_quoted_csv(names) ~ ")" -%}
        {%- set qualified = [] -%}
        {%- for name in names -%}
            {%- do qualified.append("DBT_INTERNAL_SOURCE." ~ adapter.quote(name)) -%}
        {%- endfor -%}
        {%- set parts = statement.rpartition(bare) -%}
        {%- if not parts[1] or not parts[0].rstrip().endswith('values') -%}
            {% do exceptions.raise_compiler_error("fakesnow emulation: dbt's incremental MERGE changed: " ~ statement) %}
        {%- endif -%}
        {%- set statement = parts[0] ~ "(" ~ qualified | join(', ') ~ ")" ~ parts[2] -%}
    {%- endif -%}
    {{ return(statement) }}
{%- endmacro %}


{# Explicit transactions. dbt-snowflake wraps every MERGE, INSERT and DELETE it writes (the
   snapshot's merge, incremental models) in `begin; ...; commit;`. fakesnow keeps metadata of
   the tables a statement creates (its MERGE makes a work table) in a DuckDB database of its own,
   `_fs_global`, and a DuckDB transaction may write to one attached database only: inside
   `begin`, the MERGE fails ("a single transaction can only write to a single attached
   database"). Emulated, the statement runs without the explicit transaction, in fakesnow's
   autocommit. #}
{% macro snowflake_dml_explicit_transaction(dml) -%}
    {{ return(dml) }}
{%- endmacro %}


{# Masking policies. fakesnow (DuckDB) has none: `create masking policy` and `alter ... set
   masking policy` are syntax errors there, so `dbt run-operation apply_pii_masking` (through
   run_query), a step of the production chain, and the post-hook that attaches the policies again
   after each model is built (through run_hooks) would fail on the emulation. Emulated, those
   statements are skipped, each with a line in dbt's debug log that holds the statement up to a
   policy's body (the body holds the masking salt); every other query and hook runs as usual. The
   SQL the masking macros render is checked on its own, by parsing it as Snowflake SQL
   (tests/test_snowflake.py). #}
{% macro run_query(sql) -%}
    {%- if greenery_skipped_masking(sql) -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(dbt.run_query(sql)) }}
{%- endmacro %}

{% macro run_hooks(hooks, inside_transaction=True) -%}
    {%- set kept = [] -%}
    {%- for hook in hooks -%}
        {%- set masking = hook.get('transaction') == inside_transaction
            and greenery_skipped_masking(render(hook.get('sql'))) -%}
        {%- if not masking -%}
            {%- do kept.append(hook) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(dbt.run_hooks(kept, inside_transaction)) }}
{%- endmacro %}

{% macro greenery_skipped_masking(sql) -%}
    {#- Whether `sql` (one statement or several) is masking SQL the emulation skips; logs it if so. -#}
    {%- if 'masking policy' not in (sql | lower) -%}
        {{ return(false) }}
    {%- endif -%}
    {%- for statement in sql.split('->')[0].split(';') if statement | trim -%}
        {%- do log("Emulated Snowflake: fakesnow has no masking policies; skipped: " ~ (statement | trim), info=false) -%}
    {%- endfor -%}
    {{ return(true) }}
{%- endmacro %}
