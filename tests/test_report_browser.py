"""The HTML report in a real browser: payloads in user text stay text, and the page requests nothing.

Debian's chromium driven by Playwright (never `playwright install`); skipped where chromium is missing.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from auditkit import RunStore
from auditkit.audit import audit
from auditkit.data import Shapes
from auditkit.report import render_report

sys.path.insert(0, str(Path(__file__).parent))
from _standins import SHAPE_SKEW, SMALL_AUDIT, ShapesStandIn  # noqa: E402 - next to this file, not in a package

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
PAYLOADS = [
    "<script>window.__pwned = 1; alert(1)</script>",
    '<img src=x onerror="window.__pwned = 2">',
    '"><svg onload="window.__pwned = 3">',
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]


def test_payloads_do_not_execute_and_nothing_is_fetched(trained_judge, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    gen = ShapesStandIn(SHAPE_SKEW)
    gen.name = f"gen {PAYLOADS[1]}"  # the generator's name is user text too
    result = audit(gen, Shapes(400, seed=4), trained_judge, store=RunStore(tmp_path / "home"), **SMALL_AUDIT)
    signoffs = [
        {"reviewer": f"Eve {p}", "role": PAYLOADS[2], "decision": "conditional", "comment": p,
         "date": "2026-01-02T03:04:05Z", "audit_sha256": "0" * 64}
        for p in PAYLOADS
    ]  # fmt: skip
    page_file = tmp_path / "report.html"
    page_file.write_bytes(render_report(result, "html", signoffs=signoffs))

    requests: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(page_file.as_uri())
        page.wait_for_load_state("load")
        pwned = page.evaluate("window.__pwned")
        text = page.inner_text("body")
        scripts = page.evaluate("document.querySelectorAll('script').length")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=False)
        browser.close()
    assert pwned is None and dialogs == [] and scripts == 0
    for payload in PAYLOADS:
        assert payload in text  # shown to the reader as the text it is
    assert f"gen {PAYLOADS[1]}" in text
    external = [u for u in requests if not (u.startswith("data:") or u == page_file.as_uri())]
    assert external == [], external
