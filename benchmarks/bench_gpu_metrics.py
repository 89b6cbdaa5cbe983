"""Inception features on a GPU: auditkit exact and fast vs torch-fidelity's module, and what fast does to FID.

Run: ``.venv/bin/python benchmarks/bench_gpu_metrics.py [--n 5000] [--batch 200] [--inception-weights PATH]
[--no-write]``. Without CUDA it prints that it skipped and exits 0 (nothing is written).

Images: two sets of ``--n`` Shapes images of 64×64 (uniform, and the skewed ``demo`` set, noise 0.05), so
the FID between them is a real, non-zero value; every row resizes them to 299×299 inside the same
torch-fidelity Inception graph. Weights: the standard file (``--inception-weights`` or
``$AUDITKIT_WEIGHTS_DIR``); without it random weights in torch-fidelity's layout (then the FID and its
deviation are those of a random network: a smoke test of the code path, not the number to quote).

Rows (median of ``--repeats`` timed passes over both sets after a warm-up, CUDA synchronised):

* torch-fidelity ``FeatureExtractorInceptionV3`` on uint8 batches, as torch-fidelity runs it (with torch's
  default TF32 switches);
* auditkit ``exact`` (fp32, TF32 off during the call: the reference numerics);
* auditkit ``fast`` (bf16 autocast + channels_last) and ``fast`` + ``torch.compile``.

FID of the two sets from each row's pool features; |ΔFID| / FID against auditkit exact. Goals (issue 12):
exact ≥ 1× torch-fidelity's throughput, fast ≥ 5× with |ΔFID| / FID ≤ 0.5 %.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # _results and bench_features, however it is started


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up (and, for compile, the compilation)
    times = []
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        out = fn()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _device_name(device: str) -> str:
    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else device


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="images per set (two sets)")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inception-weights", default=None, help="standard Inception weights file")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument("--device", default="cuda", help="'cpu' only to check the script on tiny --n")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu_metrics: no CUDA device here; skipped (nothing measured, nothing written).")
        return 0

    from _results import machine, write_section
    from bench_features import random_weights
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from auditkit.data.shapes import Shapes
    from auditkit.errors import WeightsError
    from auditkit.metrics.features import inception_extractor, resolve_inception_weights
    from auditkit.metrics.frechet import fid_from_features

    sets = [
        Shapes(args.n, size=64, seed=1, noise=0.05).images,
        Shapes(args.n, size=64, seed=2, noise=0.05, skew="demo").images,
    ]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path, digest, weights = resolve_inception_weights(args.inception_weights), None, "standard"
        except WeightsError:
            path = Path(tmp) / "random-inception.pth"
            digest, weights = random_weights(path), "random (no standard file found)"
        reference = FeatureExtractorInceptionV3("ref", ["2048"], feature_extractor_weights_path=str(path))
        reference = reference.to(args.device).eval()
        exact = inception_extractor(
            path, sha256=digest, device=args.device, outputs="2048", batch_size=args.batch
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "fast on the CPU" (only with --device cpu)
        fast = exact.with_mode("fast")
        compiled = exact.with_mode("fast", compile=True)
    on_gpu = [s.to(args.device) for s in sets]  # the same images for every row, already on the device

    def run_reference() -> list[torch.Tensor]:
        out = []
        with torch.no_grad():
            for images in on_gpu:
                feats = [
                    reference((images[a : a + args.batch] * 255).byte())[0].float().cpu()
                    for a in range(0, len(images), args.batch)
                ]
                out.append(torch.cat(feats))
        return out

    def runner(extractor):
        return lambda: [extractor.extract(images, progress=False) for images in on_gpu]

    rows = [
        ("torch-fidelity module (reference)", run_reference),
        ("auditkit exact (fp32, TF32 off)", runner(exact)),
        ("auditkit fast (bf16, channels_last)", runner(fast)),
        ("auditkit fast + torch.compile", runner(compiled)),
    ]
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for name, fn in rows:
            seconds, feats = _timed(fn, args.repeats)
            results[name] = (seconds, fid_from_features(feats[0], feats[1]))
    base_s = results[rows[0][0]][0]
    exact_fid = results[rows[1][0]][1]
    total = 2 * args.n
    lines = [
        "## Inception features and FID on a GPU (`bench_gpu_metrics.py`)",
        "",
        f"Machine: {machine()}, {_device_name(args.device)}. Date: {datetime.date.today().isoformat()}. "
        f"Two sets of {args.n} Shapes images, 64×64 (resized to 299×299 in the graph), batches of "
        f"{args.batch}, median of {args.repeats} passes after a warm-up. Weights: {weights}.",
        "",
        "| method | seconds | img/s | speed vs torch-fidelity | FID | abs(ΔFID) / FID vs exact |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, _ in rows:
        seconds, fid = results[name]
        gap = abs(fid - exact_fid) / exact_fid if exact_fid > 0 else float("nan")
        lines.append(
            f"| {name} | {seconds:.2f} | {total / seconds:.0f} | {base_s / seconds:.2f}× | {fid:.4f} | "
            f"{gap:.3%} |"
        )
    exact_ratio = base_s / results[rows[1][0]][0]
    fast_name = max(rows[2:], key=lambda r: base_s / results[r[0]][0])[0]
    fast_ratio, fast_gap = base_s / results[fast_name][0], abs(results[fast_name][1] - exact_fid) / exact_fid
    fast_met = fast_ratio >= 5 and fast_gap <= 0.005
    lines += [
        "",
        f"Goals: exact ≥ 1× torch-fidelity: {'met' if exact_ratio >= 1 else 'NOT met'} ({exact_ratio:.2f}×); "
        f"fast ≥ 5× with abs(ΔFID)/FID ≤ 0.5 %: {'met' if fast_met else 'NOT met'} "
        f"({fast_name}: {fast_ratio:.2f}×, {fast_gap:.3%}).",
    ]
    print("\n".join(lines))
    if not args.no_write:
        print(f"wrote {write_section('bench_gpu_metrics', chr(10).join(lines))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
