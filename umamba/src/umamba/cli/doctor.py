"""`umamba doctor`: what is installed, what the installer would do, and which Mamba backend will run."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verify", action="store_true",
                        help="also import umamba and run a tiny Mamba forward in a fresh process")
    parser.add_argument("--quick", action="store_true",
                        help="skip the subprocess checks (torch import, CUDA extension load)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (probe, plan, the backend per device) instead of the text")


def format_probe(p) -> list[str]:
    lines = [f"system        {p.os} {p.machine}, Python {p.python} ({p.python_tag})"
             + (f", Slicer {p.slicer_version}" if p.slicer_version else "")]
    if p.gpus:
        for g in p.gpus:
            cap = f"sm_{g.compute_capability.replace('.', '')}" if g.compute_capability else "sm_?"
            lines.append(f"gpu {g.index}         {g.name}, {cap}, {g.memory_mib} MiB, driver {g.driver}")
    else:
        lines.append("gpu           none found" + (f" ({p.nvidia_smi_error})" if p.nvidia_smi_error else ""))
    torch = p.packages.get("torch")
    lines.append("torch         " + (f"{torch}, CUDA {p.torch_cuda or '-'}, cxx11abi {p.torch_cxx11abi or '-'}"
                                + ("" if p.torch_sees_cuda is None else f", sees GPU: {p.torch_sees_cuda}")
                                if torch else "not installed"))
    for name in ("nnunetv2", "numpy", "simpleitk", "triton", "numba"):
        lines.append(f"{name:<13} {p.packages.get(name, 'not installed')}")
    for name, state in p.kernels.items():
        lines.append(f"{name:<13} {p.packages.get(name, 'not installed')} (CUDA extension: {state})")
    lines.append(f"nvcc          {p.nvcc or 'not found'}")
    return lines


def format_plan(plan) -> list[str]:
    lines = [f"plan          (backend after install: {plan.backend}, device: {plan.device})"]
    for s in plan.steps:
        lines.append(f"  - {s.name:<14} {s.action:<12} {s.reason}")
        if s.command:
            lines.append(f"  {'':<29} {s.command}")
        if s.url and s.action != "ok":
            lines.append(f"  {'':<29} {s.url}")
    lines += [f"note          {n}" for n in plan.notes]
    return lines


def format_backends(report: dict) -> list[str]:
    lines = []
    for device, r in report.items():
        cap = f" (sm_{r['capability'].replace('.', '')})" if r.get("capability") else ""
        for mode in ("training", "inference"):
            ops = r[mode]
            lines.append(f"{mode:<9} {device}{cap}: scan {ops['scan']['backend']} ({ops['scan']['reason']}), "
                         f"conv {ops['conv']['backend']}, norm {ops['norm']['backend']}")
    return lines


def _backends() -> tuple[dict | None, str | None]:
    """What `auto` resolves to on each device (imports torch in this process), or why that cannot be said."""
    try:
        from umamba.install.verify import backend_report

        return backend_report(), None
    except Exception as exc:  # no torch, or a broken one: the probe and plan still say what to do
        return None, f"{type(exc).__name__}: {exc}"


def _numba_note(report: dict | None) -> str | None:
    cpu = (report or {}).get("cpu")
    if cpu and cpu["inference"]["scan"]["backend"] != "numba" and "numba:" in cpu["inference"]["scan"]["reason"]:
        return ("the CPU path lacks numba: CPU inference uses the portable scan (several times slower); "
                f"{sys.executable} -m pip install numba")
    return None


def run(args: argparse.Namespace, reporter) -> int:
    from umamba.install.planner import PlanOptions, make_plan
    from umamba.install.probe import probe, unmet_umamba_requirements
    from umamba.install.runner import run_verify

    p = probe(deep=not args.quick)
    plan = make_plan(p, PlanOptions(python=sys.executable), unmet_umamba_requirements())
    report, why_not = _backends()
    note = _numba_note(report)
    lines = format_probe(p) + format_plan(plan)
    lines += format_backends(report) if report else [f"backends      unknown: torch does not import ({why_not})"]
    lines += [f"note          {note}"] if note else []
    if not args.json:
        for line in lines:
            reporter.log(line)
    fields = {"probe": p.to_dict(), "plan": plan.to_dict(), "backend": plan.backend, "devices": report}
    if note:
        fields["numba_note"] = note
    rc = 0
    if args.verify:
        result = run_verify(sys.executable)
        fields["verify"] = result
        if result.get("ok"):
            if not args.json:
                reporter.log(f"verify        ok: Mamba forward+backward on {result['device']} with the "
                             f"{result['backend']} backend ({result['seconds']} s)")
            fields["backend"] = result["backend"]
        elif not args.json:
            reporter.error(f"verification failed: {result.get('error')}",
                           "run `umamba install` (it prints what is missing), then `umamba doctor --verify`")
            rc = 1
    if args.json:
        print(json.dumps(fields, indent=1, default=str))
        return rc
    reporter.done([], **fields)
    return rc
