"""Child process of the DDP test: one training step's gradients, averaged over the process group.

Usage: python _ddp_grads.py CONFIG_JSON OUT.safetensors (with torchrun-style env vars for DDP).
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
(name,) = recipe.networks  # single-network families
net = recipe.networks[name]
recipe.networks[name] = distributed.wrap(net, device, info)
local = config.batch_size // info.world
idx = _DataOrder(len(data), config.batch_size, config.seed).indices(0)[
    info.rank * local : (info.rank + 1) * local
]
x = data.images[idx] * 2 - 1
y = labels[idx] if labels is not None else None
rng = torch.Generator().manual_seed(derive_seed(config.seed, "step", 0))
loss = recipe.losses(x, y, StepNoise(rng, config.batch_size, info.rank, info.world))
loss.backward()
save_file({k: p.grad.contiguous() for k, p in net.named_parameters()}, sys.argv[2])
distributed.teardown(info)
