"""DCGAN 32×32 training throughput: auditkit's trainer vs a plain PyTorch loop of the same architecture.

Run: ``.venv/bin/python benchmarks/bench_training.py [--steps N] [--device cpu|cuda] [--no-write]``.

Both train the same class-conditional ``DCGANGenerator``/``DCGANDiscriminator`` (auditkit's modules) with
the same hinge losses, Adam settings and batch size on the same Shapes images, alternating in one process
so machine noise hits both. The plain loop is what a user would write: a shuffling ``DataLoader``, separate
real and fake discriminator passes, fp32, no EMA, no logging. auditkit's trainer adds EMA, a finiteness
check, metrics logging and periodic checkpoints (one per run here), and on CUDA its defaults: bf16 autocast,
channels_last and fused Adam (plus ``torch.compile`` with ``--compile``). Throughput is images per second
over the timed steps, after warm-up steps that are not timed (compilation, allocator, cudnn autotune).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from _results import machine, write_section
from torch.utils.data import DataLoader, TensorDataset

from auditkit.data.shapes import Shapes
from auditkit.generators.dcgan import (
    DCGANConfig,
    DCGANDiscriminator,
    DCGANGenerator,
    discriminator_loss,
    generator_loss,
)
from auditkit.store import RunStore
from auditkit.training.trainer import Trainer

BATCH = 64
N_IMAGES = 8192


def plain_loop(data: Shapes, steps: int, warmup: int, device: torch.device) -> float:
    """img/s of a straightforward PyTorch DCGAN loop (timed after ``warmup`` steps)."""
    torch.manual_seed(0)
    cfg = DCGANConfig()
    G = DCGANGenerator(cfg, data.image_shape, 3).to(device)
    D = DCGANDiscriminator(cfg, data.image_shape, 3).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    loader = DataLoader(
        TensorDataset(data.images, data.label("shape")), batch_size=BATCH, shuffle=True, drop_last=True
    )
    done, start = 0, None
    while done < warmup + steps:
        for x, y in loader:
            if done == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            x, y = x.to(device) * 2 - 1, y.to(device)
            z = torch.randn(BATCH, cfg.latent_dim, device=device)
            fake = G(z, y)
            loss_d = discriminator_loss(D(x, y), D(fake.detach(), y), "hinge")
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            loss_g = generator_loss(D(fake, y), "hinge")
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            done += 1
            if done == warmup + steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * BATCH / (time.perf_counter() - start)


def auditkit_loop(steps: int, warmup: int, device: torch.device, compile_: bool) -> float:
    """img/s of auditkit's trainer on the same data and architecture."""
    config = {
        "family": "dcgan",
        "data": {"source": "shapes", "n": N_IMAGES, "size": 32},
        "steps": warmup,
        "batch_size": BATCH,
        "log_every": 10**6,
        "sample_every": 10**6,
        "checkpoint_every": 10**6,
        "device": device.type,
        "compile": compile_,
    }
    with tempfile.TemporaryDirectory() as home:
        store = RunStore(home)
        first = Trainer(config, store=store, progress=False)
        first.run_to_end()  # warm-up steps, then one checkpoint; the timed part resumes from it
        trainer = Trainer(store=store, resume=first.run_id, steps=warmup + steps, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        trainer._loop()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return steps * BATCH / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's).")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = Shapes(N_IMAGES, size=32, seed=0)
    plain, ours = [], []
    for _ in range(args.rounds):
        plain.append(plain_loop(data, args.steps, args.warmup, device))
        ours.append(auditkit_loop(args.steps, args.warmup, device, args.compile))
        print(f"plain {plain[-1]:8.1f} img/s   auditkit {ours[-1]:8.1f} img/s")
    p, a = statistics.median(plain), statistics.median(ours)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()
    mode = (
        "bf16 + channels_last + fused Adam" + (" + compile" if args.compile else "")
        if device.type == "cuda"
        else "fp32"
    )
    body = (
        f"## DCGAN 32×32 training throughput ({device.type})\n\n"
        f"Machine: {where}. Batch {BATCH}, class-conditional, width 64; {args.steps} timed steps after "
        f"{args.warmup} warm-up steps, median of {args.rounds} alternating rounds. auditkit mode: {mode}.\n\n"
        "| loop | img/s | ratio |\n|---|---:|---:|\n"
        f"| plain PyTorch (DataLoader, fp32, no EMA) | {p:.1f} | 1.00 |\n"
        f"| auditkit trainer (EMA, checks, logging) | {a:.1f} | {a / p:.2f} |\n"
    )
    print(body)
    if not args.no_write:
        write_section(f"training-{device.type}", body)


if __name__ == "__main__":
    main()
