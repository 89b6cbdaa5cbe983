"""Shared plumbing for the benchmark scripts: machine description and RESULTS.md sections."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

# run_all.py --quick points this at a scratch copy, so smoke-sized numbers never replace real ones.
RESULTS = Path(os.environ.get("AUDITKIT_BENCH_RESULTS") or Path(__file__).with_name("RESULTS.md"))


def machine() -> str:
    """CPU model, cores, torch version and threads: the context every number needs."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}"
    )


def write_section(name: str, body: str, results: Path | None = None) -> Path:
    """Replace (or append) the section between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    target = results or RESULTS
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{body.rstrip()}\n{end}"
    text = (
        target.read_text()
        if target.exists()
        else "# Benchmark results\n\nEach section is rewritten by its script.\n"
    )
    if start in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    target.write_text(text)
    return target


def timed(fn: Callable[[], object], repeats: int, *, warmup: bool = False) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` (after one untimed call when ``warmup``)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
