"""What a failed dbt command says went wrong, as one line an alert can carry.

dagster-dbt's own error says only that the dbt process failed. The cause is in what dbt leaves in
the invocation's target folder: run_results.json names each node that failed and why, and dbt's
JSON log (dbt.log, which dagster-dbt writes there too) holds the errors that belong to no node
(a parse error, an unknown macro, the connection).
"""

import json
import os
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:  # alerts reads first_line without loading dagster-dbt (and sqlglot with it)
    from dagster_dbt import DbtCliInvocation

# Enough for a DuckDB error and the path it names, short enough for a chat message.
MAX_CAUSE = 300

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# dbt's framing around the cause: "Encountered an error:", "Runtime Error in model x (path)",
# "Compilation Error", "Failure in test x (path)".
_PREFIX = re.compile(r"^Encountered an error[^:]*:\s*")
_FRAMING = re.compile(r"^(\w+ Error|Failure)( in \w+ \S+ \(.*\))?:?$")
# An error about values may quote one (DuckDB's `Could not convert string 'x'`, `duplicate key
# "x"`), and a value may be personal data: nothing quoted is shown from such an error.
_ABOUT_VALUES = re.compile(
    r"conversion|constraint|invalid input|out of range|mismatch|duplicate|could not (convert|parse|cast)"
    r"|value|not recognized|violat",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
# What may stay quoted in other errors: a name (a column, table or macro) or an absolute path.
_NAME_OR_PATH = re.compile(r"[A-Za-z_][\w$.]*|/[^\s\"']*")
_SECRET_VARIABLES = re.compile(r"PASSWORD|PASSPHRASE|SALT|SECRET|TOKEN|PRIVATE_KEY|ALERT_URLS")
# dbt's console lines per node and per run, which name the node but not the cause.
_SUMMARY_EVENTS = {
    "LogModelResult", "LogTestResult", "LogSnapshotResult", "LogSeedResult", "LogFreshnessResult",
    "RunResultFailure", "EndOfRunSummary", "StatsLine",
}
_FAILED = ("error", "fail", "runtime error")


def dbt_failure(invocation: "DbtCliInvocation", ignore_failed_tests: bool = False) -> dg.Failure | None:
    """The step failure a finished dbt command calls for, or None when it succeeded.

    Its description is one line: `model marts.fct_orders: <the database's first line>`,
    `test not_null_x on staging.y: 3 failing row(s)`, or, when no node failed, the first line of
    dbt's error. With `ignore_failed_tests` (they were reported as failed blocking checks, which
    fail the step themselves), tests that found bad rows call for no failure of their own."""
    if invocation.is_successful():
        return None
    failed = []
    # dbt writes no run_results.json when it stops before any node (a parse error, an unknown macro).
    if (invocation.target_path / "run_results.json").exists():
        failed = failed_nodes(invocation.get_artifact("run_results.json"), _manifest(invocation))
    if ignore_failed_tests and failed and all(node["status"] == "fail" for node in failed):
        return None
    log = invocation.target_path / "dbt.log"
    if failed:
        description = f"{failed[0]['node']}: {failed[0]['cause']}"
        if len(failed) > 1:
            description += f" (and {len(failed) - 1} more failure(s))"
    else:
        logged = logged_error(log.read_text(errors="replace").splitlines()) if log.exists() else None
        description = logged or f"dbt exited with code {invocation.process.returncode}"
    return dg.Failure(
        description=description,
        metadata={
            "exit_code": invocation.process.returncode,
            "failed_nodes": dg.MetadataValue.json(failed),
            "dbt_log": dg.MetadataValue.path(str(log)),
        },
    )


def _manifest(invocation: "DbtCliInvocation") -> dict:
    # A dbt command run outside a dbt asset (the gate's tests) has no manifest of Dagster's: dbt's own.
    if invocation.manifest.get("nodes"):
        return invocation.manifest
    if (invocation.target_path / "manifest.json").exists():
        return invocation.get_artifact("manifest.json")
    return {"nodes": {}, "sources": {}}


def failed_nodes(run_results: dict, manifest: dict) -> list[dict[str, Any]]:
    """Each node of `run_results` that failed, as {"node", "status", "cause"}, errors first: a
    model that did not build often explains the tests after it."""
    failed = [_node_cause(result, manifest) for result in run_results["results"] if result["status"] in _FAILED]
    return sorted(failed, key=lambda node: node["status"] == "fail")


def logged_error(log_lines: Iterable[str]) -> str | None:
    """The first line of the first error in dbt's JSON log, past dbt's per-node progress lines."""
    for text in log_lines:
        try:
            info = json.loads(text)["info"]
        except (ValueError, KeyError, TypeError):
            continue  # not dbt's JSON (DBT_LOG_FORMAT_FILE set to text, a truncated line)
        if info.get("level") == "error" and info.get("name") not in _SUMMARY_EVENTS:
            cause = first_line(info.get("msg", ""))
            if cause:
                return cause
    return None


def first_line(message: str) -> str:
    """The first line of `message` that says what went wrong: no colour codes, no dbt framing,
    nothing quoted from an error about values, no secret of the environment; at most MAX_CAUSE long."""
    for line in _ANSI.sub("", message).splitlines():
        line = _PREFIX.sub("", line.strip())
        if line and not _FRAMING.match(line):
            return _shortened(_without_secrets(_without_values(line)))
    return ""


def _node_cause(result: dict, manifest: dict) -> dict[str, Any]:
    unique_id = result["unique_id"]
    kind = unique_id.split(".")[0]
    if kind == "test":
        test = manifest["nodes"].get(unique_id, {})
        tested = test.get("attached_node") or next(iter(test.get("depends_on", {}).get("nodes", [])), None)
        node = f"test {test.get('name') or unique_id.split('.')[2]}"
        node += f" on {_relation(tested, manifest)}" if tested else ""
    else:
        node = f"{kind} {_relation(unique_id, manifest)}"
    if result["status"] == "fail" and result.get("failures") is not None:
        cause = f"{result['failures']} failing row(s)"
    else:
        cause = first_line(result.get("message") or "") or result["status"]
    return {"node": node, "status": result["status"], "cause": cause}


def _relation(unique_id: str, manifest: dict) -> str:
    """`schema.table` as the warehouse names it, e.g. marts.fct_orders or raw.events."""
    node = manifest["nodes"].get(unique_id) or manifest["sources"].get(unique_id)
    if not node:
        return unique_id.split(".")[-1]
    return f"{node['schema']}.{node.get('alias') or node.get('identifier') or node['name']}"


def _without_values(line: str) -> str:
    about_values = _ABOUT_VALUES.search(line)

    def shown(quoted: re.Match) -> str:
        text = quoted[1] if quoted[1] is not None else quoted[2]
        if not about_values and _NAME_OR_PATH.fullmatch(text):
            return quoted[0]
        return quoted[0][0] + "…" + quoted[0][0]

    return _QUOTED.sub(shown, line)


def _without_secrets(line: str) -> str:
    for name, value in os.environ.items():
        if _SECRET_VARIABLES.search(name) and len(value) >= 4 and value in line:
            line = line.replace(value, "***")
    return line


def _shortened(line: str) -> str:
    return line if len(line) <= MAX_CAUSE else line[: MAX_CAUSE - 1] + "…"
