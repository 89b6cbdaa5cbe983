"""torch.distributed for training: set up from torchrun's environment, wrap in DDP, share small values.

``torchrun --nproc_per_node N -m auditkit train CONFIG`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; we join
the group with NCCL on GPU and gloo on CPU. Without those variables everything runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from auditkit._device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the group."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    started_here: bool = False  # we initialised the process group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world <= 1:
        return DistInfo(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    started = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        started = True
    return DistInfo(rank, world, local_rank, started), device


def teardown(info: DistInfo) -> None:
    """Leave the process group if :func:`setup` joined it."""
    if info.started_here and dist.is_initialized():
        dist.destroy_process_group()


def wrap(net: nn.Module, device: torch.device, info: DistInfo) -> nn.Module:
    """``net`` in DistributedDataParallel when there are several processes, else unchanged."""
    if info.world <= 1:
        return net
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=ids)


def barrier(info: DistInfo) -> None:
    if info.world > 1:
        dist.barrier()


def broadcast_text(value: str | None, info: DistInfo) -> str:
    """Rank 0's string on every rank (e.g. the run id it created)."""
    if info.world <= 1:
        return value or ""
    box = [value]
    dist.broadcast_object_list(box, src=0)  # between our own processes only
    return box[0] or ""


def all_finite(values: dict[str, torch.Tensor], info: DistInfo) -> bool:
    """Whether every value is finite on every rank (so all ranks stop together on a NaN)."""
    flag = torch.tensor(
        [float(all(bool(torch.isfinite(v).all()) for v in values.values()))],
        device=next(iter(values.values())).device if values else "cpu",
    )
    if info.world > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() == 1.0)


__all__ = [
    "DistInfo",
    "all_finite",
    "barrier",
    "broadcast_text",
    "resolve_device",
    "setup",
    "teardown",
    "wrap",
]
