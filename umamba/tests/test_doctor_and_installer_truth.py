"""`umamba doctor --json` reports what umamba.mamba.backends resolves on each device; numba is a default
requirement the installers plan for; the Slicer installer reinstalls the carried umamba when its content changed
and asks for a restart only when loaded umamba code must be replaced."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from umamba.install import bundle as bundle_tools
from umamba.install import planner, probe
from umamba.install.verify import backend_report
from umamba.mamba import backends

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "UMambaSegmentation"))

from UMambaSegmentationLib import DependencyInstaller as DI  # noqa: E402

from test_install_slicer_side import MODULE_DIR, LocalCalls  # noqa: E402


def test_doctor_json_names_the_resolved_backend_per_device():
    proc = subprocess.run([sys.executable, "-m", "umamba", "doctor", "--quick", "--json"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)["devices"]
    assert "cpu" in report
    for device, entry in report.items():
        for mode in ("training", "inference"):
            for op in backends.OPS:
                expected = backends.resolve_backend(op, device, training=mode == "training")
                assert entry[mode][op] == {"backend": expected.backend, "reason": expected.reason}, (device, mode, op)
    assert report["cpu"]["training"]["scan"]["backend"] == "portable"  # training needs autograd


def test_doctor_says_when_the_cpu_path_lacks_numba(monkeypatch):
    from umamba.cli.doctor import _numba_note

    real = backends.probe
    monkeypatch.setattr(backends, "probe", lambda name: backends.Probe(False, "numba is not installed")
                        if name == "numba" else real(name))
    report = backend_report()
    assert report["cpu"]["inference"]["scan"]["backend"] == "portable"
    assert "pip install numba" in _numba_note(report)
    monkeypatch.setattr(backends, "probe", real)
    assert _numba_note(backend_report()) is None or not probe.installed_versions().get("numba")


def test_numba_is_a_default_requirement_that_the_planners_install(monkeypatch):
    requirements = probe.bundled_requirements(str(REPO / "umamba"))
    numba = [r for r in requirements if r.startswith("numba")]
    assert numba and probe._applies(numba[0])  # a default dependency, and its marker holds on this machine
    # as the Slicer installer sees it when numba is missing: a requirements step that installs it
    have = [d for d in probe.md.distributions() if (d.metadata["Name"] or "").lower() != "numba"]
    monkeypatch.setattr(probe.md, "distributions", lambda: have)
    missing = probe.unmet_umamba_requirements(str(REPO / "umamba"))
    assert [m for m in missing if m.startswith("numba")], missing
    plan = planner.make_plan(probe.probe(deep=False), planner.PlanOptions(), missing)
    assert "numba" in plan.step("requirements").requirement.split(",")


def _copy_bundle(tmp_path: Path) -> Path:
    copy = tmp_path / "umamba-package"
    shutil.copytree(REPO / "umamba", copy, ignore=shutil.ignore_patterns("tests", "__pycache__", "*.egg-info"))
    return copy


def test_content_hash_decides_the_umamba_step(tmp_path, monkeypatch):
    carried = _copy_bundle(tmp_path)
    installed = _copy_bundle(tmp_path / "site")  # as pip would have put it, stamped by the installer
    bundle_tools.stamp(installed)
    monkeypatch.setattr(bundle_tools, "_package_dir", lambda: installed / "src" / "umamba")
    assert bundle_tools.installed_state(carried) == "same"
    options = planner.PlanOptions(bundled_umamba=str(carried), bundled_version="0.1.0", bundled_state="same")
    p = probe.Probe(os="linux", machine="x86_64", python="3.12", packages={"umamba": "0.1.0"})
    assert planner.make_plan(p, options).step("umamba").action == planner.OK
    (carried / "src" / "umamba" / "paths.py").write_text("# changed\n", encoding="utf-8")  # same version, new code
    assert bundle_tools.installed_state(carried) == "differs"
    options.bundled_state = "differs"
    step = planner.make_plan(p, options).step("umamba")
    assert step.action == planner.PIP and "differs in content" in step.reason and "--force-reinstall" in step.pip_args
    monkeypatch.setattr(bundle_tools, "_package_dir", lambda: None)
    assert bundle_tools.installed_state(carried) == "missing"


@pytest.mark.parametrize("loaded, restart", [("carried", False), ("older", True), (None, False)])
def test_restart_only_when_loaded_umamba_code_is_replaced(tmp_path, monkeypatch, loaded, restart):
    class Calls(LocalCalls):
        def pipInstall(self, args):  # stands in for pip: the same version, so versions alone cannot tell
            self.pip_calls.append(list(args))

    real_tools = DI.bundleTools

    def tools(bundle):
        module = real_tools(bundle)
        hashes = {"carried": module.bundled_hash(bundle), "older": "0" * 64, None: None}
        module.loaded_hash = lambda modules=None: hashes[loaded]
        return module

    monkeypatch.setattr(DI, "bundleTools", tools)
    inst = DI.DependencyInstaller(MODULE_DIR, str(tmp_path), Calls())
    inst.verify = lambda: {"ok": True}
    step = {"name": "umamba", "action": "pip", "reason": "content differs",
            "pip_args": ["--no-deps", "--no-build-isolation", "--force-reinstall", inst.bundle]}
    outcome, detail = inst.run([step, {"name": "verify", "action": "verify", "reason": "v"}])
    assert len(inst.calls.pip_calls) == 1
    assert (outcome, detail) == (("restart", ["umamba"]) if restart else ("done", {"ok": True}))


def test_python_finder_names_where_it_looked():
    from conftest import find_python

    path, where = find_python("3.99")
    assert path is None and "python3.99 on PATH" in where and "pyenv" in where.lower() and "uv" in where
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert find_python(here)[0] == sys.executable
