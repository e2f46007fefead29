"""What ships: the wheel built from umamba/ holds the package and nothing of the developer tools (umamba/benchmarks/),
its `umamba.bench` holds only what `umamba bench` runs and what those share, and the Slicer extension copies
exactly the wheel's files (UMambaSegmentation/CMakeLists.txt globs them)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1]          # umamba/
REPO = PACKAGE.parent
# harness/arms serve every benchmark; a registered benchmark's own parts are named after it (predict_cpu.py)
SHARED_BENCH_MODULES = {"__init__", "__main__", "harness", "arms"}


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory) -> set[str]:
    """The files of the wheel that setuptools builds from umamba/ (pyproject.toml as it is, offline)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "umamba"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PACKAGE / name, source / name)
    shutil.copytree(PACKAGE / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(tmp / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = (tmp / "dist").glob("umamba-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return {n for n in archive.namelist() if not n.split("/")[0].endswith(".dist-info")}


def test_the_wheel_has_no_developer_tools(wheel_files):
    developer_tools = {p.name for p in (PACKAGE / "benchmarks").glob("*.py")}
    assert developer_tools, "umamba/benchmarks/ holds the developer tools"
    assert not {f for f in wheel_files if not f.startswith("umamba/")}, "only the umamba package is installed"
    assert not {f"umamba/bench/{name}" for name in developer_tools} & wheel_files


def test_umamba_bench_ships_only_the_registered_benchmarks(wheel_files):
    from umamba.cli.bench import BENCHMARKS

    shipped = {Path(f).stem for f in wheel_files if f.startswith("umamba/bench/") and f.endswith(".py")}
    registered = {module for module, _ in BENCHMARKS.values()}
    parts = {m for m in shipped if any(m.startswith(r + "_") for r in registered)}
    assert registered <= shipped and shipped - parts == registered | SHARED_BENCH_MODULES, (
        "umamba/bench/ holds the modules of `umamba bench` (cli/bench.py BENCHMARKS), their parts and harness/arms "
        "only; developer tools belong in umamba/benchmarks/")


def _tracked(folder: Path) -> set[str]:
    proc = subprocess.run(["git", "ls-files", "."], cwd=folder, capture_output=True, text=True)
    if proc.returncode == 0 and proc.stdout.strip():
        return {line for line in proc.stdout.splitlines() if (folder / line).is_file()}
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_the_slicer_extension_copies_exactly_the_wheel(wheel_files):
    cmake = (REPO / "UMambaSegmentation" / "CMakeLists.txt").read_text()
    glob = re.search(r"file\(GLOB_RECURSE UMAMBA_PKG_FILES RELATIVE \$\{UMAMBA_PKG\} (.*?)\)", cmake).group(1).split()
    patterns = [g.replace("${UMAMBA_PKG}/", "") for g in glob]
    assert patterns == ["src/umamba/*.py", "src/umamba/*.json"], "update this test with the extension's glob"
    copied = {f"umamba/{f}" for f in _tracked(PACKAGE / "src" / "umamba") if f.endswith((".py", ".json"))}
    assert copied == {f for f in wheel_files if f.endswith((".py", ".json"))}
