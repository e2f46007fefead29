"""Which Python runs the `umamba` command line, and how a command line is built (Qt-free).

The module never imports torch or umamba itself: every heavy step is `python -m umamba ...` in a background
process (see ProcessRunner). Inside Slicer, `sys.executable` may be the Slicer application itself (running it
with `-m umamba` would open a second Slicer), so the launcher-free interpreter `PythonSlicer` is looked for
first. Tests and other hosts pass the interpreter explicitly, or set UMAMBA_SLICER_PYTHON.
"""

import os
import shutil
import sys

PYTHON_ENV_VARIABLE = "UMAMBA_SLICER_PYTHON"


def _isPythonInterpreter(path):
    name = os.path.basename(path).lower()
    return name.startswith("python") and os.path.isfile(path)


def findPythonExecutable():
    """The interpreter that has (or will get) the umamba package: the one Slicer's own Python modules use."""
    override = os.environ.get(PYTHON_ENV_VARIABLE)
    if override:
        return override
    exeName = "PythonSlicer.exe" if sys.platform == "win32" else "PythonSlicer"
    candidates = [os.path.join(os.path.dirname(sys.executable), exeName)]
    # Slicer's `bin` folder also holds PythonSlicer next to the application on every platform.
    if "slicer" in sys.modules and hasattr(sys.modules["slicer"], "app"):
        try:
            candidates.append(os.path.join(sys.modules["slicer"].app.slicerHome, "bin", exeName))
        except AttributeError:
            pass
    candidates.append(shutil.which("PythonSlicer") or "")
    for candidate in candidates:
        if candidate and os.path.isfile(candidate):
            return candidate
    if _isPythonInterpreter(sys.executable):
        return sys.executable
    raise FileNotFoundError(
        f"No Python interpreter found to run umamba (sys.executable is {sys.executable}). "
        f"Set the environment variable {PYTHON_ENV_VARIABLE} to the Python that has umamba installed.")


def umambaCommand(arguments, pythonExecutable=None, progressJson=True):
    """[python, -m, umamba, *arguments, --progress-json]."""
    command = [pythonExecutable or findPythonExecutable(), "-m", "umamba", *[str(a) for a in arguments]]
    if progressJson:
        command.append("--progress-json")
    return command
