import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from greenery_orchestration.cli import main
from tests.conftest import another_writer

GREENERY = str(Path(sys.executable).with_name("greenery"))


def test_help_lists_every_command():
    shown = subprocess.run([GREENERY, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ["load-csv", "sample", "run", "funnel"]:
        assert command in shown
    assert "GREENERY_WAREHOUSE_DIR" in shown


def test_load_csv_with_a_bad_value_exits_2_naming_the_problem(warehouse, course_data, tmp_path, capsys):
    folder = tmp_path / "csv"
    shutil.copytree(course_data, folder)
    events = pd.read_csv(folder / "events.csv", dtype=str)
    events.loc[2, "created_at"] = "yesterday"
    events.to_csv(folder / "events.csv", index=False)

    assert main(["load-csv", str(folder)]) == 2

    error = capsys.readouterr().err
    assert "events.csv, column created_at: 1 value(s) do not parse as timestamp" in error
    assert "line 4: 'yesterday'" in error
    assert "raw tables are unchanged" in error


def test_funnel_before_any_run_says_what_to_do(warehouse, capsys):
    assert main(["funnel"]) == 2
    assert "greenery sample" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        ("step", r"\| checkout +\| +361 \| 77\.3% +\| 22\.7% +\| 62\.5%"),
        ("user", r"\| checkout +\| +124 \| 100\.0%"),
        ("product", r"\| Orchid +\|"),
        ("day", r"\| 2021-02-11 +\| checkout +\| +184 \|"),
        # Seconds, not a percentage: 467 sessions reached the cart, in a median 83 s.
        ("time", r"\| page_view +\| add_to_cart +\| +467 \| +86\.\d+ \| +83 \|"),
        ("breakdown", r"\| is_high_volume_user +\| true +\| checkout +\| +2 \|"),
    ],
)
def test_funnel_prints_each_mart_after_a_run(by, expected, course_run, capsys, monkeypatch):
    monkeypatch.setenv("GREENERY_WAREHOUSE_DIR", str(course_run.warehouse))
    assert main(["funnel", "--by", by]) == 0
    assert re.search(expected, capsys.readouterr().out)


def test_load_csv_while_a_run_holds_the_warehouse_says_so(warehouse, course_data, capsys):
    with another_writer(warehouse / "prod.duckdb"):
        assert main(["load-csv", str(course_data)]) == 3
    assert "the warehouse is in use by another process" in capsys.readouterr().err


def _truncated(built: Path, folder: Path) -> Path:
    folder.mkdir()
    copy = folder / "prod.duckdb"
    shutil.copy(built, copy)
    with copy.open("r+b") as handle:
        handle.truncate(copy.stat().st_size * 2 // 3)
    return copy


def _bad_checksum(built: Path, folder: Path) -> Path:
    folder.mkdir()
    copy = folder / "prod.duckdb"
    shutil.copy(built, copy)
    with copy.open("r+b") as handle:
        handle.seek(4096)  # the first database header, behind its checksum
        handle.write(bytes(4096))
    return copy


def _garbage(folder: Path) -> Path:
    folder.mkdir()
    copy = folder / "prod.duckdb"
    copy.write_bytes(b"DUCK" + bytes(range(256)) * 64)
    return copy


@pytest.mark.parametrize("damage", ["truncated", "bad checksum", "not a database"])
@pytest.mark.parametrize("command", [["run"], ["funnel"]])
def test_a_damaged_warehouse_is_refused_in_one_line_before_anything_writes(command, damage, course_run, tmp_path):
    folder = tmp_path / "warehouse"
    built = course_run.warehouse / "prod.duckdb"
    damaged = {"truncated": lambda: _truncated(built, folder), "bad checksum": lambda: _bad_checksum(built, folder),
               "not a database": lambda: _garbage(folder)}[damage]()
    before = damaged.read_bytes()

    result = subprocess.run(
        [GREENERY, *command], capture_output=True, text=True, timeout=120,
        env={**os.environ, "GREENERY_WAREHOUSE_DIR": str(folder), "DAGSTER_HOME": str(tmp_path / "home")},
    )

    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert str(damaged) in line
    assert ("is truncated" if damage == "truncated" else "is not a readable DuckDB database") in line
    assert damaged.read_bytes() == before  # nothing wrote to it
    assert sorted(p.name for p in folder.glob("*.duckdb*")) == ["prod.duckdb"]  # no WAL, no clone


def test_the_funnel_says_when_it_is_older_than_its_freshness_policy(course_run):
    from greenery_orchestration.funnel import provenance
    from greenery_orchestration.wap import last_publish

    with duckdb.connect(str(course_run.warehouse / "prod.duckdb"), read_only=True) as connection:
        published = last_publish(connection)
    run_id, at = published[0], published[1].replace(tzinfo=UTC)
    with course_run.instance() as instance:
        (run,) = instance.get_runs(dg.RunsFilter(job_name="greenery_production"), limit=1)
        fresh, late, stale = (provenance(instance, published, now=at + timedelta(hours=h)) for h in (1, 5, 13))
    assert run_id == run.run_id  # the publish log names the run that published
    assert fresh == [f"Built by run {run_id[:8]} at {at:%Y-%m-%d %H:%M} UTC (60 min ago)."]
    assert late[1] == "Note: built 5 h ago, older than the 4 h the marts' freshness policy allows (warn after 4 h, fail after 12 h)."
    assert stale[1].startswith("WARNING: built 13 h ago, older than the 12 h")


def test_raw_data_does_not_change_while_a_run_holds_its_turn(warehouse, course_data, capsys):
    """Between two steps of a run the warehouse file is free; the run's turn still keeps loads out."""
    assert main(["sample", "--days", "1", "--sessions-per-day", "20"]) == 0
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, sys; lock = open(sys.argv[1], 'a+'); fcntl.flock(lock, fcntl.LOCK_EX); "
         "lock.write('greenery run (run 1234abcd, pid 42)'); lock.flush(); print('held', flush=True); sys.stdin.read()",
         str(warehouse / ".greenery-run.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        assert main(["load-csv", str(course_data)]) == 3
        assert main(["sample", "--append"]) == 3
    finally:
        holder.communicate("", timeout=30)

    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == ["greenery: the warehouse is in use by greenery run (run 1234abcd, pid 42); nothing was written. "
                      "Try again when it ends."] * 2
    with duckdb.connect(str(warehouse / "prod.duckdb"), read_only=True) as connection:
        assert connection.execute("select count(*) from ops.load_log").fetchone() == (1,)  # the sample's own
