{# dbt's snapshot materialization on DuckDB, for write-audit-publish (generate_alias_name.sql).

   A staged build must not touch the published history, nor copy it (a copy cost the whole
   snapshot every run: 11 s of a +1% run at 70M events). So the changes go to `<name>__delta`:
   the current versions this run closes, with their `dbt_valid_to` set, and the versions it adds;
   and `<name>__staged` is a view of the published versions the delta does not replace plus the
   delta. The snapshot's tests read the history as it will be, and the publish step merges the
   delta in by `dbt_scd_id` (wap.py), as it merges an incremental model's. dbt decides what
   changed, as in its own materialization: its staging table of the query against the published
   current versions.

   Unstaged (a developer's `dbt snapshot`), a first snapshot, a query whose columns differ from
   the history's (dbt adds the new ones) or a `dbt_valid_to_current`: dbt's own materialization,
   on a staged copy of the history when there is one. #}
{% materialization snapshot, adapter='duckdb' %}
    {%- set published = published_relation(this) -%}
    {%- if this.identifier == published.identifier -%}
        {{ return(materialization_snapshot_default()) }}
    {%- endif -%}
    {%- set delta = delta_relation(published) -%}
    {%- do drop_relation_if_exists(load_cached_relation(delta)) -%}
    {%- do drop_relation_if_exists(load_cached_relation(this)) -%}
    {%- set published = load_cached_relation(published) -%}
    {%- if published is none -%}
        {{ return(materialization_snapshot_default()) }}
    {%- endif -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}
    {#- The `check` strategy looks for new columns in the relation the node's alias names. -#}
    {%- set node = model.copy() -%}
    {%- do node.update({'alias': published.identifier}) -%}
    {%- set strategy = strategy_dispatch(config.get('strategy'))(node, "snapshotted_data", "source_data", model['config'], true) -%}
    {%- set names = config.get("snapshot_table_column_names") or get_snapshot_table_column_names() -%}
    {%- do adapter.assert_valid_snapshot_target_given_strategy(published, names, strategy) -%}
    {%- set changes = build_snapshot_staging_table(strategy, sql, published) -%}
    {%- set columns = adapter.get_columns_in_relation(published) | map(attribute='name') | list -%}
    {%- set change_columns = [] -%}
    {%- for column in adapter.get_columns_in_relation(changes) -%}
        {%- if column.name | lower != 'dbt_change_type' and not (column.name | lower).startswith('dbt_unique_key') -%}
            {%- do change_columns.append(column.name | lower) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if (columns | map('lower') | sort) != (change_columns | sort) or config.get('dbt_valid_to_current') -%}
        {%- do post_snapshot(changes) -%}
        {%- call statement('stage_a_copy') -%}
            create table {{ this }} as select * from {{ published }}
        {%- endcall -%}
        {%- do adapter.cache_added(this.incorporate(type='table')) -%}
        {{ return(materialization_snapshot_default()) }}
    {%- endif -%}

    {%- call statement('main') -%}
        create table {{ delta }} as
        select
            {%- for column in columns %}
            {% if column | lower == names.dbt_valid_to | lower %}changes.{{ adapter.quote(column) }}{% else %}published.{{ adapter.quote(column) }}{% endif %}
            {%- if not loop.last %},{% endif %}
            {%- endfor %}
        from {{ published }} as published
        inner join {{ changes }} as changes
            on changes.{{ names.dbt_scd_id }} = published.{{ names.dbt_scd_id }}
        where changes.dbt_change_type in ('update', 'delete')
            and published.{{ names.dbt_valid_to }} is null
        union all
        select {{ get_quoted_csv(columns) }} from {{ changes }} where dbt_change_type = 'insert';

        create view {{ this }} as
        {{ published_rows_not_in_delta(published, delta, [names.dbt_scd_id], columns) }}
        union all
        select {{ get_quoted_csv(columns) }} from {{ delta }}
    {%- endcall -%}

    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {%- do adapter.commit() -%}
    {%- do post_snapshot(changes) -%}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [this.incorporate(type='view')]}) }}
{% endmaterialization %}
