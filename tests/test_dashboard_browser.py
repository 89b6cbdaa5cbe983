"""`auditkit dashboard` in a real browser: the server starts on loopback, every page renders its title with no
error box, the password gate keeps data out until the right password is entered, and screenshots are kept
as test artifacts (``$AUDITKIT_SCREENSHOTS`` or the test's tmp folder)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditkit import RunStore

sys.path.insert(0, str(Path(__file__).parent))
from test_dashboard import PAGE_SIZE, shared_store  # noqa: E402 - the AppTest tests' store, built once

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
PAGES = {
    "": "Overview",
    "training": "Training",
    "samples": "Samples",
    "quality": "Quality",
    "bias": "Bias",
    "explanations": "Explanations",
    "compare": "Compare",
    "reports": "Reports",
}
PASSWORD = "correct horse battery staple"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _dashboard(home: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[int]:
    """``auditkit dashboard`` on a free loopback port, stopped on exit; yields the port."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "auditkit", "dashboard", "--home", str(home), "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None, server.stdout.read()
            time.sleep(0.5)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def home(tmp_path_factory, trained_judge) -> Path:
    return shared_store(tmp_path_factory, trained_judge)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("AUDITKIT_SCREENSHOTS", tmp_path_factory.mktemp("screenshots")))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _settle(page) -> None:
    """Wait until the script has finished running and the page's images and charts have drawn."""
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=60_000)
    page.wait_for_timeout(1500)


def _screenshot(page, path: Path, width: int = 1400) -> None:
    """The whole page: Streamlit scrolls inside its main block, so the window is made as tall as it."""
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": width, "height": min(max(int(height), 700), 8000)})
    page.wait_for_timeout(500)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": width, "height": 1000})


def _no_error(page, title: str) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, title
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0, title


def test_every_page_renders_in_chromium(home, shots) -> None:
    from playwright.sync_api import sync_playwright

    store = RunStore(home)
    newest = store.list_audits()[0]
    with _dashboard(home) as port, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for path, title in PAGES.items():
            page.goto(f"http://127.0.0.1:{port}/{path}", wait_until="networkidle")
            page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
            _settle(page)
            _screenshot(page, shots / f"{title.lower()}.png")
            _no_error(page, title)
            body = page.inner_text("body")
            if title == "Overview":  # tables draw on a canvas; the verdict count is text
                assert f"verdict: {newest.verdict}" in body
            if title in ("Samples", "Bias"):  # again with the conditional audit: per-class views appear
                page.locator('[data-testid="stSelectbox"]').first.click()
                page.get_by_role("option", name=re.compile("conditional")).click()
                _settle(page)
                _no_error(page, f"{title}, conditional audit")
                _screenshot(page, shots / f"{title.lower()}-conditional.png")
                body = page.inner_text("body")
                assert (
                    "Within each requested class" if title == "Bias" else "judge read the requested shape"
                ) in body
            if title == "Samples":
                assert page.locator('[data-testid="stImage"]').count() == PAGE_SIZE
            if title == "Explanations":
                assert "How far to trust each method" in body
            if title == "Compare":
                assert "regressions" in body
        browser.close()
    assert {f"{t.lower()}.png" for t in PAGES.values()} <= {f.name for f in shots.iterdir()}


def test_password_gate_keeps_data_out_until_the_password_is_right(home, shots) -> None:
    from playwright.sync_api import sync_playwright

    newest = RunStore(home).list_audits()[0]
    env = {"REVIEW_PASSWORD": PASSWORD}
    with _dashboard(home, "--password-env", "REVIEW_PASSWORD", env=env) as port, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 700})
        for path in ("", "bias"):  # a page's own address does not get past the gate either
            page.goto(f"http://127.0.0.1:{port}/{path}", wait_until="networkidle")
            page.get_by_role("heading", name="auditkit dashboard").wait_for(timeout=60_000)
            _settle(page)
            assert page.locator('input[type="password"]').count() == 1
            body = page.inner_text("body")
            assert newest.id not in body and "Bias" not in body and "verdict" not in body
        page.screenshot(path=str(shots / "login.png"))

        page.locator('input[type="password"]').fill("not the password")
        page.get_by_role("button", name="Open").click()
        page.get_by_text("Wrong password.").wait_for(timeout=30_000)
        page.screenshot(path=str(shots / "login-wrong.png"))
        assert newest.id not in page.inner_text("body")

        page.locator('input[type="password"]').fill(PASSWORD)
        page.get_by_role("button", name="Open").click()
        page.get_by_role("heading", name="Overview").first.wait_for(timeout=60_000)
        _settle(page)
        _no_error(page, "Overview after login")
        assert f"verdict: {newest.verdict}" in page.inner_text("body")
        browser.close()


def test_dashboard_refuses_a_public_host_without_a_gate(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AUDITKIT_DASHBOARD_PASSWORD"}
    done = subprocess.run(
        [sys.executable, "-m", "auditkit", "dashboard", "--home", str(tmp_path), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "SSH tunnel" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
