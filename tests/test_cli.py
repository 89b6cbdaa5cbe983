"""The auditkit command: exit codes, one-line user errors, and what each command writes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from auditkit.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Call the CLI in-process as a user would; returns (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["data"],
        ["data", "preview"],
        ["data", "describe"],
        ["runs"],
        ["runs", "list"],
        ["runs", "show"],
        ["store", "check"],
        ["demo"],
    ],
)
def test_help_everywhere(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, _ = run(capsys, *argv, "--help")
    assert code == 0
    assert out.startswith("Usage: auditkit")


def test_preview_shapes_writes_a_png_and_prints_shares(capsys, tmp_path: Path) -> None:
    out_png = tmp_path / "grid.png"
    code, out, err = run(
        capsys,
        "data",
        "preview",
        "shapes",
        "--n",
        "300",
        "--skew",
        "demo",
        "--show",
        "16",
        "--out",
        str(out_png),
    )
    assert code == 0, err
    with Image.open(out_png) as img:
        img.verify()
    with Image.open(out_png) as img:
        assert img.format == "PNG" and min(img.size) > 200
    assert "wrote" in out and "colour: red" in out


def test_describe_digits_json_matches_sklearn(capsys) -> None:
    code, out, _ = run(capsys, "data", "describe", "digits", "--size", "16", "--json")
    assert code == 0
    summary = json.loads(out)
    target = load_digits().target
    assert summary["n"] == len(target) and summary["image_shape"] == [1, 16, 16]
    for d in range(10):
        assert summary["shares"]["digit"][str(d)] == pytest.approx(float(np.mean(target == d)))


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["data", "preview", "shapes", "--skew", "{color: {red: 1}}"], "Did you mean 'colour'"),
        (["data", "preview", "shapes", "--skew", "{colour: {red: 0.2}}"], "sum to 1"),
        (["data", "preview", "nowhere/such-folder"], "unknown source"),
        (["data", "preview", "digits", "--skew", "demo"], "only apply to the 'shapes' source"),
        (["data", "preview", "shapes", "--n", "50", "--out", "missing-dir/grid.png"], "does not exist"),
        (["data", "preview", "shapes", "--n", "50", "--out", "grid.jpg"], "must end in .png"),
        (["runs", "show", "run-20000101-000000-000000"], "auditkit runs list"),
    ],
)
def test_user_errors_exit_2_with_one_line(capsys, monkeypatch, tmp_path: Path, argv, needle) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUDITKIT_HOME", str(tmp_path / "home"))
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") and needle in err
    assert "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv", [["data", "preview", "shapes", "--n", "0"], ["runs", "frobnicate"], ["--bogus"]]
)
def test_usage_errors_exit_2(capsys, argv) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2 and "Traceback" not in err


def test_empty_store_lists_nothing(capsys, tmp_path: Path) -> None:
    code, out, _ = run(capsys, "runs", "list", "--home", str(tmp_path / "home"))
    assert code == 0 and out.startswith("no runs")
    code, out, _ = run(capsys, "runs", "list", "--home", str(tmp_path / "home"), "--json")
    assert code == 0 and json.loads(out) == []


def test_store_check_reports_a_tampered_artifact(capsys, tmp_path: Path) -> None:
    home = tmp_path / "home"
    from auditkit.store import RunStore

    store = RunStore(home)
    run_info = store.create_run("data", name="tamper")
    store.write_artifact(run_info.id, "ground-truth.json", b'{"a": 1}')
    store.set_run_status(run_info.id, "completed")
    code, out, _ = run(capsys, "store", "check", "--home", str(home))
    assert code == 0 and out.strip().endswith(": ok")
    with open(run_info.path / "ground-truth.json", "a") as f:
        f.write(" ")
    code, out, _ = run(capsys, "store", "check", "--home", str(home))
    assert code == 1 and "ground-truth.json" in out


def test_installed_entry_point_prints_no_traceback(tmp_path: Path) -> None:
    exe = shutil.which("auditkit", path=str(Path(sys.executable).parent))
    assert exe, "the auditkit console script is not installed next to this Python"
    done = subprocess.run(
        [exe, "data", "preview", "shapes", "--skew", "{size: {huge: 1}}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "unknown size value 'huge'" in done.stderr
    assert "Traceback" not in done.stderr
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert "0.1.0" in version.stdout


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = ["filename,smiling"]
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / f"{i}.png")
        rows.append(f"{i}.png,{'yes' if i % 3 == 0 else 'no'}")
    (root / "5.png").write_bytes(b"")  # a zero-byte file among good ones
    (tmp_path / "attrs.csv").write_text("\n".join(rows) + "\n")
    return root


def test_folder_source_fails_clearly_then_skips_bad_files(capsys, tmp_path: Path) -> None:
    root = _folder(tmp_path)
    attrs = str(tmp_path / "attrs.csv")
    code, _, err = run(capsys, "data", "describe", str(root), "--attributes-file", attrs)
    assert code == 2 and "5.png" in err and "skip" in err
    code, out, err = run(
        capsys, "data", "describe", str(root), "--attributes-file", attrs, "--skip-bad", "--json"
    )
    assert code == 0
    summary = json.loads(out)
    assert summary["n"] == 5 and [s["path"] for s in summary["skipped"]] == ["5.png"]
    assert summary["shares"]["smiling"] == {"no": pytest.approx(3 / 5), "yes": pytest.approx(2 / 5)}
