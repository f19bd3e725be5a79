"""The key of one row a failed dbt test found, for its check's line and the alert:
`3 failing row(s), threshold 0, e.g. event_id 8f3c…`.

A row is named by its table's key as the dbt project already declares it: a model's or snapshot's
`unique_key`, else the column of the table's `unique` test or the columns of its
`unique_combination_of_columns` test; never a key with a column declared PII. The generic tests
return their failing rows whole (dbt_project/tests/generic/), and only the key is read out of them.
"""

from collections.abc import Callable, Iterable

from greenery_orchestration.rawdata.schema import is_pii

# The check's metadata entry that alerts.check_line shows.
EXAMPLE = "example_key"
# A key that is free text (a promo code) stays one short line.
_MAX_VALUE_CHARS = 64


def row_keys(manifest: dict) -> dict[str, tuple[str, ...]]:
    """{source, model or snapshot id: the columns that name one of its rows}, where it has a key."""
    candidates: dict[str, list[tuple[str, ...]]] = {}
    for node in manifest["nodes"].values():
        test = node.get("test_metadata") or {}
        if test.get("name") == "unique":
            columns = (node["column_name"],)
        elif test.get("name") == "unique_combination_of_columns":
            columns = tuple(test["kwargs"]["combination_of_columns"])
        else:
            continue
        candidates.setdefault(tested_node(node), []).append(columns)
    for unique_id, node in manifest["nodes"].items():
        unique_key = node["config"].get("unique_key") if node["resource_type"] in ("model", "snapshot") else None
        if unique_key:
            candidates[unique_id] = [(unique_key,) if isinstance(unique_key, str) else tuple(unique_key)]
    keys = {}
    for unique_id, keyed in candidates.items():
        table = manifest["nodes"].get(unique_id) or manifest["sources"].get(unique_id)
        if table is None:
            continue
        pii = {name.lower() for name, column in table["columns"].items() if is_pii(column)}
        named = [columns for columns in keyed if not pii & {column.lower() for column in columns}]
        if named:
            keys[unique_id] = min(named, key=len)
    return keys


def tested_node(test: dict) -> str | None:
    """The model, snapshot or source a generic test is on."""
    parents = test["depends_on"]["nodes"]
    return test.get("attached_node") or (parents[0] if len(parents) == 1 else None)


def failing_examples(query: Callable, manifest: dict, results: Iterable[dict]) -> dict[str, str]:
    """{test id: "column value" of one failing row} for the failed and warned tests among dbt's
    run `results`, read with `query` (sql -> DataFrame) once dbt has released the warehouse."""
    keys = row_keys(manifest)
    examples = {}
    for result in results:
        test = manifest["nodes"].get(result["unique_id"], {})
        if result["status"] not in ("fail", "warn") or test.get("resource_type") != "test":
            continue
        key = keys.get(tested_node(test))
        # A test that counts something other than rows (a shrunk table, a reconciliation) has no row to name.
        counts_rows = test["config"].get("fail_calc", "count(*)") == "count(*)"
        if key and counts_rows and result.get("compiled_code"):
            if example := _example(query, result["compiled_code"], key):
                examples[result["unique_id"]] = example
    return examples


def _example(query: Callable, compiled_code: str, key: tuple[str, ...]) -> str | None:
    # The newlines: the test's SQL may end in a comment.
    sql = (
        f"select {', '.join(key)} from (\n{compiled_code}\n) as failing "
        f"where {' or '.join(f'{column} is not null' for column in key)} limit 1"
    )
    try:
        frame = query(sql)
    except Exception:  # noqa: BLE001
        # The example only adds to the check's line: a test whose rows lack the key, or any error
        # here, leaves it out; the error is not shown, as it may quote a value.
        return None
    if frame.empty:
        return None
    row = frame.iloc[0]
    return ", ".join(f"{column} {_shown(row[column.lower()])}" for column in key)


def _shown(value) -> str:
    import pandas as pd  # noqa: PLC0415 - loaded with the frame already

    if value is None or pd.isna(value):
        return "null"
    text = " ".join(str(value).split())
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 1] + "…"
