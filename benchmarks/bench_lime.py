"""LIME on one 224×224 RGB image: auditkit's vectorised ``lime_attribution`` vs the ``lime`` package.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_lime.py [--samples 1000] [--rounds 5]
[--threads 1] [--no-write]``.

Both explain the same small CNN (three stride-2 3×3 convolutions, global average pooling, a linear layer;
random weights, seed 0, last layer ×30) on ``skimage.data.astronaut()`` resized to 224×224, with the same
precomputed SLIC segmentation (auditkit's defaults), seed, sample count and the softmax of the model's
outputs. lime runs as its users run it: ``LimeImageExplainer(random_state=seed).explain_instance`` with its
default batch size (10), a ``classifier_fn`` converting its H×W×C batches to N×C×H×W tensors. auditkit runs
with its defaults (on CPU: batches of at most 2 MiB of input, 3 images here) and with lime's batch size.
Model time is the time inside ``model(x)`` calls only; overhead is total minus model time: building
perturbed images, layout conversion, softmax, the regression. The runs alternate in each round; medians
over the rounds. Before timing, the script checks that the explanations are equal (weights, intercept, R²,
local prediction within 1e-6: with equal model batches they agree to ~1e-16; different batch shapes can
change the model's float32 outputs in the last bits).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time
from importlib.metadata import version

import numpy as np
import skimage.data
import skimage.transform
import torch
from _results import machine, write_section
from lime.lime_image import LimeImageExplainer
from torch import nn

from auditkit.explain.lime import lime_attribution, segment_images

SIZE = 224
LIME_BATCH = 10  # explain_instance's default batch_size
TOLERANCE = 1e-6  # ~1e-16 with equal model batches; float32 round-off of different batch shapes adds ~1e-7


def small_cnn() -> nn.Module:
    """Random weights (seed 0); the last layer scaled ×30 so that the softmax is not flat (weights ~1e-3)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    ).eval()  # fmt: skip
    with torch.no_grad():
        model[-1].weight.mul_(30)
    return model


def test_image() -> torch.Tensor:
    """The astronaut photograph (ships with scikit-image) as float32 [0, 1], 1×3×224×224."""
    image = skimage.transform.resize(skimage.data.astronaut(), (SIZE, SIZE), anti_aliasing=True)
    return torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None].contiguous()


class TimedModel:
    """Calls the model and adds the time spent inside ``model(x)`` to ``seconds``."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.seconds = 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        with torch.no_grad():
            out = self.model(x)
        self.seconds += time.perf_counter() - start
        return out


def run_lime(
    model: nn.Module, image: torch.Tensor, target: int, segments: np.ndarray, samples: int, seed: int
):
    """(total s, model s, (weights, intercept, score, local_pred)) of lime's explain_instance."""
    timed = TimedModel(model)

    def classifier_fn(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()
        return timed(x).softmax(dim=1).numpy()

    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # lime's tqdm bar
        explainer = LimeImageExplainer(random_state=seed)
        exp = explainer.explain_instance(
            image[0].permute(1, 2, 0).numpy(), classifier_fn, labels=(target,), top_labels=None,
            num_samples=samples, segmentation_fn=lambda _: segments,
        )  # fmt: skip
    total = time.perf_counter() - start
    weights = np.zeros(int(segments.max()) + 1)
    for feature, weight in exp.local_exp[target]:
        weights[feature] = weight
    return total, timed.seconds, (weights, exp.intercept[target], exp.score, exp.local_pred[0])


def run_ours(
    model: nn.Module,
    image: torch.Tensor,
    target: int,
    segments: torch.Tensor,
    samples: int,
    seed: int,
    batch_size: int | None = None,
):
    """(total s, model s, (weights, intercept, score, local_pred), batch size) of ``lime_attribution``."""
    start = time.perf_counter()
    r = lime_attribution(
        model, image, target, segments=segments, num_samples=samples, seed=seed, batch_size=batch_size
    )
    total = time.perf_counter() - start
    return total, r.model_seconds, (r.weights[0], r.intercept[0], r.score[0], r.local_pred[0]), r.batch_size


def max_difference(a: tuple, b: tuple) -> float:
    return max(float(np.max(np.abs(np.asarray(x, dtype=np.float64) - y))) for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1).")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = small_cnn()
    image = test_image()
    segments = segment_images(image, "slic")
    with torch.no_grad():
        target = int(model(image).argmax())
    n_seg = int(segments.max()) + 1
    print(f"{machine()}; {n_seg} SLIC segments, {args.samples} samples, target {target}")

    # equal explanations first (also warms every path up)
    lime_seg = segments[0].numpy()
    _, _, lime_fit = run_lime(model, image, target, lime_seg, args.samples, args.seed)
    _, _, ours_fit, default_batch = run_ours(model, image, target, segments, args.samples, args.seed)
    _, _, ours_fit10, _ = run_ours(model, image, target, segments, args.samples, args.seed, LIME_BATCH)
    diff = max(max_difference(ours_fit, lime_fit), max_difference(ours_fit10, lime_fit))
    print(f"max |auditkit - lime| over weights, intercept, R², local prediction: {diff:.2e}")
    if not diff <= TOLERANCE:
        raise SystemExit(f"explanations differ by {diff:.3g} > {TOLERANCE}; not timing unequal results")

    names = ("lime", "auditkit", "auditkit10")
    rows: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
    for i in range(args.rounds):
        rows["lime"].append(run_lime(model, image, target, lime_seg, args.samples, args.seed)[:2])
        rows["auditkit"].append(run_ours(model, image, target, segments, args.samples, args.seed)[:2])
        rows["auditkit10"].append(
            run_ours(model, image, target, segments, args.samples, args.seed, LIME_BATCH)[:2]
        )
        print(
            f"round {i + 1}: "
            + "   ".join(f"{k} {t:.3f} s (model {m:.3f} s)" for k in names for t, m in [rows[k][-1]])
        )

    med = {k: [statistics.median(col) for col in zip(*v, strict=True)] for k, v in rows.items()}
    over = {k: statistics.median(t - m for t, m in v) for k, v in rows.items()}
    ratio = over["lime"] / over["auditkit"]
    total_ratio = med["lime"][0] / med["auditkit"][0]
    versions = ", ".join(f"{p} {version(p)}" for p in ("lime", "scikit-image", "scikit-learn", "numpy"))
    verdict = "met" if ratio >= 10 else "NOT met"
    labels = {
        "lime": f"lime `LimeImageExplainer` (batch {LIME_BATCH}, its default)",
        "auditkit": f"auditkit `lime_attribution` (batch {default_batch}, its CPU default)",
        "auditkit10": f"auditkit `lime_attribution` (batch {LIME_BATCH})",
    }
    table = "".join(
        f"| {labels[k]} | {med[k][0]:.3f} | {med[k][1]:.3f} | {over[k]:.3f} | {over['lime'] / over[k]:.1f}× "
        "|\n"
        for k in names
    )
    body = (
        "## LIME (issue 5)\n\n"
        f"Machine: {machine()}, `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}`, a 2-core CPU "
        f"shared with other work; {versions}. Date: {time.strftime('%Y-%m-%d')}.\n\n"
        "`bench_lime.py`: one 224×224 RGB image (scikit-image's astronaut), a small CNN (3 stride-2 "
        "convolutions, global pooling; random weights, last layer ×30), "
        f"{n_seg} precomputed SLIC segments, {args.samples} samples, softmax output, seed {args.seed}; "
        f"median of {args.rounds} alternating rounds. Model time: "
        "inside `model(x)` only; overhead = total − model (building perturbed images, layout conversion, "
        "softmax, regression).\n\n"
        "| run | total (s) | model (s) | overhead (s) | lime overhead / overhead |\n"
        "|---|---:|---:|---:|---:|\n"
        f"{table}\n"
        f"Overhead ratio (lime / auditkit at its defaults): {ratio:.1f}×; total time ratio "
        f"{total_ratio:.2f}×. "
        f"Identical explanations: max |difference| {diff:.1e} over weights, intercept, R² and local "
        f"prediction. Goal: ≥ 10× lower overhead: {verdict}. Model times differ with the batch size and with "
        "what the caches hold between calls (lime's Python loop runs between its model calls); on this "
        "shared machine every time also varies from run to run (see the rounds printed by the script).\n"
    )
    print(body)
    if not args.no_write:
        write_section("bench_lime", body)


if __name__ == "__main__":
    main()
