{# dbt-duckdb's incremental materialization, for write-audit-publish (generate_alias_name.sql).

   A staged build must not touch the published table, nor copy it (at 100M events that is the
   whole warehouse again). So the new rows go to `<name>__delta`, and `<name>__staged` is a view
   of the published rows the delta does not replace plus the delta: downstream models and tests
   read the table as it will be, and the publish step merges the delta in (cost: the delta). A
   first build or a full refresh stages a whole table instead, which the publish renames.

   Unstaged (a developer's `dbt build`), the delta is merged into the table at once, in one
   transaction. Either way the merge is by `unique_key` (delete, then insert), and a delta whose
   columns differ from the table's fails (`on_schema_change='fail'`): run a full refresh.
   A model may declare `meta: {merge_since: <timestamp column>}`, a column whose value in a
   rebuilt row is never later than in the row it replaces (a session's start, as events are only
   added): the published rows earlier than the delta's earliest value then cannot be replaced, and
   neither the merge nor a read of the staged view matches them against the delta's keys (a scan
   of every published key is most of the cost of a small delta into a large table; wap.py and
   clone_duckdb.py bound their merges the same way).
   A model without a `unique_key` (incremental_strategy 'append', as in dbt) only adds rows: the
   staged view is the published table and the delta, and publishing inserts the delta, with no
   scan of the published keys (its `unique` tests read every row whose key the delta holds:
   get_where_subquery.sql). #}
{% materialization incremental, adapter='duckdb' %}
    {%- set published = published_relation(this) -%}
    {%- set staged = this if this.identifier != published.identifier else none -%}
    {%- set delta = delta_relation(published) -%}
    {%- set unique_key = config.get('unique_key') or [] -%}
    {%- set keys = [unique_key] if unique_key is string else unique_key -%}

    {%- do drop_relation_if_exists(load_cached_relation(delta)) -%}
    {%- if staged is not none -%}
        {%- do drop_relation_if_exists(load_cached_relation(staged)) -%}
    {%- endif -%}
    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {%- if not is_incremental() -%}
        {%- set target = staged or published -%}
        {%- call statement('main') -%}
            {%- if staged is none %}drop table if exists {{ published }};{% endif %}
            {{ create_table_as(False, target.incorporate(type='table'), compiled_code) }}
        {%- endcall -%}
        {%- set built = target.incorporate(type='table') -%}
    {%- else -%}
        {%- do run_query(create_table_as(False, delta.incorporate(type='table'), compiled_code)) -%}
        {%- do adapter.cache_added(delta.incorporate(type='table')) -%}
        {%- set columns = adapter.get_columns_in_relation(published) | map(attribute='name') | list -%}
        {%- set delta_columns = adapter.get_columns_in_relation(delta) | map(attribute='name') | list -%}
        {%- if (columns | map('lower') | list) != (delta_columns | map('lower') | list) -%}
            {#- The remedy first: a step's line of the error is cut short. #}
            {%- set added = delta_columns | map('lower') | reject('in', columns | map('lower') | list) | list -%}
            {%- set removed = columns | map('lower') | reject('in', delta_columns | map('lower') | list) | list -%}
            {%- do exceptions.raise_compiler_error(
                "Rebuild " ~ model.name ~ " with a full refresh (greenery run --full-refresh): its columns changed ("
                ~ ("added " ~ added | join(', ') if added else "")
                ~ ("; " if added and removed else "")
                ~ ("removed " ~ removed | join(', ') if removed else "")
                ~ ("reordered" if not added and not removed else "") ~ ")") -%}
        {%- endif -%}
        {%- set since_column = (config.get('meta') or {}).get('merge_since') if keys else none -%}
        {%- set earliest = _first_value('select min(' ~ since_column ~ ') from ' ~ delta) if since_column else none -%}
        {%- set since = (since_column, timestamp_literal(earliest)) if earliest is not none else none -%}
        {%- call statement('main') -%}
            {%- if staged is not none -%}
                create view {{ staged }} as
                {% if keys -%}
                {{ published_rows_not_in_delta(published, delta, keys, columns, since) }}
                {%- else -%}
                select {{ get_quoted_csv(columns) }} from {{ published }}
                {%- endif %}
                union all
                select {{ get_quoted_csv(columns) }} from {{ delta }}
            {%- else -%}
                {{ merge_delta_sql(published, delta, keys, columns, since) }};
                drop table {{ delta }}
            {%- endif -%}
        {%- endcall -%}
        {%- if staged is none -%}
            {%- do adapter.cache_dropped(delta) -%}
        {%- endif -%}
        {%- set built = staged.incorporate(type='view') if staged is not none else published -%}
    {%- endif -%}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {%- do adapter.commit() -%}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [built]}) }}
{% endmaterialization %}


{# Where a staged build of `relation` writes its changes: `<published name>__delta`. #}
{% macro delta_relation(relation) -%}
    {%- set published = published_relation(relation) -%}
    {{ return(published.incorporate(path={'identifier': published.identifier ~ '__delta'})) }}
{%- endmacro %}

{# The delta a staged build of `relation` (by its staged name) wrote, if there is one: none on
   Snowflake, whose staged relations are whole tables in a staged schema. #}
{% macro staged_delta(relation) -%}
    {%- if published_relation(relation).identifier == relation.identifier -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(load_cached_relation(delta_relation(relation))) }}
{%- endmacro %}


{# The published rows the delta does not replace. With `since` (a column and the delta's earliest
   value of it, as SQL), the rows earlier than that are taken without matching their keys. #}
{% macro published_rows_not_in_delta(published, delta, keys, columns, since=none) -%}
    {%- if since is not none %}
    select {{ get_quoted_csv(columns) }} from {{ published }} as published
    where published.{{ since[0] }} < {{ since[1] }}
    union all
    {% endif -%}
    select {{ get_quoted_csv(columns) }} from {{ published }} as published
    where {{ _since_condition(since) }} not exists (
        select 1 from {{ delta }} as delta
        where {% for key in keys %}delta.{{ key }} = published.{{ key }}{% if not loop.last %} and {% endif %}{% endfor %}
    )
{%- endmacro %}


{# The delta into the table, by unique key (with none, added), when not staged. #}
{% macro merge_delta_sql(published, delta, keys, columns, since=none) -%}
    {% if keys -%}
    delete from {{ published }} as published
    where {{ _since_condition(since) }} exists (
        select 1 from {{ delta }} as delta
        where {% for key in keys %}delta.{{ key }} = published.{{ key }}{% if not loop.last %} and {% endif %}{% endfor %}
    );
    {% endif -%}
    insert into {{ published }} ({{ get_quoted_csv(columns) }})
    select {{ get_quoted_csv(columns) }} from {{ delta }}
{%- endmacro %}


{# The published rows a delta can replace, as the start of a condition: those from its earliest
   `since` value on (a null is not earlier), or all of them. #}
{% macro _since_condition(since) -%}
    {%- if since is not none -%}
    (published.{{ since[0] }} >= {{ since[1] }} or published.{{ since[0] }} is null) and
    {%- endif -%}
{%- endmacro %}
