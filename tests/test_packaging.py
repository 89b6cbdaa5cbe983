"""The installed (non-editable) package carries dashboards/ and reports/, and installs stay pinned."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (whl,) = out.glob("auditkit-*.whl")
    return whl


def test_wheel_ships_resource_folders(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("dashboards", "reports", "configs"):
        tracked = [p.relative_to(ROOT / folder).as_posix() for p in (ROOT / folder).rglob("*") if p.is_file()]
        assert tracked, f"{folder}/ is empty in the source tree"
        for rel in tracked:
            assert f"auditkit/_bundled/{folder}/{rel}" in names


def test_installed_package_finds_resources_without_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import auditkit.resources as r; "
        "print(r.resource_dir('dashboards')); print(r.resource_dir('reports')); print(r.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    dashboards, reports, module = done.stdout.split()
    assert Path(module).is_relative_to(target), (
        "the test must exercise the installed copy, not the source tree"
    )
    assert Path(dashboards) == target / "auditkit" / "_bundled" / "dashboards"
    assert (Path(reports) / "README.md").is_file()


def test_constraints_pin_the_torch_pair_and_every_dependency() -> None:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, ver = line.partition("==")
            pins[name.lower().replace("_", "-")] = ver
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["dev"]
    for req in requirements:
        name = req.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in constraints.txt"
