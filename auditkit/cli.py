"""The ``auditkit`` command.

User errors (``AuditKitError``) print one line, ``error: …``, with no traceback, and exit with status 2,
as do usage errors; an interrupt exits with 130.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from auditkit.errors import AuditKitError, ConfigError
from auditkit.report.bundle import REPORT_NAMES as _REPORT_NAMES

SOURCES_HELP = "'shapes', 'digits', or a folder of images"


def _load_source(**options):
    """Build the data set a CLI user named (imports stay lazy so ``--help`` is instant)."""
    from auditkit.data.sources import load_source

    return load_source(**options)


def _source_options(func):
    options = [
        click.argument("source"),
        click.option(
            "--n",
            "n",
            type=click.IntRange(min=1),
            default=2000,
            show_default=True,
            help="Images to generate (shapes only).",
        ),
        click.option(
            "--size",
            type=click.IntRange(min=8),
            default=None,
            help="Image side in pixels (default 32; folders: resize to this size).",
        ),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed (shapes only)."),
        click.option(
            "--skew",
            default=None,
            help="Planted skew (shapes only): a preset ('demo', 'none'), a YAML/JSON file, or inline "
            "YAML such as '{colour: {red: 0.6, green: 0.2, blue: 0.2}}'.",
        ),
        click.option(
            "--noise",
            type=click.FloatRange(0, 1),
            default=0.0,
            show_default=True,
            help="Background noise standard deviation (shapes only).",
        ),
        click.option(
            "--attributes-file",
            type=click.Path(dir_okay=False),
            default=None,
            help="Attribute file for a folder: CelebA list_attr_celeba.txt or CSV filename,attr1,...",
        ),
        click.option(
            "--skip-bad", is_flag=True, help="Skip unreadable or unlabelled files instead of failing."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="auditkit")
def cli() -> None:
    """Train and run image generators, and audit them."""


@cli.group()
def data() -> None:
    """Look at data sets: Shapes, Digits, image folders."""


@data.command("preview")
@_source_options
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="preview.png",
    show_default=True,
    help="Output image (.png, .pdf or .svg).",
)
@click.option(
    "--show",
    "count",
    type=click.IntRange(min=1, max=400),
    default=36,
    show_default=True,
    help="How many images the grid shows.",
)
def data_preview(out: str, count: int, **source) -> None:
    """Write a labelled sample grid of SOURCE (shapes, digits or a folder)."""
    from auditkit.data.preview import save_preview

    ds = _load_source(**source)
    path = save_preview(ds, out, n=count)
    click.echo(f"wrote {path} ({min(count, len(ds))} of {len(ds)} images)")
    _echo_summary(ds)


@data.command("describe")
@_source_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def data_describe(as_json: bool, **source) -> None:
    """Print the size, image shape and attribute shares of SOURCE."""
    ds = _load_source(**source)
    summary = {
        "n": len(ds),
        "image_shape": list(ds.image_shape),
        "shares": {name: ds.shares(name) for name in ds.attributes},
        "skipped": [{"path": s.path, "reason": s.reason} for s in ds.skipped],
        "info": ds.info,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    c, h, w = ds.image_shape
    click.echo(f"{len(ds)} images, {c}×{h}×{w}")
    _echo_summary(ds)


def _echo_summary(ds) -> None:
    """Attribute shares on stdout; skipped files, with reasons, on stderr."""
    for name in ds.attributes:
        click.echo(f"  {name}: " + ", ".join(f"{v} {s:.1%}" for v, s in ds.shares(name).items()))
    if ds.skipped:
        click.echo(f"skipped {len(ds.skipped)} bad file(s):", err=True)
        for skipped in ds.skipped[:20]:
            click.echo(f"  {skipped.path}: {skipped.reason}", err=True)


_HOME_OPTION = click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    envvar="AUDITKIT_HOME",
    help="Run store folder (default: $AUDITKIT_HOME or ./auditkit-runs).",
)


@cli.group()
def runs() -> None:
    """List and inspect runs in the store."""


@runs.command("list")
@_HOME_OPTION
@click.option("--kind", default=None, help="Only runs of this kind (e.g. data, train, demo).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the ids, one per line (for scripts).")
def runs_list(home: str | None, kind: str | None, as_json: bool, quiet: bool) -> None:
    """List runs, newest first."""
    from auditkit.store import RunStore

    store = RunStore(home)
    found = store.list_runs(kind=kind)
    if quiet:
        for r in found:
            click.echo(r.id)
        return
    if as_json:
        rows = [
            {
                "id": r.id,
                "kind": r.kind,
                "name": r.name,
                "status": r.status,
                "created_at": r.created_at,
                "path": str(r.path),
            }
            for r in found
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    if not found:
        click.echo(f"no runs in {store.home}")
        return
    click.echo(f"{'ID':<32} {'KIND':<8} {'STATUS':<11} {'CREATED':<20} NAME")
    for r in found:
        click.echo(f"{r.id:<32} {r.kind:<8} {r.status:<11} {r.created_at[:19]:<20} {r.name or ''}")


@runs.command("show")
@click.argument("run_id")
@_HOME_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs_show(run_id: str, home: str | None, as_json: bool) -> None:
    """Show one run: config, latest metrics and artifacts."""
    from auditkit.store import RunStore

    store = RunStore(home)
    run = store.get_run(run_id)
    latest: dict[str, float | None] = {}
    for m in store.metrics(run.id):
        latest[m.name] = m.value
    artifacts = [{"path": a.relpath, "sha256": a.sha256, "size": a.size} for a in store.artifacts(run.id)]
    payload = {
        "id": run.id,
        "kind": run.kind,
        "name": run.name,
        "status": run.status,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "path": str(run.path),
        "config": run.config,
        "metrics": latest,
        "artifacts": artifacts,
    }
    if as_json:
        click.echo(json.dumps(payload, indent=2, default=str))
        return
    for key in ("id", "kind", "name", "status", "created_at", "path"):
        click.echo(f"{key:<11} {payload[key]}")
    click.echo("metrics:")
    for name, value in latest.items():
        click.echo(f"  {name:<28} {value}")
    click.echo("artifacts:")
    for a in artifacts:
        click.echo(f"  {a['path']:<28} {a['size']:>10} B  sha256 {a['sha256'][:16]}…")


@cli.group()
def audits() -> None:
    """List the audits in the store."""


@audits.command("list")
@_HOME_OPTION
@click.option("--run", "run_id", default=None, help="Only audits of this run.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the ids, one per line (for scripts).")
def audits_list(home: str | None, run_id: str | None, as_json: bool, quiet: bool) -> None:
    """List audits, newest first, with their verdicts."""
    from auditkit.store import RunStore

    store = RunStore(home)
    found = store.list_audits(run_id=run_id)
    if quiet:
        for a in found:
            click.echo(a.id)
        return
    if as_json:
        keys = ("id", "run_id", "name", "status", "verdict", "created_at")
        rows = [{k: getattr(a, k) for k in keys} | {"path": str(a.path)} for a in found]
        click.echo(json.dumps(rows, indent=2))
        return
    if not found:
        click.echo(f"no audits in {store.home}")
        return
    click.echo(f"{'ID':<32} {'STATUS':<11} {'VERDICT':<8} {'CREATED':<20} RUN")
    for a in found:
        verdict = (a.verdict or "-").upper()
        click.echo(f"{a.id:<32} {a.status:<11} {verdict:<8} {a.created_at[:19]:<20} {a.run_id or ''}")


@cli.group()
def store() -> None:
    """Maintain the run store."""


@store.command("check")
@_HOME_OPTION
@click.option("--repair", is_flag=True, help="Remove stray temporary files left by interrupted writes.")
def store_check(home: str | None, repair: bool) -> None:
    """Check the index, hashes and folders of the store; exit 1 if anything is wrong."""
    from auditkit.store import RunStore

    st = RunStore(home)
    problems = st.check(repair=repair)
    if not problems:
        click.echo(f"{st.home}: ok")
        return
    for p in problems:
        click.echo(p)
    sys.exit(1)


@cli.command()
@_HOME_OPTION
@click.option(
    "--quick", is_flag=True, help="Smoke-test sizes (under 3 minutes on 2 CPU cores); numbers mean little."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bars (for logs).")
def demo(home: str | None, quick: bool, seed: int, no_progress: bool) -> None:
    """Run the demo end to end: skewed Shapes, judge, DCGAN, audit, HTML and PDF reports, all in the store.

    About 7 minutes on 2 CPU cores (``--quick``: under 3). Prints the report paths and the command that
    opens the dashboard on the same store.
    """
    from auditkit.demo import run_demo

    result = run_demo(home=home, quick=quick, seed=seed, progress=not no_progress, echo=click.echo)
    total = sum(result.timings.values())
    click.echo(
        f"\ndone in {total / 60:.1f} min ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in result.timings.items())
        + f")\nverdict   : {result.verdict.upper()} (audit {result.audit_id})"
    )
    for fmt, path in result.reports.items():
        click.echo(f"{fmt.upper() + ' report':<10}: {path}")
    click.echo(f"store     : {result.home}")
    click.echo(f"dashboard : auditkit dashboard --home {result.home}")


@cli.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@_HOME_OPTION
@click.option(
    "--resume", "resume", default=None, metavar="RUN", help="Continue RUN from its last checkpoint."
)
@click.option("--family", default=None, help="Generator family (dcgan, vae, ddpm); overrides the config.")
@click.option("--data", "source", default=None, help=f"Training data: {SOURCES_HELP}.")
@click.option("--n", "n", type=click.IntRange(min=1), default=None, help="Shapes images to train on.")
@click.option("--size", type=click.IntRange(min=8), default=None, help="Image side in pixels.")
@click.option("--condition", default=None, help="Attribute to condition on ('none' for unconditional).")
@click.option(
    "--steps", type=click.IntRange(min=1), default=None, help="Training steps (extends on --resume)."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--seed", type=int, default=None)
@click.option("--device", default=None, help="auto, cpu, cuda, cuda:N.")
@click.option("--compile/--no-compile", "compile_", default=None, help="torch.compile the networks.")
@click.option("--name", default=None, help="Run name in the store.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(config: str | None, home: str | None, resume: str | None, quiet: bool, **flags) -> None:
    """Train a generator from CONFIG (a YAML file, see configs/) and/or flags; resume with --resume RUN.

    Ctrl-C (or SIGTERM) finishes the current step, writes a checkpoint and stops; `auditkit train
    --resume RUN` continues it. Multi-GPU: torchrun --nproc_per_node N -m auditkit train CONFIG.
    """
    from auditkit.store import RunStore
    from auditkit.training import train as run_training

    values = _config_values(config, resume, flags)
    steps = flags["steps"]
    result = run_training(
        values, store=RunStore(home), resume=resume, steps=steps, progress=not quiet, echo=click.echo
    )
    if result.summary:
        final = {k: v for k, v in result.summary.get("final", {}).items() if k != "step"}
        click.echo("final   : " + ", ".join(f"{k} {v:.4g}" for k, v in final.items()))
    click.echo(f"sample  : auditkit sample {result.run_id} --n 64 --out samples.png")


def _config_values(config: str | None, resume: str | None, flags: dict) -> dict | None:
    """The config file's values with the flags laid over them (``None`` to resume with the stored one)."""
    import yaml

    overrides = {k: v for k, v in flags.items() if v is not None and k != "steps"}
    if config is None and resume is not None:
        if overrides:
            raise ConfigError(
                f"on --resume only --steps may change; drop {sorted(overrides)} (or give the config)."
            )
        return None
    values: dict = {}
    if config is not None:
        try:
            values = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            from auditkit._config import describe_parse_error

            raise ConfigError(f"cannot read training config {config}: {describe_parse_error(exc)}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"training config {config} must be a mapping of keys to values.")
    data = dict(values.get("data") or {})
    for flag, key in (("source", "source"), ("n", "n"), ("size", "size"), ("condition", "condition")):
        if flag in overrides:
            value = overrides.pop(flag)
            data[key] = None if key == "condition" and str(value).lower() in ("none", "null") else value
    if data:
        values["data"] = data
    if "compile_" in overrides:
        overrides["compile"] = overrides.pop("compile_")
    values.update(overrides)
    if flags.get("steps") is not None:
        values["steps"] = flags["steps"]
    if "family" not in values:
        raise ConfigError("say what to train: give a config file (see configs/) or --family dcgan|vae|ddpm.")
    return values


@cli.command()
@click.argument("run")
@_HOME_OPTION
@click.option("--n", "n", type=click.IntRange(min=1, max=10000), default=64, show_default=True)
@click.option(
    "--labels",
    default=None,
    help="Classes to draw, comma-separated names or indices (one for all, or one per row); default: "
    "rows of each class for a conditional generator.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--columns", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default="samples.png", show_default=True)
@click.option("--device", default=None, help="Where to run the generator (default CPU).")
def sample(
    run: str,
    home: str | None,
    n: int,
    labels: str | None,
    seed: int,
    columns: int,
    out: str,
    device: str | None,
) -> None:
    """Write a grid of N images from RUN's trained generator (a run id or a generator.safetensors path)."""
    import torch

    from auditkit._atomic import atomic_write_bytes
    from auditkit.generators import load_generator
    from auditkit.store import RunStore
    from auditkit.training.trainer import grid_png

    target = Path(run)
    if target.exists():
        path = target
    else:
        store = RunStore(home)
        path = store.folder(store.get_run(run).id)
    gen = load_generator(path, device=device)
    chosen = None
    if labels is not None:
        items = [v.strip() for v in labels.split(",") if v.strip()]
        names = [int(v) if v.isdigit() else v for v in items]
        if len(names) == 1:
            chosen = names[0]
        elif n % len(names) == 0:
            chosen = [name for name in names for _ in range(n // len(names))]
        else:
            raise ConfigError(
                f"{len(names)} labels do not divide --n {n}; give one label, or a divisor of n."
            )
    elif gen.num_classes:
        chosen = torch.arange(gen.num_classes).repeat_interleave(-(-n // gen.num_classes))[:n]
        columns = -(-n // gen.num_classes) if n // gen.num_classes <= 16 else columns
    images = gen.sample(n, labels=chosen, seed=seed, progress=n > 512)
    suffix = Path(out).suffix.lower()
    if suffix != ".png":
        raise ConfigError(f"--out must be a .png file; got {out!r}.")
    atomic_write_bytes(out, grid_png(images, columns))
    click.echo(f"wrote {out} ({n} images from {gen.name}, seed {seed})")


@cli.group()
def judge() -> None:
    """The judge: an attribute classifier whose held-out error the bias audit carries."""


@judge.command("train")
@click.option(
    "--data", "source", default="shapes", show_default=True, help=f"Reference data: {SOURCES_HELP}."
)
@click.option(
    "--n", "n", type=click.IntRange(min=10), default=12000, show_default=True, help="Shapes images."
)
@click.option("--size", type=click.IntRange(min=8), default=None, help="Image side in pixels (default 32).")
@click.option("--data-seed", type=int, default=0, show_default=True, help="Seed of the Shapes data.")
@click.option("--skew", default=None, help="Planted skew of the Shapes data (preset, file or inline YAML).")
@click.option("--noise", type=click.FloatRange(0, 1), default=0.0, help="Shapes background noise.")
@click.option("--attributes-file", type=click.Path(dir_okay=False), default=None, help="Folder labels.")
@click.option("--attributes", default=None, help="Comma-separated attributes to learn (default: all).")
@click.option(
    "--holdout", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2, show_default=True
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default: the library's)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when present).")
@click.option("--name", default=None, help="Run name in the store.")
@_HOME_OPTION
@click.option("--quiet", is_flag=True, help="No progress bar.")
def judge_train(
    source,
    n,
    size,
    data_seed,
    skew,
    noise,
    attributes_file,
    attributes,
    holdout,
    epochs,
    seed,
    device,
    name,
    home,
    quiet,
) -> None:
    """Train a judge on labelled reference data; print its held-out accuracy per attribute."""
    from auditkit.bias import train_judge
    from auditkit.store import RunStore

    ds = _load_source(
        source=source,
        n=n,
        size=size,
        seed=data_seed,
        skew=skew,
        noise=noise,
        attributes_file=attributes_file,
        skip_bad=False,
    )
    options = {"epochs": epochs} if epochs is not None else {}
    chosen = [a.strip() for a in attributes.split(",") if a.strip()] if attributes else None
    trained = train_judge(
        ds,
        attributes=chosen,
        holdout=holdout,
        seed=seed,
        device=device,
        progress=not quiet,
        store=RunStore(home),
        name=name,
        **options,
    )
    report = trained.report
    click.echo(f"judge run {trained.run_id}: held-out accuracy on {report.n_holdout} images")
    for attribute in trained.attributes:
        click.echo(f"  {attribute:<12} {report.accuracy[attribute]:.2%}")


@cli.command()
@click.argument("metric", type=click.Choice(["fid", "is", "kid", "prdc", "memorization", "all"]))
@click.argument("real")
@click.argument("fake")
@click.option(
    "--features",
    type=click.Choice(["judge", "inception"]),
    default="judge",
    show_default=True,
    help="Feature network: the judge (offline, CPU-friendly) or the standard FID Inception.",
)
@click.option(
    "--judge", "judge_path", default=None, help="Judge run id or folder (default: the newest judge run)."
)
@click.option(
    "--inception-weights", type=click.Path(dir_okay=False), default=None, help="Local Inception file."
)
@click.option("--mode", type=click.Choice(["exact", "fast"]), default="exact", show_default=True)
@click.option(
    "--n", "n", type=click.IntRange(min=2), default=None, help="Images per side (generators: 5000)."
)
@click.option("--size", type=click.IntRange(min=8), default=None, help="Side of shapes/digits images (32).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--by", "by", multiple=True, help="Per-group metrics by this attribute (repeatable; judge:<attr>)."
)
@click.option(
    "--bootstrap", type=click.IntRange(min=0), default=0, help="Resamples for confidence intervals."
)
@click.option("--no-cache", is_flag=True, help="Do not read or write the feature cache.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON with the metric names as keys.")
@_HOME_OPTION
def metrics(
    metric,
    real,
    fake,
    features,
    judge_path,
    inception_weights,
    mode,
    n,
    size,
    seed,
    by,
    bootstrap,
    no_cache,
    as_json,
    home,
) -> None:
    """Quality of FAKE against REAL: FID, IS, KID, precision/recall/density/coverage.

    REAL and FAKE are 'shapes', 'digits', image folders, trained generators' folders or run ids.
    """
    from auditkit.metrics.compute import compute_metrics
    from auditkit.store import RunStore

    store = RunStore(home)
    judge_ref = judge_path
    if judge_ref is None and (features == "judge" or any(b.startswith("judge:") for b in by)):
        judge_ref = _newest_judge(store, "or use --features inception with --inception-weights")
    every = ["fid", "kid", "prdc", "memorization"] + (["is"] if features == "inception" else [])
    chosen = every if metric == "all" else [metric]
    result = compute_metrics(
        real,
        fake,
        metrics=chosen,
        features=features,
        judge=judge_ref,
        inception_weights=inception_weights,
        mode=mode,
        n=n,
        size=size,
        seed=seed,
        by=by,
        bootstrap=bootstrap,
        cache=not no_cache,
        store=store,
    )
    from auditkit.metrics.distributed import current_shard

    if not current_shard().is_main:  # under torchrun every rank holds the result; one prints it
        return
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
        return
    click.echo(f"{result['n_real']} real vs {result['n_fake']} fake images, {features} features ({mode})")
    ci = result.get("ci", {})
    for key in ("fid", "kid", "is", "precision", "recall", "density", "coverage"):
        if key in result:
            extra = f" ± {result[key + '_std']:.4g}" if key + "_std" in result else ""
            if key in ci:
                extra += f"  [{ci[key]['low']:.4g}, {ci[key]['high']:.4g}] {ci[key]['confidence']:.0%} CI"
            click.echo(f"  {key:<10} {result[key]:.4g}{extra}")
    if "memorization" in result:
        m = result["memorization"]
        click.echo(
            f"  memorization: near-copy rate {m['near_copy_rate']:.2%} (training set itself "
            f"{m['baseline_near_copy_rate']:.2%}), NN distance ratio {m['distance_ratio']:.3g}"
        )
    for attribute, values in result.get("groups", {}).items():
        click.echo(f"by {attribute}:")
        for value, entry in values.items():
            numbers = ", ".join(
                f"{k} {v:.4g}" for k, v in entry.items() if k not in ("n_real", "n_fake", "skipped")
            )
            click.echo(
                f"  {value:<10} n={entry['n_real']}/{entry['n_fake']}  {numbers or entry.get('skipped', '')}"
            )


def _newest_judge(store, alternative: str) -> str:
    """The folder of the newest completed judge run, or a ConfigError saying how to get one."""
    judges = store.list_runs(kind="judge", status="completed")
    if not judges:
        raise ConfigError(
            f"no trained judge in the store: run `auditkit judge train` first, pass --judge, {alternative}."
        )
    return str(judges[0].path)


@cli.command()
@click.argument("source")
@click.option(
    "--judge", "judge_path", default=None, help="Judge run id or folder (default: the newest judge run)."
)
@click.option("--attribute", required=True, help="The judge attribute whose score is explained.")
@click.option(
    "--method",
    "method_names",
    multiple=True,
    default=("integrated_gradients", "saliency", "grad_cam"),
    show_default=True,
    help="Attribution method (repeatable); see `auditkit explain --list`.",
)
@click.option("--target", default="predicted", show_default=True, help="Value name, index, or 'predicted'.")
@click.option("--n", "n", type=click.IntRange(min=1, max=64), default=8, show_default=True, help="Images.")
@click.option("--size", type=click.IntRange(min=8), default=None, help="Side of shapes/digits images (32).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", default="explanations.png", show_default=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the attribution records as JSON.")
@_HOME_OPTION
def explain(source, judge_path, attribute, method_names, target, n, size, seed, out, as_json, home) -> None:
    """Explain the judge's ATTRIBUTE on images of SOURCE with each method; write a side-by-side PNG.

    SOURCE is 'shapes', 'digits', an image folder, a trained generator's folder or a run id.
    """
    from auditkit._atomic import atomic_write_bytes
    from auditkit.bias import load_judge
    from auditkit.explain import explain as run_explain
    from auditkit.explain import method_panel
    from auditkit.metrics.compute import resolve_source
    from auditkit.store import RunStore

    store = RunStore(home)
    judge = load_judge(judge_path or _newest_judge(store, "use --judge"), store)
    resolved = resolve_source(source, n=n, seed=seed, size=size, store=store)
    images = resolved.images[:n] if hasattr(resolved, "images") else resolved.sample(n, seed=seed)
    chosen: str | int = int(target) if target.isdigit() else target
    results = {
        name: run_explain(judge, images, chosen, name, attribute=attribute, seed=seed)
        for name in method_names
    }
    vocab = judge.attributes[attribute]
    first = next(iter(results.values()))
    labels = [f"{i}: {vocab[int(t)]}" for i, t in enumerate(first.target)]
    atomic_write_bytes(Path(out), method_panel(images, results, row_labels=labels))
    if as_json:
        click.echo(json.dumps({name: a.to_dict() for name, a in results.items()}, indent=2))
    else:
        for name, a in results.items():
            delta = f", max |delta| {a.to_dict()['max_abs_delta']:.3g}" if a.delta is not None else ""
            flag = f", NON-FINITE on images {a.nonfinite}" if a.nonfinite else ""
            click.echo(f"{name:<22} {a.seconds:6.2f} s{delta}{flag}")
    click.echo(f"wrote {out}")


@cli.command("audit")
@click.argument("generator")
@click.option(
    "--reference",
    default="training",
    show_default=True,
    help=f"Labelled reference data: 'training' (the run's own training data, rebuilt) or {SOURCES_HELP}.",
)
@click.option(
    "--judge", "judge_path", default=None, help="Judge run id or folder (default: the newest judge run)."
)
@click.option(
    "--policy", default=None, type=click.Path(dir_okay=False), help="Policy YAML (default: shipped)."
)
@click.option(
    "--n", "n", type=click.IntRange(min=2), default=5000, show_default=True, help="Generated images."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--attribute", "attributes", multiple=True, help="Audit only this attribute (repeatable).")
@click.option(
    "--intersection", "intersections", multiple=True, help="Audit attributes jointly: 'shape,colour'."
)
@click.option(
    "--reference-shares",
    default="data",
    show_default=True,
    help="'data' (the reference data's shares), 'uniform', or a YAML file {attribute: {value: share}}.",
)
@click.option(
    "--reference-source", default=None, help="Citation of the reference shares (required for a file)."
)
@click.option("--reference-n", type=click.IntRange(min=2), default=None, help="Reference images used.")
@click.option(
    "--stage", "stages", multiple=True, help="Run only these stages (bias, quality, memorization, explain)."
)
@click.option(
    "--method", "methods", multiple=True, help="Attribution methods judged (default: ig, saliency, grad_cam)."
)
@click.option(
    "--bootstrap", type=click.IntRange(min=10), default=1000, show_default=True, help="Bias replicates."
)
@click.option(
    "--quality-bootstrap",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Resamples for the quality intervals (0: none; on a CPU with a large reference, the slowest part).",
)
@click.option(
    "--fail-on", type=click.Choice(["warn", "fail"]), default=None, help="Exit 1 on findings this severe."
)
@click.option("--resume", default=None, help="Resume an interrupted audit by its id.")
@click.option("--name", default=None, help="Audit name in the store.")
@click.option("--json", "as_json", is_flag=True, help="Print the AuditResult JSON.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_HOME_OPTION
def audit_command(
    generator,
    reference,
    judge_path,
    policy,
    n,
    seed,
    attributes,
    intersections,
    reference_shares,
    reference_source,
    reference_n,
    stages,
    methods,
    bootstrap,
    quality_bootstrap,
    fail_on,
    resume,
    name,
    as_json,
    quiet,
    home,
) -> None:
    """Audit GENERATOR (a trained run id or folder): bias, quality, memorization, explanations, findings."""
    import yaml

    from auditkit.audit import DEFAULT_METHODS, STAGES, audit
    from auditkit.policy import exceeds
    from auditkit.store import RunStore

    store = RunStore(home)
    if reference == "training":
        from auditkit.audit import training_data

        reference = training_data(generator, store)
    shares = reference_shares
    if reference_shares not in ("data", "uniform"):
        path = Path(reference_shares)
        if not path.is_file():
            raise ConfigError(
                f"--reference-shares {reference_shares!r} is not 'data', 'uniform' or a YAML file."
            )
        try:
            shares = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            from auditkit._config import describe_parse_error

            raise ConfigError(f"cannot read reference shares {path}: {describe_parse_error(exc)}") from None
        if not isinstance(shares, dict):
            raise ConfigError(f"{path} must map each attribute to {{value: share}}.")
    result = audit(
        generator,
        reference,
        judge_path or _newest_judge(store, "use --judge"),
        policy,
        n=n,
        seed=seed,
        attributes=list(attributes) or None,
        intersections=[tuple(p.strip() for p in i.split(",")) for i in intersections],
        reference_shares=shares,
        reference_source=reference_source,
        reference_n=reference_n,
        stages=list(stages) or STAGES,
        explain_methods=list(methods) or DEFAULT_METHODS,
        n_boot=bootstrap,
        quality_bootstrap=quality_bootstrap,
        store=store,
        name=name,
        resume=resume,
        progress=not quiet,
    )
    if as_json:
        click.echo(result.to_json().decode())
    else:
        counts = result.data["findings"]["counts"]
        click.echo(
            f"audit {result.audit_id}: verdict {result.verdict.upper()} "
            f"({counts['fail']} fail, {counts['warn']} warn, {counts['pass']} pass)"
        )
        for finding in result.at_least("warn")[:15]:
            click.echo(f"  [{finding['severity']}] {finding['message']}")
        more = len(result.at_least("warn")) - 15
        if more > 0:
            click.echo(f"  … and {more} more in {result.path / 'audit.json'}")
        click.echo(f"result: {result.path / 'audit.json'}")
    if fail_on and exceeds(result.verdict, fail_on):
        return 1


def _audit_folder(store, ref: str) -> Path:
    """An audit's folder from its id in the store or a path to the folder (or its audit.json)."""
    path = Path(ref)
    if path.exists():
        return path.parent if path.is_file() else path
    if ref.startswith("audit-"):
        return store.get_audit(ref).path
    raise ConfigError(f"{ref!r} is neither an audit id nor an audit folder; `auditkit runs list` shows runs.")


@cli.command()
@click.argument("audit_ref", metavar="AUDIT")
@click.option("--reviewer", required=True, help="Who signs.")
@click.option("--role", required=True, help="Their role (e.g. 'model risk officer').")
@click.option("--decision", required=True, type=click.Choice(["approve", "reject", "conditional"]))
@click.option("--comment", default="", help="Conditions, reasons, references.")
@_HOME_OPTION
def signoff(audit_ref, reviewer, role, decision, comment, home) -> None:
    """Append a dated sign-off record to AUDIT (it renders in the report; earlier records are kept)."""
    from auditkit.report.signoff import add_signoff
    from auditkit.store import RunStore

    folder = _audit_folder(RunStore(home), audit_ref)
    record = add_signoff(folder, reviewer=reviewer, role=role, decision=decision, comment=comment)
    click.echo(f"signed off {folder.name}: {record['decision']} by {record['reviewer']} ({record['date']})")


@cli.command()
@click.argument("path", type=click.Path(exists=True))
@click.option("--public-key", type=click.Path(dir_okay=False, exists=True), help="Ed25519 public key (PEM).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def verify(path, public_key, as_json) -> int:
    """Check a report folder (or its manifest.json) against its manifest; exit 1 and name what changed."""
    from auditkit.report.integrity import verify as run_verify

    result = run_verify(path, public_key=public_key)
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.to_text())
    return 0 if result.ok else 1


@cli.command()
@click.argument("audit_a", metavar="AUDIT_A")
@click.argument("audit_b", metavar="AUDIT_B")
@click.option("--fail-on-regression", is_flag=True, help="Exit 1 when AUDIT_B regresses against AUDIT_A.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_HOME_OPTION
def diff(audit_a, audit_b, fail_on_regression, as_json, home) -> int:
    """What changed from AUDIT_A to AUDIT_B: metrics (with interval overlap) and findings."""
    from auditkit.report.diff import diff_audits
    from auditkit.store import RunStore

    store = RunStore(home)
    result = diff_audits(_audit_folder(store, audit_a), _audit_folder(store, audit_b))
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.to_text())
    return 1 if fail_on_regression and result.regressions else 0


@cli.command()
@click.argument("audit_ref", metavar="AUDIT")
@click.option(
    "--format",
    "formats",
    multiple=True,
    type=click.Choice(list(_REPORT_NAMES)),
    default=("html", "pdf"),
    show_default=True,
    help="Report format (repeatable).",
)
@click.option(
    "--template",
    "template_dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="A copy of the reports/ folder with your templates.",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder for the reports (default: the audit's folder).",
)
@click.option(
    "--sign-key",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Ed25519 private key (PEM) to sign the manifest.",
)
@_HOME_OPTION
def report(audit_ref, formats, template_dir, out, sign_key, home) -> None:
    """Render AUDIT as reports and write a manifest of SHA-256 hashes (``auditkit verify`` checks it).

    In the audit's folder the manifest covers the reports, audit.json, every artifact and the sign-offs;
    elsewhere it covers the reports written there (HTML and PDF embed everything they show).
    """
    from auditkit.report.bundle import write_reports
    from auditkit.result import AuditResult
    from auditkit.store import RunStore

    folder = _audit_folder(RunStore(home), audit_ref)
    bundle = write_reports(
        AuditResult.load(folder), formats, out, template_dir=template_dir, sign_key=sign_key
    )
    for path in bundle.reports.values():
        click.echo(f"wrote {path}")
    signed = ", signed" if sign_key else ""
    click.echo(
        f"wrote {bundle.manifest} ({len(bundle.covered)} files{signed}); "
        f"check with `auditkit verify {bundle.manifest.parent}`"
    )


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@cli.command()
@_HOME_OPTION
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; anything but loopback needs a password (--password-env) or --token.",
)
@click.option(
    "--password-env",
    metavar="VAR",
    default=None,
    help="Ask reviewers for the password held in environment variable VAR "
    "(default: AUDITKIT_DASHBOARD_PASSWORD when it is set).",
)
@click.option(
    "--token", is_flag=True, help="Ask for a random token, printed here once, instead of a password."
)
def dashboard(home, port, host, password_env, token) -> None:
    """Open the reviewers' dashboard (Streamlit) on the run store, bound to 127.0.0.1.

    With a password or token, every browser session must enter it before any page shows; the server
    receives only a salted hash of it. Without one, only loopback addresses are allowed.
    """
    import os
    import secrets
    import subprocess

    from auditkit.dashboard import AUTH_ENV, MIN_PASSWORD_LENGTH, PASSWORD_ENV, hash_secret
    from auditkit.resources import resource_dir
    from auditkit.store import RunStore

    if token and password_env:
        raise ConfigError("give either --token or --password-env, not both.")
    secret = None
    if token:
        secret = secrets.token_urlsafe(24)
    elif password_env:
        secret = os.environ.get(password_env) or None
        if secret is None:
            raise ConfigError(
                f"--password-env {password_env}: that environment variable is not set or is empty; "
                f"export {password_env}=... (a password of at least {MIN_PASSWORD_LENGTH} characters) first."
            )
    else:
        secret = os.environ.get(PASSWORD_ENV) or None
    if secret is not None and not token and len(secret) < MIN_PASSWORD_LENGTH:
        raise ConfigError(
            f"the dashboard password in {password_env or PASSWORD_ENV} has {len(secret)} characters; "
            f"use at least {MIN_PASSWORD_LENGTH} (or --token for a random one)."
        )
    if host not in _LOOPBACK and secret is None:
        raise ConfigError(
            f"--host {host} would expose the dashboard beyond this machine without a password; set one "
            f"(export {PASSWORD_ENV}=..., or --password-env VAR) or use --token, or bind to 127.0.0.1 and "
            "reach it through an SSH tunnel (ssh -L 8501:127.0.0.1:8501 host)."
        )
    store = RunStore(home)
    app = resource_dir("dashboards") / "app.py"
    if not app.is_file():
        raise ConfigError(f"the dashboard app {app} is missing; reinstall auditkit.")
    # the server gets the store and, when gated, only a salted hash: never the password itself
    hidden = {PASSWORD_ENV, AUTH_ENV, *([password_env] if password_env else [])}
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    env["AUDITKIT_HOME"] = str(store.home)
    if secret is not None:
        env[AUTH_ENV] = hash_secret(secret)
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    click.echo(f"dashboard on http://{host}:{port} for {store.home} (Ctrl-C stops it)")
    if token:
        click.echo(f"token (reviewers enter it on the first page): {secret}")
    elif secret is not None:
        click.echo("reviewers must enter the dashboard password on the first page")
    return subprocess.call(command, env=env)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and exit status 2."""
    try:
        rv = cli.main(
            args=list(argv) if argv is not None else None, prog_name="auditkit", standalone_mode=False
        )
    except AuditKitError as exc:
        # One line whatever the message: a few list several problems on lines of their own.
        lines = (line.strip() for line in str(exc).splitlines())
        click.echo("error: " + " ".join(line for line in lines if line), err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
