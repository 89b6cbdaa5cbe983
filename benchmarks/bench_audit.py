"""End-to-end audit of a trained generator: stage timings and what the audit found, for RESULTS.md.

Run (after ``auditkit train configs/dcgan-shapes-skewed.yaml`` and ``auditkit judge train``)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_audit.py RUN_ID --home HOME [--n 5000] [--no-write]

The reference data is the run's own training data (rebuilt from its config); the reference distribution is
parity (``uniform``), so the planted colour skew is a bias finding and the amplification is measured
against the training data's own skew.
"""

from __future__ import annotations

import argparse
import inspect
import json
import time

import torch
from _results import machine, write_section

from auditkit.audit import audit, training_data
from auditkit.bias import load_judge
from auditkit.store import RunStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--home", required=True)
    parser.add_argument("--judge", default=None, help="judge run id (default: the newest)")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", default=None, help="an interrupted audit's id")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--machine-note", default="a 2-core CPU shared with other work", help="how busy the machine was"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    store = RunStore(args.home)
    judge_ref = args.judge or store.list_runs(kind="judge", status="completed")[0].id
    judge = load_judge(judge_ref, store)
    data = training_data(args.run, store)
    config = json.loads((store.get_run(args.run).path / "config.json").read_text())["train"]
    trained = {"name": config.get("name") or args.run, "steps": config["steps"]}
    start = time.perf_counter()
    result = audit(
        args.run,
        data,
        judge,
        n=args.n,
        seed=0,
        store=store,
        reference_shares="uniform",
        intersections=[("shape", "colour")],
        progress=False,
        resume=args.resume,
    )
    wall = time.perf_counter() - start
    d = result.data
    colour = d["bias"]["scopes"]["colour"]
    amp = colour["amplification"]
    fidelity = d["bias"]["scopes"].get("shape | fidelity", {}).get("by_value", {})
    latent = d["explain"]["latent"].get("attributes", {})
    timings = d["runtime"]["timings"]
    counts = d["findings"]["counts"]
    lines = [
        "## End-to-end audit of a trained generator (issue 6)",
        "",
        f"Machine: {machine()}, {args.machine_note}. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        f"`bench_audit.py`: run `{trained['name']}` (`configs/dcgan-shapes-skewed.yaml`, class-conditional "
        f"DCGAN, {trained['steps']} steps, trained on {len(data)} Shapes with 60 % red) audited with "
        f"n = {args.n}, seed 0, {args.threads} thread(s), "
        "reference = parity (uniform), "
        f"intersection shape×colour, default policy; judge held-out accuracy "
        f"{', '.join(f'{k} {v:.3f}' for k, v in d['judge']['accuracy'].items())}.",
        "",
        f"Verdict **{result.verdict}** ({counts['fail']} fail, {counts['warn']} warn, "
        f"{counts['pass']} pass).",
        "",
        "| colour | reference | training data | generated raw [95 % CI] | generated corrected [95 % CI] |",
        "|---|---:|---:|---:|---:|",
    ]
    sh = colour["shares"]
    for i, value in enumerate(colour["values"]):
        lines.append(
            f"| {value} | {colour['reference']['shares'][i]:.3f} | {amp['training_shares'][i]:.3f} | "
            f"{sh['raw'][i]:.3f} [{sh['raw_low'][i]:.3f}, {sh['raw_high'][i]:.3f}] | "
            f"{sh['corrected'][i]:.3f} [{sh['corrected_low'][i]:.3f}, {sh['corrected_high'][i]:.3f}] |"
        )
    iv = amp["difference_interval"]
    lines += [
        "",
        f"Colour TVD from parity: generated {amp['generated_tvd']:.3f}, "
        f"training data {amp['training_tvd']:.3f}; "
        f"amplification {amp['difference']:+.3f} [{iv[0]:+.3f}, {iv[1]:+.3f}] (directional "
        f"{amp['directional']:+.3f}). Condition fidelity (images of each class the judge reads as it): "
        + ", ".join(f"{k} {v['judged_as_condition']:.2f}" for k, v in fidelity.items())
        + ".",
    ]
    if "shape" in latent:
        top = latent["shape"]["ranking"][:3]
        lines.append(
            "Latent attribution of the judge's shape reading: "
            + ", ".join(f"{r['input']} {r['share']:.2f}" for r in top)
            + f" (method {latent['shape']['method']})."
        )
    if "fid" in d.get("quality", {}):
        q = d["quality"]
        lines.append(
            f"Quality on judge features: FID {q['fid']:.2f}, precision {q['precision']:.3f}, recall "
            f"{q['recall']:.3f}; memorization near-copy rate {d['memorization']['near_copy_rate']:.4f} "
            f"(training set itself {d['memorization']['baseline_near_copy_rate']:.4f})."
        )
    lines += [
        "",
        "Stage wall times (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
        + f"; total {wall:.1f}.",
    ]
    if "fid" in d.get("quality", {}):
        q = d["quality"]
        boot = inspect.signature(audit).parameters["quality_bootstrap"].default
        stages = {k: v for k, v in timings.items() if k != "total"}
        share = timings.get("quality", 0.0) / max(timings.get("total", sum(stages.values())), 1e-9)
        lines.append(
            f"The quality stage ({share:.0%} of the stage time) compares {q['n_fake']} generated with "
            f"{q['n_real']} reference images on judge features, with {boot} bootstrap resamples of FID, KID "
            f"and PRDC and the same metrics per group ({', '.join(q.get('groups', {})) or 'none'})."
        )
    lines += [
        "",
        "Findings at warn or worse (first 8):",
        "",
    ]
    lines += [f"- [{f['severity']}] {f['message']}" for f in result.at_least("warn")[:8]]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("bench_audit", body)


if __name__ == "__main__":
    main()
