"""``Shapes``: the synthetic data set with known attributes and a plantable, documented skew.

Every image is one filled shape on a flat grey background. Its attributes are

=========  ==================================  ==================================================
attribute  values                              how it shows in the pixels
=========  ==================================  ==================================================
shape      circle, square, triangle            the mask (triangle: apex up, base ``2r`` wide)
colour     red, green, blue                    the exact fill colour, ``PALETTE``
size       small, large                        radius ``0.14·S`` or ``0.26·S`` (S = image side)
position   left, center, right                 centre x at ``0.30·S``, ``0.50·S``, ``0.70·S`` ± ``0.03·S``
=========  ==================================  ==================================================

The centre y is ``0.5·S ± 0.08·S``; both jitters are uniform. Optional Gaussian noise touches the
background only, so the shape keeps its exact colour. Because the ground truth is known, a bias finding on
a generator trained on ``Shapes`` can be checked against what was planted.

A *skew* plants a bias. It maps an attribute to its marginal shares, or ``"child|parent"`` to one table of
shares per parent value::

    {"shape": {"circle": 0.5, "square": 0.3, "triangle": 0.2},
     "colour|shape": {"circle": {"red": 0.7, "green": 0.15, "blue": 0.15}}}

Attributes not named are uniform; parent values missing from a conditional table are uniform too.
Attributes are sampled parents first, all with one ``numpy`` generator seeded by ``seed``.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from auditkit.data.imageset import ImageSet
from auditkit.errors import ConfigError

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": ("circle", "square", "triangle"),
    "colour": ("red", "green", "blue"),
    "size": ("small", "large"),
    "position": ("left", "center", "right"),
}
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.16, 0.14),
    "green": (0.16, 0.70, 0.24),
    "blue": (0.15, 0.33, 0.88),
}
BACKGROUND = 0.5
RADIUS = {"small": 0.14, "large": 0.26}
CENTER_X = {"left": 0.30, "center": 0.50, "right": 0.70}
JITTER_X = 0.03
JITTER_Y = 0.08

SKEW_PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    # The demo's planted bias: circles are over-represented and most of them are red.
    "demo": {
        "shape": {"circle": 0.5, "square": 0.3, "triangle": 0.2},
        "colour|shape": {"circle": {"red": 0.7, "green": 0.15, "blue": 0.15}},
    },
}

_CHUNK = 4096  # images rendered at once: bounds the temporary N×H×W masks to a few MB per op
_SUM_TOLERANCE = 1e-3


class ShapesSkew:
    """A validated skew spec: for each attribute, its parent (or ``None``) and its share tables.

    Build it with :func:`parse_skew`; ``tables[attr][parent_value]`` (``None`` key when marginal) is a
    probability vector over ``ATTRIBUTES[attr]``.
    """

    def __init__(self, parents: dict[str, str | None], tables: dict[str, dict[str | None, np.ndarray]]):
        self.parents = parents
        self.tables = tables

    def to_spec(self) -> dict[str, Any]:
        """The normalised spec as plain data (JSON-able, for run configs and reports)."""
        spec: dict[str, Any] = {}
        for attr, table in self.tables.items():
            values = ATTRIBUTES[attr]
            parent = self.parents[attr]
            if parent is None:
                spec[attr] = dict(zip(values, table[None].tolist(), strict=True))
            else:
                spec[f"{attr}|{parent}"] = {
                    pv: dict(zip(values, p.tolist(), strict=True)) for pv, p in table.items()
                }
        return spec

    def probabilities(self, attr: str, parent_value: str | None = None) -> np.ndarray:
        """Shares of ``attr``'s values (given its parent's value when it has a parent)."""
        table = self.tables.get(attr, {})
        key = parent_value if self.parents.get(attr) is not None else None
        if key in table:
            return table[key]
        k = len(ATTRIBUTES[attr])
        return np.full(k, 1.0 / k)

    def order(self) -> list[str]:
        """Attributes in sampling order: every parent before its children."""
        done: list[str] = []
        pending = list(ATTRIBUTES)
        while pending:
            ready = [a for a in pending if self.parents.get(a) in (None, *done)]
            if not ready:
                raise ConfigError(
                    f"skew conditions form a cycle among {pending}: "
                    + ", ".join(f"{a}|{self.parents[a]}" for a in pending)
                    + ". Make one of them marginal."
                )
            done.extend(ready)
            pending = [a for a in pending if a not in ready]
        return done


def parse_skew(spec: Mapping[str, Any] | str | Path | ShapesSkew | None) -> ShapesSkew:
    """Validate a skew spec.

    Parameters
    ----------
    spec
        ``None`` (no skew), a mapping as in the module docstring, a preset name (``SKEW_PRESETS``), a
        path to a YAML/JSON file, or inline YAML/JSON text such as
        ``"{colour: {red: 0.6, green: 0.2, blue: 0.2}}"``.

    Raises
    ------
    ConfigError
        Naming the attribute or value at fault: unknown names, negative shares, shares that do not sum
        to 1 (within 1e-3; they are then normalised exactly), conditioning cycles.
    """
    if isinstance(spec, ShapesSkew):
        return spec
    spec = _load_spec(spec)
    parents: dict[str, str | None] = {a: None for a in ATTRIBUTES}
    tables: dict[str, dict[str | None, np.ndarray]] = {}
    for key, table in spec.items():
        child, _, parent = (part.strip() for part in str(key).partition("|"))
        child = _known_attribute(child, key)
        if child in tables:
            raise ConfigError(f"skew gives attribute {child!r} twice; keep one entry for it.")
        if not isinstance(table, Mapping):
            raise ConfigError(f"skew entry {key!r} must map values to shares; got {table!r}.")
        if parent:
            parent = _known_attribute(parent, key)
            if parent == child:
                raise ConfigError(f"skew entry {key!r} conditions {child!r} on itself.")
            parents[child] = parent
            rows: dict[str | None, np.ndarray] = {}
            for pv, row in table.items():
                pv = _known_value(parent, pv, key)
                if not isinstance(row, Mapping):
                    raise ConfigError(
                        f"skew entry {key!r}, row {pv!r} must map {child} values to shares; got {row!r}."
                    )
                rows[pv] = _share_vector(child, row, f"{key}[{pv}]")
            tables[child] = rows
        else:
            tables[child] = {None: _share_vector(child, table, key)}
    skew = ShapesSkew(parents, tables)
    skew.order()  # rejects cycles now, not at sampling time
    return skew


def sample_attributes(n: int, skew: ShapesSkew, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw ``n`` attribute rows under ``skew``: value indices per attribute, in ``ATTRIBUTES`` order."""
    out: dict[str, np.ndarray] = {}
    for attr in skew.order():
        k = len(ATTRIBUTES[attr])
        parent = skew.parents[attr]
        if parent is None:
            out[attr] = rng.choice(k, size=n, p=skew.probabilities(attr))
            continue
        col = np.empty(n, dtype=np.int64)
        for j, pv in enumerate(ATTRIBUTES[parent]):
            rows = out[parent] == j
            col[rows] = rng.choice(k, size=int(rows.sum()), p=skew.probabilities(attr, pv))
        out[attr] = col
    return {a: out[a].astype(np.int64) for a in ATTRIBUTES}


def render_shapes(
    shape: torch.Tensor,
    colour: torch.Tensor,
    cx: torch.Tensor,
    cy: torch.Tensor,
    radius: torch.Tensor,
    size: int,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rasterise one shape per image (vectorised over the batch).

    ``shape`` and ``colour`` are value indices into ``ATTRIBUTES``; ``cx``, ``cy``, ``radius`` are in
    pixels, with pixel ``(i, j)`` centred at ``(j + 0.5, i + 0.5)``. Returns float32 ``N×3×size×size``,
    written into ``out`` when given (saves a copy of the largest tensor).
    """
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    dx = coords.view(1, 1, size) - cx.view(-1, 1, 1)
    dy = coords.view(1, size, 1) - cy.view(-1, 1, 1)
    r = radius.view(-1, 1, 1)
    circle = dx * dx + dy * dy <= r * r
    square = (dx.abs() <= r) & (dy.abs() <= r)
    # Apex (cx, cy - r), base from (cx - r, cy + r) to (cx + r, cy + r).
    triangle = (dy <= r) & (2 * dx.abs() <= dy + r)
    s = shape.view(-1, 1, 1)
    mask = torch.where(s == 0, circle, torch.where(s == 1, square, triangle)).unsqueeze(1)
    palette = torch.tensor([PALETTE[c] for c in ATTRIBUTES["colour"]], dtype=torch.float32)
    fill = palette[colour].view(-1, 3, 1, 1)
    if out is None:
        out = torch.empty((shape.shape[0], 3, size, size), dtype=torch.float32)
    if noise > 0:
        out.normal_(BACKGROUND, noise, generator=generator).clamp_(0.0, 1.0)
    else:
        out.fill_(BACKGROUND)
    return torch.where(mask, fill, out, out=out)


class Shapes(ImageSet):
    """Synthetic shapes with known attributes, deterministic by seed.

    Parameters
    ----------
    n
        Number of images.
    size
        Side of the square RGB images in pixels (at least 8; from 24 on, every attribute can be read
        back from the pixels, below that small circles and triangles blur into each other).
    seed
        Seeds attributes, geometry and noise: equal seeds give equal tensors.
    skew
        A skew spec (see :func:`parse_skew`); ``None`` means uniform attributes.
    noise
        Standard deviation of the Gaussian background noise (0 for a flat background).
    progress
        Show a progress bar while rendering.

    Attributes
    ----------
    geometry
        Ground-truth centre and radius of every shape in pixels: ``{"cx", "cy", "radius"}`` arrays.
    skew
        The validated :class:`ShapesSkew`.
    """

    def __init__(
        self,
        n: int = 1000,
        *,
        size: int = 32,
        seed: int = 0,
        skew: Mapping[str, Any] | str | Path | ShapesSkew | None = None,
        noise: float = 0.0,
        progress: bool = False,
    ) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ConfigError(f"Shapes n must be a non-negative integer; got {n!r}.")
        if not isinstance(size, int) or isinstance(size, bool) or size < 8:
            raise ConfigError(f"Shapes size must be an integer of at least 8 pixels; got {size!r}.")
        if not (isinstance(noise, int | float) and math.isfinite(noise) and 0 <= noise <= 1):
            raise ConfigError(f"Shapes noise must be a standard deviation in [0, 1]; got {noise!r}.")
        self.skew = parse_skew(skew)
        rng = np.random.default_rng(seed)
        attrs = sample_attributes(n, self.skew, rng)
        radius = np.array([RADIUS[v] for v in ATTRIBUTES["size"]])[attrs["size"]] * size
        cx = np.array([CENTER_X[v] for v in ATTRIBUTES["position"]])[attrs["position"]]
        cx = (cx + rng.uniform(-JITTER_X, JITTER_X, n)) * size
        cy = (0.5 + rng.uniform(-JITTER_Y, JITTER_Y, n)) * size
        self.geometry = {"cx": cx, "cy": cy, "radius": radius}

        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        images = torch.empty((n, 3, size, size), dtype=torch.float32)
        t = {k: torch.from_numpy(v) for k, v in attrs.items()}
        g = {k: torch.from_numpy(v).float() for k, v in self.geometry.items()}
        for start in tqdm(range(0, n, _CHUNK), desc="Shapes", unit="chunk", disable=not progress):
            sl = slice(start, start + _CHUNK)
            render_shapes(
                t["shape"][sl],
                t["colour"][sl],
                g["cx"][sl],
                g["cy"][sl],
                g["radius"][sl],
                size,
                noise,
                generator,
                out=images[sl],
            )
        labels = (
            torch.stack([t[a] for a in ATTRIBUTES], dim=1) if n else torch.empty((0, 4), dtype=torch.int64)
        )
        info = {
            "source": "shapes",
            "n": n,
            "size": size,
            "seed": seed,
            "noise": float(noise),
            "skew": self.skew.to_spec(),
        }
        super().__init__(images, labels, ATTRIBUTES, [f"shapes-{i:06d}" for i in range(n)], info)


def _load_spec(spec: Mapping[str, Any] | str | Path | None) -> Mapping[str, Any]:
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        return spec
    text = str(spec).strip()
    if text in SKEW_PRESETS:
        return SKEW_PRESETS[text]
    path = Path(text).expanduser()
    if not text.startswith("{") and path.suffix.lower() in {".yaml", ".yml", ".json"}:
        if not path.is_file():
            raise ConfigError(f"skew file {str(path)!r} does not exist; give an existing YAML/JSON file.")
        text = path.read_text(encoding="utf-8")
    try:
        loaded = yaml.safe_load(text)  # YAML is a superset of JSON, so both spellings work
    except yaml.YAMLError as exc:
        from auditkit._config import describe_parse_error

        raise ConfigError(
            f"could not parse skew {str(spec)!r} as YAML/JSON: {describe_parse_error(exc)}"
        ) from None
    if not isinstance(loaded, Mapping):
        raise ConfigError(
            f"skew {str(spec)!r} is neither a preset ({', '.join(SKEW_PRESETS)}) nor a mapping; write e.g. "
            "'{colour: {red: 0.6, green: 0.2, blue: 0.2}}'."
        )
    return loaded


def _known_attribute(name: str, key: Any) -> str:
    if name in ATTRIBUTES:
        return name
    close = difflib.get_close_matches(name, list(ATTRIBUTES), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"skew entry {key!r}: unknown attribute {name!r}; Shapes attributes are {list(ATTRIBUTES)}.{hint}"
    )


def _known_value(attr: str, value: Any, key: Any) -> str:
    value = str(value)
    if value in ATTRIBUTES[attr]:
        return value
    raise ConfigError(
        f"skew entry {key!r}: unknown {attr} value {value!r}; allowed values are {list(ATTRIBUTES[attr])}."
    )


def _share_vector(attr: str, shares: Mapping[Any, Any], key: Any) -> np.ndarray:
    values = ATTRIBUTES[attr]
    p = np.zeros(len(values))
    for value, share in shares.items():
        value = _known_value(attr, value, key)
        try:
            share = float(share)
        except (TypeError, ValueError):
            raise ConfigError(
                f"skew entry {key!r}: share of {value!r} must be a number; got {share!r}."
            ) from None
        if not math.isfinite(share) or share < 0:
            raise ConfigError(
                f"skew entry {key!r}: share of {value!r} must be a finite number ≥ 0; got {share}."
            )
        p[values.index(value)] = share
    total = p.sum()
    if abs(total - 1.0) > _SUM_TOLERANCE:
        missing = [v for v in values if v not in {str(k) for k in shares}]
        hint = f" (values not listed count as 0: {missing})" if missing else ""
        raise ConfigError(
            f"skew entry {key!r}: shares must sum to 1; they sum to {total:.6g}{hint}. "
            f"Example: {json.dumps(dict.fromkeys(values, round(1 / len(values), 4)))}."
        )
    return p / total
