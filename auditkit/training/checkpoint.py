"""Training checkpoints in one safetensors file: networks, EMA, optimizers and RNG state, no pickle.

Tensors are stored under prefixed names (``net/G/...``, ``ema/...``, ``optim/G/3/exp_avg``, ``rng/torch``);
everything else (the step, optimizer hyper-parameters, Python/NumPy RNG state) goes into the file's
string metadata as JSON. Loading never unpickles anything, so a checkpoint from an untrusted source can at
worst hold wrong numbers, not code. Files are written to a temp name, fsynced and renamed into place.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from auditkit._atomic import atomic_path
from auditkit.errors import WeightsError

FORMAT = "auditkit-checkpoint/1"


def _tensor(value: torch.Tensor) -> torch.Tensor:
    # safetensors wants contiguous CPU tensors that own their memory (no shared views).
    return value.detach().to("cpu").contiguous().clone()


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The global RNG states: torch (CPU and every CUDA device) as tensors, Python and NumPy as JSON."""
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = state
    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [version, list(state), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def restore_rng(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Put back what :func:`capture_rng` captured."""
    torch.set_rng_state(tensors["rng/torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng/cuda/")), key=lambda k: int(k.rsplit("/", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda][: torch.cuda.device_count()])
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_checkpoint(
    path: str | Path,
    *,
    step: int,
    networks: Mapping[str, nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    ema: nn.Module | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically; return its path.

    Parameters
    ----------
    step
        Number of finished training steps.
    networks, optimizers
        By name (e.g. ``{"G": ..., "D": ...}``); unwrap DDP/compiled modules first.
    ema
        The EMA model (``torch.optim.swa_utils.AveragedModel``), when there is one.
    extra
        JSON-safe values to keep alongside (e.g. the config hash).
    """
    tensors: dict[str, torch.Tensor] = {}
    for name, net in networks.items():
        tensors.update({f"net/{name}/{k}": _tensor(v) for k, v in net.state_dict().items()})
    if ema is not None:
        tensors.update({f"ema/{k}": _tensor(v) for k, v in ema.state_dict().items()})
    optim_meta: dict[str, Any] = {}
    for name, opt in optimizers.items():
        state = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for pid, values in state["state"].items():
            for key, value in values.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim/{name}/{pid}/{key}"] = _tensor(value)
                else:
                    scalars.setdefault(str(pid), {})[key] = value
        optim_meta[name] = {"param_groups": state["param_groups"], "scalars": scalars}
    rng_tensors, rng_meta = capture_rng()
    tensors.update(rng_tensors)
    metadata = {
        "format": FORMAT,
        "step": str(int(step)),
        "optimizers": json.dumps(optim_meta),
        "rng": json.dumps(rng_meta),
        "extra": json.dumps(dict(extra or {})),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


class Checkpoint:
    """A loaded checkpoint: ``step``, ``extra``, and methods to restore state into live objects."""

    def __init__(self, path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
        self.path = path
        self.tensors = tensors
        try:
            self.step = int(metadata["step"])
            self.optimizers = json.loads(metadata["optimizers"])
            self.rng = json.loads(metadata["rng"])
            self.extra = json.loads(metadata.get("extra", "{}"))
        except (KeyError, ValueError) as exc:
            raise WeightsError(
                f"checkpoint {path} has damaged metadata ({exc}); resume from an earlier one."
            ) from None

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors under ``prefix/`` with the prefix removed (e.g. ``net/G``)."""
        start = prefix.rstrip("/") + "/"
        return {k[len(start) :]: v for k, v in self.tensors.items() if k.startswith(start)}

    def load_network(self, name: str, net: nn.Module) -> None:
        """Load network ``name``'s weights into ``net`` (strict)."""
        _load_strict(net, self.state(f"net/{name}"), f"network {name!r}", self.path)

    def load_ema(self, ema: nn.Module) -> None:
        """Load the EMA model's state."""
        _load_strict(ema, self.state("ema"), "EMA model", self.path)

    def load_optimizer(self, name: str, opt: torch.optim.Optimizer) -> None:
        """Rebuild and load optimizer ``name``'s state dict."""
        if name not in self.optimizers:
            raise WeightsError(
                f"checkpoint {self.path} has no optimizer {name!r}; it was written by another family."
            )
        meta = self.optimizers[name]
        state: dict[int, dict[str, Any]] = {}
        for key, value in self.state(f"optim/{name}").items():
            pid, field = key.split("/", 1)
            state.setdefault(int(pid), {})[field] = value
        for pid, values in meta["scalars"].items():
            state.setdefault(int(pid), {}).update(values)
        try:
            opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        except (ValueError, KeyError) as exc:
            raise WeightsError(f"optimizer {name!r} in {self.path} does not match the model: {exc}") from None

    def restore_rng(self) -> None:
        """Restore the global RNG states saved with the checkpoint."""
        restore_rng({k: v.cpu() for k, v in self.tensors.items() if k.startswith("rng/")}, self.rng)


def _load_strict(net: nn.Module, state: dict[str, torch.Tensor], what: str, path: Path) -> None:
    if not state:
        raise WeightsError(f"checkpoint {path} has no {what}; it was written for another model.")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise WeightsError(
            f"the {what} in {path} does not fit this model ({first}); the config's model section must match "
            "the one the checkpoint was trained with."
        ) from None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; ``WeightsError`` if missing or damaged."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist; list the run's checkpoints/ folder.")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iteration)
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(
            f"checkpoint {path} is damaged or not a safetensors file ({exc}); restore it, or unindex and "
            "delete it (RunStore.remove_artifact) to resume from the checkpoint before it."
        ) from None
    if metadata.get("format") != FORMAT:
        raise WeightsError(
            f"{path} is not an auditkit training checkpoint (format {metadata.get('format')!r})."
        )
    return Checkpoint(path, tensors, metadata)


__all__ = ["Checkpoint", "capture_rng", "load_checkpoint", "restore_rng", "save_checkpoint"]
