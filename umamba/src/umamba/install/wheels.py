"""The prebuilt mamba-ssm and causal-conv1d wheels the upstream projects published on their GitHub releases.

Both projects ship only source on PyPI; their `setup.py` tries to download a prebuilt wheel from the GitHub release
and otherwise compiles for every GPU architecture (which needs nvcc and takes most of an hour). We skip `setup.py`
entirely: the wheel file name is computed here and the wheel is installed directly with `--no-deps`.

File name, as built by the projects' `get_wheel_url()` (setup.py) since mamba-ssm 2.2.3 / causal-conv1d 1.5:
    {dist}-{version}+cu{CUDA major}torch{torch major.minor}cxx11abi{TRUE|FALSE}-cp{XY}-cp{XY}-linux_{arch}.whl
URL: https://github.com/{repo}/releases/download/{tag}/{file name with '+' as %2B}
Note that the release tag is not always the version: causal-conv1d 1.6.1's wheels live under tag v1.6.1.post4.

What was published (kept conservative — a combination missing here only means the portable backend runs, a wrong
one would mean a broken install). 2.3.1 / 1.6.1: from complete listings of those releases' assets. 2.2.4 /
1.5.0.post8: from the release workflow's build matrix (torch 2.1.2–2.5.1, CUDA 11.8 / 12.3, both ABIs, Python
3.9–3.13 where torch has it) and asset names seen in use; its torch-2.6 nightly builds are left out.
- mamba-ssm 2.3.1 / causal-conv1d 1.6.1 (tag v1.6.1.post4): Python 3.10–3.13, cxx11abi TRUE; CUDA 11: torch 2.6,
  2.7 (x86_64); CUDA 12: torch 2.6 (x86_64), 2.7–2.10 (x86_64, aarch64); CUDA 13: torch 2.9, 2.10 (x86_64,
  aarch64). cxx11abi FALSE additionally for torch 2.6 (the PyPI torch 2.6 wheels use the old ABI).
- mamba-ssm 2.2.4 / causal-conv1d 1.5.0.post8: x86_64, CUDA 11 and 12, torch 2.1–2.5 (causal-conv1d also 2.6),
  Python 3.9–3.12 (3.13 with torch 2.5), both ABIs.
Nothing for torch >= 2.11, Windows or macOS.

GPU architectures compiled into the wheels (setup.py's gencode list): sm_75, sm_80, sm_87, sm_90 always; sm_100
and sm_120 only when built with CUDA >= 12.8, which we count on for the CUDA 13 wheels only (the CUDA 12 wheels'
nvcc minor version is not recorded in their names). A cubin for sm_XY also runs on sm_XZ with Z >= Y (same major),
so sm_86 / sm_89 use sm_80 code, sm_121 uses sm_120 code. There is no PTX, so sm_61 / sm_70 get nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

REPOS = {"mamba-ssm": "state-spaces/mamba", "causal-conv1d": "Dao-AILab/causal-conv1d"}
FILE_PREFIX = {"mamba-ssm": "mamba_ssm", "causal-conv1d": "causal_conv1d"}
# The import name of each package's compiled extension (what actually has to load for the kernel to be usable).
EXTENSION_MODULE = {"mamba-ssm": "selective_scan_cuda", "causal-conv1d": "causal_conv1d_cuda"}


@dataclass(frozen=True)
class Release:
    """One upstream release and the combinations it has wheels for."""
    package: str
    version: str       # the version in the wheel file name
    tag: str           # the GitHub release tag holding the files
    # (cuda_major, torch "major.minor") -> platforms ("linux_x86_64", "linux_aarch64")
    builds: dict
    pythons: tuple     # ("cp310", ...)
    abis: dict         # torch "major.minor" -> tuple of "TRUE"/"FALSE" published for it
    python_exceptions: dict = None  # torch "major.minor" -> pythons to drop / add: {"-": (...), "+": (...)}

    def pythons_for(self, torch_mm: str) -> tuple:
        py = list(self.pythons)
        rule = (self.python_exceptions or {}).get(torch_mm, {})
        py = [p for p in py if p not in rule.get("-", ())] + list(rule.get("+", ()))
        return tuple(py)


_X86 = ("linux_x86_64",)
_BOTH = ("linux_x86_64", "linux_aarch64")
_NEW = {"cu11": {"2.6": _X86, "2.7": _X86},
        "cu12": {"2.6": _X86, "2.7": _BOTH, "2.8": _BOTH, "2.9": _BOTH, "2.10": _BOTH},
        "cu13": {"2.9": _BOTH, "2.10": _BOTH}}
_NEW_BUILDS = {(int(cu[2:]), mm): plats for cu, per in _NEW.items() for mm, plats in per.items()}
_NEW_ABIS = {mm: (("TRUE", "FALSE") if mm == "2.6" else ("TRUE",)) for mm in ("2.6", "2.7", "2.8", "2.9", "2.10")}
_NEW_PY = ("cp310", "cp311", "cp312", "cp313")


def _old_builds(torches):
    return {(cu, mm): _X86 for cu in (11, 12) for mm in torches}


_OLD_PY = ("cp39", "cp310", "cp311", "cp312")
_OLD_PY_EXC = {"2.1": {"-": ("cp312",)}, "2.5": {"+": ("cp313",)}}

RELEASES: tuple[Release, ...] = (
    Release("mamba-ssm", "2.3.1", "v2.3.1", _NEW_BUILDS, _NEW_PY, _NEW_ABIS),
    Release("mamba-ssm", "2.2.4", "v2.2.4", _old_builds(("2.1", "2.2", "2.3", "2.4", "2.5")), _OLD_PY,
            {mm: ("TRUE", "FALSE") for mm in ("2.1", "2.2", "2.3", "2.4", "2.5")}, _OLD_PY_EXC),
    Release("causal-conv1d", "1.6.1", "v1.6.1.post4", _NEW_BUILDS, _NEW_PY, _NEW_ABIS),
    Release("causal-conv1d", "1.5.0.post8", "v1.5.0.post8", _old_builds(("2.1", "2.2", "2.3", "2.4", "2.5", "2.6")),
            _OLD_PY, {mm: ("TRUE", "FALSE") for mm in ("2.1", "2.2", "2.3", "2.4", "2.5", "2.6")}, _OLD_PY_EXC),
)

# Compute capabilities (as "major.minor") that have native code in the wheels, by CUDA major of the build.
_BASE_ARCHS = ("7.5", "8.0", "8.7", "9.0")
WHEEL_ARCHS = {11: _BASE_ARCHS, 12: _BASE_ARCHS, 13: _BASE_ARCHS + ("10.0", "10.3", "11.0", "12.0", "12.1")}


@dataclass(frozen=True)
class WheelChoice:
    package: str
    version: str
    filename: str
    url: str


def wheel_filename(package: str, version: str, cuda_major: int, torch_mm: str, cxx11abi: str, python_tag: str,
                   platform_tag: str) -> str:
    """The file name exactly as the upstream release workflow names it."""
    return (f"{FILE_PREFIX[package]}-{version}+cu{cuda_major}torch{torch_mm}cxx11abi{cxx11abi}"
            f"-{python_tag}-{python_tag}-{platform_tag}.whl")


def wheel_url(package: str, tag: str, filename: str) -> str:
    return f"https://github.com/{REPOS[package]}/releases/download/{tag}/{quote(filename, safe='')}"


def arch_supported(compute_capability: str, cuda_major: int) -> bool:
    """Does a wheel built with CUDA `cuda_major` carry code this GPU can run? (same major, minor >= built minor)"""
    try:
        major, minor = (int(x) for x in compute_capability.split("."))
    except (ValueError, AttributeError):
        return False
    for built in WHEEL_ARCHS.get(cuda_major, ()):
        bmaj, bmin = (int(x) for x in built.split("."))
        if bmaj == major and bmin <= minor:
            return True
    return False


def find_wheel(package: str, torch_mm: str, cuda_major: int, cxx11abi: str, python_tag: str,
               platform_tag: str) -> WheelChoice | None:
    """The newest published wheel of `package` for this combination, or None."""
    for rel in RELEASES:
        if rel.package != package:
            continue
        if platform_tag not in rel.builds.get((cuda_major, torch_mm), ()):
            continue
        if python_tag not in rel.pythons_for(torch_mm) or cxx11abi not in rel.abis.get(torch_mm, ()):
            continue
        name = wheel_filename(package, rel.version, cuda_major, torch_mm, cxx11abi, python_tag, platform_tag)
        return WheelChoice(package, rel.version, name, wheel_url(package, rel.tag, name))
    return None


def newest_supported_torch() -> str:
    """The newest torch major.minor any release has wheels for (for messages)."""
    mms = {mm for rel in RELEASES for (_cu, mm) in rel.builds}
    return max(mms, key=lambda s: tuple(int(x) for x in s.split(".")))
