"""Shared fixtures: a throwaway Dagster instance and warehouse per test, the real course data."""

import json
import os
import shutil
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from greenery_orchestration.settings import REPO_DIR

COURSE_DATA = REPO_DIR.parent / "shared" / "greenery"


@pytest.fixture(scope="session", autouse=True)
def dagster_home(tmp_path_factory) -> Path:
    """One instance for the session, configured by the project's own dagster.yaml."""
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(REPO_DIR / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    return home


def pytest_sessionstart(session):
    """Parse the dbt project before any test module imports the definitions built from it
    (on a fresh clone there is no manifest yet)."""
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    from greenery_orchestration.project import prepare_manifest

    prepare_manifest()


# The longest test files, longest first (seconds of `--durations` on the 2-core VM, 2026-12-05).
# xdist hands each worker whole files in collection order (`--no-loadscope-reorder`): its default
# order, most tests first, left a long file with few tests to run alone at the end (15:21 wall for
# 14:12 of work per worker).
LONGEST_FIRST = [
    "chain/test_incremental.py",  # 211
    "snowflake_server/test_greenery_on_snowflake.py",  # 199
    "chain/test_faults.py",  # 189
    "test_ui.py",  # 146
    "test_snowflake.py",  # 142
    "chain/test_run.py",  # 116
    "test_fresh_clone.py",  # 73
    "snowflake_server/test_wap_snowflake.py",  # 62
]


def pytest_collection_modifyitems(items):
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.relative_to(REPO_DIR / "tests").as_posix(), len(rank)))


@pytest.fixture(scope="session")
def dbt_manifest() -> Path:
    from greenery_orchestration.project import greenery_project

    return greenery_project.manifest_path


@pytest.fixture(scope="session")
def _warehouse_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("warehouse_home")


@pytest.fixture
def warehouse(_warehouse_home, tmp_path, monkeypatch) -> Path:
    """An empty warehouse folder of this test's own, at the same path in every test of a session
    (emptied in between): dbt parses the whole project again for each new warehouse path."""
    folder = _warehouse_home / "warehouse"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    monkeypatch.setenv("GREENERY_WAREHOUSE_DIR", str(folder))
    monkeypatch.setenv("GREENERY_DOCS_DIR", str(tmp_path / "docs-site"))
    return folder


@contextmanager
def another_writer(database: Path):
    """Another process holding the one write lock DuckDB allows on `database`, as a run does."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); sys.stdin.read()",
         str(database)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.communicate("", timeout=30)


@pytest.fixture(scope="session")
def course_data() -> Path:
    if not (COURSE_DATA / "events.csv").exists():
        pytest.skip(f"the course data is not at {COURSE_DATA}")
    return COURSE_DATA


class AlertInbox:
    """A webhook receiver on 127.0.0.1: every JSON body posted to it, in order."""

    def __init__(self):
        self.received: list[dict] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                inbox.received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_port}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def titles(self) -> list[str]:
        return [alert["title"] for alert in self.received]


@pytest.fixture
def alert_inbox(monkeypatch):
    """GREENERY_ALERT_URLS pointed at a real HTTP server of this test's own."""
    inbox = AlertInbox()
    monkeypatch.setenv("GREENERY_ALERT_URLS", inbox.url)
    yield inbox
    inbox.server.shutdown()
    inbox.server.server_close()


@dataclass
class CourseRun:
    warehouse: Path
    alerts: list[dict]  # what the run posted to its webhook
    dagster_home: Path

    def instance(self):
        import dagster as dg

        return dg.DagsterInstance.from_config(str(self.dagster_home))


@pytest.fixture(scope="session")
def course_run(course_data, tmp_path_factory, worker_id) -> CourseRun:
    """The course data loaded and `greenery run --allow-stale` done once per test session: the
    first xdist worker to need it runs it, the others wait and read the same files (read only)."""
    from filelock import FileLock

    from greenery_orchestration.cli import main

    session = tmp_path_factory.getbasetemp()
    folder = (session if worker_id == "master" else session.parent) / "course_run"
    run = CourseRun(folder / "warehouse", [], folder / "dagster_home")
    received = folder / "alerts.json"
    with FileLock(f"{folder}.lock"):
        if not received.exists():
            shutil.rmtree(folder, ignore_errors=True)
            run.dagster_home.mkdir(parents=True)
            run.warehouse.mkdir()
            shutil.copy(REPO_DIR / "dagster.yaml", run.dagster_home / "dagster.yaml")
            inbox = AlertInbox()
            try:
                with pytest.MonkeyPatch.context() as patch:
                    patch.setenv("DAGSTER_HOME", str(run.dagster_home))  # its own instance: other tests' runs stay out
                    patch.setenv("GREENERY_WAREHOUSE_DIR", str(run.warehouse))
                    patch.setenv("GREENERY_DOCS_DIR", str(run.warehouse / "docs-site"))
                    patch.setenv("GREENERY_ALERT_URLS", inbox.url)
                    assert main(["load-csv", str(course_data)]) == 0
                    assert main(["run", "--allow-stale"]) == 0  # the course data ends in February 2021
            finally:
                inbox.server.shutdown()
                inbox.server.server_close()
            received.write_text(json.dumps(inbox.received))
    run.alerts.extend(json.loads(received.read_text()))
    return run
