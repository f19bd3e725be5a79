"""fakesnow's HTTP server, started once a session, for tests that reach Snowflake the way production
does: through snowflake-connector-python, dbt-snowflake and dagster-snowflake, over HTTP on
127.0.0.1, with nothing patched in the client's process.

The server runs in a subprocess of its own (fakesnow_server.py) with its databases as files in a
folder of its own. `snowflake_server.env` is the environment a `dbt` or `greenery` subprocess
needs to use it; `snowflake_server.in_process()` bounds this process's own use of it in time.
Every process started with that environment, and this one inside `in_process()`, may connect to
127.0.0.0/8 only (loopback_only/sitecustomize.py); `snowflake_server.outbound()` lists attempts.
"""

import importlib.util
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from greenery_orchestration.settings import DBT_PROJECT_DIR
from tests.conftest import AlertInbox

HERE = Path(__file__).parent
LAUNCHER = HERE / "fakesnow_server.py"
LOOPBACK_ONLY = HERE / "loopback_only"
DATABASE = "GREENERY"

# Starting takes ~3 s (fakesnow, DuckDB and starlette import); allow for a busy machine.
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 15
# The connector retries a failed request until these run out (network_timeout: none by default).
LOGIN_TIMEOUT_SECONDS = 20
NETWORK_TIMEOUT_SECONDS = 60
# No single use of the server from the test process takes longer than this.
IN_PROCESS_TIMEOUT_SECONDS = 180

# The emulated account. fakesnow accepts any credentials; they only have to be there.
ACCOUNT = {
    "SNOWFLAKE_ACCOUNT": "fakesnow",
    "SNOWFLAKE_USER": "greenery",
    "SNOWFLAKE_PASSWORD": "fake-snow-pw",
    "SNOWFLAKE_ROLE": "TRANSFORMER",
    "SNOWFLAKE_WAREHOUSE": "COMPUTE_WH",
    "SNOWFLAKE_DATABASE": DATABASE,
}


def _load_loopback_guard():
    spec = importlib.util.spec_from_file_location("greenery_loopback_only", LOOPBACK_ONLY / "sitecustomize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_loopback_guard = None


@dataclass
class SnowflakeServer:
    port: int
    data_dir: Path  # fakesnow's database files, one per Snowflake database
    env: dict[str, str]  # for a subprocess: the account, the endpoint, the emulation, the guard
    log: Path  # the server's stderr
    outbound_log: Path

    def connect(self, database: str = DATABASE, **kwargs):
        """A connection through the real connector, with the timeouts every test should have, to
        `database` (the server creates a database on first use: a test may have one of its own)."""
        import snowflake.connector

        return snowflake.connector.connect(
            account=self.env["SNOWFLAKE_ACCOUNT"], user=self.env["SNOWFLAKE_USER"],
            password=self.env["SNOWFLAKE_PASSWORD"], role=self.env["SNOWFLAKE_ROLE"],
            warehouse=self.env["SNOWFLAKE_WAREHOUSE"], database=database,
            host="127.0.0.1", port=self.port, protocol="http",
            login_timeout=LOGIN_TIMEOUT_SECONDS, network_timeout=NETWORK_TIMEOUT_SECONDS,
            socket_timeout=NETWORK_TIMEOUT_SECONDS, platform_detection_timeout_seconds=0.0,
            **kwargs,
        )

    @contextmanager
    def in_process(self, seconds: int = IN_PROCESS_TIMEOUT_SECONDS):
        """This process's use of the server: given up after `seconds` (the connector would retry
        a refused connection for minutes), and refused anything but 127.0.0.0/8 meanwhile."""
        assert _loopback_guard is not None
        previous = signal.signal(signal.SIGALRM, _timed_out)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        _loopback_guard.arm(str(self.outbound_log))
        try:
            yield self
        finally:
            _loopback_guard.arm(None)
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def run(self, command: list[str], *, timeout: float, env: dict[str, str] | None = None,
            cwd: Path = DBT_PROJECT_DIR) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=cwd, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def server_log(self, tail: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def outbound(self) -> list[str]:
        """Every attempt, by any process under the guard, to reach beyond 127.0.0.0/8."""
        return self.outbound_log.read_text().splitlines() if self.outbound_log.exists() else []


@pytest.fixture(autouse=True)
def stays_on_loopback(snowflake_server):
    """Every test here: no process under the guard tried to reach beyond 127.0.0.0/8."""
    before = len(snowflake_server.outbound())
    yield
    assert snowflake_server.outbound()[before:] == []


def _timed_out(signum, frame):
    raise TimeoutError("the fakesnow server did not answer in time")


@pytest.fixture(scope="session")
def snowflake_server(tmp_path_factory) -> SnowflakeServer:
    global _loopback_guard
    if _loopback_guard is None:
        _loopback_guard = _load_loopback_guard()
    folder = tmp_path_factory.mktemp("fakesnow_server")
    data_dir, scratch = folder / "databases", folder / "tmp"
    data_dir.mkdir()
    scratch.mkdir()
    log, outbound_log = folder / "server.log", folder / "outbound.log"
    # No SNOWFLAKE_* of the caller's own (a real account, a key file) reaches a test.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SNOWFLAKE_", "GREENERY_", "DBT_"))}
    guarded = {
        "PYTHONPATH": os.pathsep.join([str(LOOPBACK_ONLY), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "GREENERY_TEST_OUTBOUND_LOG": str(outbound_log),
    }
    # TMPDIR: fakesnow keeps the files PUT to its stages in a temporary folder; this one goes away.
    with log.open("wb") as stderr:
        server = subprocess.Popen(
            [sys.executable, str(LAUNCHER), str(data_dir)], env={**inherited, **guarded, "TMPDIR": str(scratch)},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        port = _read_port(server, deadline, log)
        _wait_until_serving(server, port, deadline, log)
        env = {
            **inherited, **guarded, **ACCOUNT,
            "GREENERY_TARGET": "snowflake",
            "GREENERY_SNOWFLAKE_EMULATED": "true",
            "SNOWFLAKE_HOST": "127.0.0.1",
            "SNOWFLAKE_PORT": str(port),
            "SNOWFLAKE_PROTOCOL": "http",
            "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        yield SnowflakeServer(port, data_dir, env, log, outbound_log)
    finally:
        server.terminate()
        try:
            server.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=STOP_TIMEOUT_SECONDS)
        server.stdout.close()


def _read_port(server: subprocess.Popen, deadline: float, log: Path) -> int:
    """The first line the launcher prints, once it holds its port."""
    ready, _, _ = select.select([server.stdout], [], [], max(0.0, deadline - time.monotonic()))
    line = server.stdout.readline().decode().strip() if ready else ""
    if not line.isdigit():
        server.kill()
        raise RuntimeError(f"the fakesnow server did not start: {log.read_text(errors='replace')[-3000:]}")
    return int(line)


def _wait_until_serving(server: subprocess.Popen, port: int, deadline: float, log: Path) -> None:
    """Until the server answers HTTP: its session endpoint refuses a request without a token."""
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"http://127.0.0.1:{port}/session", data=b"", method="POST")
    while time.monotonic() < deadline and server.poll() is None:
        try:
            no_proxy.open(request, timeout=2)
        except urllib.error.HTTPError as answer:
            if answer.code == 401:
                return
        except OSError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"the fakesnow server on port {port} never answered: {log.read_text(errors='replace')[-3000:]}")


GREENERY = str(Path(sys.executable).with_name("greenery"))
COMMAND_TIMEOUT_SECONDS = 900  # a chain run here takes 2-4 minutes; never wait forever on one


@pytest.fixture
def account(snowflake_server, tmp_path):
    """A database of this test's own on the server, and the local folders a user has."""
    inbox = AlertInbox()
    database = f"GREENERY_{uuid.uuid4().hex[:6].upper()}"
    env = {
        "SNOWFLAKE_DATABASE": database,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "GREENERY_WAREHOUSE_DIR": str(tmp_path / "warehouse"),  # the run lock's folder
        "GREENERY_DOCS_DIR": str(tmp_path / "docs-site"),
        "GREENERY_ALERT_URLS": inbox.url,
    }

    def greenery(*args: str, **extra: str):
        return snowflake_server.run([GREENERY, *args], timeout=COMMAND_TIMEOUT_SECONDS, env={**env, **extra},
                                    cwd=tmp_path)

    def python(code: str):
        return snowflake_server.run([sys.executable, "-c", code], timeout=COMMAND_TIMEOUT_SECONDS, env=env, cwd=tmp_path)

    greenery.database, greenery.inbox, greenery.env, greenery.python = database, inbox, env, python
    yield greenery
    inbox.server.shutdown()
    inbox.server.server_close()
