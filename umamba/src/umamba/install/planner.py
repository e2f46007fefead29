"""Probe -> ordered install steps, each with its reason. A pure function: no I/O, no subprocess, no torch.

Rules (README "Installing dependencies"):
- torch: inside Slicer through the PyTorch extension (PyTorchUtils picks the CUDA build for the driver), never a
  plain `pip install torch`; outside Slicer the exact command is printed — or, for an offline install, the torch
  wheel the person put in the wheel folder is installed. An existing torch is never replaced automatically.
- nnunetv2 within the supported range, with torch pinned (and inside Slicer SimpleITK and requests as well), so
  that nothing Slicer or the person already relies on is swapped.
- Mamba kernels: the exact prebuilt wheel (wheels.py) installed with --no-deps, never through setup.py. When none
  fits, the step is a note and the portable backend runs. Building is only on request and only with a matching nvcc.
- Verification last, always.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from umamba.install import wheels
from umamba.install.probe import Probe

NNUNET_SPEC = ">=2.6,<2.9"
SLICER_PROTECTED = ("SimpleITK", "torch", "requests")
# Lowest driver that runs each CUDA major (CUDA minor-version compatibility), Linux and Windows.
DRIVER_MIN = {"linux": {11: (450, 80), 12: (525, 60), 13: (580, 65)},
              "windows": {11: (452, 39), 12: (528, 33), 13: (580, 88)}}
# Newest PyTorch CUDA wheel index a driver can run (Linux numbers; Windows drivers are a few points higher).
TORCH_INDEX_BY_DRIVER = (((580, 65), "cu130"), ((570, 26), "cu128"), ((525, 60), "cu126"), ((450, 80), "cu118"))
TORCH_INDEX = "https://download.pytorch.org/whl/{}"

# Step actions
OK, PIP, PYTORCHUTILS, MANUAL, ADVICE, UNAVAILABLE, PENDING, SKIPPED, BUILD, VERIFY = (
    "ok", "pip", "pytorchutils", "manual", "advice", "unavailable", "pending", "skipped", "build", "verify")
RUNNABLE = (PIP, PYTORCHUTILS, BUILD, VERIFY)


@dataclass
class Step:
    name: str
    action: str
    reason: str
    pip_args: list = field(default_factory=list)    # after `pip install`; the runner adds --find-links/--no-index
    requirement: str | None = None                   # what must be in an offline wheel folder
    protect: list = field(default_factory=list)      # pinned to their installed version during this step
    wheel: str | None = None
    url: str | None = None
    command: str | None = None                       # for manual / advice steps: what to run

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [], "")}


@dataclass
class PlanOptions:
    find_links: str | None = None          # offline wheel folder
    no_index: bool = False
    folder_files: tuple = ()                # file names in find_links (the caller lists the folder)
    build_kernels: bool = False
    skip: tuple = ()                        # step names the person asked to skip ("nnunetv2", "kernels")
    bundled_umamba: str | None = None       # Slicer: the umamba package folder carried by the extension
    bundled_version: str | None = None
    bundled_state: str | None = None        # installed umamba vs the carried content: same | differs | missing
    python: str = "python"                  # shown in printed commands


@dataclass
class Plan:
    steps: list
    backend: str              # the training scan once the plan is done: "triton", "cuda" (mamba-ssm) or "portable"
    device: str               # "cuda" | "mps" | "cpu" — where torch will compute
    notes: list = field(default_factory=list)

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def to_dict(self) -> dict:
        return {"backend": self.backend, "device": self.device, "notes": self.notes,
                "steps": [s.to_dict() for s in self.steps]}


# ------------------------------------------------------------------------------------------------------ helpers
def _version_tuple(text: str | None) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", text or "")[:3])


def driver_supports(os_name: str, driver: str | None, cuda_major: int) -> bool:
    need = DRIVER_MIN.get(os_name, DRIVER_MIN["linux"]).get(cuda_major)
    return bool(driver) and need is not None and _version_tuple(driver)[:2] >= need


def driver_minimum(os_name: str, cuda_major: int) -> str:
    need = DRIVER_MIN.get(os_name, DRIVER_MIN["linux"]).get(cuda_major, (0, 0))
    return f"{need[0]}.{need[1]:02d}"


def torch_install_command(p: Probe, python: str = "python") -> str:
    """The exact command that installs the torch build fitting this machine (printed, never run outside Slicer)."""
    if p.os == "macos":
        return f"{python} -m pip install torch"
    tag = "cpu"
    if p.gpus and p.driver:
        drv = _version_tuple(p.driver)[:2]
        tag = next((t for need, t in TORCH_INDEX_BY_DRIVER if drv >= need), "cpu")
    return f"{python} -m pip install torch --index-url {TORCH_INDEX.format(tag)}"


def _in_range_nnunet(version: str | None) -> bool:
    v = _version_tuple(version)[:2]
    return bool(v) and (2, 6) <= v < (2, 9)


def _folder_has(files, requirement_name: str, python_tag: str | None = None) -> bool:
    """Is there a wheel (or sdist) for this distribution in the folder? Names are compared canonically."""
    want = re.sub(r"[-_.]+", "_", requirement_name).lower()
    for f in files:
        stem = f.lower()
        if not (stem.endswith(".whl") or stem.endswith(".tar.gz") or stem.endswith(".zip")):
            continue
        dist = re.sub(r"[-_.]+", "_", re.split(r"-\d", f, maxsplit=1)[0]).lower()
        if dist == want and (python_tag is None or not stem.endswith(".whl") or python_tag in stem
                             or "-py3-" in stem or "-py2.py3-" in stem or "abi3" in stem):
            return True
    return False


# --------------------------------------------------------------------------------------------------- the rules
def _torch_step(p: Probe, o: PlanOptions) -> Step:
    cmd = torch_install_command(p, o.python)
    if not p.torch_version:
        if p.in_slicer:
            return Step("torch", PYTORCHUTILS, "torch is not installed; Slicer's PyTorch extension installs the build "
                        "that fits this machine's NVIDIA driver (or the CPU build)")
        if o.find_links and _folder_has(o.folder_files, "torch", p.python_tag):
            return Step("torch", PIP, f"torch is not installed; installing the torch wheel from {o.find_links}",
                        pip_args=["torch"], requirement="torch")
        return Step("torch", MANUAL, "torch is not installed. umamba does not pick a torch build for you outside "
                    "Slicer; this command fits this machine", command=cmd)
    if p.torch_error:
        return Step("torch", MANUAL, f"torch {p.torch_version} is installed but does not import ({p.torch_error}); "
                    "reinstall it", command=cmd + " --force-reinstall")
    if p.gpus and p.torch_cuda is None and p.os != "macos":
        return Step("torch", ADVICE, f"torch {p.torch_version} is a CPU-only build but this machine has an NVIDIA GPU "
                    f"({p.gpus[0].name}); everything will run on the CPU. For the GPU, replace torch"
                    + (" in the PyTorch Utils module (Uninstall, then Install)" if p.in_slicer else ""),
                    command=None if p.in_slicer else cmd + " --force-reinstall")
    if p.gpus and p.torch_cuda:
        major = int(p.torch_cuda.split(".")[0])
        if not driver_supports(p.os, p.driver, major):
            return Step("torch", ADVICE, f"the NVIDIA driver {p.driver} is too old for torch's CUDA {p.torch_cuda} "
                        f"(needs {driver_minimum(p.os, major)} or newer); torch will not see the GPU. Update the "
                        "driver, or install a torch built for an older CUDA", command=cmd + " --force-reinstall")
    return Step("torch", OK, f"torch {p.torch_version} ({'CUDA ' + p.torch_cuda if p.torch_cuda else 'CPU/MPS'})")


def _torch_device(p: Probe, torch_step: Step) -> str:
    if p.os == "macos":
        return "mps" if p.machine == "arm64" else "cpu"
    if torch_step.action in (OK,) and p.gpus and p.torch_cuda and p.torch_sees_cuda is not False:
        return "cuda"
    return "cpu"


def _umamba_step(p: Probe, o: PlanOptions) -> Step | None:
    if not o.bundled_umamba:
        return None
    have = p.packages.get("umamba")
    same_version = have and (o.bundled_version is None or have == o.bundled_version)
    # Every build says the same version: the content hash (install/bundle.py) decides when it is known.
    if same_version and o.bundled_state in (None, "same"):
        return Step("umamba", OK, f"umamba {have} is installed" + (" (the extension's content)" if o.bundled_state
                                                                    else ""))
    if not have or o.bundled_state == "missing":
        why = "umamba is not installed"
    elif not same_version:
        why = f"umamba {have} differs from the extension's {o.bundled_version}"
    else:
        why = f"the installed umamba {have} differs in content from the one the extension carries"
    return Step("umamba", PIP, why + "; installing the package the extension carries (no deps)",
                pip_args=["--no-deps", "--no-build-isolation", "--force-reinstall", o.bundled_umamba])


def _requirements_step(missing: list, p: Probe, o: PlanOptions) -> Step | None:
    if not missing:
        return None
    names = [re.split(r"[<>=!~;\[ ]", m, maxsplit=1)[0] for m in missing]
    return Step("requirements", PIP, "umamba needs " + ", ".join(names) + " which are not installed",
                pip_args=list(missing), requirement=",".join(names), protect=["torch"] if p.torch_version else [])


def _nnunet_step(p: Probe, o: PlanOptions) -> Step:
    if "nnunetv2" in o.skip:
        return Step("nnunetv2", SKIPPED, "skipped on request (needed for training and prediction)")
    have = p.packages.get("nnunetv2")
    if _in_range_nnunet(have):
        return Step("nnunetv2", OK, f"nnunetv2 {have} is in the supported range {NNUNET_SPEC}")
    protect = list(SLICER_PROTECTED) if p.in_slicer else ["torch"]
    protect = [x for x in protect if x.lower() in p.packages]
    why = "nnunetv2 is not installed" if not have else f"nnunetv2 {have} is outside the supported range {NNUNET_SPEC}"
    return Step("nnunetv2", PIP, why + (f"; {', '.join(protect)} stay as they are" if protect else ""),
                pip_args=[f"nnunetv2{NNUNET_SPEC}"], requirement="nnunetv2", protect=protect)


def _kernel_blocker(p: Probe, torch_step: Step, device: str) -> str | None:
    """Why no prebuilt kernel can apply here, or None."""
    if p.os != "linux":
        return f"no Mamba CUDA kernels are published for {p.os}"
    if not p.gpus:
        return "no NVIDIA GPU found" + (f" ({p.nvidia_smi_error})" if p.nvidia_smi_error else "")
    if not p.torch_version or torch_step.action in (PYTORCHUTILS, PIP, MANUAL):
        return None  # decided once torch is there (PENDING)
    if p.torch_cuda is None:
        return f"torch {p.torch_version} is a CPU-only build"
    if device != "cuda":
        return "torch cannot use the GPU (see the torch step)"
    if not p.gpus[0].compute_capability:
        return f"the driver does not report {p.gpus[0].name}'s compute capability (update the driver)"
    return None


def _kernel_step(pkg: str, p: Probe, o: PlanOptions, torch_step: Step, device: str) -> Step:
    if "kernels" in o.skip:
        return Step(pkg, SKIPPED, "skipped on request; the portable backend runs")
    state = p.kernels.get(pkg, "missing")
    if state == "ok":
        return Step(pkg, OK, f"{pkg} {p.packages.get(pkg, '')} loads its CUDA extension".replace("  ", " "))
    blocker = _kernel_blocker(p, torch_step, device)
    if blocker:
        return Step(pkg, UNAVAILABLE, blocker + "; the portable backend runs")
    if not p.torch_version or torch_step.action in (PYTORCHUTILS, PIP, MANUAL):
        return Step(pkg, PENDING, "decided once torch is installed: run the installer again afterwards")
    gpu = p.gpus[0]
    cuda_major = int(p.torch_cuda.split(".")[0])
    abi = p.torch_cxx11abi or "TRUE"
    choice = wheels.find_wheel(pkg, p.torch_mm, cuda_major, abi, p.python_tag, p.platform_tag)
    if choice is None:
        return Step(pkg, UNAVAILABLE, f"{pkg} published no wheel for torch {p.torch_mm} + CUDA {cuda_major} + "
                    f"{p.python_tag} + {p.platform_tag} (cxx11abi {abi}; newest torch with wheels: "
                    f"{wheels.newest_supported_torch()}); the portable backend runs")
    if not wheels.arch_supported(gpu.compute_capability, cuda_major):
        return Step(pkg, UNAVAILABLE, f"{choice.filename} has no code for {gpu.name} (sm_"
                    f"{gpu.compute_capability.replace('.', '')}); the portable backend runs", wheel=choice.filename)
    args = ["--no-deps"] + (["--force-reinstall"] if pkg in p.packages else [])
    why = (f"{pkg} is installed but its extension does not load ({state})" if state.startswith("broken")
           else f"no working {pkg} kernel")
    if o.find_links:
        if choice.filename not in o.folder_files:
            return Step(pkg, UNAVAILABLE, f"{choice.filename} is not in {o.find_links}; the portable backend runs. "
                        "Download it there to use the CUDA kernel", wheel=choice.filename, url=choice.url)
        return Step(pkg, PIP, f"{why}; installing {choice.filename} from {o.find_links}",
                    pip_args=args + [choice.filename], requirement=choice.filename, wheel=choice.filename,
                    url=choice.url)
    return Step(pkg, PIP, f"{why}; installing the published wheel {choice.filename} directly (no setup.py, no "
                "compiler)", pip_args=args + [choice.url], wheel=choice.filename, url=choice.url)


def _build_step(p: Probe, o: PlanOptions, mamba: Step) -> Step | None:
    if not o.build_kernels or mamba.action in (OK, PIP) or p.os != "linux":
        return None
    if not p.gpus or not p.gpus[0].compute_capability or not p.torch_cuda:
        return Step("build-kernels", UNAVAILABLE, "building needs an NVIDIA GPU and a CUDA build of torch")
    arch = "sm_" + p.gpus[0].compute_capability.replace(".", "")
    torch_major = p.torch_cuda.split(".")[0]
    if not p.nvcc:
        return Step("build-kernels", UNAVAILABLE, f"no nvcc found; building needs the CUDA {torch_major} toolkit "
                    "(nvcc) matching torch's CUDA")
    if p.nvcc.split(".")[0] != torch_major:
        return Step("build-kernels", UNAVAILABLE, f"nvcc {p.nvcc} does not match torch's CUDA {p.torch_cuda} "
                    f"(major {torch_major}); install the CUDA {torch_major}.x toolkit or point CUDA_HOME at it")
    return Step("build-kernels", BUILD, f"no prebuilt kernel fits; building mamba-ssm's scan kernel for {arch} only "
                f"with nvcc {p.nvcc} (a few minutes)", command=f"umamba build-kernels --arch {arch}")


def make_plan(p: Probe, o: PlanOptions | None = None, missing_requirements: list | None = None) -> Plan:
    """The ordered steps for this probe. `missing_requirements`: umamba's own requirements (other than torch and
    nnunetv2) that are not installed."""
    o = o or PlanOptions()
    steps: list[Step] = []
    torch_step = _torch_step(p, o)
    device = _torch_device(p, torch_step)
    steps.append(torch_step)
    for extra in (_umamba_step(p, o), _requirements_step(missing_requirements or [], p, o)):
        if extra:
            steps.append(extra)
    steps.append(_nnunet_step(p, o))
    mamba = _kernel_step("mamba-ssm", p, o, torch_step, device)
    steps.append(mamba)
    conv = _kernel_step("causal-conv1d", p, o, torch_step, device)
    if conv.action == UNAVAILABLE and mamba.action in (OK, PIP):
        conv.reason += " (the Mamba block then uses torch's Conv1d, which is exact)"
    steps.append(conv)
    build = _build_step(p, o, mamba)
    if build:
        steps.append(build)
    steps.append(Step("verify", VERIFY, "import umamba and run a tiny Mamba forward in a fresh process"))
    kernel_coming = mamba.action in (OK, PIP) or (build is not None and build.action == BUILD)
    backend = "cuda" if kernel_coming and device == "cuda" else "portable"
    notes = []
    if device == "cuda" and "triton" in p.packages:
        # umamba.mamba.backends' rule: Triton only on compute capability >= 7.0
        cap = _version_tuple(p.gpus[0].compute_capability)[:2] if p.gpus else ()
        if cap and cap >= (7, 0):
            backend = "triton"
            if kernel_coming:
                notes.append("the Triton scan runs the long sequences (d·l >= 2^23), mamba-ssm's kernel the others")
        elif cap:
            notes.append(f"triton is installed but sm_{cap[0]}{cap[1]} is below the compute capability 7.0 it "
                         "needs; the Triton kernels are not used")
    if "numba" not in p.packages and device != "cuda" and not any(
            s.name == "requirements" and "numba" in (s.requirement or "") for s in steps):
        notes.append("numba is not installed: CPU inference uses the portable scan (several times slower)")
    if p.nvidia_smi_error:
        notes.append(p.nvidia_smi_error + " -> check the NVIDIA driver (reinstall it or reboot); until then "
                     "everything runs on the CPU")
    if backend == "portable" and device == "cuda":
        notes.append("the GPU is used with the portable (pure PyTorch) scan: correct, slower than the CUDA kernel")
    return Plan(steps, backend, device, notes)
