"""Shapes generation rate, side by side with the usual way to draw such data (PIL, one image at a time).

Run: ``.venv/bin/python benchmarks/bench_shapes.py [--n 50000] [--repeats 3]``. Prints a table and
rewrites the Shapes section of ``benchmarks/RESULTS.md``. The PIL baseline draws the same shapes at the
same geometry with ``ImageDraw`` and converts each to a float tensor, the loop a hand-written data set
would run; it is timed on fewer images and reported as a rate.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _results import machine, timed, write_section
from PIL import Image, ImageDraw

from auditkit.data.shapes import ATTRIBUTES, BACKGROUND, PALETTE, Shapes


def pil_baseline(ds: Shapes) -> torch.Tensor:
    """Draw every image of ``ds`` with PIL (the per-image loop the vectorised renderer replaces)."""
    size = ds.images.shape[-1]
    shapes, colours = ds.label_names("shape"), ds.label_names("colour")
    out = torch.empty_like(ds.images)
    bg = (round(BACKGROUND * 255),) * 3
    for i in range(len(ds)):
        img = Image.new("RGB", (size, size), bg)
        draw = ImageDraw.Draw(img)
        cx, cy, r = (float(ds.geometry[k][i]) for k in ("cx", "cy", "radius"))
        fill = tuple(round(c * 255) for c in PALETTE[colours[i]])
        if shapes[i] == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif shapes[i] == "square":
            draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
        out[i] = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--baseline-n", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    Shapes(1000, size=32)  # warm-up: first-call allocations and kernel dispatch

    rows = []
    for size in (32, 64):
        for noise in (0.0, 0.05):
            seconds = timed(lambda s=size, z=noise: Shapes(args.n, size=s, seed=0, noise=z), args.repeats)
            sample = Shapes(args.baseline_n, size=size, seed=0)
            base = timed(lambda d=sample: pil_baseline(d), 1)
            rate, base_rate = args.n / seconds, args.baseline_n / base
            rows.append((size, noise, args.n, seconds, rate, base_rate, rate / base_rate))
            print(
                f"{size}×{size} noise={noise}: {args.n} images in {seconds:.2f} s = {rate:,.0f} img/s; "
                f"PIL loop {base_rate:,.0f} img/s; ratio {rate / base_rate:.1f}×"
            )

    table = [
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}. Median of {args.repeats} runs; "
        f"PIL baseline on {args.baseline_n} images (attributes {', '.join(ATTRIBUTES)}).",
        "",
        "| size | noise | images | seconds | auditkit img/s | PIL loop img/s (draws no noise) | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, noise, n, seconds, rate, base_rate, ratio in rows:
        table.append(
            f"| {size}×{size} | {noise} | {n:,} | {seconds:.2f} | {rate:,.0f} | {base_rate:,.0f} "
            f"| {ratio:.1f}× |"
        )
    goal = next(r for r in rows if r[0] == 32 and r[1] == 0.0)
    table.append("")
    table.append(
        f"Goal: 50 000 images of 32×32 in under 5 s on 2 cores: "
        f"{'met' if goal[3] * 50_000 / goal[2] < 5 else 'NOT met'} ({goal[3] * 50_000 / goal[2]:.2f} s)."
    )
    path = write_section("bench_shapes", "\n".join(["## Shapes generation (`bench_shapes.py`)", "", *table]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
