"""Build mamba-ssm's selective-scan CUDA kernel from its PyPI source, for one GPU architecture only.

mamba-ssm's setup.py compiles for every architecture from sm_75 up (about an hour); for the local GPU alone it
takes a few minutes (sm_90 on 16 cores: about 2.5 minutes). We unpack the sdist into a temporary folder, rewrite
the gencode list of that COPY of setup.py to the one architecture, and run pip on the folder with the compiler's
output shown. Only when nvcc's CUDA major equals torch's (else the extension would not load).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from umamba.errors import UserError

GENCODE_FLAG = re.compile(r'^(\s*)cc_flag\.append\("-gencode"\)\s*$')
GENCODE_ARCH = re.compile(r'^(\s*)cc_flag\.append\("arch=compute_\d+a?,code=sm_\d+a?"\)\s*$')
DEFAULT_SDIST = "mamba-ssm==2.3.2.post1"


def parse_arch(arch: str) -> str:
    """'sm_90' / '9.0' / '90' -> '90'."""
    a = arch.strip().lower().removeprefix("sm_").replace(".", "")
    if not re.fullmatch(r"\d{2,3}a?", a):
        raise UserError(f"--arch {arch!r} is not a GPU architecture", "write it like sm_90 (H100), sm_86 (RTX 3090)")
    return a


def patch_gencodes(setup_py: str, arch: str) -> str:
    """setup.py text -> the same text compiling for `arch` only. Raises UserError when the layout is unknown."""
    lines = setup_py.splitlines(keepends=True)
    out, replaced = [], 0
    for line in lines:
        m = GENCODE_FLAG.match(line) or GENCODE_ARCH.match(line)
        if not m:
            out.append(line)
            continue
        indent = m.group(1)
        if replaced == 0:
            # the first gencode line becomes the only one (same indentation, so the if/else structure holds)
            out.append(f'{indent}cc_flag += ["-gencode", "arch=compute_{arch},code=sm_{arch}"]  # umamba\n')
        else:
            out.append(f"{indent}pass  # gencode removed by umamba build-kernels\n")
        replaced += 1
    if replaced < 2:
        raise UserError("this mamba-ssm setup.py has no gencode list that umamba recognises",
                        f"use the sdist of a known version ({DEFAULT_SDIST})")
    patched = "".join(out)
    compile(patched, "setup.py", "exec")  # the rewrite must stay valid Python
    return patched


def unpack_sdist(sdist: Path, dest: Path) -> Path:
    with tarfile.open(sdist) as tar:
        tar.extractall(dest, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(dest)
    roots = [p for p in dest.iterdir() if (p / "setup.py").is_file()]
    if not roots:
        raise UserError(f"{sdist} holds no setup.py", "give the mamba-ssm source archive from PyPI (.tar.gz)")
    return roots[0]


def check_toolchain(torch_cuda: str | None, nvcc: str | None) -> None:
    if not torch_cuda:
        raise UserError("torch here is a CPU-only build: there is nothing to build a CUDA kernel against",
                        "install a CUDA build of torch first (`umamba doctor` prints the command)")
    if not nvcc:
        raise UserError(f"nvcc was not found; building needs the CUDA {torch_cuda.split('.')[0]}.x toolkit",
                        "install the CUDA toolkit matching torch's CUDA and put its bin/ on PATH (or set CUDA_HOME); "
                        "without it umamba uses the portable backend, which works")
    if nvcc.split(".")[0] != torch_cuda.split(".")[0]:
        raise UserError(f"nvcc {nvcc} does not match torch's CUDA {torch_cuda} (the major versions must agree)",
                        f"install CUDA {torch_cuda.split('.')[0]}.x and point CUDA_HOME at it")


def build_mamba_kernel(arch: str, sdist: str | None, reporter, jobs: int | None = None,
                       python: str = sys.executable, offline: bool = False) -> dict:
    from umamba.install.probe import check_extension, find_nvcc, probe

    arch = parse_arch(arch) if arch else ""
    p = probe(deep=True)
    check_toolchain(p.torch_cuda, p.nvcc)
    if not arch:
        if not p.gpus or not p.gpus[0].compute_capability:
            raise UserError("no GPU architecture given and none detected", "pass --arch sm_90 (or your GPU's)")
        arch = p.gpus[0].compute_capability.replace(".", "")
    for mod in ("wheel", "setuptools", "packaging"):
        if importlib.util.find_spec(mod) is None:
            raise UserError(f"building needs the Python package '{mod}'", f"{python} -m pip install {mod} ninja")
    with tempfile.TemporaryDirectory(prefix="umamba-build-") as tmp:
        tmp = Path(tmp)
        if sdist:
            archive = Path(sdist)
            if not archive.is_file():
                raise UserError(f"{sdist} does not exist", "give the path of mamba_ssm-*.tar.gz")
        else:
            reporter.stage("build", f"downloading the {DEFAULT_SDIST} source from PyPI")
            rc = subprocess.run([python, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                                 DEFAULT_SDIST, "-d", str(tmp)]).returncode
            found = list(tmp.glob("mamba_ssm-*.tar.gz"))
            if rc != 0 or not found:
                raise UserError("could not download the mamba-ssm source",
                                "download mamba_ssm-*.tar.gz elsewhere and pass it with --sdist PATH")
            archive = found[0]
        src = unpack_sdist(archive, tmp / "src")
        setup = src / "setup.py"
        setup.write_text(patch_gencodes(setup.read_text(), arch))
        env = dict(os.environ, MAMBA_FORCE_BUILD="TRUE", MAX_JOBS=str(jobs or os.cpu_count() or 4),
                   TORCH_CUDA_ARCH_LIST=f"{arch[:-1]}.{arch[-1]}")
        env.pop("MAMBA_SKIP_CUDA_BUILD", None)
        nvcc_path = find_nvcc()
        if nvcc_path and not env.get("CUDA_HOME"):
            env["CUDA_HOME"] = str(Path(os.path.realpath(nvcc_path)).parent.parent)
        cmd = [python, "-m", "pip", "install", "-v", "--no-build-isolation", "--no-deps", str(src)]
        if offline:
            cmd.insert(4, "--no-index")
        reporter.stage("build", f"compiling mamba-ssm's scan kernel for sm_{arch} with nvcc {p.nvcc} "
                                f"(MAX_JOBS={env['MAX_JOBS']})")
        reporter.log("$ " + " ".join(cmd))
        t0 = time.time()
        rc = subprocess.run(cmd, env=env).returncode  # the compiler's output goes straight to the terminal
        seconds = round(time.time() - t0, 1)
        if rc != 0:
            raise UserError(f"the build failed after {seconds} s (compiler output above)",
                            "the portable backend keeps working; check that nvcc, gcc and torch versions agree")
    state = check_extension("selective_scan_cuda", python)
    if state != "ok":
        raise UserError(f"built, but selective_scan_cuda does not load: {state}",
                        f"uninstall it again with `{python} -m pip uninstall -y mamba-ssm`")
    return {"arch": f"sm_{arch}", "seconds": seconds, "nvcc": p.nvcc, "torch_cuda": p.torch_cuda}
