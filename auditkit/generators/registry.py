"""Generators by name, and the one file format a trained generator is exported in.

Families (``dcgan``, ``vae``, ``ddpm``) are built from their config; wrappers (``module``, ``onnx``,
``diffusers``) from the object or file they wrap. A trained generator is one ``generator.safetensors``
file: the network's weights plus, in the file's metadata, everything needed to rebuild it (family,
model config, image shape, class names, condition). Loading never unpickles.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from auditkit._atomic import atomic_path
from auditkit.errors import ConfigError, WeightsError
from auditkit.generators.base import BaseGenerator

GENERATOR_FORMAT = "auditkit-generator/1"
GENERATOR_FILE = "generator.safetensors"


@dataclass(frozen=True)
class Family:
    """A trainable generator family.

    Attributes
    ----------
    name
        Registry name (``"dcgan"``).
    config
        Pydantic model of its ``model:`` section.
    build_network
        ``(config, image_shape, num_classes) -> nn.Module``: the network that generates (exported).
    wrap
        ``(network, config, image_shape, class_names, condition, device) -> BaseGenerator``.
    """

    name: str
    config: type[BaseModel]
    build_network: Callable[[Any, tuple[int, int, int], int], nn.Module]
    wrap: Callable[..., BaseGenerator]


def _wrap_module(net, cfg, image_shape, class_names, condition, device) -> BaseGenerator:
    from auditkit.generators.wrappers import ModuleGenerator

    return ModuleGenerator(
        net,
        # A VAE with a mixture prior has one more latent coordinate (its component selector).
        latent_shape=(getattr(net, "sample_dim", cfg.latent_dim),),
        image_shape=image_shape,
        output_range=(-1.0, 1.0),
        class_names=class_names,
        condition=condition,
        device=device,
    )


def _dcgan() -> Family:
    from auditkit.generators.dcgan import DCGANConfig, DCGANGenerator

    return Family("dcgan", DCGANConfig, DCGANGenerator, _wrap_module)


def _vae() -> Family:
    from auditkit.generators.vae import ConditionalVAE, VAEConfig

    return Family("vae", VAEConfig, ConditionalVAE, _wrap_module)


def _ddpm() -> Family:
    from auditkit.generators.diffusion import DiffusionConfig, DiffusionGenerator, build_denoiser

    def wrap(net, cfg, image_shape, class_names, condition, device) -> BaseGenerator:
        return DiffusionGenerator(
            net, cfg, image_shape=image_shape, class_names=class_names, condition=condition, device=device
        )

    return Family("ddpm", DiffusionConfig, build_denoiser, wrap)


# Built on first use so that importing the registry does not import every family.
_FAMILIES: dict[str, Callable[[], Family]] = {"dcgan": _dcgan, "vae": _vae, "ddpm": _ddpm}


def register_family(family: Family, *, replace: bool = False) -> None:
    """Make a new family trainable and loadable by name."""
    if family.name in _FAMILIES and not replace:
        raise ConfigError(f"generator family {family.name!r} is already registered; pass replace=True.")
    _FAMILIES[family.name] = lambda: family


def known_families() -> tuple[str, ...]:
    """Names :func:`get_family` accepts."""
    return tuple(sorted(_FAMILIES))


def get_family(name: str) -> Family:
    """The family called ``name``; ``ConfigError`` with a suggestion otherwise."""
    if not isinstance(name, str) or name not in _FAMILIES:
        close = difflib.get_close_matches(str(name), list(_FAMILIES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown generator family {name!r}; known: {list(known_families())}.{hint}")
    return _FAMILIES[name]()


def family_config(name: str, options: Mapping[str, Any] | None) -> BaseModel:
    """The validated ``model:`` section of family ``name``."""
    from auditkit.training.config import validate

    family = get_family(name)
    return validate(family.config, options, f"model section of the {name} family")


def create_generator(
    family: str,
    *,
    image_shape: Sequence[int] = (3, 32, 32),
    class_names: Sequence[str] = (),
    condition: str | None = None,
    device: str | torch.device | None = None,
    seed: int | None = None,
    **model_options: Any,
) -> BaseGenerator:
    """A generator of ``family`` with freshly initialised weights (for training or tests).

    ``model_options`` are the family's ``model:`` keys, e.g. ``latent_dim=64``; ``seed`` seeds the weights.
    """
    fam = get_family(family)
    cfg = family_config(family, model_options)
    shape = tuple(int(d) for d in image_shape)
    if seed is not None:
        torch.manual_seed(seed)
    net = fam.build_network(cfg, shape, len(class_names))  # type: ignore[arg-type]
    if device is not None:
        net.to(device)
    gen = fam.wrap(net, cfg, shape, tuple(class_names), condition, device)
    gen.network = net  # type: ignore[attr-defined]
    gen.family = family  # type: ignore[attr-defined]
    gen.model_config = cfg  # type: ignore[attr-defined]
    return gen


def generator_spec(
    family: str,
    model_config: BaseModel | Mapping[str, Any],
    image_shape: Sequence[int],
    class_names: Sequence[str],
    condition: str | None,
) -> dict[str, Any]:
    """The JSON-safe description :func:`load_generator` rebuilds a generator from."""
    model = model_config.model_dump() if isinstance(model_config, BaseModel) else dict(model_config)
    return {
        "family": family,
        "model": model,
        "image_shape": [int(d) for d in image_shape],
        "class_names": [str(c) for c in class_names],
        "condition": condition,
    }


def save_generator(network: nn.Module, spec: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``network``'s weights and ``spec`` to one safetensors file, atomically."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in network.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": GENERATOR_FORMAT, "spec": json.dumps(dict(spec))})
    return path


def load_generator(path: str | Path, *, device: str | torch.device | None = None) -> BaseGenerator:
    """A trained generator from ``generator.safetensors`` or a run folder that holds one.

    Raises ``WeightsError`` naming the file when it is missing, damaged, or does not fit its spec.
    """
    path = Path(path)
    if path.is_dir():
        path = path / GENERATOR_FILE
    if not path.is_file():
        raise WeightsError(
            f"no trained generator at {path}; a finished training run writes {GENERATOR_FILE} in its folder "
            "(an interrupted one can be finished with `auditkit train --resume RUN`)."
        )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"generator file {path} is damaged or not safetensors ({exc}).") from None
    if meta.get("format") != GENERATOR_FORMAT:
        raise WeightsError(f"{path} is not an auditkit generator file (format {meta.get('format')!r}).")
    try:
        spec = json.loads(meta["spec"])
        gen = create_generator(
            spec["family"],
            image_shape=spec["image_shape"],
            class_names=spec["class_names"],
            condition=spec["condition"],
            **spec["model"],
        )
    except (KeyError, json.JSONDecodeError) as exc:
        raise WeightsError(f"generator file {path} has a damaged spec ({exc}).") from None
    net: nn.Module = gen.network  # type: ignore[attr-defined]
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(
            f"the weights in {path} do not fit their own spec: {str(exc).splitlines()[0]}"
        ) from None
    net.eval()
    if device is not None:
        net.to(device)
        gen.device = torch.device(device)
    gen.weights_path = path  # type: ignore[attr-defined]
    return gen


__all__ = [
    "GENERATOR_FILE",
    "Family",
    "create_generator",
    "family_config",
    "generator_spec",
    "get_family",
    "known_families",
    "load_generator",
    "register_family",
    "save_generator",
]
