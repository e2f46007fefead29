"""A real offline install into a fresh virtual environment from a local wheel folder, then the verification;
and the failures: a wheel folder missing a needed file, a pip failure — each leaves the working setup working.

The folder is built here from what this machine reaches: the installed torch's wheel where pip finds it
without an index (this machine's pip configuration, e.g. a local wheel folder), the umamba wheel built with
`pip wheel --no-deps` (its build requirements from the package index), and the other wheels (numpy, numba, torch's
small dependencies, nnunetv2 for the failure case; torch too when no wheel of it is found) re-packed from the files
this test environment has installed (each a real wheel of the installed distribution: its files, its METADATA and
WHEEL tags, a fresh RECORD). The installs themselves are offline (--no-index), into a venv created without
--system-site-packages, so everything in it comes from the folder.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as md
import io
import json
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from umamba.progress import parse_event

REPO = Path(__file__).resolve().parents[2]
SKIP_IN_DIST_INFO = {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json"}

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the venv layout (bin/python) is POSIX's")


def repack_installed(name: str, dest: Path) -> Path:
    """A wheel of the installed distribution `name` (its recorded files, relative to site-packages)."""
    dist = md.distribution(name)
    wheel_meta = dist.read_text("WHEEL") or ""
    tag = re.search(r"^Tag: (\S+)", wheel_meta, re.M).group(1)
    canonical = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    path = dest / f"{canonical}-{dist.version}-{tag}.whl"
    root = Path(dist.locate_file(""))
    records = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:  # stored: quicker, and pip does not mind
        for f in dist.files or []:
            rel = f.as_posix()
            parts = Path(rel).parts
            if rel.startswith("..") or "__pycache__" in parts or rel.endswith(".pyc"):
                continue
            if parts[0].endswith(".dist-info") and parts[-1] in SKIP_IN_DIST_INFO:
                continue
            data = (root / rel).read_bytes()
            zf.writestr(rel, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append((rel, f"sha256={digest}", str(len(data))))
        info = next(p for p in (dist.files or []) if p.parts[0].endswith(".dist-info")).parts[0]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(records + [(f"{info}/RECORD", "", "")])
        zf.writestr(f"{info}/RECORD", buf.getvalue())
    return path


def runtime_requirements(wheel: Path) -> list[str]:
    """Requires-Dist of a wheel whose markers hold here (no extras)."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines()
            if line.startswith("Requires-Dist:")]
    return [r.name for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def closure(names: list[str]) -> list[str]:
    """The names plus their installed dependencies (markers evaluated here, extras ignored)."""
    seen, todo = [], list(names)
    while todo:
        n = todo.pop()
        if n.lower() in (s.lower() for s in seen):
            continue
        seen.append(n)
        for req in md.requires(n) or []:
            r = Requirement(req)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(r.name)
    return seen


def torch_wheel(folder: Path) -> Path:
    """The installed torch as a wheel: the one pip finds without an index (no multi-GB download), else re-packed
    from the installed files."""
    version = md.version("torch")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-index", "-q", "-d",
                           str(folder), f"torch=={version}"], capture_output=True, text=True, env=env, timeout=600)
    found = sorted(folder.glob("torch-*.whl"))
    return found[0] if proc.returncode == 0 and found else repack_installed("torch", folder)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    torch = torch_wheel(folder)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the package index for the build backend
    source = tmp_path_factory.mktemp("source") / "umamba"  # a build writes build/ and *.egg-info into its source
    shutil.copytree(REPO / "umamba", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(folder), str(source)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    umamba_wheel = next(folder.glob("umamba-*.whl"))
    needed = [n for n in runtime_requirements(torch) + runtime_requirements(umamba_wheel) if n != "nnunetv2"]
    for name in closure(needed):
        if name.lower() != "torch":
            repack_installed(name, folder)
    return folder


def _clean_env() -> dict:
    """No pip configuration of this machine (its find-links, indexes, constraints): only the folder counts.
    PIP_NO_COMPILE skips writing .pyc files for torch's thousands of modules (time only)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_COMPILE="1")
    return env


def _python(venv_dir: Path) -> str:
    return str(venv_dir / "bin" / "python")


def _umamba(python: str, *args: str) -> tuple[int, list[dict], str]:
    proc = subprocess.run([python, "-m", "umamba", *args, "--progress-json"], capture_output=True, text=True,
                          timeout=900, env=_clean_env())
    return proc.returncode, [e for e in map(parse_event, proc.stdout.splitlines()) if e], proc.stderr


def _installed(python: str) -> dict:
    from umamba.install.runner import installed
    return installed(python)


class FreshEnv(str):
    """The venv's python path, with the `done` event of the install that set it up."""
    done: dict


@pytest.fixture(scope="module")
def fresh_env(wheelhouse, tmp_path_factory) -> FreshEnv:
    """A fresh venv, umamba bootstrapped from the folder, then `umamba install` offline."""
    venv_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(venv_dir)
    python = _python(venv_dir)
    assert set(_installed(python)) <= {"pip", "setuptools"}  # nothing but pip in it
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheelhouse),
                    "--no-deps", "umamba"], check=True, capture_output=True, env=_clean_env())
    rc, events, err = _umamba(python, "install", "--find-links", str(wheelhouse), "--no-index",
                              "--skip", "nnunetv2")
    done = [e for e in events if e["event"] == "done"]
    assert rc == 0 and done, err[-3000:] + json.dumps(events[-5:])
    result = FreshEnv(python)
    result.done = done[0]
    return result


def test_offline_install_into_fresh_venv_then_verification(fresh_env):
    done, python = fresh_env.done, str(fresh_env)
    have = _installed(python)
    assert have["torch"] == md.version("torch") and "numpy" in have and "umamba" in have
    assert "numba" in have  # a default requirement, installed by the requirements step
    steps = {s["name"]: s["action"] for s in done["plan"]["steps"]}
    # torch came from the folder (outside Slicer umamba only installs torch from a folder the person prepared)
    assert steps.get("torch") == "pip" and steps.get("requirements") == "pip" and steps.get("nnunetv2") == "skipped"
    assert done["verify"]["ok"] and done["verify"]["backend"] == "portable" and done["verify"]["device"] == "cpu"
    assert done["verify"]["python"] == python  # verified in a fresh process of that environment


def test_folder_missing_a_needed_file_is_named_and_changes_nothing(fresh_env, wheelhouse):
    before = _installed(fresh_env)
    rc, events, _ = _umamba(fresh_env, "install", "--find-links", str(wheelhouse), "--no-index")
    errors = [e for e in events if e["event"] == "error"]
    assert rc == 2 and errors
    assert "has no file for nnunetv2" in errors[0]["message"] and str(wheelhouse) in errors[0]["message"]
    assert "--print-files" in errors[0]["hint"]  # what to do next
    assert "unchanged" in errors[0]["hint"] and "verification passed" in errors[0]["hint"]
    assert _installed(fresh_env) == before


def test_pip_failure_is_explained_and_leaves_the_setup_working(fresh_env, wheelhouse, tmp_path):
    # nnunetv2's own wheel is there, its dependencies are not: pip fails while resolving
    folder = tmp_path / "partial"
    folder.mkdir()
    for f in wheelhouse.iterdir():
        (folder / f.name).symlink_to(f.resolve())
    repack_installed("nnunetv2", folder)
    before = _installed(fresh_env)
    rc, events, _ = _umamba(fresh_env, "install", "--find-links", str(folder), "--no-index")
    errors = [e for e in events if e["event"] == "error"]
    assert rc == 2 and errors, events[-3:]
    msg, hint = errors[0]["message"], errors[0]["hint"]
    assert "step 'nnunetv2'" in msg and "has no file for" in msg
    missing = re.search(r"has no file for (\S+)", msg).group(1)
    assert f'pip download "{missing}"' in hint and "verification passed" in hint and "unchanged" in hint
    assert _installed(fresh_env) == before
