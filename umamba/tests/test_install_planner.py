"""The planner on a table of environments: chosen steps, wheel files (the real published names), backend."""

from __future__ import annotations

import pytest

from umamba.install import planner, wheels
from umamba.install.planner import PlanOptions, make_plan
from umamba.install.probe import Gpu, Probe, default_cxx11abi, torch_cuda_from_metadata

H100 = ("NVIDIA H100 80GB HBM3", "9.0", 81559)
H200 = ("NVIDIA H200", "9.0", 143771)
GH200 = ("NVIDIA GH200 480GB", "9.0", 97871)
A100 = ("NVIDIA A100-SXM4-80GB", "8.0", 81920)
RTX3090 = ("NVIDIA GeForce RTX 3090", "8.6", 24576)
RTX4090 = ("NVIDIA GeForce RTX 4090", "8.9", 24564)
RTX5090 = ("NVIDIA GeForce RTX 5090", "12.0", 32607)
V100 = ("Tesla V100-SXM2-32GB", "7.0", 32768)
GTX1080TI = ("NVIDIA GeForce GTX 1080 Ti", "6.1", 11264)


def env(os="linux", machine="x86_64", py="3.12", torch=None, gpu=None, driver="570.124.06", nvcc=None,
        abi=None, slicer=None, packages=None, kernels=None, smi_error=None):
    pk = dict(packages or {})
    if torch:
        pk["torch"] = torch
    p = Probe(os=os, machine=machine, python=py, in_slicer=slicer is not None, slicer_version=slicer,
              gpus=[Gpu(0, gpu[0], gpu[1], gpu[2], driver)] if gpu else [], driver=driver if gpu else None,
              nvidia_smi_error=smi_error, packages=pk, torch_cuda=torch_cuda_from_metadata(torch),
              torch_cxx11abi=abi or default_cxx11abi(os, torch), nvcc=nvcc)
    p.kernels = {k: (kernels or {}).get(k, "missing") for k in ("mamba-ssm", "causal-conv1d")}
    return p


U, P, OK, ADV, MAN = planner.UNAVAILABLE, planner.PIP, planner.OK, planner.ADVICE, planner.MANUAL

# id, probe, options, expected step actions, expected wheel files (None = no wheel), backend, device
CASES = [
    ("linux-py312-torch2.8-cu128-H100", env(torch="2.8.0+cu128", gpu=H100), None,
     {"torch": OK, "mamba-ssm": P, "causal-conv1d": P},
     {"mamba-ssm": "mamba_ssm-2.3.1+cu12torch2.8cxx11abiTRUE-cp312-cp312-linux_x86_64.whl",
      "causal-conv1d": "causal_conv1d-1.6.1+cu12torch2.8cxx11abiTRUE-cp312-cp312-linux_x86_64.whl"}, "cuda", "cuda"),
    ("this-machine-py311-torch2.13-cpu-no-gpu", env(py="3.11", torch="2.13.0+cpu"), None,
     {"torch": OK, "mamba-ssm": U, "causal-conv1d": U}, {}, "portable", "cpu"),
    ("linux-py310-torch2.4-cu118-RTX3090", env(py="3.10", torch="2.4.1+cu118", gpu=RTX3090, driver="535.183.01"), None,
     {"mamba-ssm": P, "causal-conv1d": P},
     {"mamba-ssm": "mamba_ssm-2.2.4+cu11torch2.4cxx11abiFALSE-cp310-cp310-linux_x86_64.whl",
      "causal-conv1d": "causal_conv1d-1.5.0.post8+cu11torch2.4cxx11abiFALSE-cp310-cp310-linux_x86_64.whl"},
     "cuda", "cuda"),
    ("linux-py310-torch2.1-cu121-A100", env(py="3.10", torch="2.1.2+cu121", gpu=A100, driver="535.104.05"), None,
     {"mamba-ssm": P}, {"mamba-ssm": "mamba_ssm-2.2.4+cu12torch2.1cxx11abiFALSE-cp310-cp310-linux_x86_64.whl"},
     "cuda", "cuda"),
    ("linux-py312-torch2.11-cu130-H200-too-new", env(torch="2.11.0+cu130", gpu=H200, driver="580.82.07"), None,
     {"mamba-ssm": U, "causal-conv1d": U}, {}, "portable", "cuda"),
    ("linux-torch2.11-cu130-H200-nvcc13-build", env(torch="2.11.0+cu130", gpu=H200, driver="580.82.07", nvcc="13.0"),
     PlanOptions(build_kernels=True), {"mamba-ssm": U, "build-kernels": planner.BUILD}, {}, "cuda", "cuda"),
    ("linux-torch2.11-cu130-nvcc12.8-mismatch", env(torch="2.11.0+cu130", gpu=H200, driver="580.82.07", nvcc="12.8"),
     PlanOptions(build_kernels=True), {"build-kernels": U}, {}, "portable", "cuda"),
    ("linux-torch2.13-cu130-H100-no-nvcc-build-asked", env(torch="2.13.0+cu130", gpu=H100, driver="580.82.07"),
     PlanOptions(build_kernels=True), {"mamba-ssm": U, "build-kernels": U}, {}, "portable", "cuda"),
    ("linux-py312-torch2.10-cu130-RTX5090", env(torch="2.10.0+cu130", gpu=RTX5090, driver="580.95.05"), None,
     {"mamba-ssm": P}, {"mamba-ssm": "mamba_ssm-2.3.1+cu13torch2.10cxx11abiTRUE-cp312-cp312-linux_x86_64.whl"},
     "cuda", "cuda"),
    ("linux-torch2.9-cu128-RTX5090-cu12-wheel-lacks-sm120", env(torch="2.9.0+cu128", gpu=RTX5090), None,
     {"mamba-ssm": U}, {}, "portable", "cuda"),
    ("linux-py311-torch2.5-cu121-GTX1080Ti-sm61", env(py="3.11", torch="2.5.1+cu121", gpu=GTX1080TI,
                                                      driver="535.183.01"), None, {"mamba-ssm": U}, {}, "portable",
     "cuda"),
    ("linux-py310-torch2.6-cu124-V100-sm70", env(py="3.10", torch="2.6.0+cu124", gpu=V100, driver="550.54.15"), None,
     {"mamba-ssm": U}, {}, "portable", "cuda"),
    ("linux-aarch64-py312-torch2.8-cu129-GH200", env(machine="aarch64", torch="2.8.0+cu129", gpu=GH200,
                                                     driver="575.51.03"), None,
     {"mamba-ssm": P}, {"mamba-ssm": "mamba_ssm-2.3.1+cu12torch2.8cxx11abiTRUE-cp312-cp312-linux_aarch64.whl"},
     "cuda", "cuda"),
    ("linux-aarch64-torch2.6-cu126-no-arm-wheel", env(machine="aarch64", torch="2.6.0+cu126", gpu=GH200), None,
     {"mamba-ssm": U}, {}, "portable", "cuda"),
    ("windows-py312-torch2.7-cu128-RTX4090", env(os="windows", machine="x86_64", torch="2.7.1+cu128", gpu=RTX4090,
                                                 driver="572.83"), None,
     {"torch": OK, "mamba-ssm": U, "causal-conv1d": U}, {}, "portable", "cuda"),
    ("macos-arm64-py312-torch2.8", env(os="macos", machine="arm64", torch="2.8.0"), None,
     {"torch": OK, "mamba-ssm": U}, {}, "portable", "mps"),
    ("linux-driver-470-too-old-for-cu128", env(torch="2.8.0+cu128", gpu=RTX4090, driver="470.82.01"), None,
     {"torch": ADV, "mamba-ssm": U}, {}, "portable", "cpu"),
    ("linux-cpu-torch-on-RTX3090", env(torch="2.13.0+cpu", gpu=RTX3090, driver="550.54.15"), None,
     {"torch": ADV, "mamba-ssm": U}, {}, "portable", "cpu"),
    ("linux-no-torch-outside-slicer-A100", env(gpu=A100, driver="560.35.03"), None,
     {"torch": MAN, "mamba-ssm": planner.PENDING}, {}, "portable", "cpu"),
    ("slicer-5.10-py312-no-torch", env(slicer="5.10.0", packages={"simpleitk": "2.4.1", "requests": "2.32.3"}),
     PlanOptions(bundled_umamba="/ext/umamba-package", bundled_version="0.1.0"),
     {"torch": planner.PYTORCHUTILS, "umamba": P, "nnunetv2": P, "mamba-ssm": U}, {}, "portable", "cpu"),
    ("slicer-5.12-torch2.8-cu128-nnunet-too-old", env(slicer="5.12.0", torch="2.8.0+cu128", gpu=RTX4090,
                                                      packages={"nnunetv2": "2.5.1", "simpleitk": "2.4.1",
                                                                "requests": "2.32.3", "umamba": "0.1.0"}),
     PlanOptions(bundled_umamba="/ext/umamba-package", bundled_version="0.1.0"),
     {"torch": OK, "umamba": OK, "nnunetv2": P, "mamba-ssm": P},
     {"mamba-ssm": "mamba_ssm-2.3.1+cu12torch2.8cxx11abiTRUE-cp312-cp312-linux_x86_64.whl"}, "cuda", "cuda"),
    ("linux-torch2.6-pypi-old-abi-A100", env(torch="2.6.0+cu124", gpu=A100), None,
     {"mamba-ssm": P}, {"mamba-ssm": "mamba_ssm-2.3.1+cu12torch2.6cxx11abiFALSE-cp312-cp312-linux_x86_64.whl"},
     "cuda", "cuda"),
    ("linux-torch2.6-ngc-new-abi-A100", env(torch="2.6.0+cu124", gpu=A100, abi="TRUE"), None,
     {"mamba-ssm": P}, {"mamba-ssm": "mamba_ssm-2.3.1+cu12torch2.6cxx11abiTRUE-cp312-cp312-linux_x86_64.whl"},
     "cuda", "cuda"),
    ("linux-torch2.8-kernel-already-works", env(torch="2.8.0+cu128", gpu=H100, packages={"mamba-ssm": "2.3.1"},
                                                kernels={"mamba-ssm": "ok"}), None,
     {"mamba-ssm": OK, "causal-conv1d": P}, {}, "cuda", "cuda"),
    ("linux-torch2.8-kernel-broken-reinstalled", env(torch="2.8.0+cu128", gpu=H100, packages={"mamba-ssm": "2.2.4"},
                                                     kernels={"mamba-ssm": "broken: undefined symbol"}), None,
     {"mamba-ssm": P}, {"mamba-ssm": "mamba_ssm-2.3.1+cu12torch2.8cxx11abiTRUE-cp312-cp312-linux_x86_64.whl"},
     "cuda", "cuda"),
    ("linux-nvidia-smi-broken", env(torch="2.8.0+cu128", smi_error="nvidia-smi failed: NVIDIA-SMI has failed"),
     None, {"mamba-ssm": U}, {}, "portable", "cpu"),
    ("linux-kernels-skipped", env(torch="2.8.0+cu128", gpu=H100), PlanOptions(skip=("kernels",)),
     {"mamba-ssm": planner.SKIPPED}, {}, "portable", "cuda"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_plan_table(case):
    _id, probe, options, actions, wheel_files, backend, device = case
    plan = make_plan(probe, options)
    got = {s.name: s.action for s in plan.steps}
    for name, action in actions.items():
        assert got.get(name) == action, (name, plan.step(name).reason if name in got else "absent")
    for name, filename in wheel_files.items():
        step = plan.step(name)
        assert step.wheel == filename
        assert step.url.endswith("/" + filename.replace("+", "%2B"))
        assert "--no-deps" in step.pip_args and step.url in step.pip_args  # direct wheel, never setup.py
    assert plan.backend == backend
    assert plan.device == device
    assert plan.steps[-1].name == "verify"
    for s in plan.steps:  # every step says why
        assert s.reason


def test_table_has_twenty_environments_over_the_required_range():
    assert len(CASES) >= 20
    probes = [c[1] for c in CASES]
    assert {p.os for p in probes} == {"linux", "windows", "macos"}
    assert {p.python for p in probes} >= {"3.10", "3.11", "3.12"}
    assert {p.torch_mm for p in probes if p.torch_mm} >= {"2.4", "2.13"}
    assert {(p.torch_cuda or "none").split(".")[0] for p in probes} >= {"11", "12", "13", "none"}
    caps = {g.compute_capability for p in probes for g in p.gpus}
    assert {"6.1", "12.0"} <= caps
    assert {p.nvcc is not None for p in probes} == {True, False}


def test_reasons_name_the_blocker():
    plan = make_plan(env(torch="2.11.0+cu130", gpu=H200, driver="580.82.07"))
    assert "torch 2.11" in plan.step("mamba-ssm").reason and "2.10" in plan.step("mamba-ssm").reason
    plan = make_plan(env(py="3.11", torch="2.5.1+cu121", gpu=GTX1080TI))
    assert "sm_61" in plan.step("mamba-ssm").reason
    plan = make_plan(env(torch="2.8.0+cu128", gpu=RTX4090, driver="470.82.01"))
    assert "525.60" in plan.step("torch").reason
    plan = make_plan(env(torch="2.13.0+cpu", gpu=RTX3090, driver="550.54.15"))
    assert plan.step("torch").command.endswith("--index-url https://download.pytorch.org/whl/cu126 --force-reinstall")


def test_torch_command_follows_the_driver():
    assert planner.torch_install_command(env(gpu=H100, driver="580.82.07")).endswith("/whl/cu130")
    assert planner.torch_install_command(env(gpu=H100, driver="570.124.06")).endswith("/whl/cu128")
    assert planner.torch_install_command(env(gpu=H100, driver="535.183.01")).endswith("/whl/cu126")
    assert planner.torch_install_command(env()).endswith("/whl/cpu")
    assert planner.torch_install_command(env(os="macos", machine="arm64")) == "python -m pip install torch"


def test_slicer_protects_its_packages_and_outside_pins_torch():
    inside = make_plan(env(slicer="5.12.0", torch="2.8.0+cu128", packages={"simpleitk": "2.4.1",
                                                                          "requests": "2.32.3"}))
    assert inside.step("nnunetv2").protect == ["SimpleITK", "torch", "requests"]
    outside = make_plan(env(torch="2.8.0+cu128"))
    assert outside.step("nnunetv2").protect == ["torch"]
    assert outside.step("nnunetv2").pip_args == ["nnunetv2>=2.6,<2.9"]


def test_offline_folder_decides_kernel_source():
    name = "mamba_ssm-2.3.1+cu12torch2.8cxx11abiTRUE-cp312-cp312-linux_x86_64.whl"
    p = env(torch="2.8.0+cu128", gpu=H100)
    with_file = make_plan(p, PlanOptions(find_links="/w", no_index=True, folder_files=(name,)))
    assert with_file.step("mamba-ssm").action == P and with_file.step("mamba-ssm").pip_args[-1] == name
    without = make_plan(p, PlanOptions(find_links="/w", no_index=True, folder_files=()))
    step = without.step("mamba-ssm")
    assert step.action == U and name in step.reason and step.url and without.backend == "portable"


def test_wheel_table_urls_and_arch_rules():
    c = wheels.find_wheel("causal-conv1d", "2.10", 13, "TRUE", "cp312", "linux_x86_64")
    assert c.url == ("https://github.com/Dao-AILab/causal-conv1d/releases/download/v1.6.1.post4/"
                     "causal_conv1d-1.6.1%2Bcu13torch2.10cxx11abiTRUE-cp312-cp312-linux_x86_64.whl")
    assert wheels.find_wheel("mamba-ssm", "2.7", 11, "FALSE", "cp311", "linux_x86_64") is None  # TRUE only
    assert wheels.find_wheel("mamba-ssm", "2.1", 12, "FALSE", "cp312", "linux_x86_64") is None  # no py3.12
    assert wheels.find_wheel("mamba-ssm", "2.12", 13, "TRUE", "cp312", "linux_x86_64") is None
    assert wheels.find_wheel("mamba-ssm", "2.8", 12, "TRUE", "cp312", "win_amd64") is None
    assert wheels.arch_supported("8.9", 12) and wheels.arch_supported("12.1", 13)
    assert not wheels.arch_supported("7.0", 13) and not wheels.arch_supported("12.0", 12)
