"""What this machine and this Python have — found without importing torch in this process.

Everything here is read from the operating system, `nvidia-smi`, `nvcc` and installed distributions' metadata
(`importlib.metadata`). Whether torch sees the GPU and whether the Mamba CUDA extension really loads are checked
in a subprocess (`deep=True`), because importing a broken extension can crash or poison the interpreter, and inside
Slicer an import of torch cannot be undone.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field

# The exact query; `compute_cap` exists since driver 510. noheader/nounits: one GPU per line, memory in MiB.
NVIDIA_SMI_QUERY = ["--query-gpu=index,name,compute_cap,memory.total,driver_version",
                    "--format=csv,noheader,nounits"]
WATCHED = ("torch", "numpy", "nnunetv2", "mamba-ssm", "causal-conv1d", "simpleitk", "umamba", "triton", "requests",
           "numba")


@dataclass
class Gpu:
    index: int
    name: str
    compute_capability: str  # "9.0"; "" when the driver cannot tell
    memory_mib: int
    driver: str


@dataclass
class Probe:
    os: str                      # "linux" | "windows" | "macos"
    machine: str                 # "x86_64" | "aarch64" | "arm64" | "amd64"
    python: str                  # "3.11"
    in_slicer: bool = False
    slicer_version: str | None = None
    gpus: list = field(default_factory=list)        # [Gpu]
    driver: str | None = None
    nvidia_smi_error: str | None = None             # None when absent or fine; text when present and failing
    packages: dict = field(default_factory=dict)    # canonical name -> version
    torch_cuda: str | None = None                   # "12.8"; None for CPU / MPS builds or no torch
    torch_cxx11abi: str | None = None               # "TRUE" | "FALSE" | None (unknown / not Linux)
    torch_sees_cuda: bool | None = None             # from the subprocess check; None when not checked
    torch_error: str | None = None                  # torch is installed but does not import
    nvcc: str | None = None                         # "13.0"
    kernels: dict = field(default_factory=dict)     # "mamba-ssm"/"causal-conv1d" -> "ok" | "missing" | "broken: ..."

    # ---- derived facts --------------------------------------------------------------------------------------------
    @property
    def python_tag(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def platform_tag(self) -> str:
        if self.os == "linux":
            return f"linux_{self.machine}"
        return f"{self.os}_{self.machine}"

    @property
    def torch_version(self) -> str | None:
        return self.packages.get("torch")

    @property
    def torch_mm(self) -> str | None:
        v = self.torch_version
        m = re.match(r"(\d+)\.(\d+)", v or "")
        return f"{m.group(1)}.{m.group(2)}" if m else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["python_tag"], d["platform_tag"] = self.python_tag, self.platform_tag
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Probe":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["gpus"] = [g if isinstance(g, Gpu) else Gpu(**g) for g in known.get("gpus", [])]
        return cls(**known)


# ------------------------------------------------------------------------------------------------------ nvidia-smi
class NvidiaSmiError(RuntimeError):
    pass


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """Lines of `index, name, compute_cap, memory.total, driver_version` -> GPUs. Raises NvidiaSmiError."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5 or not parts[0].isdigit():
            raise NvidiaSmiError(f"unexpected line from nvidia-smi: {line.strip()[:160]!r}")
        index, name, cap, mem, driver = parts
        if not re.fullmatch(r"\d+\.\d+", cap):
            cap = ""  # "[N/A]" or "[Not Supported]" from old drivers
        try:
            memory = int(float(mem))
        except ValueError:
            memory = 0
        gpus.append(Gpu(int(index), name, cap, memory, driver))
    return gpus


def query_nvidia_smi(timeout: float = 30) -> tuple[list[Gpu], str | None, str | None]:
    """(gpus, driver version, error text). No nvidia-smi on PATH -> ([], None, None)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return [], None, None
    try:
        proc = subprocess.run([exe, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], None, f"nvidia-smi could not be run ({exc})"
    output = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode != 0:
        first = next((ln.strip() for ln in output.splitlines() if ln.strip()), f"exit status {proc.returncode}")
        return [], None, f"nvidia-smi failed: {first[:300]}"
    try:
        gpus = parse_nvidia_smi(proc.stdout)
    except NvidiaSmiError as exc:
        return [], None, f"could not read nvidia-smi's output: {exc}"
    return gpus, (gpus[0].driver if gpus else None), None


# ----------------------------------------------------------------------------------------------------- packages
def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions(names=WATCHED) -> dict[str, str]:
    found = {}
    for dist in md.distributions():
        try:
            name = _canonical(dist.metadata["Name"] or "")
        except Exception:  # a broken .dist-info folder must not break the probe
            continue
        if name in names and name not in found:
            found[name] = dist.version
    return found


def torch_cuda_from_metadata(version: str | None) -> str | None:
    """CUDA version of the installed torch from its version suffix (+cu128) or its nvidia-* requirements."""
    if not version:
        return None
    local = version.partition("+")[2]
    m = re.fullmatch(r"cu(\d+)(\d)", local)
    if m:
        return f"{m.group(1)}.{m.group(2)}"
    if local:  # +cpu, +rocm6.2, +xpu
        return None
    try:
        requires = md.requires("torch") or []
    except md.PackageNotFoundError:
        return None
    for req in requires:
        m = re.match(r"nvidia-cuda-runtime(?:-cu\d+)?\s*==\s*(\d+)\.(\d+)", req)
        if m:
            return f"{m.group(1)}.{m.group(2)}"
    return None


def default_cxx11abi(os_name: str, torch_version: str | None) -> str | None:
    """PyPI torch wheels use the new C++ ABI from 2.7 on (Linux); older ones the old ABI."""
    m = re.match(r"(\d+)\.(\d+)", torch_version or "")
    if os_name != "linux" or not m:
        return None
    return "TRUE" if (int(m.group(1)), int(m.group(2))) >= (2, 7) else "FALSE"


# --------------------------------------------------------------------------------------------------------- nvcc
def find_nvcc() -> str | None:
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            cand = os.path.join(os.environ[var], "bin", "nvcc.exe" if os.name == "nt" else "nvcc")
            if os.path.isfile(cand):
                return cand
    return shutil.which("nvcc")


def nvcc_version(exe: str | None = None) -> str | None:
    exe = exe or find_nvcc()
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else None


# ---------------------------------------------------------------------------------------------- subprocess checks
_TORCH_CHECK = r"""
import json, torch
print(json.dumps({"cuda": torch.version.cuda, "abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
                  "sees_cuda": bool(torch.cuda.is_available())}))
"""


def _run_python(python: str, code: str, timeout: float = 300) -> tuple[int, str, str]:
    try:
        p = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 1, "", f"timed out after {timeout:.0f} s"
    return p.returncode, p.stdout, p.stderr


def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def check_extension(module: str, python: str = sys.executable) -> str:
    """'ok' | 'missing' | 'broken: <error>' — imports torch first (the extension needs libc10 loaded)."""
    code = (f"import torch\ntry:\n    import {module}\nexcept ModuleNotFoundError as e:\n"
            f"    if e.name == {module!r}: raise SystemExit(3)\n    raise\n")
    rc, _out, err = _run_python(python, code)
    if rc == 0:
        return "ok"
    if rc == 3:
        return "missing"
    return "broken: " + _last_error_line(err)


# ------------------------------------------------------------------------------------------------------- probe
def _os_name() -> str:
    return {"win32": "windows", "darwin": "macos"}.get(sys.platform, "linux" if sys.platform.startswith("linux")
                                                     else sys.platform)


def _slicer_version() -> str | None:
    slicer = sys.modules.get("slicer")
    app = getattr(slicer, "app", None) if slicer else None
    if app is None:
        return None
    try:
        return f"{app.majorVersion}.{app.minorVersion}.{app.patchVersion}"
    except AttributeError:
        return getattr(app, "applicationVersion", None)


def probe(deep: bool = True, python: str | None = None) -> Probe:
    """Probe this interpreter's environment. `deep` also runs the subprocess checks (a few seconds) with `python`
    (default: this interpreter; inside Slicer pass PythonSlicer, since sys.executable is the application)."""
    from umamba.install.wheels import EXTENSION_MODULE

    osn = _os_name()
    slicer_version = _slicer_version()
    gpus, driver, smi_error = query_nvidia_smi()
    packages = installed_versions()
    torch_version = packages.get("torch")
    p = Probe(os=osn, machine=platform.machine().lower(), python=f"{sys.version_info[0]}.{sys.version_info[1]}",
              in_slicer=slicer_version is not None, slicer_version=slicer_version, gpus=gpus, driver=driver,
              nvidia_smi_error=smi_error, packages=packages, torch_cuda=torch_cuda_from_metadata(torch_version),
              torch_cxx11abi=default_cxx11abi(osn, torch_version), nvcc=nvcc_version())
    if p.machine == "amd64":
        p.machine = "x86_64"
    for pkg, module in EXTENSION_MODULE.items():
        p.kernels[pkg] = "missing" if pkg not in packages else ("not checked" if not deep else None)
    if deep and torch_version:
        python = python or sys.executable
        rc, out, err = _run_python(python, _TORCH_CHECK)
        if rc == 0:
            facts = json.loads(out.strip().splitlines()[-1])
            p.torch_cuda = facts["cuda"]
            p.torch_cxx11abi = "TRUE" if facts["abi"] else "FALSE"
            p.torch_sees_cuda = facts["sees_cuda"]
        else:
            p.torch_error = _last_error_line(err)
        for pkg, module in EXTENSION_MODULE.items():
            if p.kernels[pkg] is None:
                p.kernels[pkg] = check_extension(module, python) if rc == 0 else "not checked"
    return p


def carried_umamba_state(bundle: str) -> str:
    """The installed umamba against the package an extension carries: same | differs | missing (install/bundle.py)."""
    from umamba.install.bundle import installed_state

    return installed_state(bundle)


def bundled_requirements(bundle: str) -> list[str]:
    """`project.dependencies` of a carried package's pyproject.toml (umamba is installed from it with --no-deps)."""
    import tomllib  # Python 3.11+; Slicer >= 5.10 has 3.12

    with open(os.path.join(bundle, "pyproject.toml"), "rb") as f:
        return list(tomllib.load(f).get("project", {}).get("dependencies", []))


def _applies(requirement: str) -> bool:
    """Whether the requirement's environment marker holds here (True when it cannot be evaluated)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip vendors packaging, but it may not be importable: keep the requirement
        return True
    try:
        marker = Requirement(requirement).marker
        return marker is None or marker.evaluate({"extra": ""})
    except Exception:
        return True


def unmet_umamba_requirements(bundle: str | None = None) -> list[str]:
    """umamba's own requirements, other than torch and nnunetv2 (planned separately), that are not installed and
    whose environment marker holds here; read from the installed umamba, or from a carried package (`bundle`).
    Only presence is checked: pip decides versions when it installs them."""
    try:
        requires = bundled_requirements(bundle) if bundle else (md.requires("umamba") or [])
    except (md.PackageNotFoundError, OSError, ImportError, ValueError):
        return []
    have = {_canonical(d.metadata["Name"] or "") for d in md.distributions() if d.metadata["Name"]}
    missing = []
    for req in requires:
        if "extra ==" in req or not _applies(req):
            continue
        name = _canonical(re.split(r"[<>=!~;\[ (]", req, maxsplit=1)[0])
        if name not in ("torch", "nnunetv2") and name not in have:
            missing.append(req.split(";")[0].strip())
    return missing
