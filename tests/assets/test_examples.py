"""Which key names a failing row, and when none does: from the dbt manifest, with a stand-in query
(the chain tests in tests/test_contracts.py and tests/chain/test_run.py read real warehouses)."""

import copy
import json

import pandas as pd
import pytest

from greenery_orchestration.assets.examples import DESCRIBED, EXAMPLE, failing_examples, row_keys

SOURCE = "source.greenery.greenery."


@pytest.fixture(scope="module")
def manifest(dbt_manifest):
    return json.loads(dbt_manifest.read_text())


def _test_id(manifest: dict, name: str) -> str:
    (unique_id,) = [uid for uid, node in manifest["nodes"].items() if node["name"] == name]
    return unique_id


def test_each_table_is_keyed_as_the_project_already_declares_it(manifest):
    keys = row_keys(manifest)
    # A `unique` test, or order_items' unique_combination_of_columns.
    assert {uid.removeprefix(SOURCE): key for uid, key in keys.items() if uid.startswith(SOURCE)} == {
        "addresses": ("address_id",), "events": ("event_id",), "order_items": ("order_id", "product_id"),
        "orders": ("order_id",), "products": ("product_id",), "promos": ("promo_id",), "users": ("user_id",),
    }
    # A staging model, tested on its source: the source's key.
    assert keys["model.greenery.stg_greenery__order_items"] == ("order_id", "product_id")
    assert keys["model.greenery.stg_greenery__users"] == ("user_id",)
    assert keys["model.greenery.fct_sessions"] == ("session_id",)  # unique_key
    assert keys["snapshot.greenery.orders_snapshot"] == ("order_id",)


def test_a_column_declared_pii_is_never_a_key(manifest):
    changed = copy.deepcopy(manifest)
    changed["nodes"][_test_id(changed, "source_unique_greenery_users_user_id")]["column_name"] = "email"
    keys = row_keys(changed)
    assert SOURCE + "users" not in keys
    assert "model.greenery.stg_greenery__users" not in keys  # nor its staging model's


def test_only_failed_row_tests_with_a_key_are_read_and_an_error_leaves_the_example_out(manifest):
    asked = []

    def query(sql: str) -> pd.DataFrame:
        asked.append(sql)
        if "broken" in sql:
            raise RuntimeError("Conversion Error: could not convert 'jane@example.com'")
        return pd.DataFrame({"event_id": ["e-1"]})

    def result(name: str, status: str = "fail", sql: str = "select * from raw.events") -> dict:
        return {"unique_id": _test_id(manifest, name), "status": status, "compiled_code": sql}

    named = result("source_not_in_future_greenery_events_created_at")
    results = [
        named,
        result("source_unique_greenery_events_event_id", sql="broken"),
        result("source_not_empty_nor_shrunk_greenery_events"),  # a count, not rows: not read
        result("source_not_null_greenery_events_session_id", status="pass"),
        result("source_not_null_greenery_order_items_order_id"),  # no key: not read
    ]
    # Without the test that keys raw order_items, nothing names its rows.
    keyless = copy.deepcopy(manifest)
    del keyless["nodes"][_test_id(keyless, "source_unique_combination_of_columns_greenery_order_items_order_id__product_id")]
    assert failing_examples(query, keyless, results) == {named["unique_id"]: {EXAMPLE: "event_id e-1"}}
    assert len(asked) == 2
    # Only the key is read out of the failing rows.
    assert asked[0].startswith("select event_id from (\nselect * from raw.events\n) as failing where")


def test_a_test_that_describes_its_rows_shows_its_descriptions_unless_it_reads_a_pii_column(manifest):
    anomaly = _test_id(manifest, "fct_funnel_daily_conversion_within_trailing_range")
    results = [{"unique_id": anomaly, "status": "warn", "compiled_code": "select 1"}]
    asked = []

    def query(sql: str) -> pd.DataFrame:
        asked.append(sql)
        if sql.startswith("select description"):
            return pd.DataFrame({"description": ["checkout on 2026-11-20: 31.2% of add_to_cart sessions, …"]})
        return pd.DataFrame({"session_date": ["2026-11-20"], "step_number": [3]})

    assert failing_examples(query, manifest, results) == {
        anomaly: {DESCRIBED: ["checkout on 2026-11-20: 31.2% of add_to_cart sessions, …"]}
    }
    assert asked[-1].endswith("as failing where description is not null order by description limit 5")

    # A description may quote any column the test reads: with a PII column there, the key names the row.
    reading_pii = copy.deepcopy(manifest)
    column = reading_pii["nodes"]["model.greenery.fct_funnel_daily"]["columns"]["funnel_step"]
    column.setdefault("config", {}).setdefault("meta", {})["pii"] = True
    named = {anomaly: {EXAMPLE: "session_date 2026-11-20, step_number 3"}}
    assert failing_examples(query, reading_pii, results) == named
