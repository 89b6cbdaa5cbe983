"""Inception Score from classifier logits: exp(E_x KL(p(y|x) ‖ p(y))), mean and spread over splits.

Why hand-written: torchmetrics and torch-fidelity compute it only next to their own Inception network; this
is the functional core over logits (the 1008-way ``logits_unbiased`` of FID-Inception, or any classifier's),
in float64, with the marginal taken as a log-sum-exp so that a class no sample predicts cannot produce NaN.

Conventions, which the two references do not share:

- splits: the N samples are cut into exactly ``splits`` contiguous groups ``[i·N//splits, (i+1)·N//splits)``,
  as torch-fidelity and the original code do. torchmetrics uses ``Tensor.chunk`` (groups of ⌈N/splits⌉, and
  possibly fewer groups); the two agree when ``splits`` divides N.
- spread: ``ddof=0`` (default) is the population standard deviation (``numpy.std``; torch-fidelity and the
  original code); ``ddof=1`` is the sample standard deviation that torchmetrics reports.
- order: torchmetrics always shuffles with ``torch.randperm`` under the global seed; ``shuffle=True,
  seed=s`` draws the same permutation from a private generator (equal to torchmetrics after
  ``torch.manual_seed(s)`` on CPU). torch-fidelity shuffles with NumPy by default; use ``shuffle=False`` on
  both sides to compare.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from auditkit.errors import ConfigError, DataError


def inception_score(
    logits: torch.Tensor | np.ndarray,
    splits: int = 10,
    shuffle: bool = False,
    seed: int = 0,
    ddof: int = 0,
) -> tuple[float, float]:
    """Inception Score of N×K logits.

    Parameters
    ----------
    logits
        N×K unnormalised class scores (softmax is applied here), tensor (any device) or array.
    splits
        Number of groups the score is computed on (1 ≤ splits ≤ N).
    shuffle, seed
        Permute the samples first with a ``torch.Generator`` seeded with ``seed``.
    ddof
        Delta degrees of freedom of the spread: 0 as torch-fidelity, 1 as torchmetrics.

    Returns
    -------
    mean, std
        Mean and standard deviation of the per-split scores (std is NaN for one split with ``ddof=1``).
    """
    x = logits.detach() if isinstance(logits, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(logits))
    x = x.to(torch.float64)
    if x.ndim != 2 or x.shape[1] < 1:
        raise DataError(f"logits must be an N×K matrix; got shape {tuple(x.shape)}.")
    if not bool(torch.isfinite(x).all()):
        raise DataError("logits contain NaN or infinite values; check the classifier's outputs.")
    n = x.shape[0]
    if not (isinstance(splits, int) and 1 <= splits <= n):
        raise ConfigError(
            f"splits must be an integer between 1 and the number of samples ({n}); got {splits!r}."
        )
    if ddof not in (0, 1):
        raise ConfigError(f"ddof must be 0 (population std) or 1 (sample std); got {ddof!r}.")
    if shuffle:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        x = x[perm.to(x.device)]
    log_p = x.log_softmax(dim=1)
    p = log_p.exp()
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        log_marginal = torch.logsumexp(log_p[lo:hi], dim=0) - math.log(hi - lo)
        scores.append((p[lo:hi] * (log_p[lo:hi] - log_marginal)).sum(dim=1).mean().exp())
    values = torch.stack(scores)
    std = float(values.std(correction=ddof)) if splits > ddof else math.nan
    return float(values.mean()), std


__all__ = ["inception_score"]
