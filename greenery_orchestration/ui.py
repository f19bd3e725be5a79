"""`greenery ui`: the Dagster webserver and daemon as two processes, stopped together.

`dagster dev` run in the background ignores SIGTERM, so the two are started here directly, each
in its own process group, and both are stopped on Ctrl-C or SIGTERM.

Runs left unfinished by a process that is gone are marked failed: those of a killed `greenery
run` every SWEEP_SECONDS, and at start those of an earlier daemon whose run worker is gone (the
whole `greenery ui` was killed or its container stopped). The default run launcher cannot tell
Dagster's run monitoring that a started run's worker died, and such a run would hold the
warehouse pool, and so the daemon's queue, forever.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from greenery_orchestration.settings import REPO_DIR

GRACE_SECONDS = 20
SWEEP_SECONDS = 10


def run_ui(port: int) -> int:
    """Start webserver and daemon on the current DAGSTER_HOME; return when either stops or on a signal."""
    bin_dir = Path(sys.executable).parent
    workspace = str(REPO_DIR / "workspace.yaml")
    sweep = _Sweep()
    sweep()  # before the daemon starts, so its queue does not wait on a dead run
    processes = [
        subprocess.Popen(
            [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", workspace],
            start_new_session=True,
        ),
        subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", "-w", workspace], start_new_session=True),
    ]
    print(f"Dagster UI on http://127.0.0.1:{port} (webserver pid {processes[0].pid}, daemon pid {processes[1].pid}); Ctrl-C stops both.")
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping and all(process.poll() is None for process in processes):
        time.sleep(0.5)
        if time.monotonic() >= sweep.next_at:
            sweep()
    exited = [p.args[0] for p in processes if p.poll() is not None]
    if exited and not stopping:
        print(f"greenery ui: {', '.join(Path(e).name for e in exited)} exited; stopping the rest", file=sys.stderr)
    _stop_all(processes)
    return 0 if stopping else 1


class _Sweep:
    def __init__(self):
        self.next_at = 0.0
        self.first = True

    def __call__(self) -> None:
        import dagster as dg  # noqa: PLC0415

        from greenery_orchestration.chain.guard import reap_dead_runs  # noqa: PLC0415

        self.next_at = time.monotonic() + SWEEP_SECONDS
        try:
            with dg.DagsterInstance.get() as instance:
                reap_dead_runs(instance, by=f"greenery ui (pid {os.getpid()})", local_workers=self.first)
            self.first = False
        except Exception as error:  # noqa: BLE001 - a failed sweep is retried; the UI stays up
            print(f"greenery ui: could not look for runs whose process is gone: {error}", file=sys.stderr)


def _stop_all(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    # The group holds the process and whatever it started (the daemon's run workers, code servers).
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass
