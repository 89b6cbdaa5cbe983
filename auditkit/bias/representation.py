"""Representation: generated group shares against a cited reference distribution.

The audit reads an attribute of every generated image (through the judge), counts the shares of its
values, and compares them with a :class:`Reference` the user chooses and cites: the training data's shares,
uniform shares, or explicit shares with a source string. Every comparison is a pure function of two share
vectors; intersections of attributes become one joint attribute (:func:`intersection_labels`).

Definitions (``p`` = observed shares, ``r`` = reference shares, ``k`` values; see :class:`RepresentationGap`):

- total variation distance ``TVD = ½ Σ|p − r|`` ∈ [0, 1]: the share of images that would have to change
  group to match the reference;
- ``KL(p ‖ r) = Σ p log₂(p / r)`` in bits. Terms with ``p = 0`` are 0; a value the reference rules out
  (``r = 0``) but that was observed (``p > 0``) makes KL infinite, and it is reported as ``inf``
  (``None`` in JSON), not clipped: the reference says that group cannot occur, and it did;
- Jensen–Shannon divergence ``JS = ½ KL(p ‖ m) + ½ KL(r ‖ m)``, ``m = (p + r) / 2``, in bits, so it lies
  in [0, 1] and is finite whatever the zeros (it is the square of scipy's ``jensenshannon`` distance);
- representation ratio of a value ``p_g / r_g`` (values with ``r_g = 0`` have none); the **min/max
  representation ratio** is ``min_g(p_g / r_g) / max_g(p_g / r_g)`` over values with ``r_g > 0``: 1 when
  every value is represented in proportion to the reference, below 0.8 when the least represented value
  gets less than four fifths of the representation of the most represented one: the four-fifths rule of
  the US Uniform Guidelines on Employee Selection (29 CFR 1607.4 D), with "share relative to the
  reference" in the role of the selection rate;
- mean absolute deviation ``MAD = mean_g |p_g − r_g| = 2·TVD / k``.

Bias amplification (:func:`bias_amplification`) compares the generator's disparity with the training
data's disparity for the same attribute and reference, after Zhao et al. (2017), "Men also like shopping",
and the directional form of Wang & Russakovsky (2021), "Directional bias amplification".

Why hand-written: the formulas are one line each (scipy has KL and the JS *distance*, and the tests check
against them), but the audit needs them together, with the zero conventions above fixed and documented,
vectorised over bootstrap draws, and with references validated and carried with their citations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from auditkit.errors import ConfigError, DataError

__all__ = [
    "FOUR_FIFTHS",
    "REFERENCE_KINDS",
    "BiasAmplification",
    "Reference",
    "RepresentationGap",
    "bias_amplification",
    "intersection_labels",
    "intersection_values",
    "label_counts",
    "representation_gap",
    "shares",
]

FOUR_FIFTHS = 0.8
REFERENCE_KINDS = ("training", "uniform", "explicit")
# Explicit shares are often typed from a report in rounded percentages (33.3 % × 3); anything within this
# of 1 is accepted and renormalised, anything further off is a mistake (a value left out, a typo).
EXPLICIT_SUM_TOL = 1e-3
_SUM_TOL = 1e-6  # share vectors computed by code must sum to 1 up to round-off


def _finite_or_none(x: float) -> float | None:
    """JSON has no inf/NaN; auditkit writes them as null."""
    return float(x) if math.isfinite(x) else None


# ------------------------------------------------------------------------------------------ reference


@dataclass(frozen=True)
class Reference:
    """A reference distribution over an attribute's values, with where it comes from.

    Build one with :meth:`uniform`, :meth:`from_counts` (the training data's shares) or :meth:`explicit`
    (shares from a cited source); the constructor validates as they do.

    Attributes
    ----------
    values
        Value names, in the order of :attr:`shares`.
    shares
        Reference share of each value (non-negative, summing to 1).
    source
        Where the shares come from: a citation, a data set name; shown in reports.
    kind
        ``"training"``, ``"uniform"`` or ``"explicit"``.
    n
        Number of items counted for a ``"training"`` reference, else ``None``.
    """

    values: tuple[str, ...]
    shares: tuple[float, ...]
    source: str
    kind: str
    n: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _value_names(self.values, "reference"))
        object.__setattr__(self, "shares", tuple(float(s) for s in self.shares))
        if self.kind not in REFERENCE_KINDS:
            raise ConfigError(f"reference kind must be one of {REFERENCE_KINDS}; got {self.kind!r}.")
        if not isinstance(self.source, str) or not self.source.strip():
            raise ConfigError(
                f"a {self.kind} reference needs a non-empty source (a citation or data set name that a "
                f"reviewer can check); got {self.source!r}."
            )
        if len(self.shares) != len(self.values):
            raise ConfigError(
                f"the reference has {len(self.values)} values but {len(self.shares)} shares; give one share "
                "per value."
            )
        _check_simplex(np.array(self.shares), f"the {self.kind} reference's shares", ConfigError, _SUM_TOL)

    # -- constructors

    @classmethod
    def uniform(cls, values: Sequence[str], source: str = "uniform: every value equally often") -> Reference:
        """Equal shares over ``values`` (parity)."""
        names = _value_names(values, "uniform reference")
        return cls(names, (1.0 / len(names),) * len(names), source, "uniform")

    @classmethod
    def from_counts(cls, values: Sequence[str], counts: Any, *, source: str) -> Reference:
        """The shares of ``counts`` (e.g. the training data's value counts), kind ``"training"``.

        Parameters
        ----------
        values
            Value names.
        counts
            Non-negative counts, one per value, not all zero.
        source
            Which data was counted (e.g. ``"Shapes(20000, seed=0) training split"``).
        """
        names = _value_names(values, "training reference")
        c = np.asarray(counts, dtype=np.float64)
        if c.shape != (len(names),):
            raise ConfigError(
                f"counts must be one number per value ({len(names)}: {list(names)}); got shape {c.shape}."
            )
        if not np.isfinite(c).all() or (c < 0).any() or (c != np.round(c)).any():
            raise ConfigError(f"counts must be non-negative whole numbers; got {c.tolist()}.")
        total = c.sum()
        if total <= 0:
            raise ConfigError(
                f"the reference counts for {list(names)} are all zero; count the training data's labels "
                "(auditkit.bias.representation.label_counts) or choose a uniform/explicit reference."
            )
        return cls(names, tuple((c / total).tolist()), source, "training", n=int(total))

    @classmethod
    def explicit(
        cls, shares: Mapping[str, float], *, source: str, values: Sequence[str] | None = None
    ) -> Reference:
        """Shares stated by the user, with the source they come from.

        Parameters
        ----------
        shares
            Value name → share. Shares within 0.001 of summing to 1 (rounded percentages) are renormalised.
        source
            The citation (e.g. ``"ONS census 2021, table TS007"``).
        values
            The attribute's value names (e.g. the judge's); if given, ``shares`` must name exactly these,
            and the reference follows their order.
        """
        if not isinstance(shares, Mapping) or not shares:
            raise ConfigError(
                "explicit shares must be a non-empty mapping value → share, e.g. "
                f"{{'red': 0.5, 'blue': 0.5}}; got {shares!r}."
            )
        given = {str(k): v for k, v in shares.items()}
        if values is not None:
            names = _value_names(values, "explicit reference")
            missing = [v for v in names if v not in given]
            unknown = [v for v in given if v not in names]
            if missing or unknown:
                parts = [f"missing {missing}" if missing else "", f"unknown {unknown}" if unknown else ""]
                raise ConfigError(
                    f"the explicit reference's names do not match the attribute's values {list(names)}: "
                    f"{'; '.join(p for p in parts if p)}. Give a share for every value (0 is allowed) and "
                    "spell the names as the judge does."
                )
        else:
            names = _value_names(list(given), "explicit reference")
        try:
            s = np.array([float(given[v]) for v in names])
        except (TypeError, ValueError):
            raise ConfigError(f"explicit shares must be numbers; got {dict(given)}.") from None
        _check_simplex(s, "the explicit reference's shares", ConfigError, EXPLICIT_SUM_TOL)
        return cls(names, tuple((s / s.sum()).tolist()), source, "explicit")

    # -- views

    def array(self) -> np.ndarray:
        """The shares as a float64 array."""
        return np.array(self.shares, dtype=np.float64)

    def aligned(self, values: Sequence[str]) -> np.ndarray:
        """The shares in the order of ``values`` (the judge's); the names must be the same set."""
        names = tuple(str(v) for v in values)
        if sorted(names) != sorted(self.values):
            raise ConfigError(
                f"the reference ({self.source}) covers values {list(self.values)}, the audited attribute has "
                f"{list(names)}; build the reference over the attribute's own values."
            )
        index = {v: i for i, v in enumerate(self.values)}
        return np.array([self.shares[index[v]] for v in names], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view (a list keeps the value order, which JSON objects written sorted would lose)."""
        return {
            "kind": self.kind,
            "source": self.source,
            "values": list(self.values),
            "shares": list(self.shares),
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        """Inverse of :meth:`to_dict`."""
        try:
            n = data.get("n")
            return cls(
                tuple(data["values"]),
                tuple(data["shares"]),
                str(data["source"]),
                str(data["kind"]),
                None if n is None else int(n),
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(
                f"not a reference description ({exc!r}); it needs kind, source, values and shares."
            ) from None


def _value_names(values: Any, what: str) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise ConfigError(f"the {what} needs a list of value names; got {values!r}.")
    names = tuple(str(v) for v in values)
    if not names:
        raise ConfigError(f"the {what} needs at least one value name; got none.")
    duplicated = sorted({v for v in names if names.count(v) > 1})
    if duplicated:
        raise ConfigError(f"the {what} names {duplicated} more than once; each value must appear once.")
    return names


def _check_simplex(s: np.ndarray, what: str, error: type[Exception], tol: float) -> None:
    if s.ndim != 1 or s.size == 0:
        raise error(f"{what} must be a non-empty 1-D vector; got shape {s.shape}.")
    if not np.isfinite(s).all():
        raise error(f"{what} must be finite numbers; got {s.tolist()}.")
    if (s < 0).any():
        raise error(f"{what} must be non-negative; got {s.tolist()}.")
    total = float(s.sum())
    if abs(total - 1.0) > tol:
        hint = f" (the missing {1 - total:.4g} may be a value left out)" if total < 1 else ""
        raise error(f"{what} sum to {total:.6g}, not 1 (tolerance {tol:g}){hint}; got {s.tolist()}.")


def _as_shares(x: Any, what: str, error: type[Exception]) -> np.ndarray:
    if isinstance(x, Reference):
        return x.array()
    s = np.asarray(x, dtype=np.float64)
    _check_simplex(s, what, error, _SUM_TOL)
    return s


# ------------------------------------------------------------------------------------- counting labels


def label_counts(labels: Any, k: int) -> np.ndarray:
    """How many labels take each value ``0 … k−1`` (int64, length ``k``).

    Parameters
    ----------
    labels
        Integer value indices, 1-D (numpy, torch or a list), at least one.
    k
        Number of values of the attribute.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k (the number of values) must be a positive integer; got {k!r}.")
    a = np.asarray(labels)
    if a.ndim != 1:
        raise DataError(f"labels must be a 1-D vector of value indices; got shape {a.shape}.")
    if a.size == 0:
        raise DataError("there are no labels to count (an empty sample); generate at least one image.")
    if not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"labels must be integer value indices; got dtype {a.dtype}.")
    if a.min() < 0 or a.max() >= k:
        raise DataError(f"labels must lie in 0…{k - 1} (k = {k} values); got values {a.min()}…{a.max()}.")
    return np.bincount(a.astype(np.int64), minlength=k)


def shares(labels: Any, k: int) -> np.ndarray:
    """The share of each value ``0 … k−1`` among ``labels`` (float64, sums to 1)."""
    counts = label_counts(labels, k)
    return counts / counts.sum()


def intersection_labels(labels: Any, sizes: Sequence[int]) -> np.ndarray:
    """One joint value index per row of an N×A label matrix (an intersection of A attributes).

    The joint index is row-major, as :func:`numpy.ravel_multi_index`: for sizes ``(k₁, k₂)`` the value
    ``(i, j)`` is ``i·k₂ + j``. This is the order of :func:`intersection_values` and of the Kronecker
    product of the attributes' confusion matrices (``auditkit.bias.correction.joint_confusion``).
    """
    a = np.asarray(labels)
    dims = tuple(int(s) for s in sizes)
    if a.ndim != 2 or a.shape[1] != len(dims) or not dims:
        raise DataError(
            f"labels must be an N×A matrix with one column per attribute of the intersection "
            f"(A = {len(dims)}); got shape {a.shape}."
        )
    if a.shape[0] == 0:
        raise DataError("there are no labels (an empty sample); generate at least one image.")
    if not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"labels must be integer value indices; got dtype {a.dtype}.")
    if any(s < 1 for s in dims):
        raise ConfigError(f"sizes must be positive; got {list(dims)}.")
    bad = [j for j, s in enumerate(dims) if a[:, j].min() < 0 or a[:, j].max() >= s]
    if bad:
        j = bad[0]
        raise DataError(
            f"column {j} of the labels has values {a[:, j].min()}…{a[:, j].max()}, outside 0…{dims[j] - 1}."
        )
    return np.ravel_multi_index(tuple(a.T.astype(np.int64)), dims)


def intersection_values(attributes: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """Names of the joint values, in :func:`intersection_labels` order: ``"colour=red, shape=circle"``."""
    if not attributes:
        raise ConfigError("an intersection needs at least one attribute.")
    names: list[str] = [""]
    for attr, values in attributes.items():
        vals = _value_names(values, f"attribute {attr!r}")
        names = [f"{n}, {attr}={v}" if n else f"{attr}={v}" for n in names for v in vals]
    return tuple(names)


# ------------------------------------------------------------------------------------------ the metrics


def _tvd(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    return 0.5 * np.abs(p - r).sum(axis=-1)


def _kl_bits(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """KL(p ‖ r) in bits over the last axis: 0·log 0 = 0, p > 0 = r → inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log2(p) - np.log2(r)), 0.0)
    return terms.sum(axis=-1)


def _js_bits(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    m = 0.5 * (p + r)  # positive wherever p or r is, so both KLs are finite
    # max(·, 0): the sum can come out a few ulps below 0 for equal vectors
    return np.maximum(0.5 * _kl_bits(p, m) + 0.5 * _kl_bits(r, m), 0.0)


def _ratios(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r > 0, p / np.where(r > 0, r, 1.0), np.nan)


def _minmax_ratio(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    ratios = _ratios(p, r)
    lo, hi = np.nanmin(ratios, axis=-1), np.nanmax(ratios, axis=-1)
    # hi = 0: every value the reference expects is missing; that is as unequal as it gets, so 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(hi > 0, lo / np.where(hi > 0, hi, 1.0), 0.0)


@dataclass(frozen=True)
class RepresentationGap:
    """How far observed shares are from a reference (definitions in the module docstring).

    Attributes
    ----------
    tvd
        Total variation distance, in [0, 1].
    kl
        KL(observed ‖ reference) in bits; ``inf`` when an observed value has reference share 0.
    js
        Jensen–Shannon divergence in bits, in [0, 1].
    ratio
        Min/max representation ratio, in [0, 1]; below :data:`FOUR_FIFTHS` fails the four-fifths rule.
    min_ratio, max_ratio
        Smallest and largest ``observed / reference`` over values with a positive reference share.
    least, most
        Indices of the values with the smallest and largest ratio.
    ratios
        ``observed / reference`` per value (NaN where the reference share is 0).
    mad
        Mean absolute deviation of the shares, ``2·tvd / k``.
    """

    tvd: float
    kl: float
    js: float
    ratio: float
    min_ratio: float
    max_ratio: float
    least: int
    most: int
    ratios: tuple[float, ...]
    mad: float

    @property
    def below_four_fifths(self) -> bool:
        """Whether the min/max representation ratio is below 0.8 (the four-fifths rule flags it)."""
        return self.ratio < FOUR_FIFTHS

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view; infinite or undefined numbers become ``None``."""
        return {
            "tvd": self.tvd,
            "kl": _finite_or_none(self.kl),
            "js": self.js,
            "ratio": self.ratio,
            "min_ratio": self.min_ratio,
            "max_ratio": self.max_ratio,
            "least": self.least,
            "most": self.most,
            "ratios": [_finite_or_none(x) for x in self.ratios],
            "mad": self.mad,
            "below_four_fifths": self.below_four_fifths,
        }


def representation_gap(observed_shares: Any, reference_shares: Any) -> RepresentationGap:
    """Compare observed shares with reference shares.

    Parameters
    ----------
    observed_shares
        Shares of the ``k`` values among the generated images (e.g. :func:`shares` or corrected shares).
    reference_shares
        A :class:`Reference` (in the same value order) or its ``k`` shares.

    Returns
    -------
    RepresentationGap
        TVD, KL, JS, the min/max representation ratio and MAD (see the module docstring).
    """
    p = _as_shares(observed_shares, "the observed shares", DataError)
    r = _as_shares(reference_shares, "the reference shares", ConfigError)
    if p.shape != r.shape:
        raise ConfigError(
            f"observed shares have {p.size} values, the reference {r.size}; compare shares of the same "
            "attribute, in the same value order."
        )
    ratios = _ratios(p, r)
    return RepresentationGap(
        tvd=float(_tvd(p, r)),
        kl=float(_kl_bits(p, r)),
        js=float(_js_bits(p, r)),
        ratio=float(_minmax_ratio(p, r)),
        min_ratio=float(np.nanmin(ratios)),
        max_ratio=float(np.nanmax(ratios)),
        least=int(np.nanargmin(ratios)),
        most=int(np.nanargmax(ratios)),
        ratios=tuple(float(x) for x in ratios),
        mad=float(np.abs(p - r).mean()),
    )


# ---------------------------------------------------------------------------------- bias amplification


@dataclass(frozen=True)
class BiasAmplification:
    """The generator's disparity relative to its training data's, for one attribute and reference.

    Attributes
    ----------
    generated_tvd, training_tvd
        TVD of the generated and of the training shares from the reference (the disparity measure).
    difference
        ``generated_tvd − training_tvd``: positive when the generator is further from the reference than
        the data it learned from (it amplifies), negative when it is closer (it dampens).
    directional
        ``(1/k) Σ_g s_g (generated_g − training_g)`` with ``s_g = sign(training_g − reference_g)``: the
        mean move of the shares in the direction the training data already leaned (Wang & Russakovsky
        2021); positive = amplification. Values the training data holds exactly at the reference count 0.
    generated_ratio, training_ratio
        Min/max representation ratios of the generated and of the training shares.
    """

    generated_tvd: float
    training_tvd: float
    difference: float
    directional: float
    generated_ratio: float
    training_ratio: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view."""
        return {
            "generated_tvd": self.generated_tvd,
            "training_tvd": self.training_tvd,
            "difference": self.difference,
            "directional": self.directional,
            "generated_ratio": self.generated_ratio,
            "training_ratio": self.training_ratio,
        }


def bias_amplification(
    generated_shares: Any, training_shares: Any, reference_shares: Any
) -> BiasAmplification:
    """How much the generator amplifies its training data's disparity from a reference.

    Zhao et al. (2017) call a model bias-amplifying when its outputs are more skewed than its training
    data; here the skew of a share vector is its TVD from the reference (parity, for a uniform one), so
    ``difference = TVD(generated, reference) − TVD(training, reference)``. That number does not see a
    generator that flips the skew (over-represents what the data under-represented, by as much), so
    ``directional`` adds the directional view of Wang & Russakovsky (2021): each value's change from
    training to generated, signed by the direction the training data already deviated in. The two agree
    in sign for pure amplification; ``k·directional / 2 ≤ difference`` always holds.

    Parameters
    ----------
    generated_shares, training_shares
        Shares of the ``k`` values among generated images and in the training data.
    reference_shares
        The reference both are measured against (:class:`Reference` or shares), e.g. uniform.
    """
    g = _as_shares(generated_shares, "the generated shares", DataError)
    t = _as_shares(training_shares, "the training shares", ConfigError)
    r = _as_shares(reference_shares, "the reference shares", ConfigError)
    if not g.shape == t.shape == r.shape:
        raise ConfigError(
            f"generated ({g.size}), training ({t.size}) and reference ({r.size}) shares must cover the "
            "same values in the same order."
        )
    gen_tvd, train_tvd = float(_tvd(g, r)), float(_tvd(t, r))
    return BiasAmplification(
        generated_tvd=gen_tvd,
        training_tvd=train_tvd,
        difference=gen_tvd - train_tvd,
        directional=float(np.mean(np.sign(t - r) * (g - t))),
        generated_ratio=float(_minmax_ratio(g, r)),
        training_ratio=float(_minmax_ratio(t, r)),
    )
