"""The demo: what ``make demo`` / ``auditkit demo`` runs.

Today it builds a Shapes data set with the documented ``demo`` skew, writes its labelled preview and
records the whole thing as a run in the store (config, ground-truth shares as metrics, artifacts with
hashes). Training, auditing and reports join the pipeline as their issues land.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from auditkit.data.preview import save_preview
from auditkit.data.shapes import SKEW_PRESETS, Shapes
from auditkit.store import RunStore


@dataclass(frozen=True)
class DemoResult:
    """Where the demo put things."""

    run_id: str
    home: Path
    preview: Path
    shares: dict[str, dict[str, float]]


def run_demo(
    home: str | Path | None = None,
    out: str | Path = "demo-out",
    *,
    n: int = 5000,
    seed: int = 0,
    echo: Callable[[str], object] = print,
) -> DemoResult:
    """Build the skewed Shapes set, preview it, and record it as a ``demo`` run in the store.

    The run is marked ``completed`` only when everything was written; an error marks it ``failed`` and
    an interrupt ``interrupted``, so a half-finished demo never looks finished.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = RunStore(home)
    config = {"data": {"source": "shapes", "n": n, "size": 32, "seed": seed, "noise": 0.05, "skew": "demo"}}
    run = store.create_run("demo", name="shapes-demo", config=config)
    echo(f"run {run.id} in {store.home}")
    try:
        started = time.perf_counter()
        ds = Shapes(n, size=32, seed=seed, skew="demo", noise=0.05, progress=n > 20_000)
        elapsed = time.perf_counter() - started
        echo(f"built {len(ds)} Shapes images in {elapsed:.2f} s with the planted 'demo' skew")

        preview = save_preview(ds, out / "shapes-preview.png", n=36)
        store.write_artifact(run.id, "shapes-preview.png", preview.read_bytes(), media_type="image/png")
        shares = {name: ds.shares(name) for name in ds.attributes}
        ground_truth = {"planted_skew": SKEW_PRESETS["demo"], "observed_shares": shares, "n": len(ds)}
        store.write_artifact(
            run.id,
            "ground-truth.json",
            json.dumps(ground_truth, indent=2).encode(),
            media_type="application/json",
        )
        store.log_metrics(
            run.id,
            {f"share/{a}/{v}": s for a, values in shares.items() for v, s in values.items()}
            | {"data/images_per_second": len(ds) / max(elapsed, 1e-9)},
        )
    except KeyboardInterrupt:
        store.set_run_status(run.id, "interrupted")
        raise
    except BaseException:
        store.set_run_status(run.id, "failed")
        raise
    store.set_run_status(run.id, "completed")
    for name, values in shares.items():
        echo(f"  {name:<9} " + ", ".join(f"{v} {s:.1%}" for v, s in values.items()))
    return DemoResult(run_id=run.id, home=store.home, preview=preview, shares=shares)
