"""End to end through the real UI: `greenery ui` (webserver + daemon), GraphQL, headless Chromium."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.webserver import ARTIFACTS, CHROMIUM, REPOSITORY, Dagster, free_port, wait_until_up


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory):
    """`greenery ui` on a fresh instance and a warehouse of fresh sample data, as a user starts it."""
    root = tmp_path_factory.mktemp("ui")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(root / "dagster_home"),
        "GREENERY_WAREHOUSE_DIR": str(root / "warehouse"),
        "GREENERY_DOCS_DIR": str(root / "docs-site"),
        # No schedule tick may land in the middle of the test: only the runs it launches.
        "GREENERY_SCHEDULE_CRON": "0 0 1 1 *",
    }
    env.pop("GREENERY_ALERT_URLS", None)
    greenery = str(Path(sys.executable).with_name("greenery"))
    subprocess.run([greenery, "sample", "--days", "2", "--sessions-per-day", "200"], env=env, check=True,
                   capture_output=True)
    port = free_port()
    log = (root / "ui.log").open("w")
    ui = subprocess.Popen([greenery, "ui", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    dagster = Dagster(port)
    wait_until_up(dagster, ui, root / "ui.log")
    yield dagster, ui, root
    if ui.poll() is None:
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=60)
    log.close()


def test_the_asset_graph_schedule_and_sensors_are_served(dagster_ui, dbt_manifest):
    dagster, _, _ = dagster_ui
    manifest = json.loads(dbt_manifest.read_text())
    expected = {
        "/".join([node["schema"], node["name"]])
        for node in [*manifest["nodes"].values(), *manifest["sources"].values()]
        if node["resource_type"] in ("model", "snapshot", "source")
    }
    keys = {"/".join(node["assetKey"]["path"]) for node in dagster.gql("{ assetNodes { assetKey { path } } }")["assetNodes"]}
    assert expected <= keys
    repository = dagster.gql(
        """query($selector: RepositorySelector!) { repositoryOrError(repositorySelector: $selector) {
             ... on Repository { schedules { name cronSchedule } sensors { name } } } }""",
        selector=REPOSITORY,
    )["repositoryOrError"]
    assert [s["name"] for s in repository["schedules"]] == ["greenery_production_schedule"]
    assert {s["name"] for s in repository["sensors"]} == {
        "docs_and_clone_after_production", "alert_on_failed_run", "alert_on_warnings", "raw_freshness_sensor",
    }


def test_a_launched_production_run_succeeds_and_its_sensor_starts_docs_and_clone(dagster_ui):
    dagster, _, root = dagster_ui
    production = dagster.launch("greenery_production")

    runs = dagster.wait_for(
        lambda runs: any(r["jobName"] == "greenery_docs_and_clone" and r["status"] in ("SUCCESS", "FAILURE") for r in runs),
        "greenery_docs_and_clone, started by the sensor",
    )
    status = {r["runId"]: (r["jobName"], r["status"]) for r in runs}
    assert status[production] == ("greenery_production", "SUCCESS")
    assert [s for job, s in status.values() if job == "greenery_docs_and_clone"] == ["SUCCESS"]
    assert (root / "warehouse" / "dev.duckdb").exists()
    assert (root / "docs-site" / "index.html").exists()


def test_two_runs_launched_at_once_queue_for_the_warehouse_and_both_succeed(dagster_ui):
    dagster, _, _ = dagster_ui
    _published(dagster)  # the docs and clones read what a production run published
    launched = [dagster.launch("greenery_docs_and_clone") for _ in range(2)]

    runs = dagster.wait_for(
        lambda runs: all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs if r["runId"] in launched),
        "two concurrent runs",
    )
    earlier, later = sorted((r for r in runs if r["runId"] in launched), key=lambda r: r["startTime"])
    assert [earlier["status"], later["status"]] == ["SUCCESS", "SUCCESS"]
    assert earlier["endTime"] <= later["startTime"]  # one writer at a time: they never overlapped


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (scripts/test-services.sh installs it)")
def test_the_ui_shows_lineage_the_funnel_chart_the_schedule_and_the_freshness_sensor(dagster_ui):
    from playwright.sync_api import sync_playwright

    dagster, _, _ = dagster_ui
    _published(dagster)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            page.goto(f"{dagster.url}/asset-groups")
            _dismiss_welcome(page)
            for group in ["raw", "governance", "snapshots", "staging", "marts", "docs", "environments"]:
                page.get_by_text(group, exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=ARTIFACTS / "lineage.png")

            page.goto(f"{dagster.url}/assets/marts/fct_funnel?view=events")
            page.get_by_text("funnel_chart").first.wait_for(timeout=60_000)
            page.get_by_text("[Show Markdown]").first.click()
            chart = page.locator("img[src^='data:image/png']").first
            chart.wait_for(timeout=30_000)
            page.screenshot(path=ARTIFACTS / "fct_funnel_chart.png")
            assert chart.evaluate("img => img.naturalWidth") > 100
            assert "Sessions per funnel step" == chart.get_attribute("alt")

            page.goto(f"{dagster.url}/locations/greenery/schedules/greenery_production_schedule")
            page.get_by_text("greenery_production_schedule").first.wait_for(timeout=60_000)
            page.screenshot(path=ARTIFACTS / "schedule.png")
            assert "greenery_production" in page.content()

            page.goto(f"{dagster.url}/locations/greenery/sensors/raw_freshness_sensor")
            page.get_by_text("raw_freshness_sensor").first.wait_for(timeout=60_000)
            page.screenshot(path=ARTIFACTS / "freshness_sensor.png")
            assert "alerts once when a source goes stale" in page.content()
        finally:
            browser.close()


def _published(dagster: Dagster) -> None:
    """Wait for a successful production run: the one test_a_launched_production_run... launches,
    or, for a test run on its own, one launched here."""
    if not any(r["jobName"] == "greenery_production" for r in dagster.runs()):
        dagster.launch("greenery_production")
    dagster.wait_for(lambda runs: any(r["jobName"] == "greenery_production" and r["status"] == "SUCCESS" for r in runs),
                     "a successful production run")


def _dismiss_welcome(page) -> None:
    """A new instance greets the first visitor with a newsletter dialog."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.click(timeout=10_000)
    except Exception:  # noqa: BLE001 - no dialog this time
        pass


def test_sigterm_stops_the_webserver_and_the_daemon(dagster_ui):
    dagster, ui, _ = dagster_ui
    children = subprocess.run(["pgrep", "-P", str(ui.pid)], capture_output=True, text=True).stdout.split()
    commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() for pid in children}
    dagster_processes = [pid for pid, command in commands.items() if "dagster-webserver" in command or "dagster-daemon" in command]
    assert len(dagster_processes) == 2, commands

    ui.send_signal(signal.SIGTERM)

    assert ui.wait(timeout=60) == 0
    for pid in dagster_processes:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    with pytest.raises(OSError):
        dagster.gql("{ version }")
