"""What a terminal shows of a run: a line when a step starts and when it ends (with its duration),
a line per failed or warned check, and a heartbeat while a long step is silent."""

import logging
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import dagster as dg

from greenery_orchestration.alerts import check_line, error_summary

# A person watching a run should never wait a silent minute wondering whether it hangs.
HEARTBEAT_SECONDS = 10.0

# Log messages of the chain's own code that a person at the terminal should see (e.g. a full
# refresh it chose) start with this; Dagster's own warnings stay in the event log.
NOTICE = "[greenery] "

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_terminal: TextIO | None = None


@contextmanager
def to_terminal(terminal: TextIO, verbose: bool) -> Iterator[None]:
    """Progress lines go to `terminal`; what else writes to stdout meanwhile (dbt's line per
    node, which dagster-dbt echoes) is shown only when `verbose`, without colour codes unless
    `terminal` is a terminal."""
    global _terminal
    previous, _terminal = _terminal, terminal
    original_stdout = sys.stdout
    sys.stdout = _Details(terminal if verbose else None)
    try:
        yield
    finally:
        sys.stdout = original_stdout
        _terminal = previous


class _Details:
    """A write-only stream that forwards to `target`, plain text off a terminal, or drops it all."""

    def __init__(self, target: TextIO | None):
        self.target = target
        self.plain = target is not None and not target.isatty()

    def write(self, text: str) -> int:
        if self.target is not None:
            self.target.write(_ANSI.sub("", text) if self.plain else text)
        return len(text)

    def flush(self) -> None:
        if self.target is not None:
            self.target.flush()

    def isatty(self) -> bool:
        return False


class _ProgressHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.started: dict[str, float] = {}
        self.materialized: Counter[str] = Counter()
        self.last_line = time.monotonic()
        self.print_lock = threading.Lock()
        self.done = threading.Event()
        threading.Thread(target=self._heartbeat, daemon=True, name="greenery-heartbeat").start()

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", {})
        event: dg.DagsterEvent | None = meta.get("dagster_event")
        if event is None:
            message = str(meta.get("orig_message") or record.getMessage())
            if message.startswith(NOTICE):
                self._print("  " + message.removeprefix(NOTICE).strip().splitlines()[0])
            return
        line = self._line(event, meta)
        if line:
            self._print(line)
        if event.event_type in (
            dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED
        ):
            self.done.set()

    def _line(self, event: dg.DagsterEvent, meta: dict) -> str | None:
        kind, step = event.event_type, event.step_key
        run = f"run {meta.get('run_id', '')[:8]} of {meta.get('job_name')}"
        if kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.asset_check_evaluation_data
            return None if evaluation.passed else "    " + check_line(evaluation)
        if kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            self.materialized[step] += 1
            return None
        if kind == dg.DagsterEventType.STEP_START:
            with self.print_lock:
                self.started[step] = time.monotonic()
            return f"  step {step} started"
        if kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            with self.print_lock:
                took = time.monotonic() - self.started.pop(step, time.monotonic())
            built = self.materialized.pop(step, 0)
            outcome = "finished" if kind == dg.DagsterEventType.STEP_SUCCESS else "FAILED"
            detail = f": {error_summary(event.step_failure_data)}" if kind == dg.DagsterEventType.STEP_FAILURE else ""
            built = f", {built} asset(s) materialized" if built else ""
            return f"  step {step} {outcome} in {took:.1f} s{built}{detail}"
        if kind == dg.DagsterEventType.RUN_START:
            return f"{run} started"
        if kind == dg.DagsterEventType.RUN_SUCCESS:
            return f"{run} succeeded"
        if kind == dg.DagsterEventType.RUN_FAILURE:
            return f"{run} FAILED: {event.message or ''}"
        if kind == dg.DagsterEventType.RUN_CANCELED:
            return f"{run} CANCELED"
        return None

    def _print(self, line: str) -> None:
        with self.print_lock:
            out = _terminal or sys.stdout
            print(line, file=out, flush=True)
            self.last_line = time.monotonic()

    def _heartbeat(self) -> None:
        while not self.done.wait(min(0.5, HEARTBEAT_SECONDS / 5)):
            now = time.monotonic()
            with self.print_lock:
                running = list(self.started.items())
                silent = now - self.last_line
            if running and silent >= HEARTBEAT_SECONDS:
                self._print("  ... running: " + ", ".join(f"{step} {now - since:.0f} s" for step, since in running))


@dg.logger(description="One line per step start and end, per failed check, and a heartbeat, on stdout.")
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger("greenery_progress", level=logging.DEBUG)
    logger.addHandler(_ProgressHandler())
    return logger
