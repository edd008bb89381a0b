"""The wheel holds every module of the package: what the image installs (`pip install .` in the
Dockerfile) is the wheel, not the source tree, and a subpackage the build leaves out still
imports fine from an editable install, then fails in the container."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_wheel(into: Path) -> Path:
    """Build the wheel from what the Dockerfile copies (pyproject.toml, README.md, exporter/),
    offline: the test environment's setuptools, no index, no build isolation."""
    source = into / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "exporter", source / "exporter", ignore=shutil.ignore_patterns("__pycache__")
    )
    wheels = into / "wheels"
    offline = ("--no-deps", "--no-build-isolation", "--no-index", "--quiet")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", *offline, "--wheel-dir", str(wheels), str(source)],
        check=True,
        timeout=120,
    )
    (wheel,) = wheels.glob("vastai_exporter-*.whl")
    return wheel


def test_the_wheel_holds_every_module_of_the_tree(tmp_path) -> None:
    in_tree = {path.relative_to(ROOT).as_posix() for path in (ROOT / "exporter").rglob("*.py")}
    with zipfile.ZipFile(build_wheel(tmp_path)) as wheel:
        in_wheel = {name for name in wheel.namelist() if name.endswith(".py")}
    assert {"exporter/__init__.py", "exporter/sim/__init__.py"} <= in_tree
    assert sorted(in_tree - in_wheel) == []
    assert sorted(in_wheel - in_tree) == []  # and nothing else: no tests, no benchmarks
