"""The demo: what ``make demo`` / ``auditkit demo`` runs, end to end, on a CPU.

1. builds Shapes with a planted colour skew (60 % red, from ``configs/dcgan-shapes-skewed.yaml``) and
   records its preview and ground truth as a ``demo`` run;
2. trains the judge on unskewed real Shapes (its held-out confusion matrix corrects the bias estimates);
3. trains the class-conditional DCGAN of that config on the skewed data;
4. audits the generator against parity (quality, bias, memorization, explanations);
5. writes the HTML and PDF reports with their manifest, and prints where everything is.

Every step is a run or an audit in the store, so the dashboard shows them. ``quick=True`` (``--quick``)
runs the same pipeline at a smoke-test scale: the numbers are then too small to mean much.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from auditkit.data.preview import save_preview
from auditkit.data.shapes import Shapes
from auditkit.errors import ConfigError
from auditkit.resources import resource_dir
from auditkit.store import RunStore

DEMO_CONFIG = "dcgan-shapes-skewed.yaml"
JUDGE_SEED = 100  # the judge's real Shapes are drawn independently of the generator's training data


@dataclass(frozen=True)
class DemoProfile:
    """How big each step of the demo is."""

    gan_steps: int
    judge_n: int
    judge_epochs: int
    audit_n: int
    reference_n: int
    quality_bootstrap: int
    explain_per_value: int
    bias_bootstrap: int = 1000


FULL = DemoProfile(
    gan_steps=2400,
    judge_n=8000,
    judge_epochs=5,
    audit_n=2000,
    reference_n=4000,
    quality_bootstrap=50,
    explain_per_value=2,
)
QUICK = DemoProfile(
    gan_steps=400,
    judge_n=4000,
    judge_epochs=4,
    audit_n=600,
    reference_n=1500,
    quality_bootstrap=10,
    explain_per_value=1,
    bias_bootstrap=300,
)


@dataclass(frozen=True)
class DemoResult:
    """Where the demo put things, what the audit concluded, and how long each step took (s)."""

    run_id: str
    home: Path
    preview: Path
    shares: dict[str, dict[str, float]]
    judge_run: str
    train_run: str
    audit_id: str
    verdict: str
    reports: dict[str, Path]
    timings: dict[str, float] = field(default_factory=dict)


def demo_config(profile: DemoProfile = FULL, seed: int = 0) -> dict[str, Any]:
    """The training config the demo uses: the shipped skewed DCGAN config at the profile's length."""
    path = resource_dir("configs") / DEMO_CONFIG
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    steps = profile.gan_steps
    config.update(
        name="demo-dcgan",
        steps=steps,
        seed=seed,
        sample_every=max(steps // 4, 1),
        checkpoint_every=max(steps // 4, 1),
        log_every=max(min(25, steps // 10), 1),
    )
    config["data"] = dict(config["data"], seed=seed)
    return config


def run_demo(
    home: str | Path | None = None,
    *,
    quick: bool = False,
    seed: int = 0,
    profile: DemoProfile | None = None,
    progress: bool = True,
    echo: Callable[[str], object] = print,
) -> DemoResult:
    """Run the whole demo into the store at ``home`` (default ``$AUDITKIT_HOME`` or ``./auditkit-runs``).

    Parameters
    ----------
    quick
        Use the smoke-test profile ``QUICK`` instead of ``FULL``.
    seed
        Seeds the data, the generator's training and the audit.
    profile
        Override the sizes (tests use a tiny one).
    progress
        Show progress bars for the long steps.

    The umbrella ``demo`` run is marked ``completed`` only when every step finished; an error marks it
    ``failed`` and an interrupt ``interrupted``, so a half-finished demo never looks finished.
    """
    from auditkit.audit import audit, training_data
    from auditkit.bias.judge import train_judge
    from auditkit.report.bundle import write_reports
    from auditkit.training import train

    chosen = profile or (QUICK if quick else FULL)
    if not isinstance(chosen, DemoProfile):
        raise ConfigError(f"profile must be an auditkit.demo.DemoProfile; got {type(chosen).__name__}.")
    config = demo_config(chosen, seed)
    store = RunStore(home)
    umbrella = store.create_run(
        "demo", name="shapes-demo", config={"profile": chosen.__dict__, "train": config, "seed": seed}
    )
    echo(f"demo run {umbrella.id} in {store.home} ({'quick' if quick else 'full'} profile)")
    timings: dict[str, float] = {}

    def step(name: str, message: str) -> Callable[[], None]:
        started = time.perf_counter()
        echo(f"[{len(timings) + 1}/5] {message}")

        def done() -> None:
            timings[name] = round(time.perf_counter() - started, 2)

        return done

    try:
        done = step("data", "building the skewed Shapes data set")
        data_cfg = config["data"]
        data = Shapes(
            data_cfg["n"], size=data_cfg["size"], seed=data_cfg["seed"], skew=data_cfg["skew"], progress=False
        )
        preview = save_preview(data, store.artifact_path(umbrella.id, "shapes-preview.png"), n=36)
        store.add_artifact(umbrella.id, "shapes-preview.png", media_type="image/png")
        shares = {name: data.shares(name) for name in data.attributes}
        truth = {"planted_skew": data_cfg["skew"], "observed_shares": shares, "n": len(data)}
        store.write_artifact(
            umbrella.id,
            "ground-truth.json",
            json.dumps(truth, indent=2).encode(),
            media_type="application/json",
        )
        store.log_metrics(
            umbrella.id, {f"share/{a}/{v}": s for a, values in shares.items() for v, s in values.items()}
        )
        for name, values in shares.items():
            echo(f"      {name:<9} " + ", ".join(f"{v} {s:.1%}" for v, s in values.items()))
        done()

        done = step("judge", f"training the judge on {chosen.judge_n} unskewed real Shapes")
        real = Shapes(chosen.judge_n, size=data_cfg["size"], seed=JUDGE_SEED + seed, progress=False)
        judge = train_judge(
            real, epochs=chosen.judge_epochs, seed=seed, progress=progress, store=store, name="demo-judge"
        )
        accuracy = ", ".join(f"{a} {v:.1%}" for a, v in judge.report.accuracy.items())
        echo(f"      held-out accuracy: {accuracy}")
        done()

        done = step("train", f"training the class-conditional DCGAN ({chosen.gan_steps} steps)")
        trained = train(config, store=store, progress=progress)
        done()

        done = step("audit", f"auditing {chosen.audit_n} generated images against parity")
        result = audit(
            trained.run_id,
            training_data(trained.run_id, store),
            judge,
            n=chosen.audit_n,
            seed=seed,
            store=store,
            name="demo-audit",
            reference_shares="uniform",
            reference_source="parity: every shape, colour, size and position equally likely",
            intersections=[("shape", "colour")],
            n_boot=chosen.bias_bootstrap,
            quality_bootstrap=chosen.quality_bootstrap,
            reference_n=chosen.reference_n,
            explain_per_value=chosen.explain_per_value,
            progress=progress,
        )
        counts = result.data["findings"]["counts"]
        echo(
            f"      verdict {result.verdict.upper()}: {counts['fail']} fail, {counts['warn']} warn, "
            f"{counts['pass']} pass"
        )
        done()

        done = step("reports", "writing the HTML and PDF reports")
        bundle = write_reports(result, ("html", "pdf"))
        done()

        links = {
            "judge_run": judge.run_id,
            "train_run": trained.run_id,
            "audit_id": result.audit_id,
            "verdict": result.verdict,
            "reports": {fmt: str(p) for fmt, p in bundle.reports.items()},
            "timings_s": timings,
        }
        store.write_artifact(
            umbrella.id, "demo.json", json.dumps(links, indent=2).encode(), media_type="application/json"
        )
        store.log_metrics(umbrella.id, {f"time/{k}": v for k, v in timings.items()})
    except KeyboardInterrupt:
        store.set_run_status(umbrella.id, "interrupted")
        raise
    except BaseException:
        store.set_run_status(umbrella.id, "failed")
        raise
    store.set_run_status(umbrella.id, "completed")
    return DemoResult(
        run_id=umbrella.id,
        home=store.home,
        preview=preview,
        shares=shares,
        judge_run=str(judge.run_id),
        train_run=trained.run_id,
        audit_id=str(result.audit_id),
        verdict=result.verdict,
        reports=dict(bundle.reports),
        timings=timings,
    )


def with_sizes(profile: DemoProfile, **sizes: int) -> DemoProfile:
    """A copy of ``profile`` with some sizes changed (``with_sizes(QUICK, gan_steps=10)``)."""
    unknown = set(sizes) - set(profile.__dict__)
    if unknown:
        raise ConfigError(f"unknown demo sizes {sorted(unknown)}; known: {sorted(profile.__dict__)}.")
    return replace(profile, **sizes)
