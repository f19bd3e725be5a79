"""What the end-to-end tests share: the Dagster webserver's GraphQL, free ports, headless Chromium."""

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from greenery_orchestration.settings import REPO_DIR

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO_DIR / "test-artifacts"
REPOSITORY = {"repositoryLocationName": "greenery", "repositoryName": "__repository__"}
RUN_WAIT_SECONDS = 360


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Dagster:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}"

    def gql(self, query: str, **variables) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
        assert "errors" not in answer, answer
        return answer["data"]

    def launch(self, job_name: str) -> str:
        data = self.gql(
            """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
                 __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
            params={"selector": {**REPOSITORY, "jobName": job_name}, "runConfigData": {}},
        )["launchRun"]
        assert data["__typename"] == "LaunchRunSuccess", data
        return data["run"]["runId"]

    def runs(self) -> list[dict]:
        return self.gql(
            "{ runsOrError { ... on Runs { results { runId jobName status startTime endTime } } } }"
        )["runsOrError"]["results"]

    def wait_for(self, predicate, what: str) -> list[dict]:
        deadline = time.monotonic() + RUN_WAIT_SECONDS
        while time.monotonic() < deadline:
            runs = self.runs()
            if predicate(runs):
                return runs
            time.sleep(3)
        pytest.fail(f"timed out after {RUN_WAIT_SECONDS}s waiting for {what}: {self.runs()}")


def wait_until_up(dagster: Dagster, ui: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert ui.poll() is None, f"greenery ui exited:\n{log.read_text()[-3000:]}"
        try:
            if dagster.gql("{ version }")["version"]:
                return
        except OSError:
            time.sleep(1)
    pytest.fail(f"the webserver did not answer in 120 s:\n{log.read_text()[-3000:]}")
