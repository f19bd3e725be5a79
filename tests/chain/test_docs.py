import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_docs_site_is_published_and_served_on_localhost(course_run):
    site = course_run.warehouse / "docs-site"
    assert sorted(p.name for p in site.iterdir()) == ["catalog.json", "index.html", "manifest.json"]
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("greenery")), "docs", "--port", str(port)],
        env={**__import__("os").environ, "GREENERY_DOCS_DIR": str(site)},
        stdout=subprocess.DEVNULL,
    )
    try:
        page = _get_when_up(f"http://127.0.0.1:{port}/")
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert "fct_product_funnel" in page  # the static page embeds the manifest
    assert "orders_snapshot" in page


def _get_when_up(url: str) -> str:
    for _ in range(100):
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing served at {url}")
