"""The user's own path: the `greenery` command in a copy of the project as a clone has it (no
dbt manifest, no warehouse, no instance), in subprocesses, with nothing set but the defaults.

The rest of the suite parses the dbt project at session start; this file is what would have
caught `make run` crashing on a fresh clone.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from greenery_orchestration.settings import REPO_DIR

GREENERY = str(Path(sys.executable).with_name("greenery"))
# What `greenery` reads from the environment; a user starts with none of it.
SETTINGS = ("GREENERY_", "DAGSTER_HOME", "DAGSTER_PG_", "SNOWFLAKE_")


@pytest.fixture
def fresh_clone(tmp_path) -> Path:
    """The files a clone of this checkout has (work not yet committed included), nothing built."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_DIR, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    clone = tmp_path / "clone"
    for name in filter(None, listed):
        source = REPO_DIR / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            (clone / name).write_bytes(source.read_bytes())
    assert not (clone / "dbt_project" / "target").exists()
    return clone


def greenery(clone: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [GREENERY, *args], cwd=clone, env=_user_env(clone), capture_output=True, text=True, timeout=timeout
    )


def _user_env(clone: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(SETTINGS)}
    # The installed `greenery` imports the package from the clone, as it would from its own checkout.
    return {**env, "PYTHONPATH": str(clone)}


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_the_clone_imports_its_own_code(fresh_clone):
    shown = subprocess.run(
        [sys.executable, "-c", "from greenery_orchestration.settings import REPO_DIR; print(REPO_DIR)"],
        cwd=fresh_clone, env=_user_env(fresh_clone), capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert shown == str(fresh_clone)


def test_make_runs_commands_end_with_the_funnel(fresh_clone):
    """What `make run` runs once its venv exists: sample, then run."""
    sample = greenery(fresh_clone, "sample")
    assert sample.returncode == 0, sample.stderr

    result = greenery(fresh_clone, "run")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "Parsed the dbt project." in result.stdout
    table = result.stdout[result.stdout.index("Funnel by step"):]
    assert "| page_view" in table and "| checkout" in table
    readme = (fresh_clone / "README.md").read_text()
    shown_in_readme = readme.split("`make run` ends with the funnel", 1)[1].split("```")[1].strip()
    assert shown_in_readme in table  # the README shows what a user will see
    assert (fresh_clone / "warehouse" / "prod.duckdb").exists()
    assert (fresh_clone / ".dagster" / "dagster.yaml").exists()
    # Each line a person reads; dbt's per-node lines and colour codes only with --verbose.
    assert len(result.stdout.splitlines()) < 60
    assert "\x1b[" not in result.stdout and " START " not in result.stdout

    again = greenery(fresh_clone, "funnel", "--by", "day")
    assert again.returncode == 0, again.stderr
    assert "Built by run" in again.stdout
    assert " 00:00:00" not in again.stdout  # days print as dates


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["run"], "run `greenery sample` or `greenery load-csv DIR` first"),
        (["funnel"], "run `greenery sample` and `greenery run` first"),
        (["docs"], "run `greenery run` first"),
        (["load-csv", "no-such-folder"], "no-such-folder"),
    ],
)
def test_a_command_that_needs_an_earlier_one_says_which_in_one_line(fresh_clone, command, says):
    result = greenery(fresh_clone, *command)

    assert result.returncode == 2
    assert says in _one_line_error(result)
    assert not list((fresh_clone / "warehouse").glob(".greenery-run.lock"))  # it queued for no turn
    assert not (fresh_clone / ".dagster" / "history").exists()  # and recorded no run


def test_load_csv_works_as_the_first_command(fresh_clone, course_data):
    result = greenery(fresh_clone, "load-csv", str(course_data))

    assert result.returncode == 0, result.stderr
    assert "raw.events: 3,553 rows" in result.stdout


def test_ui_works_as_the_first_command(fresh_clone):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ui = subprocess.Popen(
        [GREENERY, "ui", "--port", str(port)], cwd=fresh_clone, env=_user_env(fresh_clone),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and ui.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(1)
        assert ui.poll() is None, ui.stderr.read()
        assert (fresh_clone / "dbt_project" / "target" / "duckdb" / "manifest.json").exists()  # the default target
        assert _code_location_status(port, deadline) == "RepositoryLocation"  # loaded, not an error
    finally:
        ui.send_signal(signal.SIGTERM)
        out, err = ui.communicate(timeout=60)
    assert ui.returncode == 0
    assert "Traceback" not in out + err


def _code_location_status(port: int, deadline: float) -> str:
    query = b'{"query": "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { __typename } } } } }"}'
    status = None
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/graphql", data=query, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                entries = json.load(response)["data"]["workspaceOrError"]["locationEntries"]
            status = (entries[0]["locationOrLoadError"] or {}).get("__typename")
        except (OSError, KeyError, IndexError):
            status = None
        if status in ("RepositoryLocation", "PythonError"):
            return status
        time.sleep(1)
    return status
