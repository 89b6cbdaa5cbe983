"""Inception Score from classifier logits: exp(E_x KL(p(y|x) ‖ p(y))), mean and spread over splits.

Conventions follow torch-fidelity (the reference implementation of the original code): the N samples are
cut into exactly ``splits`` contiguous groups ``[i·N//splits, (i+1)·N//splits)``, optionally after a seeded
shuffle, and the spread is the population standard deviation (``numpy.std``). torchmetrics reports the
sample standard deviation instead (``sqrt(k/(k−1))`` times larger); the tests check both relations.
"""

from __future__ import annotations

import numpy as np
import torch

from auditkit.errors import ConfigError, DataError


def inception_score(
    logits: torch.Tensor | np.ndarray, *, splits: int = 10, shuffle: bool = False, seed: int = 0
) -> tuple[float, float]:
    """Inception Score of N×K logits (e.g. Inception's 1008-way ``logits_unbiased``).

    Returns
    -------
    mean, std
        Mean and population standard deviation of the per-split scores.
    """
    x = torch.as_tensor(logits).detach().to("cpu", torch.float64)
    if x.ndim != 2:
        raise DataError(f"logits must be an N×K matrix; got shape {tuple(x.shape)}.")
    if not bool(torch.isfinite(x).all()):
        raise DataError("logits contain NaN or infinite values; check the classifier's outputs.")
    n = x.shape[0]
    if not 1 <= splits <= n:
        raise ConfigError(f"splits must be between 1 and the number of samples ({n}); got {splits}.")
    if shuffle:
        x = x[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]
    log_p = x.log_softmax(dim=1)
    p = log_p.exp()
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        log_marginal = p[lo:hi].mean(dim=0).log()
        kl = (p[lo:hi] * (log_p[lo:hi] - log_marginal)).sum(dim=1).mean()
        scores.append(kl.exp())
    values = torch.stack(scores)
    return float(values.mean()), float(values.std(unbiased=False))
