"""The report commands: signoff, verify and diff through the `auditkit` CLI (exit codes and messages)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from auditkit import RunStore
from auditkit.audit import audit
from auditkit.data import Shapes
from auditkit.report.integrity import write_manifest
from auditkit.report.signoff import load_signoffs

sys.path.insert(0, str(Path(__file__).parent))
from _standins import SHAPE_SKEW, ShapesStandIn  # noqa: E402 - next to this file, not in a package


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "auditkit", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def audits(trained_judge, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    store = RunStore(home)
    data = Shapes(300, seed=3)
    runs = [
        audit(
            ShapesStandIn(skew),
            data,
            trained_judge,
            n=1500,
            seed=0,
            stages=("bias",),
            n_boot=100,
            store=store,
            progress=False,
            attributes=["shape"],
            reference_shares="uniform",
        )
        for skew in (None, SHAPE_SKEW)
    ]
    return home, runs


def test_signoff_appends_records(audits) -> None:
    home, (fair, _) = audits
    done = _cli(
        "signoff",
        fair.audit_id,
        "--reviewer",
        "Ada <b>",
        "--role",
        "risk",
        "--decision",
        "conditional",
        "--comment",
        "retest at n=10000",
        "--home",
        str(home),
    )
    assert done.returncode == 0, done.stderr
    assert "conditional by Ada <b>" in done.stdout
    (record,) = load_signoffs(fair.path)
    assert record["comment"] == "retest at n=10000" and record["role"] == "risk"
    bad = _cli(
        "signoff", fair.audit_id, "--reviewer", "A", "--role", "r", "--decision", "maybe", "--home", str(home)
    )
    assert bad.returncode == 2 and "maybe" in bad.stderr


def test_diff_flags_the_regression(audits) -> None:
    home, (fair, skewed) = audits
    done = _cli("diff", fair.audit_id, skewed.audit_id, "--fail-on-regression", "--home", str(home))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "bias.tvd" in done.stdout
    as_json = _cli(
        "diff", fair.audit_id, fair.audit_id, "--json", "--fail-on-regression", "--home", str(home)
    )
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["regressions"] == []


def test_verify_names_what_changed(audits) -> None:
    _, (fair, _) = audits
    write_manifest(fair.path, ["audit.json"])
    assert _cli("verify", str(fair.path)).returncode == 0
    data = (fair.path / "audit.json").read_bytes()
    (fair.path / "audit.json").write_bytes(data.replace(b'"verdict": "pass"', b'"verdict": "fail"', 1))
    done = _cli("verify", str(fair.path))
    assert done.returncode == 1 and "audit.json" in done.stdout
    (fair.path / "audit.json").write_bytes(data)


def test_report_writes_html_pdf_and_a_manifest_that_verify_checks(audits, tmp_path) -> None:
    home, (_, skewed) = audits
    done = _cli("report", skewed.audit_id, "--format", "html", "--format", "pdf", "--home", str(home))
    assert done.returncode == 0, done.stderr
    assert (skewed.path / "report.html").is_file() and (skewed.path / "report.pdf").read_bytes()[
        :5
    ] == b"%PDF-"
    listed = json.loads((skewed.path / "manifest.json").read_text())["files"]
    assert {"report.html", "report.pdf", "audit.json"} <= set(listed)
    assert {a["path"] for a in skewed.data["manifest"]["artifacts"]} <= set(listed)
    assert _cli("verify", str(skewed.path)).returncode == 0
    # a second format later keeps the first ones covered
    assert _cli("report", skewed.audit_id, "--format", "md", "--home", str(home)).returncode == 0
    listed = json.loads((skewed.path / "manifest.json").read_text())["files"]
    assert {"report.html", "report.pdf", "report.md"} <= set(listed)
    html = skewed.path / "report.html"
    html.write_bytes(html.read_bytes().replace(b"FAIL", b"PASS", 1))
    done = _cli("verify", str(skewed.path))
    assert done.returncode == 1 and "report.html" in done.stdout
    elsewhere = _cli(
        "report", skewed.audit_id, "--format", "json", "--out", str(tmp_path / "out"), "--home", str(home)
    )
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == skewed.data
    assert _cli("verify", str(tmp_path / "out")).returncode == 0
