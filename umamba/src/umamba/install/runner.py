"""Carry out a plan: pip steps in the target interpreter, each one all-or-nothing, then the verification.

Safety rules:
- pip itself is atomic per call: it resolves everything before touching the environment, and rolls back what it
  uninstalled when an install fails. We never uninstall first and never call pip twice for one step.
- Packages a step must not change (torch; SimpleITK and requests in Slicer) are pinned with a constraints file
  holding their installed versions, so pip fails instead of swapping them.
- Offline (`--find-links DIR --no-index`): before pip runs, the folder is checked for the step's files, so a
  missing file is named up front; what pip still cannot find (a dependency of a dependency) is named from its error.
- Kernel wheels are checked after installing: if the extension does not load, the wheel we just added is removed
  again, so the previous (portable) setup stays as it was.
- After a failure the environment is compared with its state before the step and verified, and the message says so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile

from umamba.errors import UserError
from umamba.install import planner
from umamba.install.planner import Plan, Step
from umamba.install.wheels import EXTENSION_MODULE


class StepFailed(UserError):
    """A step failed; `unchanged` tells whether the environment is as before the step."""

    def __init__(self, message: str, hint: str | None = None, unchanged: bool | None = None):
        super().__init__(message, hint)
        self.unchanged = unchanged


_LIST_CODE = ("import importlib.metadata as m, json\n"
              "print(json.dumps(sorted({(d.metadata['Name'] or '').lower(): d.version for d in m.distributions()}"
              ".items())))")


def installed(python: str) -> dict:
    """{distribution: version} of the target interpreter, read in a subprocess (this process may be stale)."""
    out = subprocess.run([python, "-c", _LIST_CODE], capture_output=True, text=True, timeout=120).stdout
    return dict(json.loads(out.strip().splitlines()[-1])) if out.strip() else {}


def folder_files(folder: str | None) -> tuple:
    if not folder:
        return ()
    if not os.path.isdir(folder):
        raise UserError(f"the wheel folder {folder} does not exist",
                        "give the folder that holds the downloaded .whl files with --find-links")
    return tuple(sorted(os.listdir(folder)))


# ------------------------------------------------------------------------------------------------ pip commands
def pip_command(python: str, step: Step, find_links: str | None, no_index: bool,
                constraints: str | None = None) -> list[str]:
    args = list(step.pip_args)
    if find_links and step.wheel and step.wheel in args:  # a kernel wheel from the folder: give its path
        args[args.index(step.wheel)] = os.path.join(find_links, step.wheel)
    cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    if find_links:
        cmd += ["--find-links", find_links]
    if no_index:
        cmd.append("--no-index")
    if constraints:
        cmd += ["-c", constraints]
    return cmd + args


def _write_constraints(step: Step, before: dict) -> str | None:
    pins = [f"{name}=={before[name.lower()]}" for name in step.protect if name.lower() in before]
    if not pins:
        return None
    fd, path = tempfile.mkstemp(prefix="umamba-pins-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(pins) + "\n")
    return path


def preflight(step: Step, find_links: str | None, files: tuple, python_tag: str) -> None:
    """Offline: the step's own files must be in the folder (dependencies are checked by pip)."""
    if not find_links or not step.requirement:
        return
    if step.wheel:
        ok = step.wheel in files
        names = [step.wheel]
    else:
        names = step.requirement.split(",")
        ok = all(planner._folder_has(files, n, python_tag) for n in names)
    if not ok:
        missing = [n for n in names if not (n in files or planner._folder_has(files, n, python_tag))]
        raise StepFailed(f"step '{step.name}': the wheel folder {find_links} has no file for {', '.join(missing)}",
                         "on a machine with internet, fetch the files listed by "
                         "`umamba install --print-files --target ...` into that folder, copy it here, run again",
                         unchanged=True)


def explain_pip_failure(output: str, step: Step, find_links: str | None, no_index: bool) -> tuple[str, str]:
    m = re.search(r"No matching distribution found for ([^\s]+)", output)
    if m:
        req = m.group(1)
        if find_links and no_index:
            return (f"step '{step.name}': the wheel folder {find_links} has no file for {req} (a dependency pip "
                    "needs)", f"fetch it on a machine with internet: `python -m pip download \"{req}\" -d "
                    f"{find_links}` (same Python version and OS as here), then run again")
        return (f"step '{step.name}': pip found no distribution for {req}",
                "check the network connection or proxy, or install offline with --find-links DIR --no-index")
    m = re.search(r"(\S+\.whl) is not a supported wheel on this platform", output)
    if m:
        return (f"step '{step.name}': {os.path.basename(m.group(1))} is not made for this Python/OS/CPU",
                "use the file whose cpXY and platform tags match this interpreter (see `umamba doctor`)")
    if "ResolutionImpossible" in output or "conflicting dependencies" in output:
        pinned = ", ".join(step.protect) or "installed packages"
        return (f"step '{step.name}': pip could not satisfy the requirements without changing {pinned}",
                "the nnU-Net version range or the pinned packages conflict; see the pip output above")
    if re.search(r"(Failed to establish a new connection|Could not fetch URL|HTTP error 404|404 Client Error|"
                 r"Temporary failure in name resolution)", output):
        return (f"step '{step.name}': download failed (no network, proxy, or file missing upstream)",
                "install offline: `umamba install --print-files` lists what to fetch; then "
                "`umamba install --find-links DIR --no-index`")
    last = [ln for ln in output.splitlines() if ln.startswith("ERROR")][-1:] or output.strip().splitlines()[-1:]
    return (f"step '{step.name}': pip failed: {last[0] if last else 'no output'}",
            "see pip's output above; nothing was changed unless listed below")


def _run_streaming(cmd: list[str], reporter, env: dict | None = None) -> tuple[int, str]:
    reporter.log("$ " + " ".join(cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        reporter.log(line.rstrip())
    return proc.wait(), "".join(lines)


def run_verify(python: str) -> dict:
    proc = subprocess.run([python, "-m", "umamba.install.verify"], capture_output=True, text=True, timeout=600)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"ok": False, "error": tail[0]}


def _check_kernel(python: str, package: str) -> str:
    from umamba.install.probe import check_extension
    return check_extension(EXTENSION_MODULE[package], python)


# ------------------------------------------------------------------------------------------------- one step
def run_pip_step(step: Step, python: str, reporter, find_links: str | None = None, no_index: bool = False,
                 files: tuple = (), python_tag: str = "") -> None:
    preflight(step, find_links, files, python_tag)
    before = installed(python)
    constraints = _write_constraints(step, before)
    try:
        rc, output = _run_streaming(pip_command(python, step, find_links, no_index, constraints), reporter)
    finally:
        if constraints:
            os.unlink(constraints)
    if rc != 0:
        after = installed(python)
        message, hint = explain_pip_failure(output, step, find_links, no_index)
        unchanged = after == before
        changed = sorted(set(after.items()) ^ set(before.items()))
        raise StepFailed(message, hint + ("" if unchanged else f". Changed by pip: {changed}"), unchanged)
    if step.name in EXTENSION_MODULE:
        state = _check_kernel(python, step.name)
        if state != "ok":
            reporter.log(f"{step.name}: the extension does not load ({state}); removing what this step added",
                         "warning")
            if step.name.lower() not in before:
                subprocess.run([python, "-m", "pip", "uninstall", "-y", step.name], capture_output=True)
            raise StepFailed(f"step '{step.name}': {step.wheel} installed but its CUDA extension does not load "
                             f"({state})", "the portable backend keeps working; report the error above",
                             unchanged=step.name.lower() not in before)


def run_plan(plan: Plan, python: str, reporter, find_links: str | None = None, no_index: bool = False,
             python_tag: str = "", build=None) -> dict:
    """Run every runnable step in order. Manual steps stop the run before anything is installed (installing
    nnunetv2 without torch would let pip choose a torch). Returns {"verify": ..., "steps": [...]}."""
    manual = [s for s in plan.steps if s.action == planner.MANUAL]
    if manual:
        for s in manual:
            reporter.log(f"{s.name}: {s.reason}\n    {s.command}", "warning")
        raise UserError("a step needs you first: " + "; ".join(f"{s.name}: {s.command}" for s in manual),
                        "run the command(s) above, then `umamba install` again")
    files = folder_files(find_links)
    done = []
    runnable = [s for s in plan.steps if s.action in (planner.PIP, planner.BUILD)]
    for i, step in enumerate(runnable, 1):
        reporter.stage("install", f"[{i}/{len(runnable)}] {step.name}: {step.reason}")
        try:
            if step.action == planner.PIP:
                run_pip_step(step, python, reporter, find_links, no_index, files, python_tag)
            elif build is not None:
                build(step)
        except StepFailed as exc:
            check = run_verify(python)
            state = ("the environment is unchanged" if exc.unchanged else "the environment changed (see above)")
            works = ("and the previous setup still works (verification passed)" if check.get("ok")
                     else f"and verification fails: {check.get('error')}")
            raise StepFailed(exc.message, f"{exc.hint} ({state} {works}; steps done before: "
                             f"{', '.join(done) or 'none'})", exc.unchanged) from None
        done.append(step.name)
    reporter.stage("verify", "verification: import umamba and a tiny Mamba forward in a fresh process")
    result = run_verify(python)
    return {"verify": result, "steps": done}
