"""The training loop every family shares: data order, devices, precision, EMA, logs, grids, checkpoints.

Exact resume. Everything random in a step is a pure function of ``(seed, step)``: the data order comes from
a per-epoch permutation seeded by ``(seed, epoch)``, and the step's noise from a generator seeded by
``(seed, step)``. A checkpoint therefore needs only weights, EMA, optimizer state (plus the global RNG
state, saved for modules that use it), and on CPU a resumed run reproduces the uninterrupted one bit for bit.

Logs. Each logged step appends one JSON line to ``metrics.jsonl`` in the run folder at once; the store's
index receives the same values when the next checkpoint is written, so after a crash the index never holds
values from steps that a resume will redo (the JSONL is cut back to the checkpoint on resume).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from auditkit._atomic import atomic_write_bytes, json_bytes
from auditkit.data.imageset import ImageSet
from auditkit.data.sources import load_source
from auditkit.errors import ConfigError, TrainingError
from auditkit.generators.base import BaseGenerator
from auditkit.generators.registry import GENERATOR_FILE, generator_spec, load_generator, save_generator
from auditkit.store import RunInfo, RunStore
from auditkit.training import distributed
from auditkit.training.checkpoint import load_checkpoint, save_checkpoint
from auditkit.training.config import TrainConfig, load_config
from auditkit.training.recipes import Recipe, StepNoise, make_recipe

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "training.json"
RUN_KIND = "train"


@dataclass
class TrainResult:
    """What a finished (or resumed-to-the-end) training run produced."""

    run_id: str
    run_dir: Path
    steps: int
    summary: dict[str, Any] = field(default_factory=dict)

    def generator(self, device: str | torch.device | None = None) -> BaseGenerator:
        """The trained generator (EMA weights)."""
        return load_generator(self.run_dir / GENERATOR_FILE, device=device)


def ema_update_fn(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """EMA update for ``AveragedModel`` with warm-up: the decay is ``min(decay, (1 + n) / (10 + n))``.

    Without warm-up a short run's EMA would still be mostly the random initial weights.
    """

    @torch.no_grad()
    def update(ema: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        n = float(n_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        for e, c in zip(ema, current, strict=True):
            e.lerp_(c, 1.0 - d)

    return update


def derive_seed(seed: int, *parts: Any) -> int:
    """An independent 63-bit seed for ``(seed, *parts)`` (e.g. ``(seed, "step", 12)``)."""
    digest = hashlib.sha256(repr((int(seed), *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class _Stopped(Exception):
    """Ctrl-C or SIGTERM arrived; raised between two steps, so the state is consistent to checkpoint."""


@contextlib.contextmanager
def _deferred_stop(flag: dict[str, int]) -> Iterator[None]:
    """Turn the first SIGINT/SIGTERM into a request the loop honours after the current step.

    A second signal interrupts at once (without a checkpoint: the step in progress may be half done).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        if flag.get("signal"):
            raise KeyboardInterrupt
        flag["signal"] = signum

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def load_training_data(config: TrainConfig) -> tuple[ImageSet, torch.Tensor | None, tuple[str, ...]]:
    """The data set, the condition's label column (or ``None``) and the class names."""
    d = config.data
    ds = load_source(
        d.source,
        n=d.n,
        size=d.size,
        seed=d.seed,
        skew=d.skew,
        noise=d.noise,
        attributes_file=d.attributes_file,
        channels=d.channels,
    )
    if d.condition is None:
        return ds, None, ()
    if d.condition not in ds.attributes:
        raise ConfigError(
            f"data.condition {d.condition!r} is not an attribute of {d.source!r}; it has "
            f"{list(ds.attributes)}, "
            "or set condition: null for an unconditional generator."
        )
    return ds, ds.label(d.condition), ds.attributes[d.condition]


class _DataOrder:
    """Global batch indices of any step, from per-epoch permutations seeded by ``(seed, epoch)``."""

    def __init__(self, n: int, batch: int, seed: int) -> None:
        if batch > n:
            raise ConfigError(
                f"batch_size {batch} is larger than the {n} training images; lower it or add data."
            )
        self.n, self.batch, self.seed = n, batch, seed
        self.per_epoch = n // batch  # the incomplete tail of each epoch is dropped
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def indices(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            rng = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch))
            self._perm, self._epoch = torch.randperm(self.n, generator=rng), epoch
        return self._perm[i * self.batch : (i + 1) * self.batch]


def grid_png(images: torch.Tensor, nrow: int) -> bytes:
    from PIL import Image
    from torchvision.utils import make_grid

    grid = make_grid(images, nrow=nrow, padding=2, pad_value=1.0)
    array = grid.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        array = array[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


class Trainer:
    """One training run: build or resume, then :meth:`run` to the configured number of steps.

    Most users call :func:`train`; the class is public for tests and for stepping by hand.
    """

    def __init__(
        self,
        config: TrainConfig | Mapping[str, Any] | str | Path | None = None,
        *,
        store: RunStore | None = None,
        resume: str | None = None,
        steps: int | None = None,
        progress: bool = True,
        echo: Callable[[str], object] | None = None,
    ) -> None:
        self.store = store if store is not None else RunStore()
        self.progress = progress
        self.echo = echo or (lambda message: None)
        if resume is not None:
            run = self.store.get_run(resume)
            self.store.folder(resume)  # its checkpoints and log live there: fail now, not halfway
            stored = load_config(run.config.get("train", run.config))
            if config is not None:
                wanted = load_config(config)
                if wanted.model_copy(update={"steps": stored.steps}) != stored:
                    raise ConfigError(
                        f"the config given differs from run {resume}'s (only steps may change on resume); "
                        "drop the config to resume with the stored one."
                    )
                stored = stored.model_copy(update={"steps": wanted.steps})
            self.config = stored
        else:
            if config is None:
                raise ConfigError("give a training config (YAML file or mapping), or resume=RUN_ID.")
            self.config = load_config(config)
        if steps is not None:
            self.config = self.config.model_copy(update={"steps": steps})
        cfg = self.config
        self.dist, self.device = distributed.setup(cfg.device)
        if cfg.batch_size % self.dist.world:
            raise ConfigError(
                f"batch_size {cfg.batch_size} must be divisible by the {self.dist.world} processes."
            )
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)

        self.data, labels, self.class_names = load_training_data(cfg)
        self.images = self.data.images.to(self.device)
        self.labels = labels.to(self.device) if labels is not None else None
        self.order = _DataOrder(len(self.data), cfg.batch_size, cfg.seed)

        torch.manual_seed(derive_seed(cfg.seed, "init"))
        self.recipe: Recipe = make_recipe(cfg, self.data.image_shape, len(self.class_names), self.device)
        self.bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.device.type == "cuda")
        if self.bf16 and self.device.type != "cuda":
            raise ConfigError("precision bf16 is for CUDA devices; use precision: fp32 (or auto) on CPU.")
        if self.bf16:
            self.recipe.autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)
        self.channels_last = (
            cfg.channels_last if cfg.channels_last is not None else self.device.type == "cuda"
        )
        plain = dict(self.recipe.networks)
        if self.channels_last:
            for net in plain.values():
                net.to(memory_format=torch.channels_last)
        self.ema = AveragedModel(
            plain[self.recipe.ema_name], multi_avg_fn=ema_update_fn(cfg.ema_decay), use_buffers=False
        )
        for name, net in plain.items():
            wrapped = distributed.wrap(net, self.device, self.dist)
            self.recipe.networks[name] = torch.compile(wrapped) if cfg.compile else wrapped
        self.plain = plain

        self.step = 0
        self._stop: dict[str, int] = {}
        self._pending: list[dict[str, Any]] = []
        run_id = None
        if self.dist.is_main:
            run_id = resume or self._create_run().id
        self.run_id = distributed.broadcast_text(run_id, self.dist)
        self.run: RunInfo = self.store.get_run(self.run_id)
        if resume is not None:
            self._resume()

    # -- setup ----------------------------------------------------------------------------------------

    def _create_run(self) -> RunInfo:
        cfg = self.config
        name = cfg.name or f"{cfg.family} on {cfg.data.source}"
        config = {"train": cfg.model_dump(mode="json"), "family": cfg.family}
        run = self.store.create_run(RUN_KIND, name=name, config=config)
        self.echo(f"run {run.id} in {self.store.home}")
        return run

    def _checkpoints(self) -> list[tuple[int, str]]:
        found = []
        for record in self.store.artifacts(self.run_id):
            rel = record.relpath
            if rel.startswith("checkpoints/step-") and rel.endswith(".safetensors"):
                found.append((int(rel[len("checkpoints/step-") : -len(".safetensors")]), rel))
        return sorted(found)

    def _resume(self) -> None:
        checkpoints = self._checkpoints()
        if not checkpoints:
            self.echo(f"run {self.run_id} has no checkpoint yet; starting it from step 0")
            if self.dist.is_main:
                self._truncate_log(0)
            return
        step, rel = checkpoints[-1]
        ckpt = load_checkpoint(self.store.artifact_path(self.run_id, rel), device=self.device)
        for name, net in self.plain.items():
            ckpt.load_network(name, net)
        for name, opt in self.recipe.optimizers.items():
            ckpt.load_optimizer(name, opt)
        ckpt.load_ema(self.ema)
        ckpt.restore_rng()
        self.step = ckpt.step
        if self.dist.is_main:
            kept = self._truncate_log(self.step)
            # A crash between writing this checkpoint and flushing the metrics before it left those rows in
            # the log only; the steps will not be redone, so the index gets them now.
            indexed = {m.step for m in self.store.metrics(self.run_id)}
            self._pending = [row for row in kept if row["step"] not in indexed]
            self._flush_metrics()
        self.echo(f"resumed run {self.run_id} from step {self.step} ({rel})")

    def _truncate_log(self, step: int) -> list[dict[str, Any]]:
        """Cut the log back to ``step`` (a resume redoes the steps after it); return the rows kept."""
        path = self.run.path / METRICS_FILE
        if not path.is_file():
            return []
        kept = []
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # the last line, cut short by a crash in the middle of appending it
            if row["step"] <= step:
                kept.append((line, row))
        atomic_write_bytes(path, "".join(line + "\n" for line, _ in kept).encode())
        return [row for _, row in kept]

    # -- the loop -------------------------------------------------------------------------------------

    def run_to_end(self) -> TrainResult:
        """Train to ``config.steps``; on Ctrl-C / SIGTERM checkpoint and re-raise; keep the status current."""
        cfg = self.config
        self._stop.clear()
        try:
            with _deferred_stop(self._stop):
                self._loop()
            if self.dist.is_main:
                result = self._finish()
            distributed.barrier(self.dist)
        except _Stopped:
            if self.dist.is_main:
                self._checkpoint()
                self.store.set_run_status(self.run_id, "interrupted")
                self.echo(f"stopped at step {self.step}; resume with: auditkit train --resume {self.run_id}")
            raise KeyboardInterrupt from None
        except KeyboardInterrupt:
            if self.dist.is_main:
                self.store.set_run_status(self.run_id, "interrupted")
                self.echo(
                    f"interrupted; resume from the last checkpoint: auditkit train --resume {self.run_id}"
                )
            raise
        except BaseException:
            if self.dist.is_main:
                with contextlib.suppress(Exception):
                    self.store.set_run_status(self.run_id, "failed")
            raise
        finally:
            if self.dist.world > 1:
                # The DDP wrappers' reducers hold gloo work objects with tensors; left to interpreter
                # exit, freeing them can abort the process (pytorch/pytorch#179291): drop them while the
                # group is alive.
                self.recipe.networks.update(self.plain)
                gc.collect()
            distributed.teardown(self.dist)
        if not self.dist.is_main:
            return TrainResult(self.run_id, self.run.path, cfg.steps)
        return result

    def _loop(self) -> None:
        cfg = self.config
        if self.step >= cfg.steps:
            return
        if self.dist.is_main:
            self.store.set_run_status(self.run_id, "running")
        for net in self.plain.values():
            net.train()
        local = cfg.batch_size // self.dist.world
        lo = self.dist.rank * local
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc=f"train {cfg.family}",
            unit="step",
            disable=not (self.progress and self.dist.is_main),
        )
        window_start, window_images = time.perf_counter(), 0
        try:
            while self.step < cfg.steps:
                idx = self.order.indices(self.step)[lo : lo + local].to(self.device)
                x = self.images[idx].mul(2).sub(1)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = self.labels[idx] if self.labels is not None else None
                rng = torch.Generator(self.device).manual_seed(derive_seed(cfg.seed, "step", self.step))
                noise = StepNoise(rng, cfg.batch_size, self.dist.rank, self.dist.world)
                losses = self.recipe.step(x, y, noise)
                self.ema.update_parameters(self.plain[self.recipe.ema_name])
                self.step += 1
                window_images += cfg.batch_size
                bar.update(1)
                last = self.step == cfg.steps
                # On GPU a finiteness check is a sync, so it waits for the log steps; on CPU it is free.
                check = self.step % cfg.log_every == 0 or last or self.device.type == "cpu"
                if check and not distributed.all_finite(losses, self.dist):
                    self._diverged(losses)
                if self.step % cfg.log_every == 0 or last:
                    elapsed = time.perf_counter() - window_start
                    row = {k: float(v) for k, v in losses.items()}
                    row["img_per_s"] = window_images / max(elapsed, 1e-9)
                    self._log(row)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in row.items()})
                    window_start, window_images = time.perf_counter(), 0
                if self.step % cfg.sample_every == 0 and self.dist.is_main:
                    self._sample_grid(f"samples/step-{self.step:07d}.png")
                if self.step % cfg.checkpoint_every == 0 and not last:
                    self._checkpoint()
                if self._stop.get("signal") and not last:
                    raise _Stopped()
        finally:
            bar.close()

    def _diverged(self, losses: Mapping[str, torch.Tensor]) -> None:
        bad = [k for k, v in losses.items() if not bool(torch.isfinite(v).all())]
        previous = self._checkpoints()
        where = (
            f"the last checkpoint is at step {previous[-1][0]}; resume from it with a lower lr"
            if previous
            else "no checkpoint was written yet"
        )
        raise TrainingError(
            f"training diverged: {', '.join(bad) or 'a loss'} became NaN or infinite at step {self.step} "
            f"of run {self.run_id}. Lower the learning rate (lr: {self.config.lr:g}), set grad_clip, or "
            "check the data; "
            f"{where}."
        )

    def _log(self, row: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        row = {"step": self.step, **row}
        with open(self.run.path / METRICS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        self._pending.append(row)

    def _flush_metrics(self) -> None:
        for row in self._pending:
            values = {k: v for k, v in row.items() if k != "step" and math.isfinite(v)}
            self.store.log_metrics(self.run_id, values, step=row["step"])
        self._pending.clear()

    def _checkpoint(self) -> None:
        if not self.dist.is_main:
            return  # only rank 0 writes; the others hold identical weights
        rel = f"checkpoints/step-{self.step:07d}.safetensors"
        with self.store.artifact_file(self.run_id, rel) as tmp:
            save_checkpoint(
                tmp,
                step=self.step,
                networks=self.plain,
                optimizers=self.recipe.optimizers,
                ema=self.ema,
                extra={"run_id": self.run_id, "family": self.config.family},
            )
        self._flush_metrics()
        # An interruption checkpoints off the schedule (Ctrl-C at step 36 of checkpoint_every 5); once a
        # newer checkpoint exists it only stands in for a scheduled one, so it goes first: a resumed run
        # then ends with the checkpoints the uninterrupted run has.
        found = self._checkpoints()
        every = self.config.checkpoint_every
        off = [rel for step, rel in found[:-1] if step % every != 0]
        for rel in off:
            self.store.remove_artifact(self.run_id, rel)
        scheduled = [(step, rel) for step, rel in found if rel not in off]
        for _, old in scheduled[: -self.config.keep_checkpoints]:
            self.store.remove_artifact(self.run_id, old)

    # -- outputs --------------------------------------------------------------------------------------

    def generator(self) -> BaseGenerator:
        """The EMA generator as it is now (shares weights with the EMA model)."""
        fam = self.recipe.family_spec
        net = self.ema.module
        gen = fam.wrap(
            net,
            self.recipe.model_config,
            self.data.image_shape,
            self.class_names,
            self.config.data.condition,
            self.device,
        )
        gen.network = net  # type: ignore[attr-defined]
        return gen

    def _sample_grid(self, rel: str) -> None:
        gen = self.generator()
        per_class = 8
        if self.class_names:
            k = len(self.class_names)
            labels = torch.arange(k).repeat_interleave(per_class)[:64]
            images = gen.sample(labels.shape[0], labels=labels, seed=self.config.seed)
        else:
            images = gen.sample(64, seed=self.config.seed)
        self.store.write_artifact(self.run_id, rel, grid_png(images, per_class), media_type="image/png")

    def _finish(self) -> TrainResult:
        cfg = self.config
        checkpoints = self._checkpoints()
        if not checkpoints or checkpoints[-1][0] != self.step:
            self._checkpoint()
        # After the checkpoint: a resumed finish starts from the same weights and redoes this exactly.
        seed = derive_seed(cfg.seed, "finish")
        finished = self.recipe.finish(self.ema.module, self.images, self.labels, seed)
        self._sample_grid("samples/final.png")
        spec = generator_spec(
            cfg.family, self.recipe.model_config, self.data.image_shape, self.class_names, cfg.data.condition
        )
        with self.store.artifact_file(self.run_id, GENERATOR_FILE) as tmp:
            save_generator(self.ema.module, spec, tmp)
        rows = [json.loads(line) for line in (self.run.path / METRICS_FILE).read_text().splitlines() if line]
        speeds = [r["img_per_s"] for r in rows]
        summary = {
            "steps": self.step,
            "images_seen": self.step * cfg.batch_size,
            "final": rows[-1] if rows else {},
            "median_img_per_s": sorted(speeds)[len(speeds) // 2] if speeds else None,
            "device": str(self.device),
            "world_size": self.dist.world,
            "bf16": self.bf16,
            "channels_last": self.channels_last,
            "compile": cfg.compile,
            "class_names": list(self.class_names),
            **finished,
            "condition": cfg.data.condition,
            "data": {"n": len(self.data), "image_shape": list(self.data.image_shape), "info": self.data.info},
        }
        self.store.write_artifact(
            self.run_id, SUMMARY_FILE, json_bytes(summary), media_type="application/json"
        )
        self.store.set_run_status(self.run_id, "completed")
        self.echo(
            f"finished run {self.run_id}: {self.step} steps; generator at {self.run.path / GENERATOR_FILE}"
        )
        return TrainResult(self.run_id, self.run.path, self.step, summary)


def train(
    config: TrainConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    store: RunStore | None = None,
    resume: str | None = None,
    steps: int | None = None,
    progress: bool = True,
    echo: Callable[[str], object] | None = None,
) -> TrainResult:
    """Train a generator and record the run in the store.

    Parameters
    ----------
    config
        A :class:`TrainConfig`, a mapping, or a YAML/JSON path (see ``configs/``).
    store
        Where to record the run (default ``RunStore()``: ``$AUDITKIT_HOME`` or ``./auditkit-runs``).
    resume
        A run id: continue it from its last checkpoint (a config, if given, may only change ``steps``).
    steps
        Override ``config.steps`` (e.g. to extend a finished run).
    progress
        Show a progress bar with losses and img/s.
    echo
        Where to print one-line status messages (default: nowhere).
    """
    return Trainer(config, store=store, resume=resume, steps=steps, progress=progress, echo=echo).run_to_end()


__all__ = ["METRICS_FILE", "RUN_KIND", "SUMMARY_FILE", "TrainResult", "Trainer", "derive_seed", "train"]
