"""`umamba install --print-files --target ...`: the exact files an offline machine needs, fetched elsewhere.

A target is written `python=3.12,platform=linux_x86_64,torch=2.8.0+cu128,gpu=8.6` (every key optional; missing
keys are taken from this machine). The kernel wheels are exact file names and URLs; torch, nnU-Net and their
dependencies are resolved by pip, so for them the exact `pip` commands are printed, to be run on a machine with
internet and the same Python version and OS as the target.
"""

from __future__ import annotations

import re

from umamba import __version__
from umamba.errors import UserError
from umamba.install import planner
from umamba.install.probe import Gpu, Probe, default_cxx11abi, torch_cuda_from_metadata

KEYS = ("python", "platform", "torch", "gpu", "abi", "driver")


def parse_target(spec: str, here: Probe) -> Probe:
    fields = dict(here.to_dict())
    values = {}
    for part in filter(None, (s.strip() for s in (spec or "").split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in KEYS:
            raise UserError(f"--target: cannot read {part!r}",
                            "write e.g. python=3.12,platform=linux_x86_64,torch=2.8.0+cu128,gpu=8.6")
        values[key.strip()] = value.strip()
    t = Probe.from_dict({k: fields[k] for k in ("os", "machine", "python", "gpus", "driver")})
    t.packages, t.kernels = {}, {}
    if "python" in values:
        if not re.fullmatch(r"3\.\d+", values["python"]):
            raise UserError(f"--target python={values['python']}: expected like 3.12")
        t.python = values["python"]
    if "platform" in values:
        m = re.fullmatch(r"(linux|windows|macos)_(\w+)", values["platform"])
        if not m:
            raise UserError(f"--target platform={values['platform']}: expected linux_x86_64, linux_aarch64, "
                            "windows_amd64 or macos_arm64")
        t.os, t.machine = m.group(1), m.group(2)
    torch = values.get("torch") or here.packages.get("torch")
    if torch:
        t.packages["torch"] = torch
        t.torch_cuda = torch_cuda_from_metadata(torch) if "+" in torch else None
        t.torch_cxx11abi = values.get("abi", "").upper() or default_cxx11abi(t.os, torch)
    if "gpu" in values:
        cap = values["gpu"].lower().removeprefix("sm_")
        cap = cap if "." in cap else f"{cap[:-1]}.{cap[-1]}"
        t.gpus = [Gpu(0, "target GPU", cap, 0, values.get("driver", "999.0"))]
        t.driver = values.get("driver", "999.0")
    t.torch_sees_cuda = None
    return t


def files_to_fetch(t: Probe, folder: str = "WHEELS") -> dict:
    """{'commands': [...], 'urls': [...], 'notes': [...]} for the target."""
    py = f"python{t.python}"
    commands, urls, notes = [], [], []
    commands.append(f"python -m pip wheel --no-deps ./umamba -w {folder}    # umamba {__version__} itself")
    torch = t.packages.get("torch")
    if torch:
        base = torch.split("+")[0]
        tag = torch.partition("+")[2] or "cpu"
        index = "" if t.os == "macos" else f" --index-url {planner.TORCH_INDEX.format(tag)}"
        commands.append(f"{py} -m pip download torch=={base}{index} --no-deps -d {folder}")
        pin = f' "torch=={base}"'
    else:
        notes.append("no torch version given (torch=...): choose one; e.g. " + planner.torch_install_command(t, py))
        pin = ""
    commands.append(f'{py} -m pip wheel "nnunetv2{planner.NNUNET_SPEC}" numpy{pin}'
                    + (f" --extra-index-url {planner.TORCH_INDEX.format(torch.partition('+')[2])}"
                       if torch and "+" in torch else "") + f" -w {folder}")
    if torch:
        plan = planner.make_plan(t)
        for name in ("mamba-ssm", "causal-conv1d"):
            s = plan.step(name)
            if s.url and s.action == planner.PIP:
                urls.append(s.url)
            else:
                notes.append(f"{name}: {s.reason}")
    notes.append(f"run the commands on a machine with internet, Python {t.python} and {t.platform_tag}; then copy "
                 f"{folder} over and run `umamba install --find-links {folder} --no-index`")
    return {"commands": commands, "urls": urls, "notes": notes}
