"""Child process of the DDP tests: one training step's gradients, averaged over the process group.

Usage: python _ddp_grads.py CONFIG_JSON OUT.safetensors (with torchrun-style env vars for DDP).

Single-network families backpropagate ``recipe.losses``. The GAN takes one whole ``recipe.step``: its
discriminator update runs before its generator update, so after the step D holds the gradients of its
loss and G those of its own (computed against the updated D). Batch norms are converted exactly as the
trainer converts them.
"""

import json
import sys

import torch
from safetensors.torch import save_file

from auditkit.training import distributed
from auditkit.training.config import load_config
from auditkit.training.recipes import StepNoise, make_recipe
from auditkit.training.trainer import _DataOrder, derive_seed, load_training_data

config = load_config(json.loads(sys.argv[1]))
info, device = distributed.setup("cpu")
data, labels, classes = load_training_data(config)
torch.manual_seed(derive_seed(config.seed, "init"))
recipe = make_recipe(config, data.image_shape, len(classes), device)
plain = dict(recipe.networks)
for name, net in plain.items():
    recipe.networks[name] = distributed.wrap(net, device, info)
local = config.batch_size // info.world
idx = _DataOrder(len(data), config.batch_size, config.seed).indices(0)[
    info.rank * local : (info.rank + 1) * local
]
x = data.images[idx] * 2 - 1
y = labels[idx] if labels is not None else None
rng = torch.Generator().manual_seed(derive_seed(config.seed, "step", 0))
noise = StepNoise(rng, config.batch_size, info.rank, info.world)
if len(plain) == 1:
    recipe.losses(x, y, noise).backward()
else:
    recipe.step(x, y, noise)
grads = {
    f"{name}.{key}": p.grad.contiguous()
    for name, net in plain.items()
    for key, p in net.named_parameters()
    if p.grad is not None
}
buffers = {f"{name}.{key}": b.contiguous() for name, net in plain.items() for key, b in net.named_buffers()}
save_file({**grads, **{f"buffer:{k}": v for k, v in buffers.items()}}, sys.argv[2])
distributed.teardown(info)
