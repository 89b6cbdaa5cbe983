"""Static charts of an audit result for reports: PNG bytes that read well on paper, in colour or greyscale.

Three kinds, each a pure function of the result's JSON records:

- :func:`share_chart`: one bias scope (an attribute or an intersection): the judge's raw shares and the
  judge-corrected shares, each with its interval, beside the reference shares, as grouped bars;
- :func:`condition_heatmap`: an attribute's corrected shares within every condition of a conditional
  generator, one row per condition, every cell labelled with its number;
- :func:`group_quality_chart`: FID per judged group, one panel per attribute.

Every series is told apart by luminance *and* hatching (and cells by printed numbers), so a greyscale
print loses nothing. Figures are built with matplotlib's object API on an Agg canvas, never through
``pyplot``: no global figure registry, no backend switch in the caller's process. The style is reset to
matplotlib's defaults for every figure (a user's ``matplotlibrc`` does not leak into a report) and the PNG
carries no ``Software`` tag, so the same record gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.style
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Okabe-Ito blue and vermillion with a light grey: distinct for colour-blind readers, and three clearly
# different greys once printed without colour; the hatches separate them again if a printer flattens tones.
_SERIES = (
    ("reference", "#d9d9d9", "xx"),
    ("raw (judge's labels)", "#e69f00", "//"),
    ("corrected", "#0072b2", ".."),
)
_RC = {
    "font.family": "DejaVu Sans",  # ships with matplotlib: the same glyphs on every machine
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "hatch.linewidth": 0.6,
    "svg.hashsalt": "auditkit",
}
_DPI = 150
_MAX_LABEL = 22


def share_chart(record: Mapping[str, Any], title: str) -> bytes:
    """Grouped bars of one bias scope: reference, raw and corrected shares, with interval error bars.

    Parameters
    ----------
    record
        A bias scope record of an audit result (``result.data["bias"]["scopes"][name]``) with
        ``values``, ``reference`` and ``shares`` (``raw``, ``raw_low``, ... ``corrected_high``).
    title
        The chart's title (the scope's name).

    Returns
    -------
    bytes
        A PNG image.
    """
    values = [_short(v) for v in record["values"]]
    shares = record["shares"]
    reference = np.asarray(record["reference"]["shares"], dtype=float)
    series = [
        (reference, None),
        (_arr(shares["raw"]), (_arr(shares["raw_low"]), _arr(shares["raw_high"]))),
        (_arr(shares["corrected"]), (_arr(shares["corrected_low"]), _arr(shares["corrected_high"]))),
    ]
    k = len(values)
    width = min(7.2, max(4.2, 0.62 * k + 1.6))
    with _style():
        fig = Figure(figsize=(width, 3.0), layout="constrained")
        ax = fig.add_subplot()
        x = np.arange(k)
        bar = 0.26
        for i, ((label, colour, hatch), (heights, interval)) in enumerate(zip(_SERIES, series, strict=True)):
            yerr = None
            if interval is not None:
                low, high = interval
                # intervals of a corrected share need not contain the point (it is solved on the simplex)
                yerr = np.vstack([np.clip(heights - low, 0, None), np.clip(high - heights, 0, None)])
            ax.bar(
                x + (i - 1) * bar,
                heights,
                bar,
                label=label,
                color=colour,
                edgecolor="#222222",
                linewidth=0.6,
                hatch=hatch,
                yerr=yerr,
                error_kw={"elinewidth": 0.9, "capsize": 2.5, "ecolor": "#000000"},
            )
        ax.set_xticks(x, values, rotation=30 if k > 4 else 0, ha="right" if k > 4 else "center")
        ax.set_ylabel("share of generated images")
        top = max(
            float(np.nanmax(_arr(shares["raw_high"]))), float(np.nanmax(_arr(shares["corrected_high"])))
        )
        ax.set_ylim(0, min(1.0, max(top, float(reference.max())) * 1.18 + 0.02))
        ax.set_title(title, loc="left")
        ax.grid(axis="y", linewidth=0.4, color="#bbbbbb")
        ax.set_axisbelow(True)
        fig.legend(frameon=False, ncols=3, loc="outside lower center")
        return _png(fig)


def condition_heatmap(rows: Sequence[tuple[str, Mapping[str, Any]]], attribute: str, condition: str) -> bytes:
    """Heat map of an attribute's corrected shares within each condition, every cell labelled.

    Parameters
    ----------
    rows
        ``(condition value, scope record)`` pairs, in the order to show; an empty group's record
        (``"empty": True``) gives a row marked "no images".
    attribute, condition
        Names for the axes and the title.

    Returns
    -------
    bytes
        A PNG image. Cells show the corrected share and, below it, the reference share the condition is
        compared with; the grey scale is monotone in lightness, so it survives a greyscale print.
    """
    values: list[str] = []
    for _, rec in rows:
        if rec.get("values"):
            values = [_short(v) for v in rec["values"]]
            break
    if not values:
        ref = rows[0][1].get("reference", {}) if rows else {}
        values = [_short(v) for v in ref.get("values", [])]
    grid = np.full((len(rows), len(values)), np.nan)
    refs = np.full_like(grid, np.nan)
    for r, (_, rec) in enumerate(rows):
        if not rec.get("empty") and "shares" in rec:
            grid[r] = rec["shares"]["corrected"]
        if "reference" in rec:
            refs[r] = rec["reference"]["shares"]
    with _style():
        fig = Figure(figsize=(min(7.2, 1.1 * len(values) + 2.4), 0.55 * len(rows) + 1.3))
        ax = fig.add_subplot()
        image = ax.imshow(
            np.ma.masked_invalid(grid), cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest"
        )
        for r in range(grid.shape[0]):
            for c in range(grid.shape[1]):
                value = grid[r, c]
                dark = np.isfinite(value) and value > 0.5
                text = "no images" if not np.isfinite(value) else f"{value:.2f}"
                if np.isfinite(refs[r, c]):
                    text += f"\nref {refs[r, c]:.2f}"
                ax.text(c, r, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
        ax.set_xticks(range(len(values)), values)
        ax.set_yticks(range(len(rows)), [_short(str(name)) for name, _ in rows])
        ax.set_xlabel(f"judged {attribute}")
        ax.set_ylabel(condition)
        ax.set_title(f"corrected shares of {attribute} by {condition}", loc="left")
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
        fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="share")
        fig.tight_layout()
        return _png(fig)


def group_quality_chart(
    groups: Mapping[str, Mapping[str, Mapping[str, Any]]], overall_fid: float | None
) -> bytes:
    """FID per judged group, one horizontal-bar panel per attribute, the overall FID as a dashed line.

    Parameters
    ----------
    groups
        ``result.data["quality"]["groups"]``: ``"judge:<attribute>"`` → value → metrics (``fid``,
        ``n_fake``, ...). Groups whose FID could not be computed are labelled "n/a".
    overall_fid
        The FID of all images, or ``None``.

    Returns
    -------
    bytes
        A PNG image.
    """
    panels = [(key.removeprefix("judge:"), entries) for key, entries in groups.items() if entries]
    heights = [max(len(entries), 1) for _, entries in panels] or [1]
    with _style():
        fig = Figure(figsize=(6.4, 0.26 * sum(heights) + 0.5 * len(heights) + 0.6))
        axes = fig.subplots(len(heights), 1, squeeze=False, height_ratios=heights, sharex=True)[:, 0]
        finite = [
            float(e["fid"]) for _, entries in panels for e in entries.values() if e.get("fid") is not None
        ]
        right = max([*finite, overall_fid or 0.0, 1e-9]) * 1.25
        for ax, (attribute, entries) in zip(axes, panels, strict=False):
            names = list(entries)
            fids = [entries[n].get("fid") for n in names]
            y = np.arange(len(names))
            ax.barh(
                y,
                [f if f is not None else 0.0 for f in fids],
                0.6,
                color="#0072b2",
                edgecolor="#222222",
                linewidth=0.6,
                hatch="..",
            )
            for i, (fid, name) in enumerate(zip(fids, names, strict=True)):
                n_fake = entries[name].get("n_fake")
                label = "n/a" if fid is None else f"{fid:.3g}"
                if n_fake is not None:
                    label += f"  (n={n_fake})"
                # a white box keeps the number legible where the dashed overall line crosses it
                ax.text(
                    (fid or 0.0) + right * 0.01, i, label, va="center", fontsize=7, zorder=4,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6},
                )  # fmt: skip
            ax.set_yticks(y, [_short(n) for n in names])
            ax.invert_yaxis()
            ax.set_title(attribute, loc="left")
            if overall_fid is not None:
                ax.axvline(overall_fid, color="#000000", linestyle="--", linewidth=0.9, zorder=3)
            ax.set_xlim(0, right)
        if overall_fid is not None:
            axes[0].text(overall_fid, -0.75, f" all images {overall_fid:.3g}", fontsize=7, va="bottom")
        axes[-1].set_xlabel("FID on the judge's features (lower is better; dashed line: all images)")
        fig.tight_layout()
        return _png(fig)


# --------------------------------------------------------------------------- helpers


class _style:
    """matplotlib's default style plus ours, for the duration of one figure."""

    def __enter__(self) -> None:
        self._ctx = matplotlib.style.context(["default", _RC])
        self._ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def _arr(values: Sequence[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _short(label: str) -> str:
    """``"shape=circle, colour=red"`` → ``"circle, red"``; long names end in an ellipsis."""
    parts = [p.split("=", 1)[-1] for p in str(label).split(", ")]
    text = ", ".join(parts)
    return text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 1] + "…"


__all__ = ["condition_heatmap", "group_quality_chart", "share_chart"]
