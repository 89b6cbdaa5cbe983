"""Inception feature throughput: auditkit's extractor side by side with torch-fidelity and torchmetrics.

Run: ``.venv/bin/python benchmarks/bench_features.py [--n 16] [--batch 16] [--repeats 3] [--no-write]``.
All rows run the same torch-fidelity Inception graph on the same 32×32 images (resized to 299×299 inside
the network) with the same random weights, built here: speed does not depend on the weight values and
nothing is downloaded. Rows: torch-fidelity's module on uint8 batches (the reference), torchmetrics'
``FrechetInceptionDistance.update`` (``normalize=True, antialias=False``), auditkit ``exact`` (pool
features and logits in one pass) and auditkit ``fast`` (bf16 autocast; on a CPU without bf16 units it is
slower, which is why auditkit warns about it there). Median of ``--repeats`` runs after one warm-up.
Rewrites the features section of ``benchmarks/RESULTS.md`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import tempfile
import warnings
from pathlib import Path

import torch
import torchvision
from _results import machine, timed, write_section

from auditkit.metrics.features import inception_extractor


def random_weights(path: Path) -> str:
    """Random Inception weights in torch-fidelity's layout, saved to ``path``; returns the file's SHA-256."""
    with torch.device("meta"):
        template = torchvision.models.inception_v3(
            num_classes=1008, aux_logits=False, weights=None, init_weights=False
        ).state_dict()
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, value in template.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.long)
        elif key.endswith("conv.weight"):
            state[key] = torch.randn(value.shape, generator=g) * (2.0 / value.shape[1:].numel()) ** 0.5
        elif key.endswith(("bn.weight", "running_var")):
            state[key] = 0.5 + torch.rand(value.shape, generator=g)
        else:
            state[key] = 0.01 * torch.randn(value.shape, generator=g)
    torch.save(state, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=16, help="images per timed run")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()

    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torchmetrics.image.fid import FrechetInceptionDistance

    images = torch.rand(args.n, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random-inception.pth"
        digest = random_weights(path)
        reference = FeatureExtractorInceptionV3(
            "ref", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
        )
        fid = FrechetInceptionDistance(
            feature=2048, normalize=True, antialias=False, feature_extractor_weights_path=str(path)
        )
        exact = inception_extractor(path, sha256=digest, device="cpu", batch_size=args.batch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "fast on the CPU": measuring it is the point
            fast = exact.with_mode("fast")

    def run_reference() -> None:
        with torch.no_grad():
            for start in range(0, args.n, args.batch):
                reference((images[start : start + args.batch] * 255).byte())

    def run_torchmetrics() -> None:
        fid.reset()
        for start in range(0, args.n, args.batch):
            fid.update(images[start : start + args.batch], real=True)

    rows = [
        ("torch-fidelity module (reference)", run_reference),
        ("torchmetrics FID update (antialias=False)", run_torchmetrics),
        ("auditkit exact (2048 + logits)", lambda: exact.extract_all(images, progress=False)),
        ("auditkit fast (bf16 autocast)", lambda: fast.extract_all(images, progress=False)),
    ]
    seconds = {name: timed(fn, args.repeats, warmup=True) for name, fn in rows}
    base = seconds[rows[0][0]]
    lines = [
        "## Inception features on the CPU (`bench_features.py`)",
        "",
        f"Machine: {machine()}. Date: {datetime.date.today().isoformat()}. {args.n} images of 32×32 "
        f"(resized to 299×299 inside the network), batches of {args.batch}, median of {args.repeats} runs "
        "after a warm-up; random weights built by the script.",
        "",
        "| method | seconds | img/s | time vs reference |",
        "|---|---|---|---|",
    ]
    for name, _ in rows:
        s = seconds[name]
        lines.append(f"| {name} | {s:.2f} | {args.n / s:.1f} | {s / base:.2f}× |")
    lines += [
        "",
        "auditkit exact runs torch-fidelity's own module, so it should match the reference row up to the "
        "float→uint8 conversion; on shared or virtual machines run-to-run noise can exceed the differences.",
    ]
    print("\n".join(lines))
    if not args.no_write:
        print(f"wrote {write_section('bench_features', chr(10).join(lines))}")


if __name__ == "__main__":
    main()
