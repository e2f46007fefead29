"""`umamba build-kernels` (gencode rewrite of a COPY of mamba-ssm's setup.py, toolchain checks) and
`umamba install --print-files --target ...`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from umamba.errors import UserError
from umamba.install import build
from umamba.progress import parse_event

SDIST = Path(__file__).resolve().parents[3] / "shared" / "sdists" / "mamba_ssm-2.3.2.post1.tar.gz"


def _cli(*args: str) -> tuple[int, list[dict]]:
    proc = subprocess.run([sys.executable, "-m", "umamba", *args, "--progress-json"], capture_output=True,
                          text=True, timeout=300)
    return proc.returncode, [e for e in map(parse_event, proc.stdout.splitlines()) if e]


@pytest.mark.skipif(not SDIST.is_file(), reason=f"{SDIST} is not present")
def test_gencode_list_of_the_real_sdist_becomes_one_architecture(tmp_path):
    src = build.unpack_sdist(SDIST, tmp_path)
    original = (src / "setup.py").read_text()
    assert len(re.findall(r"arch=compute_\d+,code=sm_\d+", original)) >= 8  # sm_75 ... sm_121
    patched = build.patch_gencodes(original, build.parse_arch("sm_90"))
    assert re.findall(r"arch=compute_\d+,code=sm_\d+", patched) == ["arch=compute_90,code=sm_90"]
    # only the gencode lines changed: the rest of setup.py is untouched
    keep = [ln for ln in original.splitlines() if "gencode" not in ln and "arch=compute_" not in ln]
    assert [ln for ln in patched.splitlines() if "umamba" not in ln] == keep
    assert (src / "setup.py").read_text() == original  # the patch is returned, the caller writes the copy


def test_unknown_setup_py_and_bad_arch_are_refused():
    with pytest.raises(UserError, match="no gencode list"):
        build.patch_gencodes("from setuptools import setup\nsetup()\n", "90")
    with pytest.raises(UserError, match="sm_90"):
        build.parse_arch("hopper")
    assert build.parse_arch("9.0") == build.parse_arch("sm_90") == "90"
    assert build.parse_arch("sm_120") == "120"


def test_toolchain_rules():
    with pytest.raises(UserError, match="CPU-only build"):
        build.check_toolchain(None, "13.0")
    with pytest.raises(UserError, match="nvcc was not found") as e:
        build.check_toolchain("12.8", None)
    assert "portable backend" in e.value.hint
    with pytest.raises(UserError, match="does not match"):
        build.check_toolchain("13.0", "12.8")
    build.check_toolchain("13.0", "13.0")


def test_build_kernels_on_this_machine_says_why_not():
    rc, events = _cli("build-kernels", "--arch", "sm_90", *(["--sdist", str(SDIST)] if SDIST.is_file() else []))
    errors = [e for e in events if e["event"] == "error"]
    import importlib.metadata as md
    if "+cpu" in md.version("torch"):
        assert rc == 2 and "CPU-only build" in errors[0]["message"] and "umamba doctor" in errors[0]["hint"]
    else:
        assert rc in (0, 2)


def test_print_files_for_a_target_machine():
    rc, events = _cli("install", "--print-files", "--target",
                      "python=3.12,platform=linux_x86_64,torch=2.8.0+cu128,gpu=sm_86")
    done = [e for e in events if e["event"] == "done"][0]
    assert rc == 0
    assert done["urls"] == [
        "https://github.com/state-spaces/mamba/releases/download/v2.3.1/"
        "mamba_ssm-2.3.1%2Bcu12torch2.8cxx11abiTRUE-cp312-cp312-linux_x86_64.whl",
        "https://github.com/Dao-AILab/causal-conv1d/releases/download/v1.6.1.post4/"
        "causal_conv1d-1.6.1%2Bcu12torch2.8cxx11abiTRUE-cp312-cp312-linux_x86_64.whl"]
    cmds = "\n".join(done["commands"])
    assert "pip wheel --no-deps ./umamba" in cmds
    assert "python3.12 -m pip download torch==2.8.0 --index-url https://download.pytorch.org/whl/cu128" in cmds
    assert '"nnunetv2>=2.6,<2.9"' in cmds
    rc, events = _cli("install", "--print-files", "--target", "python=3.12,platform=windows_amd64,torch=2.8.0+cu128")
    done = [e for e in events if e["event"] == "done"][0]
    assert done["urls"] == [] and any("windows" in n for n in done["notes"])
    rc, events = _cli("install", "--print-files", "--target", "pyton=3.12")
    assert rc == 2 and "cannot read 'pyton=3.12'" in [e for e in events if e["event"] == "error"][0]["message"]
