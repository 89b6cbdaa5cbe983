"""torch.distributed for training: set up from torchrun's environment, wrap in DDP, share small values.

``torchrun --nproc_per_node N -m auditkit train CONFIG`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; we join
the group with NCCL on GPU and gloo on CPU. Without those variables everything runs in one process.

Batch-coupled parts of a step must see the *global* batch for N processes to take the step one process
would: BatchNorm layers become cross-process batch norms under DDP, and nonlinear functions of a batch
mean (the GAN's mode-seeking term) take :func:`global_mean`. Both all-reduce with autograd, so gradients
flow back to every process's samples.
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


def _several() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _AllSum(torch.autograd.Function):
    """Sum over processes whose backward sums the incoming gradients over processes too: every process's
    loss depends on every process's contribution."""

    @staticmethod
    def forward(ctx, value: torch.Tensor) -> torch.Tensor:
        value = value.clone()
        dist.all_reduce(value)
        return value

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def global_sum(value: torch.Tensor) -> torch.Tensor:
    """``value`` summed over all processes (itself in one process); gradients flow to every process."""
    if not _several():
        return value
    return _AllSum.apply(value)


def global_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over every process's elements, differentiable (equal local counts or not)."""
    total = global_sum(torch.stack([values.sum(), values.new_tensor(float(values.numel()))]))
    return total[0] / total[1]


class CrossProcessBatchNorm(nn.BatchNorm2d):
    """BatchNorm over the global batch of all processes, for CPU (gloo) where ``nn.SyncBatchNorm`` refuses.

    Same parameters, buffers and state-dict keys as ``nn.BatchNorm2d``; in one process, or in eval mode, it
    *is* ``nn.BatchNorm2d``. In training it all-reduces the channel sums, then the centred squares (two
    passes, as stable as the one-process variance), so every process normalises with the statistics one
    process would compute on the whole batch and updates identical running statistics.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _several()):
            return super().forward(x)
        self._check_input_dim(x)
        dims = (0, 2, 3)
        # Channel sums and the element count in one all-reduce, then the centred squares in a second.
        local = torch.cat([x.sum(dims), x.new_tensor([float(x.numel() // x.shape[1])])])
        total = global_sum(local)
        mean, count = total[:-1] / total[-1], total[-1]
        centred = x - mean[None, :, None, None]
        var = global_sum(centred.square().sum(dims)) / count
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (count / (count - 1).clamp(min=1))
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(unbiased.detach(), factor)
        out = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return out


def convert_batchnorm(net: nn.Module, device: torch.device) -> nn.Module:
    """Every ``BatchNorm2d`` in ``net`` made cross-process: torch's SyncBatchNorm on CUDA, ours on CPU.

    Children are replaced in place (weights and buffers shared, not copied); the returned module is ``net``
    unless ``net`` itself is a batch norm.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)
    if type(net) is nn.BatchNorm2d:
        cross = CrossProcessBatchNorm(
            net.num_features, net.eps, net.momentum, net.affine, net.track_running_stats
        ).to(device)
        cross.load_state_dict(net.state_dict())
        cross.train(net.training)
        return cross
    for name, child in net.named_children():
        converted = convert_batchnorm(child, device)
        if converted is not child:
            setattr(net, name, converted)
    return net


def wrap(net: nn.Module, device: torch.device, info: DistInfo) -> nn.Module:
    """``net`` in DistributedDataParallel when there are several processes, else unchanged.

    Its batch norms become cross-process first (in place), so a step sees the global batch's statistics.
    """
    if info.world <= 1:
        return net
    net = convert_batchnorm(net, device)
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
    "CrossProcessBatchNorm",
    "DistInfo",
    "all_finite",
    "barrier",
    "broadcast_text",
    "convert_batchnorm",
    "global_mean",
    "global_sum",
    "resolve_device",
    "setup",
    "teardown",
    "wrap",
]
