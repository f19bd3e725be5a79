"""`greenery ui`: the Dagster webserver and daemon as two processes, stopped together.

`dagster dev` run in the background ignores SIGTERM, so the two are started here directly, each
in its own process group, and both are stopped on Ctrl-C or SIGTERM.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from greenery_orchestration.settings import REPO_DIR

GRACE_SECONDS = 20


def run_ui(port: int) -> int:
    """Start webserver and daemon on the current DAGSTER_HOME; return when either stops or on a signal."""
    bin_dir = Path(sys.executable).parent
    workspace = str(REPO_DIR / "workspace.yaml")
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
    exited = [p.args[0] for p in processes if p.poll() is not None]
    if exited and not stopping:
        print(f"greenery ui: {', '.join(Path(e).name for e in exited)} exited; stopping the rest", file=sys.stderr)
    _stop_all(processes)
    return 0 if stopping else 1


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
