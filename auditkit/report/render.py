"""Render an audit result into reports: HTML, PDF, Markdown, the result's own JSON, and a model card.

Every format reads one view of the result, built here once (:func:`_context`): the same numbers, formatted
by the same Jinja filters, under the same headings from ``sections.yaml``. The PDF is WeasyPrint's print of
the HTML, so the two cannot disagree. The templates and CSS live in the top-level ``reports/`` folder
(:func:`auditkit.resources.resource_dir`); ``template_dir`` points at a user's edited copy.

Reports are evidence that leaves the machine, so rendering guards what it emits:

- HTML templates are autoescaped (names, comments and attribute values are user text); Markdown output
  escapes the characters that would turn user text into HTML, links or table cells;
- templates run in Jinja's sandbox, since a ``template_dir`` may come from a shared repository;
- HTML and PDF are self-contained: images (the audit's PNG artifacts and the charts of
  :mod:`auditkit.report.charts`) and CSS are inlined, and a rendered page that refers to anything but a
  ``data:`` URI or a fragment is refused, as is CSS that imports or fetches; WeasyPrint gets a URL fetcher
  that serves ``data:`` URIs only, so an edited template cannot make an air-gapped CI job reach out;
- an artifact is shown only if it lies inside the audit's folder and its bytes match the SHA-256 the
  manifest recorded; otherwise the report says so where the image would be.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from auditkit._atomic import atomic_write_bytes
from auditkit.errors import ConfigError

FORMATS = ("html", "pdf", "md", "json", "modelcard")
SIGNOFFS_FILE = "signoffs.json"
_TEMPLATES = {
    "html": ("report.html.j2", "_macros.html.j2", "report.css", "sections.yaml"),
    "md": ("report.md.j2", "_macros.md.j2", "sections.yaml"),
    "modelcard": ("modelcard.md.j2", "_macros.md.j2", "sections.yaml"),
    "json": (),
}
_TEMPLATES["pdf"] = _TEMPLATES["html"]
_QUALITY_METRICS = (
    ("fid", "FID"),
    ("kid", "KID"),
    ("precision", "Precision"),
    ("recall", "Recall"),
    ("density", "Density"),
    ("coverage", "Coverage"),
)
_GROUP_KEYS = ("n_fake", "n_real", "fid", "precision", "recall", "density", "coverage")
_GAP_MEASURES = (
    ("tvd", "TVD (total variation distance)"),
    ("js", "JS divergence (base 2)"),
    ("kl", "KL divergence (nats)"),
    ("ratio", "min/max representation ratio"),
    ("mad", "mean absolute deviation"),
)
_URL_ATTRS = frozenset({"src", "href", "srcset", "poster", "data", "action", "formaction", "background",
                        "xlink:href", "cite", "longdesc", "manifest", "ping", "icon"})  # fmt: skip
_CSS_FETCH = re.compile(r"@import|url\(\s*(?![\"']?\s*data:)", re.IGNORECASE)


def render_report(
    result: Any,
    fmt: str,
    *,
    template_dir: str | os.PathLike[str] | None = None,
    signoffs: Sequence[Mapping[str, Any]] | None = None,
) -> bytes:
    """Render an audit result as a report.

    Parameters
    ----------
    result
        An :class:`~auditkit.audit.AuditResult`, or the path of an audit folder or its ``audit.json``.
    fmt
        ``html`` (one self-contained file), ``pdf`` (WeasyPrint's print of the HTML), ``md`` (Markdown;
        images as paths relative to the audit's folder, charts under ``charts/``: see
        :func:`write_report`), ``json`` (the result itself, ``result.to_json()``) or ``modelcard`` (a
        Hugging Face model card: YAML front matter with ``model-index`` results, then the sections).
    template_dir
        A folder with the templates (default: auditkit's ``reports/``; copy it to customise).
    signoffs
        Reviewer sign-off records (``reviewer``, ``role``, ``decision``, ``comment``, ``date``,
        ``audit_sha256``). ``None`` reads ``signoffs.json`` in the audit's folder if there is one.

    Returns
    -------
    bytes
        The document (UTF-8 text for all but ``pdf``).

    Raises
    ------
    ConfigError
        An unknown format, a result that does not follow the audit-result schema, a template folder
        without a needed file or with a broken template, unreadable sign-offs, or a template that refers
        to an external resource.
    """
    return _render(result, fmt, template_dir=template_dir, signoffs=signoffs)[0]


def write_report(
    result: Any,
    fmt: str,
    out_path: str | os.PathLike[str],
    *,
    template_dir: str | os.PathLike[str] | None = None,
    signoffs: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """Render a report (see :func:`render_report`) and write it to ``out_path`` atomically.

    For ``md`` the charts are written too, as ``charts/*.png`` beside ``out_path``, and the audit's
    images are linked by paths relative to ``out_path``'s folder, so the Markdown reads anywhere on the
    same disk (best: inside the audit's folder, which then travels whole).

    Returns
    -------
    Path
        ``out_path``.
    """
    out = Path(out_path)
    if not out.parent.is_dir():
        raise ConfigError(f"cannot write the report to {out}: the folder {out.parent} does not exist.")
    prefix = ""
    if fmt == "md":
        loaded = _as_result(result)
        if loaded.path is not None:
            prefix = Path(os.path.relpath(loaded.path, out.parent)).as_posix() + "/"
            prefix = "" if prefix == "./" else prefix
        result = loaded
    document, charts = _render(result, fmt, template_dir=template_dir, signoffs=signoffs, asset_prefix=prefix)
    if fmt == "md" and charts:
        (out.parent / "charts").mkdir(exist_ok=True)
        for rel, png in charts.items():
            atomic_write_bytes(out.parent / rel, png)
    atomic_write_bytes(out, document)
    return out


# --------------------------------------------------------------------------- rendering


def _render(
    result: Any,
    fmt: str,
    *,
    template_dir: str | os.PathLike[str] | None,
    signoffs: Sequence[Mapping[str, Any]] | None,
    asset_prefix: str = "",
) -> tuple[bytes, dict[str, bytes]]:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    result = _as_result(result)
    try:
        result.validate()
    except ConfigError as exc:
        raise ConfigError(f"cannot render a report: {exc}") from None
    if fmt == "json":
        return result.to_json(), {}
    folder = _template_folder(template_dir, fmt)
    env = _environment(folder, markdown=fmt in ("md", "modelcard"))
    sections = _load_sections(folder)
    inline = fmt in ("html", "pdf")
    name = "report.html.j2" if inline else ("modelcard.md.j2" if fmt == "modelcard" else "report.md.j2")
    template = _get_template(env, name, folder)  # a broken template fails before any chart is drawn
    css = _load_css(folder) if inline else None
    records = _signoffs(result, signoffs)
    charts = _charts(result) if fmt != "modelcard" else {}  # a card on the Hub shows no images
    ctx = _context(result, records, sections, charts, inline, asset_prefix)
    if inline:
        ctx["css"] = css
        html_text = _run_template(template, ctx, folder)
        _check_self_contained(html_text, folder)
        return (html_text.encode("utf-8") if fmt == "html" else _pdf(html_text)), {}
    if fmt == "modelcard":
        ctx["front_matter"] = _front_matter(ctx, result)
    return _run_template(template, ctx, folder).encode("utf-8"), charts


def _as_result(result: Any) -> Any:
    from auditkit.result import AuditResult

    if isinstance(result, AuditResult):
        return result
    if isinstance(result, str | os.PathLike):
        return AuditResult.load(result)
    raise ConfigError(f"render_report needs an AuditResult or an audit folder; got {type(result).__name__}.")


def _template_folder(template_dir: str | os.PathLike[str] | None, fmt: str) -> Path:
    from auditkit.resources import resource_dir

    folder = Path(template_dir) if template_dir is not None else resource_dir("reports")
    if not folder.is_dir():
        raise ConfigError(
            f"the report template folder {folder} does not exist; pass a copy of auditkit's "
            f"{resource_dir('reports')} folder."
        )
    missing = [name for name in _TEMPLATES[fmt] if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"the report template folder {folder} lacks {', '.join(missing)}, needed for {fmt} reports; "
            f"copy {'them' if len(missing) > 1 else 'it'} from {resource_dir('reports')}."
        )
    return folder


def _environment(folder: Path, *, markdown: bool) -> Any:
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(folder)),
        # html templates escape every value; Markdown ones escape user text with the `md` filter
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=markdown,
        lstrip_blocks=markdown,
        keep_trailing_newline=True,
    )
    env.filters.update(num=_num, share=_share, pct=_pct, interval=_interval, md=_md, sev=_sev, yesno=_yesno)
    return env


def _get_template(env: Any, name: str, folder: Path) -> Any:
    import jinja2

    try:
        return env.get_template(name)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            f"report template {folder / (exc.name or name)} line {exc.lineno}: {exc.message}"
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(f"report template {exc.name} is missing from {folder}.") from None


def _run_template(template: Any, ctx: dict[str, Any], folder: Path) -> str:
    import jinja2
    from jinja2.sandbox import SecurityError

    try:
        return template.render(**ctx)
    except jinja2.TemplateSyntaxError as exc:  # an imported template's
        raise ConfigError(
            f"report template {folder / (exc.name or template.name)} line {exc.lineno}: {exc.message}"
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(f"report template {exc.name} is missing from {folder}.") from None
    except (jinja2.UndefinedError, SecurityError, TypeError) as exc:
        raise ConfigError(f"report template {folder / template.name} failed: {exc}") from None


def _load_sections(folder: Path) -> list[dict[str, Any]]:
    path = folder / "sections.yaml"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        sections = [dict(s) for s in doc["sections"]]
        for s in sections:
            s["id"], s["title"] = str(s["id"]), str(s["title"])
            s["annex_iv"] = [str(x) for x in s.get("annex_iv") or []]
            s["nist"] = [str(x) for x in s.get("nist") or []]
            s["evidence"] = str(s.get("evidence") or "")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{path} must be YAML with a list 'sections' of {{id, title, annex_iv, nist, evidence}}: {exc}"
        ) from None
    return sections


def _load_css(folder: Path) -> Any:
    from markupsafe import Markup

    path = folder / "report.css"
    css = path.read_text(encoding="utf-8")
    if _fetches(css):
        raise ConfigError(
            f"{path} imports or fetches a resource (@import or url(...)); reports must be self-contained "
            "(no web fonts or remote images): use system fonts and data: URIs."
        )
    if "</" in css:
        raise ConfigError(f"{path} contains '</', which would end the <style> element early.")
    return Markup(css)  # the stylesheet is template text, not user data: autoescape would break selectors


class _UrlCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        for name, value in attrs:
            if name in _URL_ATTRS and value is not None:
                self.urls.append(value)
            elif name == "style" and value:
                self.styles.append(value)

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def _check_self_contained(html_text: str, folder: Path) -> None:
    parser = _UrlCollector()
    parser.feed(html_text)
    bad = [u for u in parser.urls if not u.strip().lower().startswith(("data:", "#"))]
    bad += [s[:60] for s in parser.styles if _fetches(s)]
    if bad:
        raise ConfigError(
            f"the report rendered from {folder} refers to external resources {bad[:3]}; reports must be "
            "self-contained: inline images as data: URIs and link only to #fragments."
        )


def _fetches(css: str) -> bool:
    """Whether CSS imports or loads anything other than a data: URI (comments aside)."""
    return bool(_CSS_FETCH.search(re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)))


def _pdf(html_text: str) -> bytes:
    import weasyprint

    try:  # WeasyPrint ≥ 70: a fetcher object that refuses protocols outright
        from weasyprint.urls import URLFetcher

        fetcher: Any = URLFetcher(allowed_protocols=("data",))
    except ImportError:  # older WeasyPrint: a function in front of the default fetcher

        def fetcher(url: str, *args: Any, **kwargs: Any) -> Any:
            if not url.startswith("data:"):
                raise ValueError(f"reports fetch nothing: refused {url[:80]}")
            return weasyprint.default_url_fetcher(url, *args, **kwargs)

    return weasyprint.HTML(string=html_text, url_fetcher=fetcher, base_url=None).write_pdf()


# --------------------------------------------------------------------------- filters


def _num(value: Any, digits: int = 4) -> str:
    """Four significant digits (as the policy's finding messages print them); ``n/a`` for missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _share(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3f}"


def _pct(value: Any, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * float(value):.{digits}f}%"


def _interval(pair: Any, kind: str = "num", digits: int = 4) -> str:
    if not pair or len(pair) != 2 or pair[0] is None or pair[1] is None:
        return "n/a"
    if kind == "share":
        return f"[{_share(pair[0])}, {_share(pair[1])}]"
    return f"[{_num(pair[0], digits)}, {_num(pair[1], digits)}]"


def _md(value: Any) -> str:
    """User text for a Markdown table cell or line: no raw HTML, no table breaks, no link syntax."""
    text = re.sub(r"\s+", " ", str(value)).strip()
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = re.sub(r"([\\`*\[|#~])", r"\\\1", text)
    # an underscore inside a word never emphasises (CommonMark), so snake_case names stay readable
    return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)


def _sev(severity: Any) -> str:
    return str(severity).upper()


def _yesno(value: Any) -> str:
    return "n/a" if value is None else ("yes" if value else "no")


# --------------------------------------------------------------------------- the view of a result


def _context(
    result: Any,
    signoffs: list[dict[str, Any]],
    sections: list[dict[str, Any]],
    charts: dict[str, bytes],
    inline: bool,
    prefix: str,
) -> dict[str, Any]:
    data = result.data
    scope = data["scope"]
    runtime = data["runtime"]
    findings = data["findings"]
    result_sha = hashlib.sha256(result.to_json()).hexdigest()
    manifest_hashes = {a["path"]: a["sha256"] for a in data["manifest"]["artifacts"]}

    def image(rel: str | None, alt: str) -> dict[str, Any]:
        return _artifact(result, rel, alt, manifest_hashes, inline, prefix)

    def chart(rel: str, alt: str) -> dict[str, Any] | None:
        if rel not in charts:
            return None
        src = _data_uri(charts[rel]) if inline else rel
        return {"src": src, "alt": alt, "path": rel, "missing": None, "width_in": _png_width_in(charts[rel])}

    for record in signoffs:
        record["matches"] = record["audit_sha256"] == result_sha
    gen = scope["generator"]
    return {
        "meta": {
            "title": f"Audit report: {gen.get('name', 'generator')}",
            "generator": gen.get("name", "generator"),
            "audit_id": runtime.get("audit_id") or "(not stored)",
            "created_at": runtime.get("created_at"),
            "finished_at": runtime.get("finished_at"),
            "verdict": data["verdict"],
            "counts": findings["counts"],
            "n_findings": len(findings["findings"]),
            "policy": findings["policy"].get("name"),
            "result_sha256": result_sha,
            "schema": data["schema"],
        },
        "sections": sections,
        "section": {s["id"]: s for s in sections},
        "scope": {
            "n": scope["n"],
            "seed": scope["seed"],
            "attributes": scope["attributes"],
            "intersections": ["×".join(c) for c in scope["intersections"]],
            "stages": scope["stages"],
            "condition": gen.get("condition"),
        },
        "signoffs": signoffs,
        "identity": _identity(data),
        "use": {
            "intended": _text_list(scope.get("intended_use")),
            "out_of_scope": _text_list(scope.get("out_of_scope")),
        },
        "data": _data_summary(data),
        "protocol": _protocol(data),
        "quality": _quality(data, chart),
        "bias": _bias(data, chart),
        "memorization": _memorization(data),
        "explain": _explain(data, image),
        "grids": [
            image(rel, f"generated images by the judge's {attr}")
            for attr, rel in sorted(data["samples"].get("grids", {}).items())
        ],  # fmt: skip
        "findings": _findings(findings),
        "limitations": _limitations(data),
        "appendix": _appendix(data, result_sha),
    }


def _identity(data: dict[str, Any]) -> dict[str, Any]:
    inputs = data["manifest"]["inputs"]
    gen = data["scope"]["generator"]
    judge = data["judge"]
    rows = [(key, _plain(value)) for key, value in sorted(gen.items())]
    return {
        "generator": rows,
        "hashes": [
            ("generator weights", inputs["generator_sha256"]),
            ("judge weights", inputs["judge_sha256"]),
            ("policy file", inputs["policy_sha256"]),
            ("reference images", inputs["reference_images_sha256"]),
            ("reference labels", inputs["reference_labels_sha256"]),
        ],
        "judge_run": judge.get("run_id"),
        "versions": sorted(data["manifest"]["versions"].items()),
    }


def _data_summary(data: dict[str, Any]) -> dict[str, Any]:
    scope = data["scope"]
    ref_data = scope["reference_data"]
    info = ref_data.get("info") or {}
    references = []
    gaps: list[str] = []
    for attr, ref in scope["references"].items():
        k = len(ref["values"])
        references.append(
            {
                "attribute": attr,
                "kind": ref["kind"],
                "source": ref["source"],
                "n": ref.get("n"),
                "rows": list(zip(ref["values"], ref["shares"], strict=False)),
            }
        )
        if ref["kind"] == "uniform":
            gaps.append(
                f"No cited population for {attr}: the reference is parity (every value equally often)."
            )
        elif ref["kind"] == "training":
            gaps.append(
                f"The reference for {attr} is the reference data itself ({ref['source']}): the audit shows "
                "how faithfully the generator reproduces that data, including any skew the data has."
            )
            for value, share in zip(ref["values"], ref["shares"], strict=False):
                if share == 0:
                    gaps.append(f"{attr}={value} never occurs in the reference data.")
                elif share < 0.5 / k:
                    gaps.append(
                        f"{attr}={value} makes up only {_pct(share)} of the reference data "
                        f"(parity would be {_pct(1 / k)})."
                    )
    skew = info.get("skew")
    if skew:
        gaps.append(f"The reference data was drawn with a deliberate skew: {_plain(skew)}.")
    for key, entries in (data.get("quality") or {}).get("groups", {}).items():
        for value, entry in entries.items():
            n_real = entry.get("n_real")
            if n_real is not None and n_real < 50:
                gaps.append(
                    f"Only {n_real} reference images have {key.removeprefix('judge:')}={value}: "
                    "that group's quality numbers are noisy."
                )
    return {
        "n": ref_data["n"],
        "info": [(key, _plain(value)) for key, value in sorted(info.items())],
        "references": references,
        "gaps": gaps,
        "stated_gaps": _text_list(scope.get("known_gaps")),
        "judge_n_train": data["judge"]["n_train"],
        "judge_n_holdout": data["judge"]["n_holdout"],
    }


def _protocol(data: dict[str, Any]) -> dict[str, Any]:
    judge = data["judge"]
    config = data["manifest"]["config"]
    attrs = []
    for attr, values in judge["attributes"].items():
        attrs.append(
            {
                "name": attr,
                "values": values,
                "accuracy": judge["accuracy"].get(attr),
                "confusion": judge["confusion"].get(attr, []),
            }
        )
    power = []
    for name, record in (data.get("bias") or {}).get("scopes", {}).items():
        if "power" in record:
            p = record["power"]
            power.append(
                {
                    "scope": name,
                    "n": p["n"],
                    "power": p["power"],
                    "required_n": p["required_n"],
                    "sufficient": p.get("sufficient"),
                    "message": p.get("message", ""),
                }
            )
    return {
        "judge": attrs,
        "n_train": judge["n_train"],
        "n_holdout": judge["n_holdout"],
        "judge_sha256": judge["weights_sha256"],
        "config": [(key, _plain(value)) for key, value in sorted(config.items())],
        "references": [
            (attr, ref["kind"], ref["source"]) for attr, ref in data["scope"]["references"].items()
        ],
        "tests": (data.get("bias") or {}).get("tests"),
        "power": power,
        "policy_tvd": next(
            (
                r["power"].get("policy_tvd")
                for r in (data.get("bias") or {}).get("scopes", {}).values()
                if "power" in r
            ),
            None,
        ),
    }


def _quality(data: dict[str, Any], chart: Any) -> dict[str, Any] | None:
    quality = data.get("quality")
    if quality is None:
        return None
    ci = quality.get("ci", {})
    metrics = []
    for key, label in _QUALITY_METRICS:
        if key in quality:
            interval = ci.get(key)
            metrics.append(
                {
                    "key": key,
                    "label": label,
                    "value": quality[key],
                    "interval": [interval["low"], interval["high"]] if interval else None,
                    "std_error": interval.get("std_error") if interval else None,
                }
            )
    level = next((c.get("confidence") for c in ci.values() if isinstance(c, dict)), None)
    n_resamples = next((c.get("n_resamples") for c in ci.values() if isinstance(c, dict)), None)
    groups = []
    for key, entries in quality.get("groups", {}).items():
        groups.append(
            {
                "attribute": key.removeprefix("judge:"),
                "rows": [
                    {
                        "value": value,
                        "skipped": entry.get("skipped"),
                        **{k: entry.get(k) for k in _GROUP_KEYS},
                    }
                    for value, entry in entries.items()
                ],
            }
        )
    return {
        "features": quality.get("features"),
        "n_real": quality["n_real"],
        "n_fake": quality["n_fake"],
        "metrics": metrics,
        "level": level,
        "n_resamples": n_resamples,
        "groups": groups,
        "chart": chart("charts/quality-groups.png", "FID per judged group"),
    }


def _bias(data: dict[str, Any], chart: Any) -> dict[str, Any] | None:
    bias = data.get("bias")
    if bias is None:
        return None
    scopes = bias["scopes"]
    overview, detailed, by_condition, fidelity = [], [], {}, []
    for i, (name, record) in enumerate(scopes.items()):
        kind = record["kind"]
        if kind == "fidelity":
            rows = [(v, _pick(e, "n", "judged_as_condition")) for v, e in record.get("by_value", {}).items()]
            fidelity.append({"scope": name.removesuffix(" | fidelity"), "rows": rows, "n": record.get("n")})
            continue
        if kind == "condition":
            cname, cvalue = record["condition"]
            key = (record["attributes"][0], cname)
            by_condition.setdefault(key, []).append((cvalue, name, record))
        overview.append(_scope_summary(name, record))
        if kind in ("attribute", "intersection"):
            detailed.append(
                _scope_detail(name, record, chart(_chart_name("bias", i, name), f"shares of {name}"))
            )
    conditions = []
    for (attr, cname), rows in by_condition.items():
        conditions.append(
            {
                "attribute": attr,
                "condition": cname,
                "heatmap": chart(_chart_name("condition", len(conditions), f"{attr}-{cname}"),
                                 f"corrected shares of {attr} by {cname}"),
                "rows": [{"value": cvalue, **_scope_summary(name, rec)} for cvalue, name, rec in rows],
            }
        )  # fmt: skip
    return {
        "overview": overview,
        "scopes": detailed,
        "conditions": conditions,
        "fidelity": fidelity,
        "tests": bias["tests"],
    }


def _scope_summary(name: str, record: dict[str, Any]) -> dict[str, Any]:
    if record.get("empty"):
        return {"scope": name, "kind": record["kind"], "n": 0, "empty": True}
    gap_iv = record.get("gap_corrected_interval", {})
    test = record.get("test", {})
    return {
        "scope": name,
        "kind": record["kind"],
        "n": record["n"],
        "empty": False,
        "tvd_raw": record["gap_raw"]["tvd"],
        "tvd_corrected": record["gap_corrected"]["tvd"],
        "tvd_interval": gap_iv.get("tvd"),
        "ratio_corrected": record["gap_corrected"]["ratio"],
        "p_adjusted": test.get("p_adjusted"),
        "significant": test.get("significant"),
        "power": record.get("power", {}).get("power"),
    }


def _scope_detail(name: str, record: dict[str, Any], chart: dict[str, Any] | None) -> dict[str, Any]:
    shares = record["shares"]
    ref = record["reference"]["shares"]
    rows = []
    for j, value in enumerate(record["values"]):
        rows.append(
            {
                "value": value,
                "count": record["counts"][j],
                "reference": ref[j],
                "raw": shares["raw"][j],
                "raw_interval": [shares["raw_low"][j], shares["raw_high"][j]],
                "corrected": shares["corrected"][j],
                "corrected_interval": [shares["corrected_low"][j], shares["corrected_high"][j]],
                "difference": shares["corrected"][j] - ref[j],
            }
        )
    gap_iv = record.get("gap_corrected_interval", {})
    test, power, amp = record.get("test"), record.get("power"), record.get("amplification")
    gaps = [
        {"label": label, "raw": record["gap_raw"].get(key), "corrected": record["gap_corrected"].get(key),
         "interval": gap_iv.get(key)}
        for key, label in _GAP_MEASURES
    ]  # fmt: skip
    return {
        "scope": name,
        "kind": record["kind"],
        "n": record["n"],
        "level": shares.get("level"),
        "n_boot": shares.get("n_boot"),
        "reference_source": record["reference"]["source"],
        "reference_kind": record["reference"]["kind"],
        "rows": rows,
        "gaps": gaps,
        "test": _pick(test, "test", "statistic", "p_value", "p_adjusted", "significant", "through_judge"),
        "power": _pick(power, "power", "required_n", "n", "sufficient", "message"),
        "amplification": _pick(
            amp,
            "difference",
            "difference_interval",
            "generated_tvd",
            "training_tvd",
            "note",
            "training_source",
        ),
        "chart": chart,
    }


def _memorization(data: dict[str, Any]) -> dict[str, Any] | None:
    mem = data.get("memorization")
    if mem is None:
        return None
    median = mem.get("median_training_nn")
    pairs = [
        {"generated": g, "training": t, "distance": d, "relative": d / median if median else None}
        for g, t, d in mem.get("closest_pairs", [])
    ]
    keys = ("near_copy_rate", "baseline_near_copy_rate", "n_generated", "n_training", "threshold",
            "median_generated_nn", "median_training_nn", "distance_ratio")  # fmt: skip
    return {**_pick(mem, *keys), "pairs": pairs}


def _explain(data: dict[str, Any], image: Any) -> dict[str, Any] | None:
    expl = data.get("explain")
    if expl is None:
        return None
    attributes = []
    for attr, entry in expl["attributes"].items():
        verdicts = [
            {
                "method": method,
                "status": v["status"],
                "reasons": v["reasons"],
                "checks": sorted((k, c) for k, c in v["checks"].items() if not isinstance(c, dict | list)),
            }
            for method, v in entry["verdicts"].items()
        ]
        attributes.append(
            {
                "attribute": attr,
                "n": entry["n"],
                "verdicts": verdicts,
                "panel": image(entry.get("panel"), f"attribution maps of the judge's {attr}"),
            }
        )
    latent_doc = expl.get("latent") or {}
    latent = []
    for attr, entry in (latent_doc.get("attributes") or {}).items():
        latent.append(
            {
                "attribute": attr,
                "method": entry.get("method"),
                "condition_method": entry.get("condition_method"),
                "top_input": entry.get("top_input"),
                "ranking": entry.get("ranking", []),
                "figure": image(entry.get("figure"), f"latent traversal for {attr}"),
            }
        )
    return {
        "methods": expl["methods"],
        "attributes": attributes,
        "latent": latent,
        "latent_n": latent_doc.get("n"),
        "latent_skipped": latent_doc.get("skipped"),
    }


def _findings(findings: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for f in findings["findings"]:
        notes = []
        if f["value"] is None:
            notes.append(str(f["evidence"].get("reason", "could not be computed")))
        if f["decided_on"] != "estimate":
            notes.append(f"decided on {f['decided_on']} end")
        if f["interval_straddles"]:
            notes.append("interval straddles threshold")
        rows.append({**f, "notes": "; ".join(notes)})
    policy = findings["policy"]
    rules = [{"metric": metric, **rule} for metric, rule in sorted(policy.get("rules", {}).items())]
    return {
        "rows": rows,
        "counts": findings["counts"],
        "verdict": findings["verdict"],
        "key": [r for r in rows if r["severity"] == "fail"][:8],
        "policy": {k: policy.get(k) for k in ("name", "description", "source", "sha256")},
        "rules": rules,
    }


def _limitations(data: dict[str, Any]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []

    def add(title: str, *parts: str) -> None:
        out.append({"title": title, "text": " ".join(parts)})

    judge = data["judge"]
    if judge["accuracy"]:
        worst = min(judge["accuracy"], key=judge["accuracy"].get)
        add(
            "The judge's own error",
            "Every bias and per-group number is read through the judge, whose held-out accuracy ranges down",
            f"to {_pct(judge['accuracy'][worst])} ({worst}, {judge['n_holdout']} held-out images).",
            "Corrected shares undo the error measured on real held-out images; they assume the judge errs",
            "the same way on generated images, which images unlike the real ones can break. Raw shares are",
            "shown beside the corrected ones so the size of the correction is visible.",
        )
    if data["scope"]["intersections"]:
        names = ", ".join("×".join(c) for c in data["scope"]["intersections"])
        add(
            "Independence assumption for intersections",
            f"Intersections ({names}) are corrected with the Kronecker product of the attributes' confusion",
            "matrices, which assumes the judge's heads err independently given the true values. Correlated",
            "errors (one head's mistake making another's likelier) bias the corrected joint shares.",
        )
    quality = data.get("quality")
    if quality is not None and quality.get("features") == "judge":
        add(
            "Quality numbers are feature-specific",
            "FID, KID and precision/recall/density/coverage are computed on the judge's penultimate",
            "features, not on Inception-v3 features: their scale is not comparable with published",
            "(Inception) FID numbers, only with audits that use the same judge.",
        )
    elif quality is not None:
        add(
            "Quality numbers are feature-specific",
            f"Quality metrics use {quality.get('features')} features; compare them only with numbers",
            "computed on the same features.",
        )
    bias = data.get("bias")
    if bias is not None:
        scopes = bias["scopes"]
        weak = [
            (n, r["power"]) for n, r in scopes.items() if "power" in r and not r["power"].get("sufficient")
        ]
        if weak:
            listed = "; ".join(
                f"{n}: {_pct(p['power'], 0)} power, {p['required_n']} images needed" for n, p in weak[:6]
            )
            more = "; …" if len(weak) > 6 else ""
            add(
                "Sample size",
                f"{len(weak)} of {len(scopes)} bias scopes have less than the target power to detect a shift",
                f"of the policy's size ({listed}{more}). A pass there means no bias was detected, not that",
                "none exists.",
            )
        empty = [n for n, r in scopes.items() if r.get("empty")]
        if empty:
            add(
                "Empty groups", f"No images were generated in {', '.join(empty)}; those groups are unaudited."
            )
    config = data["manifest"]["config"]
    add(
        "Bootstrap intervals",
        f"Intervals come from {config.get('n_boot')} bootstrap replicates for bias and",
        f"{config.get('quality_bootstrap')} for quality; with fewer than about 1000 their ends are rough.",
        "The reference distribution is taken as exact.",
    )
    mem = data.get("memorization")
    if mem is not None:
        add(
            "Memorization is measured in feature space",
            "A near-copy is a generated image whose nearest training image, in the judge's feature space,",
            f"is closer than {_num(mem['threshold'])} × the training images' median spacing. Images the",
            "features cannot tell apart count as close even where their pixels differ, and pixels are not",
            "compared directly. The baseline rate among the training images themselves",
            f"({_pct(mem['baseline_near_copy_rate'])}) shows what the threshold flags among distinct images.",
        )
    if data.get("explain") is not None:
        add(
            "Explanations explain the judge",
            "Attribution maps show what the judge looked at when it read an attribute, not how the generator",
            "produced it; a 'trustworthy' verdict means the method passed sanity checks (parameter",
            "randomization, deletion, faithfulness), not that the explanation is complete. Latent",
            "attribution ranks generator inputs by their effect on the judge's reading.",
        )
    add(
        "Reference and reproducibility",
        "Bias is measured against the stated reference distribution; another reference can change every bias",
        "verdict. The numbers are reproducible for this seed on the same device; other seeds vary within the",
        "intervals shown.",
    )
    return out


def _appendix(data: dict[str, Any], result_sha: str) -> dict[str, Any]:
    manifest = data["manifest"]
    runtime = data["runtime"]
    inputs = manifest["inputs"]
    return {
        "result_sha256": result_sha,
        "inputs": [(k, v) for k, v in sorted(inputs.items()) if k.endswith("_sha256")],
        "artifacts": manifest["artifacts"],
        "config": [(k, _plain(v)) for k, v in sorted(manifest["config"].items())],
        "seed": manifest["seed"],
        "versions": sorted(manifest["versions"].items()),
        "runtime": [
            ("audit id", runtime.get("audit_id")),
            ("created", runtime.get("created_at")),
            ("finished", runtime.get("finished_at")),
            ("device", runtime.get("device")),
            ("platform", runtime.get("platform")),
        ],
        "timings": sorted((k, v) for k, v in (runtime.get("timings") or {}).items()),
    }


# --------------------------------------------------------------------------- charts, images, sign-offs


def _charts(result: Any) -> dict[str, bytes]:
    """Every chart the templates may show, by the relative path Markdown links it under."""
    from auditkit.report import charts

    data = result.data
    out: dict[str, bytes] = {}
    quality = data.get("quality")
    if quality is not None and quality.get("groups"):
        out["charts/quality-groups.png"] = charts.group_quality_chart(quality["groups"], quality.get("fid"))
    bias = data.get("bias")
    if bias is None:
        return out
    by_condition: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
    for i, (name, record) in enumerate(bias["scopes"].items()):
        if record["kind"] in ("attribute", "intersection") and "shares" in record:
            out[_chart_name("bias", i, name)] = charts.share_chart(record, name)
        elif record["kind"] == "condition":
            cname, cvalue = record["condition"]
            by_condition.setdefault((record["attributes"][0], cname), []).append((cvalue, record))
    for j, ((attr, cname), rows) in enumerate(by_condition.items()):
        out[_chart_name("condition", j, f"{attr}-{cname}")] = charts.condition_heatmap(rows, attr, cname)
    return out


def _chart_name(kind: str, index: int, name: str) -> str:
    # the index keeps names unique; the slug only helps a reader of the charts/ folder
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:40] or "scope"
    return f"charts/{kind}-{index:02d}-{slug}.png"


def _png_width_in(png: bytes) -> float | None:
    """A PNG's intended width in inches (pixels over its pHYs resolution), so that print shows every
    chart and panel at the size it was drawn for instead of stretching small ones across the page."""
    import struct

    if len(png) < 24:
        return None
    width = struct.unpack(">I", png[16:20])[0]
    pos = 8
    while pos + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        if kind == b"pHYs" and length == 9:
            ppu_x, _, unit = struct.unpack(">IIB", png[pos + 8 : pos + 17])
            return round(width / (ppu_x * 0.0254), 2) if unit == 1 and ppu_x else None
        if kind in (b"IDAT", b"IEND"):
            return None
        pos += 12 + length
    return None


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _artifact(
    result: Any, rel: str | None, alt: str, hashes: dict[str, str], inline: bool, prefix: str
) -> dict[str, Any]:
    entry: dict[str, Any] = {"src": None, "alt": alt, "path": rel, "missing": None, "width_in": None}
    if not rel:
        entry["missing"] = "no image was recorded"
        return entry
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or pure.suffix.lower() != ".png":
        entry["missing"] = f"{rel} is not a PNG inside the audit's folder; not shown"
        return entry
    if result.path is None:
        entry["missing"] = f"{rel} is not available (the result was not loaded from its folder)"
        return entry
    path = Path(result.path) / Path(*pure.parts)
    try:
        blob = path.read_bytes()
    except OSError:
        entry["missing"] = f"{rel} is missing from the audit's folder"
        return entry
    expected = hashes.get(rel)
    if expected is None or hashlib.sha256(blob).hexdigest() != expected:
        entry["missing"] = (
            f"{rel} does not match the SHA-256 recorded in the manifest; not shown (check the audit folder)"
            if expected
            else f"{rel} is not listed in the manifest; not shown"
        )
        return entry
    if not blob.startswith(b"\x89PNG\r\n\x1a\n"):
        entry["missing"] = f"{rel} is not a PNG image; not shown"
        return entry
    entry["src"] = _data_uri(blob) if inline else prefix + rel
    entry["width_in"] = _png_width_in(blob)
    return entry


def _signoffs(result: Any, given: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    source = "the caller"
    if given is None:
        if result.path is None or not (Path(result.path) / SIGNOFFS_FILE).is_file():
            return []
        path = Path(result.path) / SIGNOFFS_FILE
        source = str(path)
        try:
            given = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read the sign-offs {path}: {exc}") from None
    if not isinstance(given, list | tuple) or not all(isinstance(r, Mapping) for r in given):
        raise ConfigError(
            f"sign-offs from {source} must be a list of records (objects); got {type(given).__name__}."
        )
    records = []
    for r in given:
        records.append(
            {
                key: "" if r.get(key) is None else str(r.get(key))
                for key in ("reviewer", "role", "decision", "comment", "date", "audit_sha256")
            }
        )
    return records


def _front_matter(ctx: dict[str, Any], result: Any) -> str:
    data = result.data
    scope = data["scope"]
    gen = scope["generator"]
    info = scope["reference_data"].get("info") or {}
    source = str(info.get("source") or info.get("name") or "reference data")
    metrics: list[dict[str, Any]] = []
    quality = data.get("quality") or {}
    feature_note = " (judge features)" if quality.get("features") == "judge" else ""
    for key, label in _QUALITY_METRICS:
        if quality.get(key) is not None:
            metrics.append({"type": key, "name": label + feature_note, "value": _round(quality[key])})
    mem = data.get("memorization")
    if mem is not None:
        metrics.append(
            {"type": "near_copy_rate", "name": "Near-copy rate", "value": _round(mem["near_copy_rate"])}
        )
    for name, record in (data.get("bias") or {}).get("scopes", {}).items():
        if record["kind"] in ("attribute", "intersection") and "gap_corrected" in record:
            metrics.append(
                {"type": "tvd", "name": f"TVD {name} (judge-corrected)",
                 "value": _round(record["gap_corrected"]["tvd"])}
            )  # fmt: skip
    for m in metrics:
        m["verified"] = False
    conditional = bool(gen.get("class_names"))
    task = (
        {"type": "image-generation", "name": "Class-conditional image generation"}
        if conditional
        else {"type": "unconditional-image-generation", "name": "Unconditional image generation"}
    )
    doc: dict[str, Any] = {"tags": ["auditkit", "image-generation", "bias-audit"]}
    if not conditional:  # the Hub has no pipeline tag for class-conditional generation: leave it unset
        doc["pipeline_tag"] = "unconditional-image-generation"
    doc |= {
        "model-index": [
            {
                "name": str(gen.get("name", "generator")),
                "results": [
                    {
                        "task": task,
                        "dataset": {
                            "type": source,
                            "name": f"{source} ({scope['reference_data']['n']} images)",
                        },
                        "metrics": metrics,
                    }
                ],
            }
        ],
        "auditkit": {
            "audit_id": ctx["meta"]["audit_id"],
            "verdict": data["verdict"],
            "audit_sha256": ctx["meta"]["result_sha256"],
            "schema": data["schema"],
        },
    }
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000)


def _round(value: Any) -> float | None:
    return None if value is None else float(f"{float(value):.6g}")


def _pick(record: Mapping[str, Any] | None, *keys: str) -> dict[str, Any] | None:
    """The keys templates use, present (``None`` when absent), so a strict template never trips on a
    record written by an older or newer auditkit."""
    return None if record is None else {k: record.get(k) for k in keys}


def _plain(value: Any) -> str:
    """A config or info value as one line of text (JSON for containers)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "—"
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _text_list(value: Any) -> list[str] | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [_plain(value)]


__all__ = ["FORMATS", "render_report", "write_report"]
