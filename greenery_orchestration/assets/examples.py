"""The key of one row a failed dbt test found, for its check's line and the alert:
`3 failing row(s), threshold 0, e.g. event_id 8f3c…`; or, from a test that describes its failing
rows, what it says of each of the first few (`1 failing row(s), threshold 0: checkout on …`).

A row is named by its table's key as the dbt project already declares it: a model's or snapshot's
`unique_key`, else the column of the table's `unique` test or the columns of its
`unique_combination_of_columns` test, else (a staging model) its source's; never a key with a
column declared PII. The generic tests return their failing rows whole (dbt_project/tests/generic/),
and only the key is read out of them.

A test describes its rows by naming the column that does in its config meta
(`describes_failing_rows`, e.g. conversion_within_trailing_range.sql). A description is free text
built from any column the test reads, so it is shown only when no table the test reads declares a
PII column; otherwise the row is named by its key, as any other.
"""

from collections.abc import Callable, Iterable

from greenery_orchestration.rawdata.schema import is_pii

# The check's metadata entries that alerts.check_line shows.
EXAMPLE = "example_key"
DESCRIBED = "failing_rows"
# The test's config meta entry naming the column that describes each failing row.
DESCRIBES = "describes_failing_rows"
# An alert stays a few lines, however many rows failed (the check's count says how many).
MAX_DESCRIBED = 5
# A key that is free text (a promo code) stays one short line; a description, one longer line.
_MAX_VALUE_CHARS = 64
_MAX_DESCRIPTION_CHARS = 240


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
    # A staging model renames the one source it reads and keeps its rows, whose tests are on the
    # source (dbt_project/models/staging): the source's key names its rows.
    for unique_id, node in manifest["nodes"].items():
        parents = node["depends_on"].get("nodes", []) if node["resource_type"] == "model" else []
        if unique_id not in keys and len(parents) == 1 and parents[0] in manifest["sources"] and parents[0] in keys:
            keys[unique_id] = keys[parents[0]]
    return keys


def tested_node(test: dict) -> str | None:
    """The model, snapshot or source a generic test is on."""
    parents = test["depends_on"]["nodes"]
    return test.get("attached_node") or (parents[0] if len(parents) == 1 else None)


def failing_examples(query: Callable, manifest: dict, results: Iterable[dict]) -> dict[str, dict]:
    """{test id: check metadata naming its failing rows} for the failed and warned tests among
    dbt's run `results`, read with `query` (sql -> DataFrame) once dbt has released the warehouse:
    {DESCRIBED: [what the test says of each of its first rows]} or {EXAMPLE: "column value" of one}."""
    keys = row_keys(manifest)
    examples = {}
    for result in results:
        test = manifest["nodes"].get(result["unique_id"], {})
        compiled_code = result.get("compiled_code")
        if result["status"] not in ("fail", "warn") or test.get("resource_type") != "test" or not compiled_code:
            continue
        described_by = test["config"].get("meta", {}).get(DESCRIBES)
        key = keys.get(tested_node(test))
        # A test that counts something other than rows (a shrunk table, a reconciliation) has no row to name.
        counts_rows = test["config"].get("fail_calc", "count(*)") == "count(*)"
        if described_by and not reads_pii(manifest, test):
            if descriptions := _descriptions(query, compiled_code, described_by):
                examples[result["unique_id"]] = {DESCRIBED: descriptions}
        elif key and counts_rows:
            if example := _example(query, compiled_code, key):
                examples[result["unique_id"]] = {EXAMPLE: example}
    return examples


def reads_pii(manifest: dict, test: dict) -> bool:
    """A table the test reads declares a PII column."""
    tables = [manifest["nodes"].get(uid) or manifest["sources"].get(uid) for uid in test["depends_on"]["nodes"]]
    return any(is_pii(column) for table in tables if table for column in table["columns"].values())


def _example(query: Callable, compiled_code: str, key: tuple[str, ...]) -> str | None:
    frame = _failing_rows(
        query, compiled_code, key, f"where {' or '.join(f'{column} is not null' for column in key)} limit 1"
    )
    if frame is None or frame.empty:
        return None
    row = frame.iloc[0]
    return ", ".join(f"{column} {_shown(row[column.lower()])}" for column in key)


def _descriptions(query: Callable, compiled_code: str, column: str) -> list[str]:
    # In order, so a run's alert and its check say the same, whichever rows the database returns first.
    frame = _failing_rows(
        query, compiled_code, (column,), f"where {column} is not null order by {column} limit {MAX_DESCRIBED}"
    )
    if frame is None:
        return []
    return [_shown(value, _MAX_DESCRIPTION_CHARS) for value in frame[column.lower()]]


def _failing_rows(query: Callable, compiled_code: str, columns: tuple[str, ...], rest: str):
    # The newlines: the test's SQL may end in a comment.
    sql = f"select {', '.join(columns)} from (\n{compiled_code}\n) as failing {rest}"
    try:
        return query(sql)
    except Exception:  # noqa: BLE001
        # What is read here only adds to the check's line: a test whose rows lack the columns, or
        # any error here, leaves it out; the error is not shown, as it may quote a value.
        return None


def _shown(value, max_chars: int = _MAX_VALUE_CHARS) -> str:
    import pandas as pd  # noqa: PLC0415 - loaded with the frame already

    if value is None or pd.isna(value):
        return "null"
    text = " ".join(str(value).split())
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"
