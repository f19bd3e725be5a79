"""The one line a failed dbt command is reported by, read from what real dbt runs left behind
(tests/dbt_failures, recorded by its record.py) and from real DuckDB errors."""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from greenery_orchestration.dbt_errors import MAX_CAUSE, dbt_failure, first_line, logged_error

RECORDED = Path(__file__).parent / "dbt_failures"


@dataclass
class RecordedInvocation:
    """A finished, failed dbt command as dagster-dbt leaves it: a target folder holding dbt's
    artifacts and log, the process's exit code, and the project's manifest."""

    target_path: Path
    manifest: dict

    @property
    def process(self):
        return _Process(int((self.target_path / "exit_code").read_text()))

    def is_successful(self) -> bool:
        return False

    def get_artifact(self, artifact: str) -> dict:
        return json.loads((self.target_path / artifact).read_text())


@dataclass
class _Process:
    returncode: int


@pytest.fixture(scope="module")
def manifest(dbt_manifest) -> dict:
    return json.loads(dbt_manifest.read_text())


def _failure(case: str, manifest: dict, **options):
    return dbt_failure(RecordedInvocation(RECORDED / case, manifest), **options)


def test_a_model_whose_column_is_gone_is_named_with_the_binder_error(manifest):
    failure = _failure("missing_column", manifest)

    assert failure.description == (
        'model staging.stg_greenery__orders: Binder Error: Referenced column "promo_id" not found in FROM clause!'
    )
    assert failure.metadata["exit_code"].value == 1
    (failed,) = failure.metadata["failed_nodes"].value
    assert failed["status"] == "error"


def test_a_full_disk_names_the_model_and_the_error_of_the_first_write_that_failed(manifest):
    failure = _failure("disk_full", manifest)

    assert re.fullmatch(
        r'model marts\.fct_events: TransactionContext Error: Failed to commit: Could not write file '
        r'"/\S+/prod\.duckdb\.wal": No space left on device \(and 1 more failure\(s\)\)',
        failure.description,
    ), failure.description
    assert [node["node"] for node in failure.metadata["failed_nodes"].value] == [
        "model marts.fct_events", "model intermediate.int_session_products__aggregated"
    ]


def test_a_test_that_found_rows_is_named_with_its_model_and_count(manifest):
    failure = _failure("failing_test", manifest)

    assert failure.description == (
        "test accepted_range_stg_greenery__order_items_quantity__1 on staging.stg_greenery__order_items: "
        "48 failing row(s)"
    )


def test_failing_tests_reported_as_checks_call_for_no_failure_of_their_own(manifest):
    assert _failure("failing_test", manifest, ignore_failed_tests=True) is None


def test_a_test_that_could_not_run_is_an_error_even_beside_failed_checks(manifest):
    failure = _failure("test_error", manifest, ignore_failed_tests=True)

    assert failure.description == (
        "test source_accepted_values_greenery_events_event_type__page_view__add_to_cart__checkout__package_shipped "
        'on raw.events: Binder Error: Referenced column "event_type" not found in FROM clause!'
    )


def test_an_error_outside_any_node_is_dbts_first_line_without_its_framing(manifest):
    failure = _failure("unknown_macro", manifest)

    assert failure.description == 'dbt could not find a macro with the name "no_such_macro" in any package'
    assert failure.metadata["exit_code"].value == 2
    assert failure.metadata["failed_nodes"].value == []


def test_without_run_results_a_node_error_is_still_read_from_the_log():
    lines = (RECORDED / "missing_column" / "dbt.log").read_text().splitlines()

    assert logged_error(lines) == 'Binder Error: Referenced column "promo_id" not found in FROM clause!'


def _duckdb_error(sql: str) -> str:
    with duckdb.connect() as connection, pytest.raises(duckdb.Error) as raised:
        connection.execute(sql)
    return str(raised.value)


@pytest.mark.parametrize(
    ("sql", "shown"),
    [
        ("select cast('wes.ellison151@example.net' as integer)",
         "Conversion Error: Could not convert string '…' to INT32"),
        ("select strptime('Wes Ellison', '%Y')",
         'Invalid Input Error: Could not parse string "…" according to format specifier "…"'),
        ("create table t (email varchar primary key); "
         "insert into t values ('wes.ellison151@example.net'), ('wes.ellison151@example.net')",
         'Constraint Error: PRIMARY KEY or UNIQUE constraint violation: duplicate key "…"'),
    ],
    ids=["cast", "strptime", "duplicate key"],
)
def test_an_error_about_values_shows_none_of_them(sql, shown):
    error = _duckdb_error(sql)
    assert "wes" in error.lower()  # DuckDB does quote the value

    assert first_line(error) == shown


def test_names_and_paths_stay_quoted_and_secrets_do_not(monkeypatch):
    monkeypatch.setenv("SNOWFLAKE_PASSWORD", "s3cret-Pa55")
    with pytest.raises(duckdb.Error) as raised:
        duckdb.connect("/nonexistent/s3cret-Pa55/prod.duckdb")

    assert first_line(str(raised.value)) == 'IO Error: Cannot open file "/nonexistent/***/prod.duckdb": No such file or directory'


def test_a_long_first_line_is_cut_short():
    error = _duckdb_error(f"select * from {'x' * 400}")

    assert len(first_line(error)) == MAX_CAUSE and first_line(error).endswith("…")
