"""Sharded sampling and feature extraction under torch.distributed: N processes, one process's result.

How to run. Start the metrics under torchrun, e.g. ``torchrun --nproc_per_node 2 -m auditkit metrics all
shapes run-... --json``, or call :func:`~auditkit.metrics.compute.compute_metrics` from a script started by
torchrun. The process group is detected (an initialised one, or torchrun's ``WORLD_SIZE``/``RANK``/
``MASTER_ADDR`` variables, which are then joined: NCCL when CUDA is present, each rank on
``cuda:LOCAL_RANK``; gloo on the CPU, with a 12-hour collective timeout). Every rank must make the same calls
with the same arguments. A group you initialise yourself needs a timeout longer than the metrics take
on rank 0 (bootstrap intervals against a large reference can take many minutes on a CPU).

What each rank does, and why the result equals one process's:

* A generator's ``n`` images are drawn in blocks of :data:`SAMPLE_BLOCK` images. Block ``b`` is exactly
  ``gen.sample_batches(count_b, seed=block_seed(seed, b))``, whichever process draws it: block 0 uses
  ``seed`` itself (so up to 256 images are ``gen.sample(n, seed=seed)``), later blocks a seed derived from
  ``(seed, b)``. Seeding per block is what lets a rank draw its blocks without replaying the earlier ones
  (a diffusion sampler's noise stream cannot be skipped ahead). One process draws the same blocks.
* Ranks take contiguous, balanced runs of blocks (data sets: of rows), rank 0 the first.
* Features (and labels, and the judge's readings) are gathered with ``all_gather`` (torchmetrics'
  ``gather_all_tensors``, which pads uneven shards) and concatenated in rank order: the rows, in the order
  one process produces them. Each image goes through the same network in the same batches either way, so
  the features are bit-identical on one device type.
* Only rank 0 reads and writes the feature cache (the others receive its tensors by broadcast) and only
  rank 0 computes the metrics; their JSON result is broadcast, so every rank returns the same dict.

Without a process group (or with ``WORLD_SIZE`` unset or 1) everything runs in the one process.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

SAMPLE_BLOCK = 256  # images per seeded block of a generator's sample


@dataclass(frozen=True)
class Shard:
    """This process's share of the work.

    Attributes
    ----------
    rank, world
        Position in the process group and its size (``world == 1``: no sharding).
    device
        Where collectives move tensors: ``cuda:LOCAL_RANK`` for NCCL, the CPU for gloo.
    """

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def active(self) -> bool:
        """Whether there are several processes."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes caches and computes the metrics."""
        return self.rank == 0

    def span(self, units: int) -> range:
        """This rank's contiguous share of ``units`` work units; rank 0 first, sizes differ by ≤ 1."""
        lo = -(-self.rank * units // self.world)  # ceiling, so rank 0 gets the first unit of a short list
        hi = -(-(self.rank + 1) * units // self.world)
        return range(lo, hi)


def current_shard(*, join: bool = True) -> Shard:
    """The shard of this process: from an initialised process group, else from torchrun's variables.

    With ``join`` and ``WORLD_SIZE`` > 1 but no group yet, the group is initialised here (and destroyed
    at exit): NCCL when CUDA is available, each rank on ``cuda:LOCAL_RANK``, else gloo.
    """
    if not dist.is_available():
        return Shard()
    if not dist.is_initialized():
        if not join or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return Shard()
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # Rank 0 alone computes the metrics (bootstraps can take long) while the others wait in a
        # broadcast: the default 10-30 min collective timeout would cut them off.
        dist.init_process_group(
            backend="nccl" if torch.cuda.is_available() else "gloo", timeout=timedelta(hours=12)
        )
        atexit.register(_leave)
    world = dist.get_world_size()
    if world <= 1:
        return Shard()
    nccl = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    return Shard(dist.get_rank(), world, device)


def _leave() -> None:
    """Leave the group this module joined, at exit: all ranks meet first, then each destroys its group.

    Without the barrier a rank could tear its connections down while a peer is still finishing, and
    gloo then aborts that peer at exit now and then.
    """
    if not dist.is_initialized():
        return
    with contextlib.suppress(RuntimeError):  # a peer that already failed: nothing to wait for
        dist.barrier()
    dist.destroy_process_group()


def sample_blocks(n: int, seed: int) -> list[tuple[int, int]]:
    """``(count, seed)`` of every block of a generator sample of ``n`` images (module docstring)."""
    starts = range(0, n, SAMPLE_BLOCK)
    return [(min(SAMPLE_BLOCK, n - start), block_seed(seed, b)) for b, start in enumerate(starts)]


def block_seed(seed: int, block: int) -> int:
    """The seed of block ``block``: ``seed`` for block 0, else 62 bits derived from ``(seed, block)``."""
    if block == 0:
        return int(seed)
    state = np.random.SeedSequence((int(seed), int(block))).generate_state(1, np.uint64)[0]
    return int(state) >> 2  # 62 bits, inside the generators' seed range [0, 2**63)


def gather_rows(local: torch.Tensor, shard: Shard) -> torch.Tensor:
    """Every rank's rows, concatenated in rank order (``local`` itself when there is one process)."""
    if not shard.active:
        return local
    from torchmetrics.utilities.distributed import gather_all_tensors

    parts = gather_all_tensors(local.to(shard.device).contiguous())
    return torch.cat([p.to(local.device) for p in parts])


def broadcast_json(value: Any, shard: Shard) -> Any:
    """Rank 0's JSON-serialisable ``value`` on every rank (sent as UTF-8 bytes: nothing is unpickled)."""
    if not shard.active:
        return value
    # default=str as the CLI prints results; every rank (rank 0 too) returns the decoded copy, so all agree
    data = json.dumps(value, default=str).encode() if shard.is_main else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=shard.device)
    dist.broadcast(size, src=0)
    buffer = torch.zeros(int(size.item()), dtype=torch.uint8, device=shard.device)
    if shard.is_main:
        buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buffer, src=0)
    return json.loads(bytes(buffer.cpu().numpy()).decode())


def broadcast_tensors(
    tensors: dict[str, torch.Tensor] | None, shard: Shard
) -> dict[str, torch.Tensor] | None:
    """Rank 0's tensors (or its ``None``) on every rank, as CPU tensors."""
    if not shard.active:
        return tensors
    layout = None
    if shard.is_main and tensors is not None:
        layout = {k: [str(v.dtype).removeprefix("torch."), list(v.shape)] for k, v in tensors.items()}
    layout = broadcast_json(layout, shard)
    if layout is None:
        return None
    out = {}
    for key, (dtype, shape) in layout.items():
        if shard.is_main:
            buffer = tensors[key].to(shard.device).contiguous()  # type: ignore[index]
        else:
            buffer = torch.empty(shape, dtype=getattr(torch, dtype), device=shard.device)
        dist.broadcast(buffer, src=0)
        out[key] = buffer.cpu()
    return out


__all__ = [
    "SAMPLE_BLOCK",
    "Shard",
    "block_seed",
    "broadcast_json",
    "broadcast_tensors",
    "current_shard",
    "gather_rows",
    "sample_blocks",
]
