"""Install umamba's dependencies into Slicer's Python: one confirmation, resumable across a restart, verified.

Qt-free and torch-free (the module must load without torch). The decisions come from the `umamba.install`
planner; this file only carries them out the Slicer way:
- torch through the PyTorch extension (PyTorchUtils picks the CUDA build for the driver) — never plain pip;
- umamba itself from the package folder the extension carries (`pip install --no-deps`): it is not on PyPI;
- nnunetv2 with SimpleITK, torch and requests kept as Slicer ships them: `slicer.packaging.pip_ensure(...,
  skip_packages=...)` where Slicer has it (5.11+), else pip with a constraints file pinning their installed versions;
- the Mamba kernel wheel directly, `--no-deps`;
- a restart when a package that is already imported changed: the remaining steps are saved in a small JSON file in
  the user's settings folder and the installation resumes after the restart;
- a verification at the end, in a subprocess (PythonSlicer -m umamba.install.verify).
Nothing happens on module load or in testing mode: every entry point is an explicit call.

Slicer-specific calls are passed in (`SlicerCalls`), so the logic runs and is tested outside the application.
"""

import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from UMambaSegmentationLib.Errors import UserFacingError

PENDING_FILE_NAME = "UMambaSegmentation-pending-install.json"
REQUESTER = "UMambaSegmentation"


# ------------------------------------------------------------------------------------------ the carried package
def findBundledPackage(moduleDir):
    """The umamba package folder (pyproject.toml + src/umamba) carried by the extension, or None.

    Installed extension: <module>/Resources/umamba-package (the module CMakeLists copies it there).
    Source checkout (developer mode): <repo>/umamba next to the module folder."""
    for candidate in (os.path.join(moduleDir, "Resources", "umamba-package"),
                      os.path.join(os.path.dirname(os.path.abspath(moduleDir)), "umamba")):
        if os.path.isfile(os.path.join(candidate, "pyproject.toml")) and \
                os.path.isdir(os.path.join(candidate, "src", "umamba")):
            return os.path.abspath(candidate)
    return None


def bundledVersion(bundle):
    with open(os.path.join(bundle, "pyproject.toml"), encoding="utf-8") as f:
        m = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M)
    return m.group(1) if m else None


def bundleTools(bundle):
    """umamba/install/bundle.py of the carried package (content hashes), loaded by path: the installed umamba, if
    any, may be older than the carried one."""
    path = os.path.join(bundle, "src", "umamba", "install", "bundle.py")
    spec = importlib.util.spec_from_file_location("umamba_carried_bundle", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def importInstallTools(bundle):
    """(probe, planner) modules of umamba.install — from the installed umamba, else from the carried source
    (both torch-free, so importing them inside Slicer changes nothing)."""
    try:
        importlib.import_module("umamba.install.planner")
    except ImportError:
        if not bundle:
            raise UserFacingError("The umamba package is neither installed nor carried by this extension.",
                                  "Reinstall the UMambaSegmentation extension.")
        src = os.path.join(bundle, "src")
        if src not in sys.path:
            sys.path.insert(0, src)
    return importlib.import_module("umamba.install.probe"), importlib.import_module("umamba.install.planner")


# ------------------------------------------------------------------------------------------------ pending state
def pendingFilePath(settingsDir):
    return os.path.join(settingsDir, PENDING_FILE_NAME)


def savePending(path, steps, reason):
    """Write the remaining steps atomically (a half-written file would be worse than none)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".pending-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"version": 1, "reason": reason, "steps": steps}, f, indent=1)
    os.replace(tmp, path)


def loadPending(path):
    """The saved steps (list of dicts), or [] when there is nothing (or nothing readable) to resume."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return []
    steps = data.get("steps") if isinstance(data, dict) else None
    return [s for s in steps if isinstance(s, dict) and "name" in s and "action" in s] if isinstance(steps, list) \
        else []


def clearPending(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


# --------------------------------------------------------------------------------------------- restart detection
def installedVersions():
    importlib.invalidate_caches()
    versions = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name:
            versions[name] = dist.version
    return versions


def changedImportedPackages(before, after, modules=None):
    """Distributions whose version changed (or appeared) while one of their top-level modules is imported."""
    modules = sys.modules if modules is None else modules
    owners = {}
    for top, dists in importlib.metadata.packages_distributions().items():
        for d in dists:
            owners.setdefault(d.lower().replace("_", "-"), set()).add(top)
    changed = []
    for name, version in after.items():
        if before.get(name) != version and any(m in modules for m in owners.get(name, ())):
            changed.append(name)
    return sorted(changed)


# ------------------------------------------------------------------------------------------------ slicer calls
class SlicerCalls:
    """The calls into Slicer the installer needs (defaults use the real application)."""

    def __init__(self, pythonExecutable, log=print):
        self.pythonExecutable = pythonExecutable
        self.log = log

    def slicerVersion(self):
        import slicer
        return (slicer.app.majorVersion, slicer.app.minorVersion)

    def testingEnabled(self):
        try:
            import slicer
            return bool(slicer.app.testingEnabled())
        except (ImportError, AttributeError):
            return False

    def installTorch(self):
        try:
            import PyTorchUtils
        except ImportError:
            raise UserFacingError("The PyTorch extension is not installed.",
                                  "Install 'PyTorch' from the Extensions Manager, restart Slicer, then press "
                                  "'Install dependencies' again.") from None
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False)
        if torch is None:
            raise UserFacingError("PyTorch was not installed.", "See the PyTorch Utils module for details.")

    def pipInstall(self, args):
        """pip install `args` (a list) into Slicer's Python, output to the log."""
        import slicer
        slicer.util.pip_install(args)

    def pipEnsure(self, requirement, skipPackages):
        """nnunetv2 and its dependencies except `skipPackages`, the Slicer >= 5.11 way: Slicer's own
        `slicer.packaging.pip_ensure` (Base/Python/slicer/packaging.py, v5.12.3; `slicer.pydeps` if a later Slicer
        moves it). No prompts: the panel has asked once for everything already."""
        ensure = pipEnsureFunction()
        ensure([requirement], skip_packages=list(skipPackages), prompt_install=False, prompt_restart=False,
               requester=REQUESTER)

    def hasPipEnsure(self):
        return pipEnsureFunction() is not None


def pipEnsureFunction():
    """Slicer's pip_ensure (5.11+), or None on Slicer 5.10."""
    for name in ("slicer.packaging", "slicer.pydeps"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if callable(getattr(module, "pip_ensure", None)):
            return module.pip_ensure
    return None


# -------------------------------------------------------------------------------------------------- installer
class DependencyInstaller:
    def __init__(self, moduleDir, settingsDir, calls):
        self.bundle = findBundledPackage(moduleDir)
        self.pendingPath = pendingFilePath(settingsDir)
        self.calls = calls

    def makePlan(self, deep=True):
        probe, planner = importInstallTools(self.bundle)
        p = probe.probe(deep=deep, python=self.calls.pythonExecutable)
        p.in_slicer = True
        if not p.slicer_version:
            try:
                p.slicer_version = "%d.%d" % self.calls.slicerVersion()
            except Exception:
                p.slicer_version = "unknown"
        options = planner.PlanOptions(bundled_umamba=self.bundle,
                                      bundled_version=bundledVersion(self.bundle) if self.bundle else None,
                                      python=self.calls.pythonExecutable)
        missing = None
        if self.bundle:
            options.bundled_state = bundleTools(self.bundle).installed_state(self.bundle)
            if hasattr(planner.PlanOptions, "bundled_state"):  # an older installed umamba plans by version only
                missing = probe.unmet_umamba_requirements(self.bundle)  # umamba goes in with --no-deps
        return planner.make_plan(p, options, missing)

    @staticmethod
    def actionableSteps(plan):
        return [s.to_dict() for s in plan.steps if s.action in ("pip", "pytorchutils", "verify")]

    @staticmethod
    def confirmationText(steps, plan=None):
        """The one confirmation: everything that will be installed, and what will not happen and why."""
        lines = ["The following will be installed into Slicer's Python:", ""]
        for s in steps:
            if s["action"] == "verify":
                continue
            what = {"pytorchutils": "PyTorch (through the PyTorch extension; it picks the build for your GPU)",
                    "pip": s.get("wheel") or " ".join(a for a in s.get("pip_args", []) if not a.startswith("--"))}
            lines.append(f"- {s['name']}: {what.get(s['action'], s['action'])}")
            lines.append(f"    {s['reason']}")
        if plan is not None:
            for s in plan.steps:
                if s.action in ("unavailable", "advice", "skipped"):
                    lines.append(f"- not installed: {s.name}: {s.reason}")
            lines += ["", f"Mamba backend afterwards: {plan.backend} (device: {plan.device})."]
        lines += ["", "This can take several minutes. Slicer may ask to restart in between; the installation then "
                  "continues after the restart."]
        return "\n".join(lines)

    # -- running ---------------------------------------------------------------------------------------------
    def run(self, steps):
        """Carry out `steps` (dicts). Returns ("done", verifyResult) or ("restart", changedPackages).

        In testing mode nothing is installed (Slicer's automated tests must not change the environment)."""
        if self.calls.testingEnabled():
            self.calls.log("Testing mode: dependency installation skipped.")
            return ("skipped", None)
        remaining = list(steps)
        while remaining:
            step = remaining[0]
            if step["action"] == "verify":
                clearPending(self.pendingPath)
                return ("done", self.verify())
            self.calls.log(f"Installing {step['name']}: {step['reason']}")
            before, importedBefore = installedVersions(), set(sys.modules)
            if step["name"] == "umamba" and self.bundle:
                self._umambaLoaded = bundleTools(self.bundle).loaded_hash()
            self._runStep(step)
            remaining = remaining[1:]
            # only what was imported BEFORE the step counts: PyTorchUtils imports the torch it just installed
            changed = changedImportedPackages(before, installedVersions(), importedBefore)
            if step["name"] == "umamba" and self.bundle:
                # the installer itself loaded umamba.install: restart only if that code differs from what was installed
                stale = self._umambaLoaded not in (None, bundleTools(self.bundle).bundled_hash(self.bundle))
                changed = [c for c in changed if c != "umamba"] + (["umamba"] if stale else [])
            if changed:
                savePending(self.pendingPath, remaining, f"restart after {step['name']} changed {changed}")
                return ("restart", changed)
        clearPending(self.pendingPath)
        return ("done", self.verify())

    def _runStep(self, step):
        action = step["action"]
        if action == "pytorchutils":
            self.calls.installTorch()
        elif action == "pip" and step["name"] == "umamba" and self.bundle:
            # build from a copy: the extension's folder may be read-only, and a build writes into its source tree
            with tempfile.TemporaryDirectory(prefix="umamba-package-") as tmp:
                copy = os.path.join(tmp, "umamba")
                shutil.copytree(self.bundle, copy, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__",
                                                                                  "build", "tests"))
                bundleTools(self.bundle).stamp(copy)  # its content hash, read by the next plan
                self.calls.pipInstall([copy if a == self.bundle else a for a in step["pip_args"]])
        elif action == "pip":
            protect = step.get("protect") or []
            if step["name"] == "nnunetv2" and protect and self.calls.hasPipEnsure():
                self.calls.pipEnsure(step["pip_args"][-1], protect)
            else:
                pins = self._pinsFile(protect)
                try:
                    self.calls.pipInstall(list(step["pip_args"]) + (["-c", pins] if pins else []))
                finally:
                    if pins:
                        os.remove(pins)
        else:
            raise UserFacingError(f"Unknown install step {step['name']!r} ({action}).")

    @staticmethod
    def _pinsFile(protect):
        """Slicer 5.10: pip keeps protected packages at their installed versions through a constraints file."""
        versions = installedVersions()
        pins = [f"{p}=={versions[p.lower()]}" for p in protect if p.lower() in versions]
        if not pins:
            return None
        fd, path = tempfile.mkstemp(prefix="umamba-pins-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(pins) + "\n")
        return path

    def pendingSteps(self):
        return [] if self.calls.testingEnabled() else loadPending(self.pendingPath)

    def verify(self):
        """Import umamba and run a tiny Mamba forward in a fresh process; the panel shows the result."""
        try:
            proc = subprocess.run([self.calls.pythonExecutable, "-m", "umamba.install.verify"], capture_output=True,
                                  text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"ok": False, "error": str(exc)}
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            tail = (proc.stderr or "no output").strip().splitlines()[-1:]
            return {"ok": False, "error": tail[0] if tail else "no output"}
