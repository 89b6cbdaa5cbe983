"""Reports rendered from a real audit: a Shapes stand-in generator with a planted shape skew, audited by the
trained judge (one small audit for the whole module).

The checks read the outputs the way their readers do: the PDF through ``pdftotext`` and ``pdftoppm``, the
HTML through an HTML parser (what it would fetch, which headings and anchors it has, what it embeds), the
model card's front matter through a YAML parser, and the Markdown's tables and image links as text.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from PIL import Image

from auditkit import ConfigError, RunStore
from auditkit.audit import AuditResult, audit
from auditkit.data import Shapes
from auditkit.report import charts
from auditkit.report.render import FORMATS, render_report, write_report
from auditkit.resources import resource_dir

sys.path.insert(0, str(Path(__file__).parent))
from _standins import SHAPE_SKEW, SMALL_AUDIT, ShapesStandIn  # noqa: E402 - next to this file, not in a package

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


class _Page(HTMLParser):
    """What a browser would look at: URLs it would load or follow, ids, headings, tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[tuple[str, str, str]] = []
        self.ids: set[str] = set()
        self.tags: list[str] = []
        self.headings: list[str] = []
        self.images: list[str] = []
        self._heading: list[str] | None = None

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data", "action"):
                self.urls.append((tag, name, value or ""))
            if name == "id":
                self.ids.add(value)
            if tag == "img" and name == "src":
                self.images.append(value)
        if tag == "h2":
            self._heading = []

    def handle_endtag(self, tag) -> None:
        if tag == "h2" and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data) -> None:
        if self._heading is not None:
            self._heading.append(data)


@pytest.fixture(scope="module")
def audited(trained_judge, tmp_path_factory) -> AuditResult:
    store = RunStore(tmp_path_factory.mktemp("home"))
    return audit(ShapesStandIn(SHAPE_SKEW), Shapes(400, seed=4), trained_judge, store=store, **SMALL_AUDIT)


@pytest.fixture(scope="module")
def signoffs() -> list[dict[str, str]]:
    return [
        {"reviewer": f"Eve {SCRIPT}", "role": "model risk", "decision": "conditional",
         "comment": f"fix the shape skew {SCRIPT}", "date": "2026-01-02T03:04:05Z", "audit_sha256": "0" * 64},
    ]  # fmt: skip


@pytest.fixture(scope="module")
def html(audited, signoffs) -> str:
    return render_report(audited, "html", signoffs=signoffs).decode("utf-8")


@pytest.fixture(scope="module")
def pdf(audited, signoffs) -> bytes:
    return render_report(audited, "pdf", signoffs=signoffs)


def _pdf_text(pdf: bytes, folder: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("poppler's pdftotext is not installed")
    path = folder / "report.pdf"
    path.write_bytes(pdf)
    done = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return re.sub(r"\s+", " ", done.stdout)


def test_pdf_states_the_verdict_and_the_json_numbers_and_has_pages(audited, pdf, signoffs, tmp_path) -> None:
    assert pdf.startswith(b"%PDF-")
    text = _pdf_text(pdf, tmp_path)
    data = audited.data
    assert audited.verdict == "fail"  # the planted shape skew
    assert "Verdict FAIL" in text
    colour_tvd = data["bias"]["scopes"]["colour"]["gap_corrected"]["tvd"]
    shape = data["bias"]["scopes"]["shape"]
    for number in (
        colour_tvd,
        data["quality"]["fid"],
        shape["gap_corrected"]["tvd"],
        shape["gap_raw"]["tvd"],
    ):
        assert f"{number:.4g}" in text, number
    counts = data["findings"]["counts"]
    n = len(audited.findings)
    assert f"{n} findings: {counts['fail']} fail, {counts['warn']} warn, {counts['pass']} pass" in text
    assert "page 2 of" in text and audited.audit_id in text  # print headers and footers
    assert ESCAPED not in text and "Eve <script>alert(1)</script>" in text  # escaped in HTML, shown as text

    shutil.which("pdftoppm") or pytest.skip("poppler's pdftoppm is not installed")
    subprocess.run(
        ["pdftoppm", "-r", "60", "-png", str(tmp_path / "report.pdf"), str(tmp_path / "page")],
        check=True,
        timeout=120,
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 3
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in pages)
    assert pdf == render_report(
        audited, "pdf", signoffs=signoffs
    )  # reports are hashed: same input, same bytes


def test_html_is_self_contained_and_has_every_section(audited, html) -> None:
    page = _Page()
    page.feed(html)
    for tag, attr, url in page.urls:
        assert url.startswith(("data:", "#")), (tag, attr, url[:80])
        assert "http" not in url.split(",", 1)[0], url[:80]
        if url.startswith("#"):
            assert url[1:] in page.ids, f"dangling link {url}"
    assert "link" not in page.tags and "script" not in page.tags and "iframe" not in page.tags
    assert not re.search(r"@import|url\(\s*['\"]?https?:|@font-face", html)

    sections = yaml.safe_load((resource_dir("reports") / "sections.yaml").read_text(encoding="utf-8"))
    titles = [s["title"] for s in sections["sections"]]
    assert set(titles) <= set(page.headings), set(titles) - set(page.headings)
    assert {"Audit summary", "Bias and representation", "Policy and findings", "Regulatory mapping"} <= set(
        titles
    )

    # the embedded images are the audit's own artifacts and the charts, byte for byte
    embedded = {
        base64.b64decode(src.split(",", 1)[1]) for src in page.images if src.startswith("data:image/png")
    }
    for rel in ("explain/shape.png", "samples/colour.png", "explain/latent-shape.png"):
        assert (audited.path / rel).read_bytes() in embedded, rel
    scopes = audited.data["bias"]["scopes"]
    assert charts.share_chart(scopes["colour"], "colour") in embedded
    assert charts.share_chart(scopes["shape×colour"], "shape×colour") in embedded
    quality = audited.data["quality"]
    assert charts.group_quality_chart(quality["groups"], quality["fid"]) in embedded
    # raw and corrected shares are both reported, with their intervals
    colour = scopes["colour"]["shares"]
    assert f"[{colour['raw_low'][0]:.3f}, {colour['raw_high'][0]:.3f}]" in html
    assert f"[{colour['corrected_low'][0]:.3f}, {colour['corrected_high'][0]:.3f}]" in html
    assert "Kronecker product" in html and "Inception" in html  # limitations
    assert "Annex IV" in html and "Measure" in html
    assert audited.data["manifest"]["artifacts"][0]["sha256"] in html  # appendix


def test_user_text_is_escaped_in_html_and_markdown(audited, html) -> None:
    assert SCRIPT not in html
    assert html.count(ESCAPED) >= 2  # the reviewer's name and the comment
    assert "not yet signed off" not in html.lower()
    # names that come from the data and the generator are user text too
    data = json.loads(audited.to_json())
    data["scope"]["generator"]["name"] = f"gen {SCRIPT}"
    data["bias"]["scopes"]["colour"]["values"][0] = '<img src="x" onerror="alert(2)">'
    data["findings"]["findings"][0]["scope"] = f"scope {SCRIPT}"
    hostile = AuditResult(data, audited.path)
    out = render_report(hostile, "html", signoffs=[]).decode()
    page = _Page()
    page.feed(out)
    assert "script" not in page.tags
    assert all(src.startswith("data:") for src in page.images)  # no <img src="x"> was injected
    assert "&lt;img src=&#34;x&#34; onerror=&#34;alert(2)&#34;&gt;" in out
    assert f"Audit report: gen {ESCAPED}" in out
    markdown = render_report(hostile, "md", signoffs=[]).decode()
    assert "<script" not in markdown and "<img" not in markdown
    assert f"scope {ESCAPED}" in markdown


def test_markdown_has_the_findings_table_and_links_that_resolve(audited, tmp_path) -> None:
    out = write_report(audited, "md", tmp_path / "report.md")
    text = out.read_text(encoding="utf-8")
    assert "| Severity | Metric | Scope | Value | Interval | Threshold | Notes |" in text
    counts = audited.data["findings"]["counts"]
    for severity in ("fail", "warn", "pass"):
        rows = [line for line in text.splitlines() if line.startswith(f"| {severity.upper()} | ")]
        assert len(rows) == counts[severity], severity
    first = audited.findings[0]
    assert (
        f"| {first['severity'].upper()} | {first['metric']} | {first['scope']} | {first['value']:.4g} |"
        in text
    )
    assert "**Not yet signed off.**" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert any(link.endswith("explain/shape.png") for link in links)
    assert any(link.startswith("charts/") for link in links)
    for link in links:  # audit artifacts relative to the report's folder, charts written beside it
        assert (tmp_path / link).is_file(), link
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temp file


def test_model_card_front_matter_has_model_index_results(audited) -> None:
    card = render_report(audited, "modelcard").decode("utf-8")
    assert card.startswith("---\n")
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    (entry,) = meta["model-index"]
    assert entry["name"] == "shapes-stand-in"
    (result,) = entry["results"]
    assert result["dataset"]["name"] == "shapes (400 images)"
    metrics = {m["name"]: m["value"] for m in result["metrics"]}
    data = audited.data
    assert metrics["FID (judge features)"] == pytest.approx(data["quality"]["fid"], rel=1e-5)
    assert metrics["Recall (judge features)"] == pytest.approx(data["quality"]["recall"], rel=1e-5)
    tvd = data["bias"]["scopes"]["colour"]["gap_corrected"]["tvd"]
    assert metrics["TVD colour (judge-corrected)"] == pytest.approx(tvd, rel=1e-5)
    assert all(m["type"] and m["verified"] is False for m in result["metrics"])
    assert meta["auditkit"]["verdict"] == "fail"
    assert meta["auditkit"]["audit_sha256"] == hashlib.sha256(audited.to_json()).hexdigest()
    for heading in ("## Intended use", "## Training data", "## Evaluation", "## Limitations", "## Findings"):
        assert heading in body
    assert "_Not stated in the audit config._" in body


def test_json_is_the_result_itself(audited) -> None:
    assert render_report(audited, "json") == audited.to_json()
    assert render_report(audited.path, "json") == audited.to_json()  # a folder works too
    assert set(FORMATS) == {"html", "pdf", "md", "json", "modelcard"}


def test_signoffs_file_tampered_artifacts_and_missing_stages(audited, tmp_path) -> None:
    folder = tmp_path / "audit"
    shutil.copytree(audited.path, folder)
    signed = hashlib.sha256((folder / "audit.json").read_bytes()).hexdigest()
    record = {"reviewer": "J. Doe", "role": "governance", "decision": "approve", "comment": "ok",
              "date": "2026-01-02T00:00:00Z", "audit_sha256": signed}  # fmt: skip
    (folder / "signoffs.json").write_text(json.dumps([record]))
    panel = folder / "explain" / "shape.png"
    original = panel.read_bytes()
    panel.write_bytes(
        (folder / "explain" / "colour.png").read_bytes()
    )  # a valid PNG, but not the one recorded
    # everything but the bias stage left out: the schema allows it, and the report says what is missing
    data = json.loads((folder / "audit.json").read_text())
    for stage in ("quality", "memorization", "explain"):
        data.pop(stage)
    partial = AuditResult(data, folder)

    html = render_report(AuditResult.load(folder), "html").decode()
    assert "J. Doe" in html and "APPROVE" in html and "yes (SHA-256 matches)" in html
    assert "explain/shape.png does not match the SHA-256 recorded in the manifest" in html
    page = _Page()
    page.feed(html)
    embedded = {base64.b64decode(s.split(",", 1)[1]) for s in page.images}
    assert original not in embedded
    text = render_report(partial, "md").decode()
    for stage in ("quality", "memorization", "explain"):
        assert f"_The {stage} stage was not run in this audit._" in text
    assert "J. Doe" in text and "| no: signed" in text  # the partial result is not what J. Doe signed

    (folder / "signoffs.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read the sign-offs"):
        render_report(AuditResult.load(folder), "md")


def test_bad_format_result_and_template_folder_are_config_errors(audited, tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown report format 'docx'"):
        render_report(audited, "docx")
    broken = AuditResult(json.loads(audited.to_json()), audited.path)
    broken.data["verdict"] = "maybe"
    with pytest.raises(ConfigError, match="does not follow .* at verdict"):
        render_report(broken, "html")
    with pytest.raises(ConfigError, match="does not exist"):
        render_report(audited, "html", template_dir=tmp_path / "nowhere")

    custom = tmp_path / "templates"
    shutil.copytree(resource_dir("reports"), custom)
    (custom / "report.css").unlink()
    with pytest.raises(ConfigError, match="lacks report.css, needed for html reports"):
        render_report(audited, "html", template_dir=custom)
    assert render_report(audited, "json", template_dir=custom) == audited.to_json()

    md = custom / "report.md.j2"
    md.write_text(md.read_text() + "\nReviewed by the model-risk team.\n")
    assert b"Reviewed by the model-risk team." in render_report(audited, "md", template_dir=custom)
    md.write_text("{% for x in %}\n")
    with pytest.raises(ConfigError, match=r"report.md.j2 line 1"):
        render_report(audited, "md", template_dir=custom)
    md.write_text("{{ no_such_thing.value }}\n")
    with pytest.raises(ConfigError, match="no_such_thing"):
        render_report(audited, "md", template_dir=custom)

    shutil.copy(resource_dir("reports") / "report.css", custom / "report.css")
    page = custom / "report.html.j2"
    original = page.read_text()
    page.write_text(
        original.replace("</head>", '<link rel="stylesheet" href="https://fonts.example/x.css"></head>')
    )
    with pytest.raises(ConfigError, match="external resources"):
        render_report(audited, "html", template_dir=custom)
    page.write_text(original)
    (custom / "report.css").write_text("@import 'https://fonts.example/x.css';\nbody { color: red; }\n")
    with pytest.raises(ConfigError, match="self-contained"):
        render_report(audited, "pdf", template_dir=custom)


def test_charts_are_deterministic_pngs_that_survive_greyscale(audited) -> None:
    record = audited.data["bias"]["scopes"]["shape"]
    first = charts.share_chart(record, "shape")
    assert first == charts.share_chart(record, "shape")
    assert first.startswith(b"\x89PNG") and b"matplotlib" not in first.lower()  # no version stamp
    grey = Image.open(io.BytesIO(first)).convert("L")  # what a greyscale printer makes of it
    assert grey.size[0] > 500
    # reference, raw and corrected bars keep three distinct, sizeable grey levels
    levels = [v for v, count in enumerate(grey.histogram()) if count > 500 and 20 < v < 240]
    assert len(levels) >= 3, levels
