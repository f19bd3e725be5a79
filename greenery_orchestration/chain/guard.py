"""One writer at a time, a `greenery run` that stops when told, and no run left STARTED by a
process that is gone.

`greenery run` executes its jobs in its own process (`execute_in_process`), which bypasses the
daemon's run queue and the "warehouse" pool, so it takes its turn itself:

- an exclusive file lock beside the warehouse puts `greenery run`s on this machine one after
  the other (the kernel drops it when the process dies, however it dies);
- a placeholder run of the job `greenery_run` stays STARTED in the "warehouse" pool while the
  command holds the warehouse. At run granularity the daemon's queue counts every started run in
  a pool as holding one of its slots, so the runs it would launch meanwhile stay queued, also
  between the command's two jobs;
- before its first job the command waits for the runs the daemon has already started.

Every run the command creates carries its process (host, pid, start time) as a tag, and the
processes it starts (dbt) carry it in their environment, so whoever later finds such a run
unfinished (the next `greenery run`, `greenery ui`) can tell that its process is gone, mark it
failed, end its orphans and alert.
"""

import fcntl
import functools
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from greenery_orchestration import alerts
from greenery_orchestration.settings import DEFAULT_WAIT_SECONDS, ui_url, warehouse_dir
from greenery_orchestration.warehouse import WAREHOUSE_POOL

HOLDER_JOB = "greenery_run"
PROCESS_TAG = "greenery/process"
PROCESS_ENV = "GREENERY_RUN_PROCESS"
# A run the daemon chose just before our placeholder existed is marked STARTING within its
# dequeue pass; this long after the placeholder, none can still appear.
SETTLE_SECONDS = 2.0
# A daemon writes a heartbeat before its first pass and every 30 s after; one silent this long
# (or none at all: `greenery run` without `greenery ui`) is in no dequeue pass.
DAEMON_SILENT_SECONDS = 300
# After SIGINT or SIGTERM, how long the run may take to stop by itself before it is cut short.
GRACE_SECONDS = 5.0
UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
ACTIVE = UNFINISHED[1:]


class WarehouseBusy(Exception):
    """The warehouse stayed in use for longer than `greenery run --wait` allows."""


class Stopped(BaseException):
    """SIGINT or SIGTERM: unwinds `greenery run` as Ctrl-C would, into one line and exit 128 + signal."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


# --- the process behind a run ---------------------------------------------------------------


def this_process() -> str:
    """host:pid:start; the start time tells the process from a later one given the same pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid()) or ''}"


def is_alive(process: str) -> bool | None:
    """Whether a process named by `this_process()` still runs; None when it ran on another host."""
    host, pid, started = process.rsplit(":", 2)
    if host != socket.gethostname():
        return None
    if not Path("/proc/self/stat").exists():  # no /proc (macOS): the pid alone
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    return _start_time(int(pid)) == started


def _start_time(pid: int) -> str | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie has died already


def _processes_of(process: str) -> list[int]:
    """The processes started by `process` (dbt and the like), even once orphaned, by the variable they inherit."""
    marker = f"{PROCESS_ENV}={process}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with suppress(OSError):
            if marker in (entry / "environ").read_bytes().split(b"\0") and int(entry.name) != os.getpid():
                found.append(int(entry.name))
    return found


def _is_dbt(pid: int) -> bool:
    with suppress(OSError):
        return any(os.path.basename(arg) == b"dbt" for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2])
    return False


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


# --- stopping on SIGINT and SIGTERM ---------------------------------------------------------


class Stopper:
    """What a signal stops: the runs to cancel, and the command's own processes.

    Dagster replaces the SIGINT and SIGTERM handlers while a job executes. Its handler fails the
    step under way (and dagster-dbt then forwards SIGINT to dbt), or, between two steps, leaves a
    flag the next step raises on. But a signal can be lost: the flag is cleared when a job ends,
    so the next job would start, and dagster-dbt swallows the interrupt when it lands while it
    opens its dbt adapter (a bare `except:`), so dbt runs on. So every signal is also written to a
    pipe (`signal.set_wakeup_fd`, which no handler replaces): the command reads it before and
    after each job, and a thread watching it interrupts each dbt and keeps Dagster's flag raised
    while a job executes (the next step, or the next result of this one, fails), until the command
    stops, cutting it short after GRACE_SECONDS. (Sending SIGINT again would raise anywhere in
    library code, and libraries log tracebacks when it lands in their clean-up.)
    """

    def __init__(self):
        self.signum: int | None = None  # the first signal; the exit code follows it
        self.signals = 0
        self.in_job = False  # only there may Dagster lose a signal
        self.runs: list[str] = []  # ended as stopped if the command stops before they end
        self.raised = False
        self._read = self._write = None  # the pipe, while stoppable() watches
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def check(self) -> None:
        """Raise Stopped if a signal has come, even one that Dagster's handler swallowed."""
        self._drain()
        if self.signum is not None:
            self.raised = True
            raise Stopped(self.signum)

    def _drain(self) -> None:
        if self._read is None:
            return
        with self._lock:
            with suppress(BlockingIOError, OSError):
                for signum in os.read(self._read, 64):
                    if signum in (signal.SIGINT, signal.SIGTERM):
                        self.signum = self.signum or signum
                        self.signals += 1

    def _handler(self, signum, frame) -> None:
        """Outside Dagster's jobs. Raising here could land anywhere, in a weakref callback too
        ("Exception ignored", a traceback): the pipe has the signal; check() and the watcher act."""

    def _watch(self) -> None:
        deadline = None
        interrupted: set[int] = set()
        while not self._closing.is_set():
            select.select([self._read], [], [], 0.25)
            self._drain()
            now = time.monotonic()
            if self.signum is None or self._closing.is_set():
                continue
            if deadline is None:
                deadline = now + GRACE_SECONDS
            elif self.signals > 1 or now > deadline:
                self._cut_short()  # a second Ctrl-C, or it would not stop
            # As Ctrl-C in a terminal does: dbt cancels its queries and exits.
            dbt = [pid for pid in _processes_of(this_process()) if _is_dbt(pid) and pid not in interrupted]
            _signal_all(dbt, signal.SIGINT)
            interrupted.update(dbt)
            if self.in_job:
                _dagster_interrupt(True)

    def _end_runs(self) -> None:
        """Cancel the runs still unfinished; say why the one Dagster failed as interrupted stopped."""
        name = signal.Signals(self.signum).name
        with dg.DagsterInstance.get() as instance:
            for run in filter(None, map(instance.get_run_by_id, self.runs)):
                if not run.is_finished:
                    instance.report_run_canceled(run, f"greenery run was stopped by {name}.")
                elif run.run_id == self.runs[-1] and run.status == dg.DagsterRunStatus.FAILURE:
                    instance.report_engine_event(f"greenery run was stopped by {name}.", run)

    def _cut_short(self) -> None:
        """The command did not stop by itself (e.g. a long DuckDB statement holds the main thread)."""
        _signal_all(_processes_of(this_process()), signal.SIGKILL)
        with suppress(Exception):
            self._end_runs()
        name = signal.Signals(self.signum).name
        print(f"greenery: stopped by {name} (cut short after {GRACE_SECONDS:.0f} s)", file=sys.stderr, flush=True)
        os._exit(128 + self.signum)


@contextmanager
def stoppable() -> Iterator[Stopper]:
    """SIGINT and SIGTERM stop what runs inside within GRACE_SECONDS: Stopped is raised at the next
    check() (or instead of what a signal made fail), no later job starts, the runs left unfinished
    are canceled and this command's processes end."""
    stopper = Stopper()
    if threading.current_thread() is not threading.main_thread():
        yield stopper  # signals reach only the main thread
        return
    stopper._read, stopper._write = os.pipe()
    os.set_blocking(stopper._read, False)
    os.set_blocking(stopper._write, False)
    previous_env = os.environ.get(PROCESS_ENV)
    os.environ[PROCESS_ENV] = this_process()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    previous_fd = signal.set_wakeup_fd(stopper._write, warn_on_full_buffer=False)
    for signum in previous:
        signal.signal(signum, stopper._handler)
    previous_hook = sys.unraisablehook
    sys.unraisablehook = functools.partial(_unraisable, previous_hook)
    watcher = threading.Thread(target=stopper._watch, daemon=True, name="greenery-stop")
    watcher.start()
    try:
        yield stopper
        stopper.check()  # a signal after the last job still means "stopped"
    except Exception:
        stopper._drain()
        if stopper.signum is None:
            raise
        # What failed once the signal came failed because of it (dbt interrupted, say).
        stopper.raised = True
        raise Stopped(stopper.signum) from None
    finally:
        # The watcher first: it must not raise Dagster's flag again once it is cleared below.
        stopper._closing.set()
        with suppress(OSError):
            os.write(stopper._write, b"\0")
        watcher.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)
        sys.unraisablehook = previous_hook
        os.close(stopper._read)
        os.close(stopper._write)
        stopper._read = stopper._write = None
        if previous_env is None:
            os.environ.pop(PROCESS_ENV, None)
        else:
            os.environ[PROCESS_ENV] = previous_env
        if stopper.signum is not None:
            _dagster_interrupt(False)  # for a later job in this process (tests call main())
        if stopper.raised:
            with suppress(Exception):
                stopper._end_runs()


def _unraisable(previous_hook, unraisable) -> None:
    # Dagster's handler raises its interrupt wherever the signal lands, in a weakref callback or
    # __del__ too, where Python can only print it ("Exception ignored in ...", a traceback). The
    # signal is not lost for that: the watcher acts on it.
    if not isinstance(unraisable.exc_value, (dg.DagsterExecutionInterruptedError, KeyboardInterrupt, Stopped)):
        previous_hook(unraisable)


def _dagster_interrupt(received: bool) -> None:
    """Set the flag Dagster's between-steps handler sets on a signal, which the next step raises on."""
    from dagster._utils import interrupts  # noqa: PLC0415 - no public way to say "interrupted"

    interrupts._received_interrupt["received"] = received


# --- the warehouse, one writer at a time ----------------------------------------------------


class Turn:
    """The command's hold on the warehouse: tags for its runs, and its placeholder run."""

    def __init__(self, instance: dg.DagsterInstance, stopper: Stopper):
        self.instance = instance
        self.stopper = stopper
        self.tags = {PROCESS_TAG: this_process()}
        self.holder: dg.DagsterRun | None = None
        self.succeeded = True

    @contextmanager
    def job(self) -> Iterator[str]:
        """The run id for a job to execute, unless a signal asked to stop; Stopped after it if one did."""
        self.stopper.check()
        run_id = str(uuid.uuid4())
        self.stopper.runs.append(run_id)
        self.stopper.in_job = True
        try:
            yield run_id
        finally:
            self.stopper.in_job = False
        self.stopper.check()


@contextmanager
def warehouse_turn(wait_seconds: float = DEFAULT_WAIT_SECONDS, stopper: Stopper | None = None) -> Iterator[Turn]:
    """Wait (up to `wait_seconds`, else WarehouseBusy) until no other `greenery run` and no run
    the daemon started uses the warehouse, and keep the daemon from starting one until the end."""
    folder = warehouse_dir()
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    with dg.DagsterInstance.get() as instance, open(folder / ".greenery-run.lock", "a+") as lock:
        turn = Turn(instance, stopper or Stopper())
        _lock(lock, deadline, wait_seconds, turn.stopper)
        reap_dead_runs(instance, by=f"greenery run (pid {os.getpid()})")
        turn.holder = _hold(instance, turn.tags)
        turn.stopper.runs.append(turn.holder.run_id)
        lock.seek(0)
        lock.truncate()
        lock.write(f"greenery run (run {turn.holder.run_id[:8]}, pid {os.getpid()} on {socket.gethostname()}, "
                   f"started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC)")
        lock.flush()
        try:
            _wait_for_other_runs(instance, turn.holder, deadline, wait_seconds, turn.stopper)
            yield turn
        except BaseException as error:
            outcome = "canceled" if isinstance(error, (Stopped, WarehouseBusy)) else "failed"
            _release(instance, turn.holder, outcome, f"greenery run ended early: {error or type(error).__name__}")
            raise
        else:
            _release(instance, turn.holder, "succeeded" if turn.succeeded else "failed", "greenery run ended.")
        finally:
            lock.truncate(0)


def _lock(lock, deadline: float, wait_seconds: float, stopper: Stopper) -> None:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    lock.seek(0)
    holder = lock.read().strip() or "another greenery run"
    _say_waiting(holder, wait_seconds)
    while True:
        if time.monotonic() >= deadline:
            raise WarehouseBusy(_busy(holder, wait_seconds))
        time.sleep(0.5)
        stopper.check()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            print("The warehouse is free: starting.", flush=True)
            return
        except BlockingIOError:
            pass


def _hold(instance: dg.DagsterInstance, tags: dict[str, str]) -> dg.DagsterRun:
    # No public constructor declares a run's pools; this is what the daemon's queue reads.
    from dagster._core.storage.dagster_run import RunOpConcurrency  # noqa: PLC0415

    # The queue sets a pool's limit when it first sees a queued run in it, and lets that run go
    # in the same pass: on a fresh instance it would start beside us.
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits and WAREHOUSE_POOL not in storage.get_concurrency_keys():
        storage.initialize_concurrency_limit_to_default(WAREHOUSE_POOL)
    run = instance.add_run(
        dg.DagsterRun(
            job_name=HOLDER_JOB,
            run_id=str(uuid.uuid4()),
            tags=tags,
            run_op_concurrency=RunOpConcurrency(
                all_pools={WAREHOUSE_POOL}, root_key_counts={WAREHOUSE_POOL: 1}, has_unconstrained_root_nodes=False
            ),
        )
    )
    instance.report_dagster_event(
        dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, HOLDER_JOB, message="greenery run holds the warehouse."),
        run.run_id,
    )
    return instance.get_run_by_id(run.run_id)


def _release(instance: dg.DagsterInstance, holder: dg.DagsterRun, outcome: str, message: str) -> None:
    run = instance.get_run_by_id(holder.run_id)
    if run is None or run.is_finished:
        return
    if outcome == "succeeded":
        event = dg.DagsterEvent(dg.DagsterEventType.RUN_SUCCESS.value, HOLDER_JOB, message=message)
        instance.report_dagster_event(event, run.run_id)
    elif outcome == "canceled":
        instance.report_run_canceled(run, message)
    else:
        instance.report_run_failed(run, message)


def _wait_for_other_runs(
    instance: dg.DagsterInstance, holder: dg.DagsterRun, deadline: float, wait_seconds: float, stopper: Stopper
) -> None:
    mine = instance.get_run_record_by_id(holder.run_id)
    said = None
    settled_at = time.monotonic() + (SETTLE_SECONDS if _daemon_may_dequeue(instance) else 0)
    while True:
        others = _other_writers(instance, mine)
        if not others and time.monotonic() >= settled_at:
            if said:
                print("The warehouse is free: starting.", flush=True)
            return
        if others:
            settled_at = time.monotonic() + SETTLE_SECONDS
            if said != others[0].dagster_run.run_id:
                said = others[0].dagster_run.run_id
                _say_waiting(describe(instance, others[0]), wait_seconds)
            if time.monotonic() >= deadline:
                raise WarehouseBusy(_busy(describe(instance, others[0]), wait_seconds))
        time.sleep(0.5)
        stopper.check()


def _daemon_may_dequeue(instance: dg.DagsterInstance) -> bool:
    heartbeat = instance.get_daemon_heartbeats().get("QUEUED_RUN_COORDINATOR")
    return heartbeat is not None and time.time() - heartbeat.timestamp < DAEMON_SILENT_SECONDS


def _other_writers(instance: dg.DagsterInstance, mine: dg.RunRecord) -> list[dg.RunRecord]:
    def writes(record: dg.RunRecord) -> bool:
        run = record.dagster_run
        pools = run.run_op_concurrency.all_pools if run.run_op_concurrency else None
        if run.run_id == mine.dagster_run.run_id or WAREHOUSE_POOL not in (pools or ()):
            return False
        # A later `greenery run` (on another host) waits for us, not we for it.
        return not (run.job_name == HOLDER_JOB and record.create_timestamp > mine.create_timestamp)

    records = instance.get_run_records(dg.RunsFilter(statuses=ACTIVE), ascending=True)
    return [record for record in records if writes(record)]


def describe(instance: dg.DagsterInstance, record: dg.RunRecord) -> str:
    """Which run, which process, since when: enough to find it in the UI or in `ps`."""
    run = record.dagster_run
    process = run.tags.get(PROCESS_TAG)
    if process:
        host, pid, _ = process.rsplit(":", 2)
        who = f"greenery run, pid {pid} on {host}"
    else:
        pid = worker_pid(instance, run.run_id)
        who = f"launched by the daemon, run worker pid {pid}" if pid else "launched by the daemon"
    since = record.start_time or record.create_timestamp.timestamp()
    return f"run {run.run_id[:8]} of {run.job_name} ({who}, started {datetime.fromtimestamp(since, UTC):%Y-%m-%d %H:%M:%S} UTC)"


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid a daemon-launched run worker logs when it starts ("Started process for run")."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        if data and "pid" in data.metadata and entry.message.startswith("Started process for run"):
            return int(data.metadata["pid"].value)
    return None


def _say_waiting(holder: str, wait_seconds: float) -> None:
    if wait_seconds <= 0:
        return  # refused at once, and said so
    print(f"Waiting for the warehouse: {holder} is using it; waiting up to {wait_seconds:.0f} s "
          f"(greenery run --wait), Ctrl-C stops.", flush=True)


def _busy(holder: str, wait_seconds: float) -> str:
    return (f"the warehouse is still in use by {holder} after {wait_seconds:.0f} s; nothing was run. "
            f"Try again when it ends, or wait longer with --wait SECONDS.")


# --- runs whose process is gone -------------------------------------------------------------


def reap_dead_runs(instance: dg.DagsterInstance, by: str, local_workers: bool = False) -> list[dg.DagsterRun]:
    """Mark failed the unfinished runs of `greenery run`s whose process is gone, end their orphans
    (a dbt build goes on after its parent is killed, and holds the warehouse file) and alert.

    With `local_workers` (for `greenery ui`, before it starts the daemon), also the started runs
    of an earlier daemon on this host whose run worker is gone: with its code server alive,
    Dagster fails such a run itself, but not when the whole `greenery ui` was killed or stopped.
    Returns the runs marked failed."""
    reaped = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=UNFINISHED)):
        run = record.dagster_run
        process = run.tags.get(PROCESS_TAG)
        if process and is_alive(process) is False:
            host, pid, _ = process.rsplit(":", 2)
            orphans = _processes_of(process)
            _signal_all(orphans, signal.SIGKILL)
            _wait_gone(orphans)
            _mark_dead(instance, run, f"greenery run, pid {pid} on {host}", by)
            reaped.append(run)
        elif not process and local_workers and run.status in ACTIVE and _launched_here(run):
            pid = worker_pid(instance, run.run_id)
            if pid and not _start_time(pid):
                _mark_dead(instance, run, f"run worker pid {pid} on {socket.gethostname()}", by)
                reaped.append(run)
    return reaped


def _launched_here(run: dg.DagsterRun) -> bool:
    """Launched by a daemon through a code server on this host (a socket, or localhost)."""
    try:
        grpc = json.loads(run.tags.get(".dagster/grpc_info", "{}"))
    except ValueError:
        return False
    return bool(grpc.get("socket")) or grpc.get("host") in ("localhost", "127.0.0.1")


def _mark_dead(instance: dg.DagsterInstance, run: dg.DagsterRun, process: str, by: str) -> None:
    message = (f"The process running this run is gone ({process}): killed, out of memory or its container "
               f"stopped. Marked failed by {by}, which freed its hold on the warehouse.")
    if instance.get_run_by_id(run.run_id).is_finished:  # another sweeper was first
        return
    instance.report_run_failed(run, message)
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    print(f"Marked run {run.run_id[:8]} of {run.job_name} failed: its process ({process}) is gone.", flush=True)
    if run.job_name != HOLDER_JOB:  # no job of ours: the alert goes with its process's job run
        body = f"Run {run.run_id[:8]} of {run.job_name} failed.\n{message}\nRun: {ui_url()}/runs/{run.run_id}"
        alerts.send(alerts.Alert("failure", f"[greenery] {run.job_name} failed", body))


def _wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_start_time(pid) for pid in pids):
        time.sleep(0.1)


@contextmanager
def raw_load_turn() -> Iterator[None]:
    """The lock `greenery run` holds, taken at once or WarehouseBusy, for a command that replaces
    or appends raw data: between two of a run's steps the warehouse file is free, and a load there
    would change the raw tables under a half-done run."""
    folder = warehouse_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".greenery-run.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another greenery run"
            raise WarehouseBusy(f"the warehouse is in use by {holder}; nothing was written. "
                                "Try again when it ends.") from None
        yield
