"""Runs never step on each other, stop when told, and a killed run does not hold the warehouse.

Every test drives real `greenery` processes (and, for the daemon, a real `greenery ui`) on sample
data, and reads the outcome from the Dagster instance they write to.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from greenery_orchestration.chain import guard
from greenery_orchestration.settings import REPO_DIR
from tests.webserver import Dagster, free_port, wait_until_up

GREENERY = str(Path(sys.executable).with_name("greenery"))
STOPS_WITHIN_SECONDS = 10


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("GREENERY_", "DAGSTER_"))}
    return {
        **env,
        "DAGSTER_HOME": str(root / "dagster_home"),
        "GREENERY_WAREHOUSE_DIR": str(root / "warehouse"),
        "GREENERY_DOCS_DIR": str(root / "docs-site"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        **extra,
    }


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """A warehouse of sample data for the module's runs; they share it, so dbt parses once."""
    root = tmp_path_factory.mktemp("faults")
    subprocess.run([GREENERY, "sample", "--days", "1", "--sessions-per-day", "100"], env=_env(root), check=True,
                   capture_output=True)
    return root


class Greenery:
    """A `greenery` process, its output lines timestamped as they arrive."""

    def __init__(self, env: dict[str, str], *args: str):
        self.process = subprocess.Popen([GREENERY, *args], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.pid = self.process.pid
        self.out: list[tuple[float, str]] = []
        self.err: list[tuple[float, str]] = []
        self.exited_at: float | None = None
        self.readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, lines) -> None:
        with stream:
            for line in stream:
                lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, text: str, timeout: float = 240) -> float:
        """When a line holding `text` was printed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.out):
                if text in line:
                    return at
            if self.process.poll() is not None:
                time.sleep(0.2)  # the last lines
                if not any(text in line for _, line in self.out):
                    pytest.fail(f"greenery exited ({self.process.returncode}) before {text!r}:\n{self.text()}")
            time.sleep(0.05)
        pytest.fail(f"no {text!r} after {timeout} s:\n{self.text()}")

    def send(self, signum: int) -> float:
        self.process.send_signal(signum)
        return time.monotonic()

    def finish(self, timeout: float = 240) -> int:
        returncode = self.process.wait(timeout=timeout)
        self.exited_at = time.monotonic()
        for reader in self.readers:
            reader.join(timeout=10)  # a killed run's orphans may keep its pipes open a moment
        return returncode

    def lines_after(self, moment: float) -> list[str]:
        return [line for at, line in self.out if at >= moment]

    def text(self) -> str:
        return "\n".join(line for _, line in self.out) + "\n--- stderr ---\n" + "\n".join(line for _, line in self.err)


@pytest.fixture
def start():
    """Starts `greenery` processes; any still running when the test ends is killed."""
    started = []

    def start(env: dict[str, str], *args: str) -> Greenery:
        started.append(Greenery(env, *args))
        return started[-1]

    yield start
    for run in started:
        if run.process.poll() is None:
            run.process.kill()
            run.finish(timeout=30)


def _descendants(pid: int) -> list[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            pass
    descendants, todo = [], [pid]
    while todo:
        parent = todo.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        descendants += children
        todo += children
    return descendants


def _dbt_processes(pid: int) -> list[int]:
    """dbt processes among `pid`'s descendants."""
    return [p for p in _descendants(pid) if b"/dbt\0" in _cmdline(p) or _cmdline(p).startswith(b"dbt\0")]


def _mid_dbt(run: "Greenery", timeout: float = 60) -> list[int]:
    """Once dbt has been running a second under `run`: its processes."""
    deadline = time.monotonic() + timeout
    while not _dbt_processes(run.pid):
        assert time.monotonic() < deadline and run.process.poll() is None, f"no dbt process:\n{run.text()}"
        time.sleep(0.1)
    time.sleep(1)
    dbt = _dbt_processes(run.pid)
    return dbt or _mid_dbt(run, deadline - time.monotonic())


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _runs_of(root: Path, pid: int) -> dict[str, dg.DagsterRun]:
    """The runs a `greenery run` process made, by job name."""
    process = f"{socket.gethostname()}:{pid}:"
    with dg.DagsterInstance.from_config(str(root / "dagster_home")) as instance:
        runs = instance.get_runs()
    return {run.job_name: run for run in runs if run.tags.get(guard.PROCESS_TAG, "").startswith(process)}


def _failure_message(root: Path, run_id: str) -> str:
    with dg.DagsterInstance.from_config(str(root / "dagster_home")) as instance:
        records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    return records[-1].event_log_entry.dagster_event.message if records else ""


def _assert_stopped(run: Greenery, signum: int, sent_at: float) -> None:
    returncode = run.finish(timeout=60)
    assert returncode == 128 + signum, run.text()
    assert run.exited_at - sent_at < STOPS_WITHIN_SECONDS, run.text()
    assert "Traceback" not in run.text(), run.text()
    assert run.err[-1][1].startswith(f"greenery: stopped by {signal.Signals(signum).name}"), run.text()
    # No step did its work after the signal: one that had begun failed, none finished.
    assert not [line for line in run.lines_after(sent_at) if " finished in " in line], run.text()


def test_every_step_of_the_chain_is_in_the_pool_the_guard_holds():
    from greenery_orchestration.chain.stages import JOB_NAMES
    from greenery_orchestration.definitions import defs

    definitions = defs()
    pools = {
        node.name: node.definition.pool
        for name in JOB_NAMES
        for node in definitions.resolve_job_def(name).graph.nodes
    }
    assert len(pools) == 7
    assert set(pools.values()) == {guard.WAREHOUSE_POOL}, pools


def test_run_monitoring_is_on_and_asks_only_what_the_default_launcher_can_do(tmp_path):
    (tmp_path / "dagster.yaml").write_text((REPO_DIR / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_monitoring_enabled
        assert 0 < instance.run_monitoring_start_timeout_seconds <= 180
        assert 0 < instance.run_monitoring_cancel_timeout_seconds <= 180
        # It cannot resume runs nor check a started run's worker: guard.py finds dead runs instead.
        assert instance.run_monitoring_max_resume_run_attempts == 0
        assert not instance.run_launcher.supports_check_run_worker_health


def test_without_a_daemon_a_cli_run_waits_for_no_dequeue_pass(tmp_path):
    (tmp_path / "dagster.yaml").write_text((REPO_DIR / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert not guard._daemon_may_dequeue(instance)


def test_a_run_that_does_not_stop_by_itself_is_cut_short(tmp_path):
    """As when a long DuckDB statement holds the main thread: the signal is noted but nothing raises."""
    script = (
        "import signal, subprocess, time\n"
        "from greenery_orchestration.chain import guard\n"
        "with guard.stoppable():\n"
        "    child = subprocess.Popen(['sleep', '600'])\n"
        "    for signum in (signal.SIGINT, signal.SIGTERM):\n"
        "        signal.signal(signum, lambda *_: None)\n"
        "    print(child.pid, flush=True)\n"
        "    while True:\n"
        "        time.sleep(0.1)\n"
    )
    stuck = subprocess.Popen([sys.executable, "-c", script], env=_env(tmp_path), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    child = int(stuck.stdout.readline())

    sent_at = time.monotonic()
    stuck.send_signal(signal.SIGTERM)

    _, err = stuck.communicate(timeout=30)
    assert stuck.returncode == 143
    assert guard.GRACE_SECONDS <= time.monotonic() - sent_at < guard.GRACE_SECONDS + 3
    assert err.strip() == f"greenery: stopped by SIGTERM (cut short after {guard.GRACE_SECONDS:.0f} s)"
    time.sleep(0.5)
    assert _gone(child)  # the processes it started went with it


def test_sigterm_mid_build_stops_the_run_and_dbt_and_sigterm_between_jobs_starts_no_second_job(shop, start):
    run = start(_env(shop), "run")
    run.wait_for("step raw_data_gate started")
    dbt = _mid_dbt(run)  # the gate: the tests of the raw tables

    sent_at = run.send(signal.SIGTERM)

    _assert_stopped(run, signal.SIGTERM, sent_at)
    assert all(_gone(pid) for pid in dbt)
    runs = _runs_of(shop, run.pid)
    assert runs["greenery_production"].status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
    assert runs[guard.HOLDER_JOB].status == dg.DagsterRunStatus.CANCELED
    assert "greenery_docs_and_clone" not in runs
    assert not (shop / "warehouse" / "dev.duckdb").exists()

    # The next run builds everything; stopped as its first job ends, it starts no second job.
    following = start(_env(shop), "run")
    following.wait_for("of greenery_production succeeded")
    sent_at = following.send(signal.SIGTERM)

    _assert_stopped(following, signal.SIGTERM, sent_at)
    runs = _runs_of(shop, following.pid)
    assert runs["greenery_production"].status == dg.DagsterRunStatus.SUCCESS
    # If the signal came as the second job was being created, it failed before its first step.
    assert "greenery_docs_and_clone" not in runs or runs["greenery_docs_and_clone"].status in (
        dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED
    )
    assert not (shop / "warehouse" / "dev.duckdb").exists()
    assert not (shop / "docs-site" / "index.html").exists()


def test_ctrl_c_at_a_step_boundary_starts_no_further_step(shop, start):
    run = start(_env(shop), "run")
    run.wait_for("step raw_data_gate finished")

    sent_at = run.send(signal.SIGINT)

    _assert_stopped(run, signal.SIGINT, sent_at)
    runs = _runs_of(shop, run.pid)
    assert runs["greenery_production"].status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
    assert "greenery_docs_and_clone" not in runs


def test_cli_runs_wait_for_each_other_and_a_killed_run_is_failed_alerted_and_ends_its_dbt(shop, alert_inbox, start):
    first = start(_env(shop), "run")
    first.wait_for("step raw_data_gate started")
    holder = _runs_of(shop, first.pid)[guard.HOLDER_JOB].run_id

    refused = start(_env(shop), "run", "--wait", "0")
    assert refused.finish(timeout=60) == 3, refused.text()
    assert refused.err[-1][1].startswith(f"greenery: the warehouse is still in use by greenery run (run {holder[:8]}, "
                                         f"pid {first.pid} on {socket.gethostname()}, started ")
    assert _runs_of(shop, refused.pid) == {}  # it left no trace

    second = start(_env(shop, GREENERY_ALERT_URLS=alert_inbox.url), "run")
    second.wait_for(f"Waiting for the warehouse: greenery run (run {holder[:8]}, pid {first.pid} on ")

    dbt = _mid_dbt(first)
    first.send(signal.SIGKILL)
    first.finish(timeout=30)
    killed_at = first.exited_at

    free_at = second.wait_for("The warehouse is free: starting.")
    assert second.finish() == 0, second.text()

    assert free_at >= killed_at  # one writer at a time
    assert all(_gone(pid) for pid in dbt)  # the orphaned dbt build was ended, not left holding the file
    dead = _runs_of(shop, first.pid)
    assert {job: run.status for job, run in dead.items()} == {
        "greenery_production": dg.DagsterRunStatus.FAILURE, guard.HOLDER_JOB: dg.DagsterRunStatus.FAILURE,
    }
    assert f"(greenery run, pid {first.pid} on {socket.gethostname()})" in _failure_message(
        shop, dead["greenery_production"].run_id
    )
    assert f"Marked run {dead['greenery_production'].run_id[:8]} of greenery_production failed" in second.text()
    alert = next(a for a in alert_inbox.received if dead["greenery_production"].run_id[:8] in a["message"])
    assert alert["title"] == "[greenery] greenery_production failed"
    assert f"pid {first.pid}" in alert["message"] and "is gone" in alert["message"]
    assert {run.status for run in _runs_of(shop, second.pid).values()} == {dg.DagsterRunStatus.SUCCESS}
    assert (shop / "warehouse" / "dev.duckdb").exists()


def test_under_the_daemon_runs_wait_for_a_cli_run_and_no_dead_process_blocks_the_queue(tmp_path, alert_inbox, start):
    env = _env(tmp_path, GREENERY_SCHEDULE_CRON="0 0 1 1 *", GREENERY_ALERT_URLS=alert_inbox.url)
    subprocess.run([GREENERY, "sample", "--days", "1", "--sessions-per-day", "100"], env=env, check=True,
                   capture_output=True)
    with _greenery_ui(env, tmp_path) as (dagster, ui):
        cli = start(env, "run")
        cli.wait_for("step raw_data_gate started")

        launched = dagster.launch("greenery_production")
        time.sleep(5)
        assert _status(dagster, launched) == "QUEUED"  # the CLI run holds the warehouse
        with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
            assert guard._daemon_may_dequeue(instance)  # a CLI run waits out the daemon's dequeue pass

        dbt = _mid_dbt(cli)
        cli.send(signal.SIGKILL)
        cli.finish(timeout=30)
        # greenery ui finds the CLI's runs without a process and fails them; the queue moves on.
        _wait_status(dagster, launched, ("STARTED",), 60, tmp_path)
        dead = _runs_of(tmp_path, cli.pid)
        assert {run.status for run in dead.values()} == {dg.DagsterRunStatus.FAILURE}
        assert "greenery ui" in _failure_message(tmp_path, dead["greenery_production"].run_id)
        assert all(_gone(pid) for pid in dbt)
        _wait_until(lambda: any(dead["greenery_production"].run_id[:8] in a["message"] for a in alert_inbox.received))

        # The other way round: a CLI run refuses while the daemon's run uses the warehouse.
        refused = start(env, "run", "--wait", "0")
        assert refused.finish(timeout=60) == 3, refused.text()
        assert f"run {launched[:8]} of greenery_production (launched by the daemon, run worker pid " in refused.err[-1][1]

        # Everything killed at once, as a container stop does: the daemon's run is left STARTED.
        with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
            worker = guard.worker_pid(instance, launched)
        for pid in [ui.pid, *_descendants(ui.pid)]:
            os.kill(pid, signal.SIGKILL)
        ui.wait(timeout=30)
    with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        assert instance.get_run_by_id(launched).status == dg.DagsterRunStatus.STARTED

    # The next greenery ui fails it before its daemon starts, and the queue is free.
    with _greenery_ui(env, tmp_path) as (dagster, _):
        assert _status(dagster, launched) == "FAILURE"
        assert f"run worker pid {worker} on " in _failure_message(tmp_path, launched)
        next_run = dagster.launch("greenery_docs_and_clone")
        _wait_status(dagster, next_run, ("STARTED", "SUCCESS"), 60, tmp_path)


@contextmanager
def _greenery_ui(env: dict[str, str], root: Path) -> Iterator[tuple[Dagster, subprocess.Popen]]:
    port = free_port()
    with (root / "ui.log").open("a") as log:
        ui = subprocess.Popen([GREENERY, "ui", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            dagster = Dagster(port)
            wait_until_up(dagster, ui, root / "ui.log")
            yield dagster, ui
        finally:
            if ui.poll() is None:
                ui.send_signal(signal.SIGTERM)
                ui.wait(timeout=60)


def _wait_status(dagster: Dagster, run_id: str, statuses: tuple[str, ...], timeout: float, root: Path) -> None:
    deadline = time.monotonic() + timeout
    while _status(dagster, run_id) not in statuses:
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id[:8]} is {_status(dagster, run_id)}, not {statuses}, after {timeout} s:\n"
                        f"{(root / 'ui.log').read_text()[-3000:]}")
        time.sleep(1)


def _wait_until(condition, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _status(dagster: Dagster, run_id: str) -> str:
    return next(run["status"] for run in dagster.runs() if run["runId"] == run_id)
