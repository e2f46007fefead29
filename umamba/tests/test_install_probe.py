"""The environment probe: this machine (no GPU), and a fake `nvidia-smi` on PATH replaying recorded outputs."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap

import pytest

from umamba.install import probe as probe_mod
from umamba.progress import parse_event

EXPECTED_ARGS = " ".join(probe_mod.NVIDIA_SMI_QUERY)

# Recorded outputs of `nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version
# --format=csv,noheader,nounits` (a 2 x H100 SXM node; an RTX 3090 workstation) and of its usual failures.
H100_NODE = ("0, NVIDIA H100 80GB HBM3, 9.0, 81559, 550.54.15\n"
             "1, NVIDIA H100 80GB HBM3, 9.0, 81559, 550.54.15\n")
RTX3090_WS = "0, NVIDIA GeForce RTX 3090, 8.6, 24576, 535.183.01\n"
NO_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the "
             "latest NVIDIA driver is installed and running.\n")
OLD_DRIVER = 'Field "compute_cap" is not a valid field to query.\n'
TABLE_NOT_CSV = textwrap.dedent("""\
    +---------------------------------------------------------------------------------------+
    | NVIDIA-SMI 535.183.01             Driver Version: 535.183.01   CUDA Version: 12.2     |
    |-----------------------------------------+----------------------+----------------------+
    """)


def _fake_nvidia_smi(folder, output: str, exit_code: int = 0) -> str:
    """An executable `nvidia-smi` that prints `output` — only when called with the probe's exact query."""
    folder.mkdir(exist_ok=True)
    (folder / "recorded.txt").write_text(output)
    exe = folder / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\nif [ \"$*\" != \"{EXPECTED_ARGS}\" ]; then echo \"unexpected query: $*\" >&2; "
                   f"exit 64; fi\ncat \"{folder / 'recorded.txt'}\"\nexit {exit_code}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(folder)


def _doctor(path_prefix: str | None, *extra: str) -> dict:
    env = dict(os.environ)
    if path_prefix:
        env["PATH"] = path_prefix + os.pathsep + env["PATH"]
    proc = subprocess.run([sys.executable, "-m", "umamba", "doctor", "--progress-json", *extra],
                          capture_output=True, text=True, env=env, timeout=300)
    events = [e for e in map(parse_event, proc.stdout.splitlines()) if e]
    done = [e for e in events if e["event"] == "done"]
    assert done, proc.stdout + proc.stderr
    return done[0]


needs_posix = pytest.mark.skipif(os.name != "posix", reason="the fake nvidia-smi is a shell script")


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")
def test_this_machine_reports_no_gpu_and_the_portable_backend():
    done = _doctor(None, "--verify")
    probe = done["probe"]
    assert probe["gpus"] == [] and probe["nvidia_smi_error"] is None
    assert probe["packages"]["torch"].startswith(probe_mod.installed_versions()["torch"].split("+")[0])
    assert probe["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert done["plan"]["backend"] == "portable"
    assert done["verify"]["ok"] and done["verify"]["backend"] == "portable" and done["backend"] == "portable"
    steps = {s["name"]: s for s in done["plan"]["steps"]}
    assert steps["mamba-ssm"]["action"] == "unavailable" and "no NVIDIA GPU" in steps["mamba-ssm"]["reason"]


@needs_posix
def test_fake_nvidia_smi_h100_node(tmp_path):
    done = _doctor(_fake_nvidia_smi(tmp_path / "bin", H100_NODE), "--quick")
    gpus = done["probe"]["gpus"]
    assert [(g["index"], g["name"], g["compute_capability"], g["memory_mib"], g["driver"]) for g in gpus] == [
        (0, "NVIDIA H100 80GB HBM3", "9.0", 81559, "550.54.15"),
        (1, "NVIDIA H100 80GB HBM3", "9.0", 81559, "550.54.15")]
    assert done["probe"]["driver"] == "550.54.15"


@needs_posix
def test_fake_nvidia_smi_rtx3090_with_this_cpu_torch(tmp_path):
    done = _doctor(_fake_nvidia_smi(tmp_path / "bin", RTX3090_WS), "--quick")
    assert [(g["name"], g["compute_capability"], g["memory_mib"]) for g in done["probe"]["gpus"]] == [
        ("NVIDIA GeForce RTX 3090", "8.6", 24576)]
    steps = {s["name"]: s for s in done["plan"]["steps"]}
    if "+cpu" in done["probe"]["packages"].get("torch", ""):
        # a CPU-only torch on a GPU machine: advised (driver 535 -> the cu126 build), nothing swapped
        assert steps["torch"]["action"] == "advice" and "CPU-only" in steps["torch"]["reason"]
        assert "whl/cu126" in steps["torch"]["command"]
        assert done["plan"]["backend"] == "portable"


@needs_posix
@pytest.mark.parametrize("output,code,expect", [
    (NO_DRIVER, 9, "couldn't communicate with the NVIDIA driver"),
    (OLD_DRIVER, 2, "compute_cap"),
    (TABLE_NOT_CSV, 0, "could not read nvidia-smi's output"),
], ids=["driver-not-loaded", "driver-too-old-for-query", "unreadable-output"])
def test_bad_nvidia_smi_output_is_a_clear_note(tmp_path, output, code, expect):
    done = _doctor(_fake_nvidia_smi(tmp_path / "bin", output, code), "--quick")
    assert done["probe"]["gpus"] == []
    assert expect in done["probe"]["nvidia_smi_error"]
    note = " ".join(done["plan"]["notes"])
    assert expect in note and "check the NVIDIA driver" in note and "CPU" in note  # what to do next
    assert done["plan"]["backend"] == "portable"


def test_parse_handles_old_driver_placeholders():
    gpus = probe_mod.parse_nvidia_smi("0, Tesla K80, [N/A], 11441, 470.256.02\n")
    assert gpus[0].compute_capability == "" and gpus[0].memory_mib == 11441
    with pytest.raises(probe_mod.NvidiaSmiError, match="unexpected line"):
        probe_mod.parse_nvidia_smi("Failed to initialize NVML: Driver/library version mismatch\n")


def test_torch_cuda_from_version_strings():
    assert probe_mod.torch_cuda_from_metadata("2.8.0+cu128") == "12.8"
    assert probe_mod.torch_cuda_from_metadata("2.4.1+cu118") == "11.8"
    assert probe_mod.torch_cuda_from_metadata("2.13.0+cpu") is None
    assert probe_mod.torch_cuda_from_metadata(None) is None


def test_probe_is_json_round_trippable():
    p = probe_mod.probe(deep=False)
    again = probe_mod.Probe.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p
