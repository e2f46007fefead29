"""The Slicer-side installer logic (UMambaSegmentationLib/DependencyInstaller.py) outside the application:
the carried package, the one confirmation, pending steps across a restart, restart detection, testing mode and
the verification subprocess."""

from __future__ import annotations

import importlib.metadata as md
import os
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "UMambaSegmentation"))

from UMambaSegmentationLib import DependencyInstaller as DI  # noqa: E402

import umamba  # noqa: E402

MODULE_DIR = str(REPO / "UMambaSegmentation")


class LocalCalls(DI.SlicerCalls):
    """The installer's Slicer calls on this machine: this interpreter instead of PythonSlicer, no application."""

    def __init__(self, testing=False):
        super().__init__(sys.executable, log=self.record)
        self.lines, self.testing, self.pip_calls = [], testing, []

    def record(self, text):
        self.lines.append(text)

    def testingEnabled(self):
        return self.testing

    def slicerVersion(self):
        return (5, 10)

    def pipInstall(self, args):
        self.pip_calls.append(list(args))
        raise AssertionError("this test must not install anything")


def test_carried_package_is_found_with_its_version():
    bundle = DI.findBundledPackage(MODULE_DIR)
    assert bundle == str(REPO / "umamba")
    assert DI.bundledVersion(bundle) == umamba.__version__


def test_plan_inside_slicer_on_this_machine(tmp_path):
    inst = DI.DependencyInstaller(MODULE_DIR, str(tmp_path), LocalCalls())
    plan = inst.makePlan(deep=False)
    steps = {s.name: s for s in plan.steps}
    assert steps["umamba"].action == "ok"  # installed and the same version as the carried one
    assert steps["nnunetv2"].action == "ok" and steps["verify"].action == "verify"
    text = inst.confirmationText(inst.actionableSteps(plan), plan)
    assert "not installed: mamba-ssm" in text and f"Mamba backend afterwards: {plan.backend}" in text


def test_confirmation_lists_everything_to_install():
    steps = [{"name": "torch", "action": "pytorchutils", "reason": "torch is not installed"},
             {"name": "umamba", "action": "pip", "reason": "umamba is not installed",
              "pip_args": ["--no-deps", "--no-build-isolation", "/ext/umamba-package"]},
             {"name": "nnunetv2", "action": "pip", "reason": "nnunetv2 is not installed",
              "pip_args": ["nnunetv2>=2.6,<2.9"], "protect": ["SimpleITK", "torch", "requests"]},
             {"name": "verify", "action": "verify", "reason": "tiny Mamba forward"}]
    text = DI.DependencyInstaller.confirmationText(steps)
    assert "PyTorch (through the PyTorch extension" in text
    assert "/ext/umamba-package" in text and "nnunetv2>=2.6,<2.9" in text and "restart" in text


def test_pending_steps_survive_a_restart_and_bad_files_are_ignored(tmp_path):
    path = DI.pendingFilePath(str(tmp_path / "settings"))
    steps = [{"name": "nnunetv2", "action": "pip", "reason": "r", "pip_args": ["nnunetv2>=2.6,<2.9"]},
             {"name": "verify", "action": "verify", "reason": "v"}]
    DI.savePending(path, steps, "restart after torch")
    assert DI.loadPending(path) == steps
    assert os.listdir(os.path.dirname(path)) == [DI.PENDING_FILE_NAME]  # no temporary file left behind
    Path(path).write_text("{not json")
    assert DI.loadPending(path) == []
    DI.clearPending(path)
    DI.clearPending(path)  # twice is fine
    assert not os.path.exists(path)


def test_restart_is_needed_only_for_imported_packages_that_changed():
    now = DI.installedVersions()
    assert "pytest" in sys.modules and "pytest" in now
    before = dict(now, pytest="0.0.1")
    assert DI.changedImportedPackages(before, now) == ["pytest"]
    not_imported = next(n for n in ("pynrrd", "seaborn", "graphviz") if n in now)
    before = dict(now, **{not_imported: "0.0.1"})
    assert DI.changedImportedPackages(before, now, modules={}) == []
    # newly installed and imported only afterwards (PyTorchUtils imports the torch it installed): no restart
    fresh = {k: v for k, v in now.items() if k != "pytest"}
    assert DI.changedImportedPackages(fresh, now, modules=set()) == []
    assert DI.changedImportedPackages(fresh, now, modules={"pytest"}) == ["pytest"]


def test_testing_mode_installs_nothing(tmp_path):
    calls = LocalCalls(testing=True)
    inst = DI.DependencyInstaller(MODULE_DIR, str(tmp_path), calls)
    DI.savePending(inst.pendingPath, [{"name": "x", "action": "pip", "reason": "r"}], "test")
    assert inst.pendingSteps() == []
    outcome, _ = inst.run([{"name": "nnunetv2", "action": "pip", "reason": "r", "pip_args": ["nnunetv2"]}])
    assert outcome == "skipped" and calls.pip_calls == []


def test_resume_runs_the_verification_and_clears_the_pending_file(tmp_path):
    calls = LocalCalls()
    inst = DI.DependencyInstaller(MODULE_DIR, str(tmp_path), calls)
    DI.savePending(inst.pendingPath, [{"name": "verify", "action": "verify", "reason": "v"}], "after restart")
    outcome, result = inst.run(inst.pendingSteps())
    assert outcome == "done" and result["ok"], result
    assert result["device"] != "cpu" or result["backend"] == "portable"
    assert not os.path.exists(inst.pendingPath) and calls.pip_calls == []


def test_slicer_510_keeps_protected_packages_pinned(tmp_path):
    """Without slicer.pydeps the nnunetv2 step goes through pip with a constraints file of installed versions."""
    seen = {}

    class Calls(LocalCalls):
        def hasPipEnsure(self):
            return False

        def pipInstall(self, args):
            seen["args"] = list(args)
            seen["pins"] = Path(args[args.index("-c") + 1]).read_text()

    inst = DI.DependencyInstaller(MODULE_DIR, str(tmp_path), Calls())
    inst._runStep({"name": "nnunetv2", "action": "pip", "reason": "r", "pip_args": ["nnunetv2>=2.6,<2.9"],
                   "protect": ["SimpleITK", "torch", "requests"]})
    assert seen["args"][0] == "nnunetv2>=2.6,<2.9"
    assert seen["pins"].splitlines() == [f"SimpleITK=={md.version('simpleitk')}", f"torch=={md.version('torch')}",
                                         f"requests=={md.version('requests')}"]
    assert not os.path.exists(seen["args"][-1])  # the constraints file is removed afterwards


def test_carried_umamba_is_built_from_a_copy(tmp_path):
    """The umamba step installs a copy of the carried folder (it may be read-only), without tests or build files."""
    seen = {}

    class Calls(LocalCalls):
        def pipInstall(self, args):
            folder = Path(args[-1])
            seen["args"] = list(args)
            seen["files"] = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    inst = DI.DependencyInstaller(MODULE_DIR, str(tmp_path), Calls())
    inst._runStep({"name": "umamba", "action": "pip", "reason": "r",
                   "pip_args": ["--no-deps", "--no-build-isolation", inst.bundle]})
    assert seen["args"][:2] == ["--no-deps", "--no-build-isolation"] and seen["args"][2] != inst.bundle
    assert "pyproject.toml" in seen["files"] and "src/umamba/__init__.py" in seen["files"]
    assert not any(f.startswith("tests/") or ".egg-info/" in f for f in seen["files"])
    assert not Path(seen["args"][2]).exists()  # the copy is removed afterwards
