"""SnowflakeWarehouse against the fakesnow server, through the real connector."""


def test_a_database_without_raw_tables_has_no_newest_rows_rather_than_an_error(account):
    """What the freshness sensor reads before the first load: every source stale with no rows
    (as on DuckDB), not a failed sensor tick."""
    shown = account.python(
        "from greenery_orchestration.project import prepare_manifest\n"
        "prepare_manifest()  # this database's relations, as greenery commands parse first\n"
        "from greenery_orchestration.assets.sources import freshness_criteria\n"
        "from greenery_orchestration.warehouse import open_warehouse\n"
        "warehouse = open_warehouse()\n"
        "with warehouse.get_connection() as connection:\n"
        "    connection.cursor().execute(f'create database if not exists {warehouse.database}')\n"
        "newest = warehouse.newest_loaded_at(freshness_criteria())\n"
        "print(sorted((key.to_user_string(), value) for key, value in newest.items()))\n"
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert shown.stdout.strip() == "[('raw/events', None), ('raw/orders', None)]"
