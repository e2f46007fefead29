"""The Dependencies section as a user meets it (DependenciesWidget.DependenciesSection on real Qt widgets): Check,
Install with its one confirmation, pip through Slicer's `slicer.packaging.pip_ensure` signature into a throw-away
folder from a local wheel folder, failure dialogs, and the restart prompt only when a loaded module changed."""

import base64
import hashlib
import importlib
import inspect
import subprocess
import sys
import types
import zipfile

import pytest

from slicer_qt_layer import click
from slicer_qt_layer.fixtures import *  # noqa: F401,F403  (slicer_app, dialogs, module_widget)


# Slicer's pip_ensure as defined in Base/Python/slicer/packaging.py at tag v5.12.3 (the same at v5.12.0-5.12.2 and
# on main; v5.10.0 has no slicer.packaging): names, kinds and defaults copied from that source.
def RECORDED_PIP_ENSURE(requirements, constraints=None, skip_packages=None, prompt_install=True,
                        prompt_restart=True, requester=None, skip_in_testing=True, show_progress=True):
    pass


def tinyWheel(folder, name, version):
    """A pure-Python wheel (PEP 427) holding one module `name` with VERSION = version."""
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    files = {f"{name}/__init__.py": f"VERSION = {version!r}\n",
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                                  "Tag: py3-none-any\n",
             f"{name}-{version}.dist-info/top_level.txt": f"{name}\n"}
    record = [f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(t.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(t.encode())}" for n, t in files.items()]
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join(record + [f"{name}-{version}.dist-info/RECORD,,"]) + "\n"
    with zipfile.ZipFile(path, "w") as z:
        for n, t in files.items():
            z.writestr(n, t)
    return path


@pytest.fixture
def slicerPackaging(slicer_app, monkeypatch, tmp_path):
    """`slicer.packaging` of Slicer >= 5.11 with pip_ensure's recorded signature; it installs with real pip from
    `tmp_path/wheels` (no index) into `tmp_path/site` (on sys.path), and records each call."""
    import slicer

    wheels, site, calls = tmp_path / "wheels", tmp_path / "site", []
    wheels.mkdir()
    site.mkdir()

    def pip_ensure(requirements, constraints=None, skip_packages=None, prompt_install=True, prompt_restart=True,
                   requester=None, skip_in_testing=True, show_progress=True):
        calls.append(inspect.signature(RECORDED_PIP_ENSURE).bind(
            requirements, constraints=constraints, skip_packages=skip_packages, prompt_install=prompt_install,
            prompt_restart=prompt_restart, requester=requester))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels),
                        "--upgrade", "--target", str(site), *map(str, requirements)], check=True,
                       capture_output=True, text=True)

    module = types.ModuleType("slicer.packaging")
    module.pip_ensure = pip_ensure
    monkeypatch.setitem(sys.modules, "slicer.packaging", module)
    monkeypatch.setattr(slicer, "packaging", module, raising=False)
    monkeypatch.syspath_prepend(str(site))
    return types.SimpleNamespace(wheels=wheels, site=site, calls=calls)


def planWith(step):
    from umamba.install import planner
    return planner.Plan(steps=[step, planner.Step("verify", "verify", "a Mamba layer runs")], backend="portable",
                        device="cpu")


def nnunetLikeStep(requirement):
    """The planner's nnunetv2 step (pip with protected packages), for a tiny package."""
    from umamba.install import planner
    return planner.Step("nnunetv2", "pip", "needed to run nnU-Net", pip_args=[requirement], requirement=requirement,
                        protect=["requests"])


def test_our_call_binds_to_slicers_pip_ensure_signature():
    from UMambaSegmentationLib import DependencyInstaller as DI
    seen = []

    class Recorder(types.ModuleType):
        def pip_ensure(self, *args, **kwargs):
            seen.append(inspect.signature(RECORDED_PIP_ENSURE).bind(*args, **kwargs))

    sys.modules["slicer.packaging"] = Recorder("slicer.packaging")
    try:
        calls = DI.SlicerCalls(sys.executable)
        assert calls.hasPipEnsure()
        calls.pipEnsure("nnunetv2>=2.6", ["SimpleITK", "torch"])
    finally:
        del sys.modules["slicer.packaging"]
    assert seen[0].arguments == {"requirements": ["nnunetv2>=2.6"], "skip_packages": ["SimpleITK", "torch"],
                                 "prompt_install": False, "prompt_restart": False,
                                 "requester": "UMambaSegmentation"}
    # a name Slicer does not have would not bind
    with pytest.raises(TypeError):
        inspect.signature(RECORDED_PIP_ENSURE).bind(["x"], skipPackages=[])
    # Slicer 5.10 (no slicer.packaging): the constraints-file pip_install path
    assert not DI.SlicerCalls(sys.executable).hasPipEnsure()


def test_check_shows_the_plan(module_widget, dialogs, qtbot):
    section = module_widget.dependencies
    click(section.collapsible)
    click(section.checkButton)
    assert section.statusLabel.text.startswith("Mamba backend: ")
    assert "umamba: " in section.logView.toPlainText() and "verify: " in section.logView.toPlainText()


def test_install_through_pip_ensure_then_restart_only_when_a_loaded_module_changed(
        module_widget, dialogs, qtbot, monkeypatch, slicerPackaging, slicer_app):
    section = module_widget.dependencies
    tinyWheel(slicerPackaging.wheels, "umambatinydep", "0.1")
    monkeypatch.setattr(section.installer, "makePlan", lambda deep=True: planWith(nnunetLikeStep("umambatinydep")))
    click(section.collapsible)
    click(section.installButton)
    confirmation = dialogs.shown[0]
    assert confirmation.buttons == ["Ok", "Cancel"] and "- nnunetv2: umambatinydep" in confirmation.text
    assert "Mamba backend afterwards: portable (device: cpu)" in confirmation.text
    assert len(slicerPackaging.calls) == 1 and slicerPackaging.calls[0].arguments["prompt_install"] is False
    assert (slicerPackaging.site / "umambatinydep" / "__init__.py").is_file()
    assert section.statusLabel.text.startswith("Verified: a Mamba layer ran on cpu")
    assert "Installing nnunetv2" in section.logView.toPlainText() and not slicer_app.restartRequested
    assert len(dialogs.shown) == 1  # nothing was loaded, so no restart prompt

    # now the package is loaded and a newer one is installed: the restart prompt
    importlib.invalidate_caches()
    import umambatinydep
    assert umambatinydep.VERSION == "0.1"
    tinyWheel(slicerPackaging.wheels, "umambatinydep", "0.2")
    monkeypatch.setattr(section.installer, "makePlan",
                        lambda deep=True: planWith(nnunetLikeStep("umambatinydep==0.2")))
    click(section.installButton)
    assert dialogs.shown[-1].buttons == ["Yes", "No"] and "umambatinydep changed" in dialogs.shown[-1].text
    assert slicer_app.restartRequested and section.statusLabel.text.startswith("Restart needed: umambatinydep")
    sys.modules.pop("umambatinydep", None)


def test_install_failure_shows_details_and_changes_nothing(module_widget, dialogs, qtbot, monkeypatch,
                                                             slicerPackaging):
    section = module_widget.dependencies
    tinyWheel(slicerPackaging.wheels, "umambatinydep", "0.1")
    monkeypatch.setattr(section.installer, "makePlan",
                        lambda deep=True: planWith(nnunetLikeStep("umambatinydep==9.9")))  # not in the folder
    click(section.collapsible)
    click(section.installButton)
    failure = dialogs.shown[-1]
    assert failure.text.startswith("Installation failed:") and "previous setup was not removed" in failure.detailedText
    assert section.statusLabel.text.startswith("Installation failed:")
    assert list(slicerPackaging.site.iterdir()) == []
    # the person says Cancel at the confirmation: nothing is installed
    dialogs.answer = False
    monkeypatch.setattr(section.installer, "makePlan", lambda deep=True: planWith(nnunetLikeStep("umambatinydep")))
    click(section.installButton)
    assert len(slicerPackaging.calls) == 1 and list(slicerPackaging.site.iterdir()) == []


def test_without_the_pytorch_extension_the_install_says_what_to_do(module_widget, dialogs, monkeypatch,
                                                                   slicerPackaging):
    from umamba.install import planner
    section = module_widget.dependencies
    monkeypatch.setattr(section.installer, "makePlan", lambda deep=True: planWith(
        planner.Step("torch", "pytorchutils", "PyTorch is missing")))
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # the PyTorch extension is not installed
    click(section.collapsible)
    click(section.installButton)
    assert "- torch: PyTorch (through the PyTorch extension" in dialogs.shown[0].text
    error = dialogs.shown[-1]
    assert error.text == "The PyTorch extension is not installed." and "Extensions Manager" in error.detailedText
    assert section.statusLabel.text.startswith("The PyTorch extension is not installed.\nInstall 'PyTorch'")


def test_an_install_interrupted_by_a_restart_continues_and_reports_a_failed_verification(
        slicer_app, dialogs, qtbot, monkeypatch, slicerPackaging, tmp_path):
    """After the restart: the section opens by itself, says what remains, and Install continues from there.
    Here the Python that runs umamba lacks it, so the final verification fails and says why."""
    import os
    import UMambaSegmentation
    from UMambaSegmentationLib import DependencyInstaller as DI
    tinyWheel(slicerPackaging.wheels, "umambatinydep", "0.1")
    steps = [nnunetLikeStep("umambatinydep").to_dict(), {"name": "verify", "action": "verify", "reason": "check"}]
    DI.savePending(DI.pendingFilePath(os.path.dirname(slicer_app.slicerUserSettingsFilePath)), steps, "restart")
    bare = tmp_path / "python"  # Slicer's Python without umamba: isolated mode, no site-packages
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    bare.chmod(0o755)
    monkeypatch.setenv("UMAMBA_SLICER_PYTHON", str(bare))
    widget = UMambaSegmentation.UMambaSegmentationWidget()
    widget.setup()
    qtbot.addWidget(widget.parent)
    widget.parent.show()
    section = widget.dependencies
    assert not section.collapsible.collapsed
    assert section.statusLabel.text.startswith("An installation was interrupted by a restart; 2 step(s) remain.")
    click(section.installButton)
    assert "- nnunetv2: umambatinydep" in dialogs.shown[0].text
    assert (slicerPackaging.site / "umambatinydep").is_dir()
    assert section.statusLabel.text.startswith("Verification failed: ")
    assert section.installer.pendingSteps() == []  # done: nothing left to resume
    widget.cleanup()
