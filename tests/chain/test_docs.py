import csv
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from greenery_orchestration.chain.docs import DBT_DOCS_KEY, DOCS_DIGEST, generated_docs, publish
from greenery_orchestration.report import REPORT_PAGE
from greenery_orchestration.settings import docs_url
from tests.webserver import ARTIFACTS, CHROMIUM, free_port


def test_the_report_is_published_with_the_docs_in_one_rename(tmp_path):
    generated = tmp_path / "target"
    generated.mkdir()
    for name, text in [("static_index.html", "new docs"), ("manifest.json", "{}"), ("catalog.json", "{}")]:
        (generated / name).write_text(text)
    site = tmp_path / "docs-site"
    (site / "report").mkdir(parents=True)
    (site / "index.html").write_text("old docs")
    (site / REPORT_PAGE).write_text("old report")

    files = publish(generated_docs(generated), site, {REPORT_PAGE: "new report"})

    assert files == ["catalog.json", "index.html", "manifest.json", "report"]
    assert (site / "index.html").read_text() == "new docs"
    assert (site / REPORT_PAGE).read_text() == "new report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs-site", "target"]  # no .partial nor .old left


def test_the_docs_site_is_published_and_served_on_localhost(course_run):
    site = course_run.warehouse / "docs-site"
    assert sorted(p.name for p in site.iterdir()) == ["catalog.json", DOCS_DIGEST, "index.html", "manifest.json", "report"]
    with _serving(site) as url:
        page = _get_when_up(url)
        report = _get_when_up(f"{url}report")
    assert "fct_product_funnel" in page  # the static page embeds the manifest
    assert "orders_snapshot" in page
    assert "Greenery funnel report" in report
    # An incremental model is documented as its full build, whose SQL reads every event, not
    # as the increment a run after this one would compile.
    manifest = json.loads((site / "manifest.json").read_text())
    compiled = manifest["nodes"]["model.greenery.int_sessions__aggregated"]["compiled_code"]
    assert "session_started_at" in compiled and "recent_sessions" not in compiled


def test_the_docs_are_generated_again_only_when_the_project_or_the_warehouse_columns_change(
    course_run, tmp_path, monkeypatch
):
    """The report is rendered every run; the dbt docs only when what they show changed: here a
    column's comment, which the catalog holds. New rows change nothing there."""
    from greenery_orchestration.definitions import defs

    warehouse = tmp_path / "warehouse"
    shutil.copytree(course_run.warehouse, warehouse)
    site = warehouse / "docs-site"
    monkeypatch.setenv("GREENERY_WAREHOUSE_DIR", str(warehouse))
    monkeypatch.setenv("GREENERY_DOCS_DIR", str(site))

    def docs() -> str:
        with dg.DagsterInstance.ephemeral() as instance:
            result = defs().resolve_job_def("greenery_docs_and_clone").execute_in_process(
                instance=instance, asset_selection=[DBT_DOCS_KEY]
            )
            (materialization,) = result.asset_materializations_for_node("docs__dbt_docs")
        return materialization.metadata["dbt_docs"].value

    assert docs() == "generated"  # the copied site was generated for another warehouse folder
    digest, index = (site / DOCS_DIGEST).read_text(), (site / "index.html").read_bytes()
    (site / REPORT_PAGE).unlink()
    with duckdb.connect(str(warehouse / "prod.duckdb")) as connection:
        connection.execute("insert into ops.publish_log select * from ops.publish_log")

    assert docs() == "kept"
    assert (site / DOCS_DIGEST).read_text() == digest and (site / "index.html").read_bytes() == index
    assert "Greenery funnel report" in (site / REPORT_PAGE).read_text()  # rendered again

    with duckdb.connect(str(warehouse / "prod.duckdb")) as connection:
        connection.execute("comment on column marts.fct_orders.order_total is 'in US dollars, tax included'")
    assert docs() == "generated"
    assert "in US dollars, tax included" in (site / "catalog.json").read_text()
    assert (site / DOCS_DIGEST).read_text() != digest


def test_the_funnel_asset_and_the_docs_step_link_to_the_report(course_run):
    with course_run.instance() as instance:
        funnel = instance.get_latest_materialization_event(dg.AssetKey(["marts", "fct_funnel"]))
        docs = instance.get_latest_materialization_event(DBT_DOCS_KEY)
    assert funnel.asset_materialization.metadata["report"].value == f"{docs_url()}/report/"
    assert docs.asset_materialization.metadata["report"].value == str(course_run.warehouse / "docs-site" / REPORT_PAGE)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (scripts/test-services.sh installs it)")
def test_the_funnel_report_shows_the_course_funnel_in_a_browser(course_run, course_data):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with _serving(course_run.warehouse / "docs-site") as url, sync_playwright() as playwright:
        _get_when_up(url)
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            outside = []
            page.on("request", lambda request: request.url.startswith(url) or outside.append(request.url))
            page.goto(f"{url}report")
            page.screenshot(path=ARTIFACTS / "funnel_report.png", full_page=True)
            tables = page.eval_on_selector_all(
                "table", "tables => tables.map(t => [...t.rows].map(r => [...r.cells].map(c => c.innerText)))"
            )
            text = page.inner_text("body")
            content = page.content()
        finally:
            browser.close()

    assert outside == []  # everything the page shows is in the page
    steps = next(t for t in tables if t[0][0] == "Step")
    # The course's funnel: 467 / 578 and 361 / 578 of the sessions that viewed a page.
    assert [row[:3] for row in steps[1:]] == [
        ["page_view", "578", "100.0%"], ["add_to_cart", "467", "80.8%"], ["checkout", "361", "62.5%"]
    ]
    assert "467 sessions · 80.8% of first step" in text
    days = next(t for t in tables if t[0][:2] == ["Day", "page_view sessions"])
    assert sum(int(row[1].replace(",", "")) for row in days[1:]) == 578  # the days add up to the funnel
    users = next(t for t in tables if t[0][0] == "User id")
    assert users[0] == ["User id", "Sessions"]
    assert len(users) == 2 and users[1][0].startswith("d1f08820-")
    products = next(t for t in tables if t[0][0] == "Product")
    value = products[0].index("Abandoned value")
    lost = [float(row[value].lstrip("$").replace(",", "")) for row in products[1:]]
    assert len(lost) == 30 and lost == sorted(lost, reverse=True)
    # No personal data, even of the user called out.
    with open(course_data / "users.csv", newline="", encoding="utf-8") as users_csv:
        for user in csv.DictReader(users_csv):
            assert user["email"] not in content and user["phone_number"] not in content


@contextmanager
def _serving(site: Path) -> Iterator[str]:
    """`greenery docs` on a free port, serving `site`, for as long as the block lasts."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("greenery")), "docs", "--port", str(port)],
        env={**os.environ, "GREENERY_DOCS_DIR": str(site)},
        stdout=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            status = Path(f"/proc/{server.pid}/status").read_text()
            server.kill()
            server.wait()
            signals = [line for line in status.splitlines() if line.startswith(("State", "SigBlk", "SigIgn", "SigCgt"))]
            pytest.fail(f"`greenery docs` did not stop within 10 s of SIGTERM: {signals}")


def _get_when_up(url: str) -> str:
    for _ in range(100):
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing served at {url}")
