"""Generator quality as the judge sees it: train each family's Shapes config, then ask for each shape.

Run: ``.venv/bin/python benchmarks/bench_quality.py [--configs dcgan-shapes,vae-shapes,...] [--home DIR]``.

1. Trains the default judge on real Shapes (12 000 images, 20 % held out) and records its held-out
   accuracy per attribute.
2. Trains each config in ``configs/`` named on the command line, timing the wall clock.
3. Samples ``--per-class`` images for each requested shape from the EMA generator and counts how often
   the judge recognises the requested shape. It also reads the other attributes (colour, size, position)
   and reports their normalised entropy per class: 1 is the uniform spread of the real data, 0 means every
   image of the class has one value (collapse, which a classifier-driven loss like AC-GAN can cause).

Writes the "generator-quality" section of ``benchmarks/RESULTS.md`` and prints where the sample grids are.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from _results import machine, write_section

from auditkit.bias import Judge, train_judge
from auditkit.data.shapes import Shapes
from auditkit.generators import load_generator
from auditkit.store import RunStore
from auditkit.training import load_config, train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def normalised_entropy(values: torch.Tensor, k: int) -> float:
    """Entropy of the empirical distribution of ``values`` (integers in ``[0, k)``) divided by ``log k``."""
    p = torch.bincount(values, minlength=k).double() / len(values)
    p = p[p > 0]
    return float(-(p * p.log()).sum() / math.log(k))


def recognised(judge, gen, per_class: int, seed: int) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Per class of ``gen.condition``: the share of images the judge reads as that class, and the
    normalised entropy of every other attribute as the judge reads it."""
    names = list(judge.attributes)
    column = names.index(gen.condition)
    vocab = judge.attributes[gen.condition]
    rates, spread = {}, {}
    for k, name in enumerate(gen.class_names):
        images = gen.sample(per_class, labels=k, seed=seed + k, batch_size=250)
        predicted = judge.predict(images)
        rates[name] = float((predicted[:, column] == vocab.index(name)).float().mean())
        spread[name] = {
            a: normalised_entropy(predicted[:, i], len(judge.attributes[a]))
            for i, a in enumerate(names)
            if a != gen.condition
        }
    return rates, spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="dcgan-shapes,vae-shapes,ddpm-shapes,dit-shapes")
    parser.add_argument("--home", default="bench-quality-runs")
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--steps", type=int, default=None, help="Override every config's steps (smoke).")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's).")
    parser.add_argument(
        "--judge", default=None, help="Use this trained judge (folder) instead of training one."
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    store = RunStore(args.home)
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    if args.judge:
        judge = Judge.load(args.judge)
    else:
        judge = train_judge(Shapes(12000, size=32, seed=100), seed=0, store=store, name="bench-judge")
    judge_time = judge.report.train_seconds if args.judge else time.perf_counter() - start
    acc = judge.report.accuracy
    accuracy = ", ".join(f"{a} {v:.2%}" for a, v in acc.items())
    print(f"judge: {judge_time:.0f} s, held-out accuracy {accuracy}")

    rows = []
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        config = load_config(CONFIGS / f"{name}.yaml")
        start, cpu_start = time.perf_counter(), time.process_time()
        result = train(config, store=store, steps=args.steps, echo=print)
        minutes = (time.perf_counter() - start) / 60
        cpu_minutes = (time.process_time() - cpu_start) / 60
        gen = load_generator(result.run_dir)
        start = time.perf_counter()
        rates, spread = recognised(judge, gen, args.per_class, seed=1000)
        sample_s = time.perf_counter() - start
        overall = sum(rates.values()) / len(rates)
        grid = result.run_dir / "samples" / "final.png"
        print(
            f"{name}: {minutes:.1f} min ({cpu_minutes:.1f} CPU min), recognised {overall:.1%} {rates}; "
            f"attribute entropy {spread}; {grid}"
        )
        rows.append((name, config, result, minutes, cpu_minutes, overall, rates, spread, sample_s))

    lines = [
        "## Generator quality on Shapes 32×32 (judge-measured)\n",
        f"Machine: {machine()}.\n",
        f"Judge: default `train_judge` on 12 000 real Shapes (seed 100), {judge_time:.0f} s; held-out "
        "accuracy " + ", ".join(f"{a} {v:.2%}" for a, v in acc.items()) + ".\n",
        f"Recognised: share of {args.per_class} images per requested shape whose shape the judge reads as "
        "requested (EMA weights; diffusion samples with the config's DDIM steps and guidance). Spread: "
        "normalised entropy of the judge-read colour / size / position, averaged over the classes "
        "(1: as varied as the real data; 0: collapsed).\n",
        "| config | steps | train wall (min) | train CPU (min) | recognised | per class | spread "
        "(colour / size / position) | sampling (s) |",
        "|---|---:|---:|---:|---:|---|---|---:|",
    ]
    for name, _config, result, minutes, cpu_minutes, overall, rates, spread, sample_s in rows:
        per = ", ".join(f"{k} {v:.1%}" for k, v in rates.items())
        others = next(iter(spread.values())).keys()
        mean = " / ".join(f"{sum(s[a] for s in spread.values()) / len(spread):.2f}" for a in others)
        lines.append(
            f"| `{name}` | {result.steps} | {minutes:.1f} | {cpu_minutes:.1f} | {overall:.1%} | {per} "
            f"| {mean} | {sample_s:.0f} |"
        )
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("generator-quality", body)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
