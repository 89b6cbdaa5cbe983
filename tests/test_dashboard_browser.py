"""`auditkit dashboard` in a real browser: the server starts on loopback, every page renders its title with no
error box, and screenshots are kept as test artifacts (``$AUDITKIT_SCREENSHOTS`` or the test's tmp folder)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from auditkit import RunStore
from auditkit.audit import audit
from auditkit.data import Shapes

sys.path.insert(0, str(Path(__file__).parent))
from _standins import SHAPE_SKEW, SMALL_AUDIT, ShapesStandIn  # noqa: E402 - next to this file, not in a package

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = {"": "Overview", "bias": "Bias", "quality": "Quality", "reports": "Reports"}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_page_renders_in_chromium(trained_judge, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    home = tmp_path / "home"
    result = audit(
        ShapesStandIn(SHAPE_SKEW), Shapes(400, seed=4), trained_judge, store=RunStore(home), **SMALL_AUDIT
    )
    shots = Path(os.environ.get("AUDITKIT_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "auditkit", "dashboard", "--home", str(home), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None, server.stdout.read()
            time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for path, title in PAGES.items():
                page.goto(f"http://127.0.0.1:{port}/{path}", wait_until="networkidle")
                page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
                page.wait_for_timeout(1500)  # let the page's tables and charts settle before the screenshot
                page.screenshot(path=str(shots / f"{title.lower()}.png"), full_page=True)
                assert page.locator('[data-testid="stException"]').count() == 0, title
                assert page.locator('[data-testid="stAlertContentError"]').count() == 0, title
                if title == "Overview":  # tables draw on a canvas; the verdict count is text
                    assert f"verdict: {result.verdict}" in page.inner_text("body")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert {f"{t.lower()}.png" for t in PAGES.values()} <= {f.name for f in shots.iterdir()}


def test_dashboard_refuses_a_public_host_without_a_gate(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "auditkit", "dashboard", "--home", str(tmp_path), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "SSH tunnel" in done.stderr
