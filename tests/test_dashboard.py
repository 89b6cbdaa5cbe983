"""The reviewers' dashboard: each page through Streamlit's AppTest against a store of real runs and audits.

The store (built once per session by :func:`shared_store`, also used by the browser test) holds a run with
nothing logged, a real tiny training run, a conditional audit without explanations (many kept samples) and,
newest, an unconditional audit with two attribution methods. Expected numbers are recomputed here from the
stored files (JSON, safetensors, PNG) or from the judge, not taken from the page's own helpers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from auditkit import ConfigError, RunStore
from auditkit.audit import audit
from auditkit.dashboard import (
    AUDIT_SCHEMA,
    EMPTY_STORE_MESSAGE,
    PAGE_SIZE,
    condition_gap_rows,
    filter_samples,
    load_audit,
    metrics_log,
    open_store,
    paginate,
    panel_cell,
    panel_grid,
    render_cached,
    safe_path,
    sample_gallery,
    verify_status,
)
from auditkit.data import Shapes
from auditkit.generators.base import BaseGenerator
from auditkit.report import diff_audits, load_signoffs, write_manifest
from auditkit.resources import resource_dir
from auditkit.training import train

sys.path.insert(0, str(Path(__file__).parent))
from _standins import SHAPE_SKEW, SMALL_AUDIT, ShapesStandIn  # noqa: E402 - next to this file, not in a package

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
APP = resource_dir("dashboards") / "app.py"
SHAPES = ("circle", "square", "triangle")
MISS = 0.2  # share of the conditional stand-in's images drawn with another shape than asked
TINY_TRAINING = {
    "family": "dcgan",
    "name": "tiny <i>dcgan</i>",
    "data": {"source": "shapes", "n": 96, "size": 16, "seed": 0, "condition": "shape"},
    "model": {"latent_dim": 8, "width": 8, "embed_dim": 4},
    "steps": 12,
    "batch_size": 16,
    "log_every": 2,
    "sample_every": 4,
    "checkpoint_every": 100,
    "device": "cpu",
    "seed": 1,
}
# more kept samples than one gallery page (2 × explain_per_value per judged value), no explain stage
CONDITIONAL_AUDIT = {
    **SMALL_AUDIT,
    "seed": 6,
    "explain_per_value": 10,
    "stages": ("bias", "quality", "memorization"),
}
UNCONDITIONAL_AUDIT = {**SMALL_AUDIT, "explain_methods": ("saliency", "input_x_gradient")}


class ConditionalStandIn(BaseGenerator):
    """A shape-conditional generator of real Shapes images that draws the wrong shape for a known share."""

    def __init__(self) -> None:
        super().__init__(
            name="conditional-stand-in",
            latent_shape=(1,),
            image_shape=(3, 32, 32),
            batch_size=250,
            class_names=SHAPES,
            condition="shape",
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        seed = int(hashlib.sha256(z.detach().numpy().tobytes()).hexdigest()[:8], 16)
        wrong = torch.rand(z.shape[0], generator=torch.Generator().manual_seed(seed)) < MISS
        images = []
        for i, asked in enumerate(labels.tolist()):
            shape = (asked + 1) % 3 if wrong[i] else asked
            skew = {"shape": {s: float(j == shape) for j, s in enumerate(SHAPES)}}
            images.append(Shapes(1, seed=seed + i, skew=skew).images)
        return torch.cat(images)


_SHARED: dict[str, Path] = {}


def shared_store(tmp_path_factory: pytest.TempPathFactory, judge) -> Path:
    """The fixture store, built once per session (the AppTest and browser tests read the same one)."""
    if "home" not in _SHARED:
        root = tmp_path_factory.mktemp("dashboard-home")
        store = RunStore(root)
        store.create_run("train", name="a <b>run</b>", config={})
        train(TINY_TRAINING, store=store, progress=False)
        audit(
            ConditionalStandIn(),
            Shapes(400, seed=4),
            judge,
            store=store,
            name="conditional",
            **CONDITIONAL_AUDIT,
        )
        audit(
            ShapesStandIn(SHAPE_SKEW),
            Shapes(400, seed=4),
            judge,
            store=store,
            name="stand-in",
            **UNCONDITIONAL_AUDIT,
        )
        _SHARED["home"] = root
    return _SHARED["home"]


@pytest.fixture(scope="module")
def home(tmp_path_factory, trained_judge):
    """The shared store, named by AUDITKIT_HOME as the CLI will."""
    root = shared_store(tmp_path_factory, trained_judge)
    before = os.environ.get("AUDITKIT_HOME")
    os.environ["AUDITKIT_HOME"] = str(root)
    yield root
    if before is None:
        os.environ.pop("AUDITKIT_HOME", None)
    else:
        os.environ["AUDITKIT_HOME"] = before


def _audit(home: Path, name: str) -> tuple[str, dict, Path]:
    store = RunStore(home)
    (info,) = [a for a in store.list_audits() if a.name == name]
    data = load_audit(store, info.id)
    assert data is not None
    return info.id, data, info.path


@pytest.fixture(scope="module")
def audit_data(home: Path) -> tuple[str, dict, Path]:
    """The newest audit (unconditional, with explanations): what every audit picker shows first."""
    return _audit(home, "stand-in")


@pytest.fixture(scope="module")
def conditional(home: Path) -> tuple[str, dict, Path]:
    return _audit(home, "conditional")


@pytest.fixture(scope="module")
def training_run(home: Path):
    (run,) = [r for r in RunStore(home).list_runs(kind="train") if r.name == TINY_TRAINING["name"]]
    return run


def _page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    if page is not None:
        at.switch_page(page).run()
    _no_exception(at)
    return at


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _cells(at: AppTest) -> str:
    """Every dataframe on the page as one string, to look numbers up in."""
    return "\n".join(df.value.to_csv() for df in at.dataframe)


def _images(at: AppTest) -> list:
    return at.get("image")


def _captions(at: AppTest) -> list[str]:
    return [img.proto.imgs[0].caption for img in _images(at)]


# -- overview, bias, quality, reports (part 1) ----------------------------------------------------------


def test_overview_lists_audits_runs_and_verdict_counts(home, audit_data, conditional) -> None:
    audit_id, data, _ = audit_data
    at = _page()
    expected: dict[str, int] = {}
    for verdict in (data["verdict"], conditional[1]["verdict"]):
        expected[verdict] = expected.get(verdict, 0) + 1
    assert sorted((m.label, m.value) for m in at.metric) == sorted(
        (f"verdict: {v}", str(c)) for v, c in expected.items()
    )
    cells = _cells(at)
    assert audit_id in cells and conditional[0] in cells and data["verdict"] in cells
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


def test_bias_page_heat_map_of_gaps_within_each_requested_class(home, audit_data, conditional) -> None:
    import pyarrow as pa

    audit_id, data, _ = conditional
    at = _page("views/bias.py")
    assert "Within each requested class" not in [s.value for s in at.subheader]  # unconditional: none
    at.selectbox(key="audit").set_value(audit_id).run()
    _no_exception(at)
    assert "Within each requested class" in [s.value for s in at.subheader]
    # the cells, read back from the chart: one per (other attribute, requested shape), the corrected TVD
    (heat,) = [c for c in at.get("vega_lite_chart") if "layer" in json.loads(c.proto.spec)]
    shown = pa.ipc.open_stream(heat.proto.data.data).read_pandas()
    cells = {(r.attribute, r.condition): r.tvd for r in shown.itertuples()}
    expected = {
        (scope["attributes"][0], f"shape={scope['condition'][1]}"): scope["gap_corrected"]["tvd"]
        for scope in data["bias"]["scopes"].values()
        if scope["kind"] == "condition"
    }
    assert len(expected) == 3 * (len(data["scope"]["attributes"]) - 1)
    assert cells == pytest.approx(expected)
    raw = {(r["attribute"], r["condition"]): r["tvd"] for r in condition_gap_rows(data, corrected=False)}
    assert raw[("colour", "shape=circle")] == pytest.approx(
        data["bias"]["scopes"]["colour | shape=circle"]["gap_raw"]["tvd"]
    )


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


def test_report_rendering_and_verify_status(home, audit_data, tmp_path) -> None:
    _, data, folder = audit_data
    store = RunStore(home)
    assert json.loads(render_cached(folder, "json"))["verdict"] == data["verdict"]
    assert verify_status(store, folder) == []
    sealed = folder / "sealed"
    sealed.mkdir()
    try:
        shutil.copy(folder / "audit.json", sealed / "audit.json")
        write_manifest(sealed, ["audit.json"])
        assert [(row["manifest"], row["ok"]) for row in verify_status(store, folder)] == [
            ("sealed/manifest.json", True)
        ]
        (sealed / "audit.json").write_text("{}", encoding="utf-8")
        assert [row["ok"] for row in verify_status(store, folder)] == [False]
    finally:
        shutil.rmtree(sealed)  # the store is shared with the browser test


def test_empty_store_shows_a_friendly_message(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AUDITKIT_HOME", str(tmp_path / "nothing-here"))
    pages = (None, "training", "samples", "quality", "bias", "explanations", "compare", "reports")
    for page in pages:
        at = _page(f"views/{page}.py" if page else None)
        assert [i.value for i in at.info] == [EMPTY_STORE_MESSAGE], page
    assert not (tmp_path / "nothing-here").exists()  # looking does not create a store
    RunStore(tmp_path / "empty")
    monkeypatch.setenv("AUDITKIT_HOME", str(tmp_path / "empty"))
    assert [i.value for i in _page().info] == [EMPTY_STORE_MESSAGE]
    assert open_store(tmp_path / "empty") is not None


def test_load_audit_reads_only_audit_results(tmp_path) -> None:
    from auditkit.audit import SCHEMA

    assert AUDIT_SCHEMA == SCHEMA  # the dashboard spells it out to avoid importing torch
    store = RunStore(tmp_path)
    info = store.create_audit(name="x", config={})
    assert load_audit(store, info.id) is None  # no result yet
    store.write_artifact(info.id, "audit.json", b'{"schema": "something/else"}')
    with pytest.raises(ConfigError, match="not an auditkit audit result"):
        load_audit(store, info.id)
    store.write_artifact(info.id, "audit.json", b'{"schema": "auditkit.audit-result/1", "verdict": "pass"}')
    assert load_audit(store, info.id)["verdict"] == "pass"  # a changed file is read again


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


# -- training -------------------------------------------------------------------------------------------


def test_training_page_shows_losses_speed_grids_and_config(home, training_run) -> None:
    rows = [json.loads(line) for line in (training_run.path / "metrics.jsonl").read_text().splitlines()]
    at = _page("views/training.py")
    assert at.selectbox(key="run").value == training_run.id  # newest run first
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["status"] == "completed"
    assert metrics["steps logged"] == str(TINY_TRAINING["steps"])
    speeds = sorted(r["img_per_s"] for r in rows)
    assert metrics["median images/s"] == f"{speeds[len(speeds) // 2]:.0f}"
    assert len(at.get("vega_lite_chart")) == 3  # losses, the discriminator's logits, throughput
    config = at.dataframe[0].value.set_index("setting")["value"]
    assert (
        config["data.source"] == "shapes"
        and config["steps"] == "12"
        and config["name"] == "tiny <i>dcgan</i>"
    )

    slider = at.select_slider(key="grid_step")
    assert list(slider.options) == ["step 4", "step 8", "step 12", "final"]
    assert slider.value == "final" and _captions(at) == [f"{training_run.id}, final"]
    first = _images(at)[0].proto.imgs[0].url
    slider.set_value("step 4").run()
    _no_exception(at)
    assert _captions(at) == [f"{training_run.id}, step 4"] and _images(at)[0].proto.imgs[0].url != first


def test_training_page_for_a_run_that_logged_nothing(home) -> None:
    (empty,) = [r for r in RunStore(home).list_runs() if r.name == "a <b>run</b>"]
    at = _page("views/training.py")
    at.selectbox(key="run").set_value(empty.id).run()
    _no_exception(at)
    texts = [t.value for t in at.text]
    assert "This run has logged no steps yet." in texts and any("No sample grids yet" in t for t in texts)
    assert not _images(at)


def test_metrics_log_skips_torn_lines(tmp_path) -> None:
    store = RunStore(tmp_path)
    run = store.create_run("train", name="torn", config={})
    lines = [
        '{"step": 2, "loss": 1.5, "img_per_s": 10.0}',
        '{"step": 4, "loss": 1.2',
        "",
        '{"step": 6, "loss": 0.9}',
    ]
    (run.path / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    log = metrics_log(store, run.id)
    assert [r["step"] for r in log.rows] == [2, 6] and log.bad_lines == (2,)
    assert log.losses == ["loss"] and log.others == []


# -- samples --------------------------------------------------------------------------------------------


def _kept_reference(
    folder: Path, attrs: list[str]
) -> tuple[dict[int, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Sample index → kept image, recomputed from the stage file: kept/A/V holds the first images judged V."""
    arrays = load_file(str(folder / "stages" / "samples.safetensors"))
    judged = arrays["judged"]
    images: dict[int, torch.Tensor] = {}
    for j, attr in enumerate(attrs):
        for key in sorted(k for k in arrays if k.startswith(f"kept/{attr}/")):
            value = int(key.rsplit("/", 1)[1])
            where = torch.nonzero(judged[:, j] == value).flatten()[: len(arrays[key])]
            for index, image in zip(where.tolist(), arrays[key], strict=True):
                images.setdefault(index, image)
    return images, judged, arrays["conditions"]


def test_sample_gallery_rows_match_the_judge_and_the_requests(home, conditional, trained_judge) -> None:
    audit_id, data, folder = conditional
    attrs = data["scope"]["attributes"]
    gallery = sample_gallery(RunStore(home), audit_id, data)
    reference, judged, asked = _kept_reference(folder, attrs)
    assert [r["sample"] for r in gallery.rows] == sorted(reference) and len(gallery.rows) > PAGE_SIZE
    # the judge, run again on each kept image, reads what the row says: the sample indices are right
    stacked = torch.stack([reference[r["sample"]] for r in gallery.rows])
    predicted = trained_judge.predict(stacked)[:, [list(trained_judge.attributes).index(a) for a in attrs]]
    for row, labels in zip(gallery.rows, predicted.tolist(), strict=True):
        assert [row[a] for a in attrs] == [
            trained_judge.attributes[a][v] for a, v in zip(attrs, labels, strict=True)
        ]
        assert row["condition"] == SHAPES[int(asked[row["sample"]])]
        assert row["matches"] == (row["shape"] == row["condition"])
        thumbnail = gallery.thumbnails[row["sample"]][::3, ::3].astype(np.float32) / 255
        assert np.abs(thumbnail - reference[row["sample"]].permute(1, 2, 0).numpy()).max() < 1 / 255 + 1e-6
    # the stand-in draws the asked shape with probability 1 - MISS, and the judge reads shapes ~99 % right
    shape = attrs.index("shape")
    rate = float((judged[:, shape] == asked).double().mean())
    assert sum(gallery.condition_matches.values()) / gallery.n == pytest.approx(rate, abs=1e-12)
    assert rate == pytest.approx(1 - MISS, abs=0.08)


def test_filter_samples_and_paginate() -> None:
    rows = [
        {"sample": 1, "shape": "circle", "condition": "circle", "matches": True},
        {"sample": 2, "shape": "square", "condition": "circle", "matches": False},
        {"sample": 3, "shape": "square", "condition": "square", "matches": True},
    ]
    assert [r["sample"] for r in filter_samples(rows, conditions=["circle"])] == [1, 2]
    assert [r["sample"] for r in filter_samples(rows, attribute="shape", values=["square"])] == [2, 3]
    assert [r["sample"] for r in filter_samples(rows, matches=False)] == [2]
    assert filter_samples(rows, attribute="shape", values=[]) == []
    items = list(range(100))
    assert paginate(items, 1) == (items[:48], 3)
    assert paginate(items, 3) == (items[96:], 3)
    assert paginate(items, 9) == (items[96:], 3) and paginate([], 1) == ([], 1)


def test_samples_page_paginates_and_filters(home, conditional) -> None:
    audit_id, data, folder = conditional
    attrs = data["scope"]["attributes"]
    reference, judged, asked = _kept_reference(folder, attrs)
    shape = attrs.index("shape")
    at = _page("views/samples.py")
    at.selectbox(key="audit").set_value(audit_id).run()
    _no_exception(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["generated images"] == str(data["scope"]["n"])
    assert metrics["thumbnails kept"] == str(len(reference))
    assert (
        metrics["judge read the requested shape"]
        == f"{float((judged[:, shape] == asked).double().mean()):.1%}"
    )
    counts = at.dataframe[0].value.set_index(["judged attribute", "value"])
    assert counts.loc[("shape", "circle"), "images"] == int((judged[:, shape] == 0).sum())

    # page 1 holds exactly one page; the last page the rest
    assert len(_images(at)) == PAGE_SIZE
    assert at.number_input(key="page").max == -(-len(reference) // PAGE_SIZE)
    at.number_input(key="page").set_value(2).run()
    assert len(_images(at)) == len(reference) - PAGE_SIZE

    at.number_input(key="page").set_value(1).run()
    at.selectbox(key="attribute").set_value("shape").run()
    at.multiselect(key="values_shape").set_value(["circle"]).run()
    circles = [i for i in reference if int(judged[i, shape]) == 0]
    assert sorted(int(c.split(":")[0][1:]) for c in _captions(at)) == sorted(circles)

    at.multiselect(key="values_shape").set_value(list(SHAPES)).run()
    at.selectbox(key="matches").set_value("no").run()
    wrong = [i for i in reference if int(judged[i, shape]) != int(asked[i])]
    captions = _captions(at)
    assert 0 < len(captions) == len(wrong) and all(c.endswith("✗") for c in captions)

    at.selectbox(key="matches").set_value("all").run()
    at.multiselect(key="conditions").set_value(["triangle"]).run()
    asked_triangle = [i for i in reference if int(asked[i]) == 2]
    assert len(_captions(at)) == min(len(asked_triangle), PAGE_SIZE)
    assert all("asked triangle" in c for c in _captions(at))


# -- explanations ---------------------------------------------------------------------------------------


def test_explanations_page_shows_overlays_verdicts_and_latent_ranking(home, audit_data) -> None:
    _, data, folder = audit_data
    entry = data["explain"]["attributes"]["shape"]
    at = _page("views/explanations.py")
    at.selectbox(key="attribute").set_value("shape").run()
    _no_exception(at)
    assert at.multiselect(key="methods").value == ["saliency", "input_x_gradient"]
    assert len(at.selectbox(key="sample").options) == entry["n"]
    captions = _captions(at)
    status = {m: v["status"].upper() for m, v in entry["verdicts"].items()}
    assert captions[:3] == [
        "image",
        f"saliency: {status['saliency']}",
        f"input_x_gradient: {status['input_x_gradient']}",
    ]
    verdicts = [m.value for m in at.markdown if m.value.startswith("**")]
    assert verdicts == [f"**{m}: {status[m]}**" for m in ("saliency", "input_x_gradient")]
    for verdict in entry["verdicts"].values():
        for reason in verdict["reasons"]:
            assert any(reason in m.value for m in at.markdown), reason
    ranking = at.dataframe[-1].value
    latent = data["explain"]["latent"]["attributes"]["shape"]["ranking"]
    assert list(ranking["input"]) == [r["input"] for r in latent]
    assert list(ranking["share"]) == pytest.approx([r["share"] for r in latent])
    n_images = len(_images(at))  # image + 2 overlays + the whole panel + the traversal figure
    assert n_images == 5

    at.multiselect(key="methods").set_value(["input_x_gradient"]).run()
    _no_exception(at)
    assert _captions(at)[:2] == ["image", f"input_x_gradient: {status['input_x_gradient']}"]
    assert len(_images(at)) == n_images - 1


def test_explanation_panel_cells_are_the_explained_images(home, audit_data) -> None:
    """The crop of each panel row's first cell looks like the image the audit explained in that row."""
    audit_id, data, folder = audit_data
    attrs = data["scope"]["attributes"]
    gallery = sample_gallery(RunStore(home), audit_id, data)
    arrays = load_file(str(folder / "stages" / "samples.safetensors"))
    per_value = data["manifest"]["config"]["explain_per_value"]
    for attr in attrs:
        entry = data["explain"]["attributes"][attr]
        rows = gallery.explanation_rows(attr, per_value)
        assert len(rows) == entry["n"]
        # the explained images, as the explain stage takes them: the first per_value kept of each value
        values = [int(k.rsplit("/", 1)[1]) for k in sorted(arrays) if k.startswith(f"kept/{attr}/")]
        explained = torch.cat([arrays[f"kept/{attr}/{v}"][:per_value] for v in sorted(values)])
        panel = folder / entry["panel"]
        grid = panel_grid(panel, len(rows), 1 + len(data["explain"]["methods"]))
        assert grid is not None
        for i in range(len(rows)):
            cell = Image.fromarray(panel_cell(panel, grid, i, 0)).resize((32, 32), Image.Resampling.BOX)
            seen = torch.from_numpy(np.asarray(cell, dtype=np.float32) / 255).permute(2, 0, 1)
            errors = [float((seen - image).abs().mean()) for image in explained]
            # closest to its own image (measured: ≈ 0.01, the axes frame and resampling; others ≥ 0.03)
            assert int(np.argmin(errors)) == i and errors[i] < 0.025, (attr, i, errors)
    assert panel_grid(panel, len(rows) + 5, 3) is None  # a grid that is not there is not invented


# -- compare --------------------------------------------------------------------------------------------


def test_compare_page_shows_the_diff_with_regressions_first(home, audit_data, conditional) -> None:
    after_id, after, after_folder = audit_data
    before_id, before, before_folder = conditional
    diff = diff_audits(before_folder, after_folder)
    at = _page("views/compare.py")
    assert (at.selectbox(key="before").value, at.selectbox(key="after").value) == (before_id, after_id)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["verdict before"] == before["verdict"].upper()
    assert metrics["verdict after"] == after["verdict"].upper()
    assert metrics["regressions"] == str(len(diff.regressions))
    assert any("seed 6 → 5" in w.value for w in at.warning)  # context that qualifies the comparison

    table = at.dataframe[0].value
    fid = table[(table["metric"] == "quality.fid") & (table["scope"] == "overall")].iloc[0]
    assert fid["before"] == pytest.approx(before["quality"]["fid"])
    assert fid["after"] == pytest.approx(after["quality"]["fid"])
    assert fid["change"] == pytest.approx(after["quality"]["fid"] - before["quality"]["fid"])
    ci = before["quality"]["ci"]["fid"]
    assert fid["before interval"] == f"[{ci['low']:.4g}, {ci['high']:.4g}]"
    flags = list(table["regression"])
    assert flags == sorted(flags, key=lambda f: not f)  # regressions first

    findings = at.dataframe[1].value
    regressed = [f for f in diff.findings if f.regression]
    assert list(findings["regression"]).count("REGRESSION") == len(regressed) > 0
    assert {"new", "worse", "better", "dropped"} >= set(findings["change"])

    at.toggle(key="only_changed").set_value(False).run()
    assert len(at.dataframe[0].value) == len(diff.metrics)

    at.selectbox(key="before").set_value(after_id).run()
    assert "Pick two different audits." in [i.value for i in at.info]
