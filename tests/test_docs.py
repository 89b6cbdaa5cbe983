"""Every code example in README.md and docs/*.md runs, in order, as a reader would run it.

```python blocks of one document share a namespace; ```bash blocks run under ``bash -euo pipefail``; both
in a fresh folder with its own ``AUDITKIT_HOME`` and the repository's ``configs/`` beside it. A block that
cannot run here (an install, a GPU, a server that never exits) is preceded by
``<!-- not run: <reason> -->``; such blocks are few, and each must give its reason. The reference pages
are also checked against the code they describe, so they cannot go stale.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.M | re.S)
NOT_RUN = re.compile(r"<!-- not run: (.+?) -->\s*$")
MAX_NOT_RUN = 8


def blocks(path: Path) -> list[tuple[str, str, int, str | None]]:
    """(language, code, first line, reason it is not run or None) of every fenced block."""
    text = path.read_text(encoding="utf-8")
    found = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = NOT_RUN.search(before)
        line = text.count("\n", 0, m.start()) + 2
        found.append((m.group(1), m.group(2), line, skip.group(1) if skip else None))
    return found


def test_every_document_has_examples_and_few_are_skipped() -> None:
    assert (ROOT / "docs").is_dir()
    skipped = []
    for doc in DOCS:
        found = blocks(doc)
        assert found, f"{doc.name} has no code examples"
        for lang, _, line, reason in found:
            assert lang in {"python", "bash", "text", "yaml", "json"}, f"{doc.name}:{line}: fence {lang!r}"
            if reason is not None:
                assert len(reason) > 10, f"{doc.name}:{line}: say why the block is not run"
                skipped.append(f"{doc.name}:{line}")
    assert len(skipped) <= MAX_NOT_RUN, skipped


def run_examples(doc: Path, workdir: Path) -> int:
    """Run the examples of ``doc`` in order inside ``workdir``; return how many ran (raises on a failure)."""
    (workdir / "configs").symlink_to(ROOT / "configs")
    home = workdir / "auditkit-runs"
    os.chdir(workdir)
    os.environ["AUDITKIT_HOME"] = str(home)
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    namespace: dict[str, object] = {"__name__": "__docs__"}
    ran = 0
    for lang, code, line, reason in blocks(doc):
        if reason is not None or lang not in {"python", "bash"}:
            continue
        where = f"{doc.name}:{line}"
        print(f"--- {where} ({lang})", flush=True)
        if lang == "python":
            exec(compile(code, where, "exec"), namespace)  # noqa: S102 - our own documentation
        else:
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=workdir)
            if done.returncode != 0:
                raise RuntimeError(f"{where}: the bash example exited with status {done.returncode}")
        ran += 1
    return ran


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_examples_run(doc: Path, tmp_path: Path) -> None:
    # A child process per document: examples train models and set global state (threads, RNGs) that
    # must not leak into the tests that run after this one.
    done = subprocess.run(
        [sys.executable, __file__, str(doc), str(tmp_path)], capture_output=True, text=True, cwd=tmp_path
    )
    if done.returncode != 0:
        pytest.fail(
            f"{doc.name} examples failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}", pytrace=False
        )
    assert "--- " in done.stdout, f"{doc.name}: no example ran"


def test_policy_reference_lists_every_metric_of_the_catalogue() -> None:
    from auditkit.policy import METRICS

    text = (ROOT / "docs" / "policy.md").read_text(encoding="utf-8")
    for name, (direction, _) in METRICS.items():
        assert re.search(rf"\| `{re.escape(name)}` \| {direction} \|", text), f"docs/policy.md misses {name}"


def test_schema_reference_covers_every_property_of_the_schema() -> None:
    schema = json.loads((ROOT / "auditkit" / "schemas" / "audit-result-1.schema.json").read_text())
    text = (ROOT / "docs" / "audit-result.md").read_text(encoding="utf-8")
    for key in schema["properties"]:
        assert f"`{key}`" in text, f"docs/audit-result.md misses the top-level field {key}"
        for sub in schema["properties"][key].get("properties", {}):
            assert f"`{key}.{sub}`" in text, f"docs/audit-result.md misses {key}.{sub}"


if __name__ == "__main__":
    count = run_examples(Path(sys.argv[1]), Path(sys.argv[2]))
    if not count:
        sys.exit(f"{sys.argv[1]}: no example ran")
