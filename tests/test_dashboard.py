"""The reviewers' dashboard: each page through Streamlit's AppTest against a store holding a real audit."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditkit import ConfigError, RunStore
from auditkit.audit import audit
from auditkit.dashboard import (
    EMPTY_STORE_MESSAGE,
    load_audit,
    open_store,
    render_cached,
    safe_path,
    verify_status,
)
from auditkit.data import Shapes
from auditkit.report import load_signoffs, write_manifest
from auditkit.resources import resource_dir

sys.path.insert(0, str(Path(__file__).parent))
from _standins import SHAPE_SKEW, SMALL_AUDIT, ShapesStandIn  # noqa: E402 - next to this file, not in a package

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
APP = resource_dir("dashboards") / "app.py"


@pytest.fixture(scope="module")
def home(tmp_path_factory, trained_judge) -> Iterator[Path]:
    """A store with one real small audit, named by AUDITKIT_HOME as the CLI will."""
    root = tmp_path_factory.mktemp("dashboard-home")
    store = RunStore(root)
    store.create_run("train", name="a <b>run</b>", config={})
    audit(ShapesStandIn(SHAPE_SKEW), Shapes(400, seed=4), trained_judge, store=store, **SMALL_AUDIT)
    before = os.environ.get("AUDITKIT_HOME")
    os.environ["AUDITKIT_HOME"] = str(root)
    yield root
    if before is None:
        os.environ.pop("AUDITKIT_HOME", None)
    else:
        os.environ["AUDITKIT_HOME"] = before


@pytest.fixture(scope="module")
def audit_data(home: Path) -> tuple[str, dict, Path]:
    store = RunStore(home)
    (info,) = store.list_audits()
    data = load_audit(store, info.id)
    assert data is not None
    return info.id, data, info.path


def _page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _cells(at: AppTest) -> str:
    """Every dataframe on the page as one string, to look numbers up in."""
    return "\n".join(df.value.to_csv() for df in at.dataframe)


def test_overview_lists_audits_runs_and_verdict_counts(home, audit_data) -> None:
    audit_id, data, _ = audit_data
    at = _page()
    assert [(m.label, m.value) for m in at.metric] == [(f"verdict: {data['verdict']}", "1")]
    cells = _cells(at)
    assert audit_id in cells and data["verdict"] in cells
    assert "a <b>run</b>" in cells  # user text shown as data, verbatim
    at.multiselect(key="kind_filter").set_value([]).run()
    assert "No runs match." in [t.value for t in at.text]


def test_bias_page_shows_tvd_shares_and_findings(home, audit_data) -> None:
    _, data, _ = audit_data
    at = _page("views/bias.py")
    summary = at.dataframe[0].value.set_index("scope")
    shape = data["bias"]["scopes"]["shape"]
    assert summary.loc["shape", "tvd"] == pytest.approx(shape["gap_corrected"]["tvd"])
    assert summary.loc["shape", "tvd_low"] == pytest.approx(shape["gap_corrected_interval"]["tvd"][0])
    assert "shape×colour" in summary.index
    findings = at.dataframe[-1].value
    assert {"FAIL", "WARN"} & set(findings["severity"])  # severity as text, not colour
    assert all(m.startswith("bias.") for m in findings["metric"])

    at.selectbox(key="scope").set_value("shape").run()
    shares = at.dataframe[1].value
    assert list(shares["share"]) == pytest.approx(shape["shares"]["corrected"])
    at.toggle(key="corrected").set_value(False).run()
    assert at.dataframe[0].value.set_index("scope").loc["shape", "tvd"] == pytest.approx(
        shape["gap_raw"]["tvd"]
    )
    assert list(at.dataframe[1].value["share"]) == pytest.approx(shape["shares"]["raw"])


def test_quality_page_shows_fid_with_interval_and_groups(home, audit_data) -> None:
    _, data, _ = audit_data
    at = _page("views/quality.py")
    overall = at.dataframe[0].value.set_index("metric")
    assert overall.loc["fid", "estimate"] == pytest.approx(data["quality"]["fid"])
    assert overall.loc["fid", "high"] == pytest.approx(data["quality"]["ci"]["fid"]["high"])
    assert set(overall.index) == {"fid", "kid", "precision", "recall", "density", "coverage"}
    groups = at.dataframe[1].value
    circle = groups[(groups["group"] == "judge:shape") & (groups["value"] == "circle")]
    assert circle["fid"].iloc[0] == pytest.approx(data["quality"]["groups"]["judge:shape"]["circle"]["fid"])


def test_reports_page_signoff_lands_in_signoffs_json(home, audit_data) -> None:
    _, data, folder = audit_data
    at = _page("views/reports.py")
    assert f"Verdict: {data['verdict']}" in [t.value for t in at.text]
    assert [b.label for b in at.download_button] == ["HTML", "PDF", "JSON", "MODELCARD"]
    at.text_input[0].input("J. <script>Doe</script>")
    at.text_input[1].input("model risk")
    at.selectbox[1].set_value("conditional")
    at.text_area[0].input("fine for internal use")
    at.form_submit_button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [s.value for s in at.success] == ["Signed."]
    (record,) = load_signoffs(folder)
    assert (record["reviewer"], record["decision"]) == ("J. <script>Doe</script>", "conditional")
    assert "J. <script>Doe</script>" in _cells(at)


def test_report_rendering_and_verify_status(home, audit_data) -> None:
    _, data, folder = audit_data
    store = RunStore(home)
    assert json.loads(render_cached(folder, "json"))["verdict"] == data["verdict"]
    assert verify_status(store, folder) == []
    sealed = folder / "sealed"
    sealed.mkdir()
    shutil.copy(folder / "audit.json", sealed / "audit.json")
    write_manifest(sealed, ["audit.json"])
    assert [(row["manifest"], row["ok"]) for row in verify_status(store, folder)] == [
        ("sealed/manifest.json", True)
    ]
    (sealed / "audit.json").write_text("{}", encoding="utf-8")
    assert [row["ok"] for row in verify_status(store, folder)] == [False]


def test_empty_store_shows_a_friendly_message(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AUDITKIT_HOME", str(tmp_path / "nothing-here"))
    for page in (None, "views/bias.py", "views/quality.py", "views/reports.py"):
        at = _page(page)
        assert [i.value for i in at.info] == [EMPTY_STORE_MESSAGE]
    assert not (tmp_path / "nothing-here").exists()  # looking does not create a store
    RunStore(tmp_path / "empty")
    monkeypatch.setenv("AUDITKIT_HOME", str(tmp_path / "empty"))
    assert [i.value for i in _page().info] == [EMPTY_STORE_MESSAGE]
    assert open_store(tmp_path / "empty") is not None


def test_safe_path_rejects_leaving_the_home(tmp_path) -> None:
    home = tmp_path / "home"
    (home / "audits" / "a").mkdir(parents=True)
    assert safe_path(home, "audits/a") == (home / "audits" / "a").resolve()
    assert safe_path(home, home / "audits") == (home / "audits").resolve()
    for bad in ("../outside", "audits/../../outside", str(tmp_path / "outside"), "/etc/passwd"):
        with pytest.raises(ConfigError, match="inside the store"):
            safe_path(home, bad)
    (home / "link").symlink_to(tmp_path)
    with pytest.raises(ConfigError):
        safe_path(home, "link/outside")
