"""`umamba bench predict --device cpu`: U-Mamba Bot and Enc against plain nnU-Net (PlainConvUNet) on one plan,
nnU-Net's typical CT 3d_fullres plan (6 stages, 32-320 features, kernels 3³, patch 128³, spacing 1.5 mm, 14
classes), float32 and the CPU fast path side by side.

Each measurement runs in its own child process (so peak RSS is that arm's alone), the arms interleaved round by
round (on a shared machine the load changes between rounds, not between neighbours): one window (forward only,
after one warm-up forward) and, with --volume, a whole volume through nnU-Net's predictor (our subclass: step
0.5, Gaussian weighting, no mirroring, float16 logits) and the per-class export. Labels of each arm are
compared with the float32 arm of the same network (same seed, same weights). Ratios, not absolute seconds, are
what carry over from a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CT_PLAN = {
    "configurations": {
        "3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": [128, 128, 128], "spacing": [1.5, 1.5, 1.5],
            "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                   "force_separate_z": None},
            "batch_dice": False,
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {
                    "n_stages": 6, "features_per_stage": [32, 64, 128, 256, 320, 320],
                    "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [[3, 3, 3]] * 6,
                    "strides": [[1, 1, 1]] + [[2, 2, 2]] * 5, "n_conv_per_stage": [2] * 6,
                    "n_conv_per_stage_decoder": [2] * 5, "conv_bias": True,
                    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                    "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
                    "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
        }
    },
    "plans_name": "nnUNetPlans", "original_median_spacing_after_transp": [1.5, 1.5, 1.5],
    "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
    "dataset_name": "Dataset000_CTBench",
    "foreground_intensity_properties_per_channel": {"0": {"mean": 0.0, "std": 1.0, "percentile_00_5": -1000.0,
                                                          "percentile_99_5": 1000.0}},
}
NUM_CLASSES = 14


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plain-nnunet", action="store_true", help="add plain nnU-Net (PlainConvUNet) arms")
    parser.add_argument("--cpu-precisions", default="float32,bf16",
                        help="comma-separated: float32, bf16 (bf16 convolutions; needs native bf16), auto")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of every arm")
    parser.add_argument("--window-repeats", type=int, default=1,
                        help="timed forwards per arm and round (0: no window arms)")
    parser.add_argument("--volume", default="", help="ZxYxX of a synthetic CT-like volume to predict whole "
                        "(at the plan's 1.5 mm spacing), e.g. 256x256x256; empty: windows only")
    parser.add_argument("--volume-spacing", default="1.5,1.5,1.5",
                        help="its spacing in mm (z,y,x); other than the plan's, the export resamples")
    parser.add_argument("--volume-max-windows", type=int, default=0,
                        help="predict only the first N windows of the volume: a memory measurement (the "
                             "accumulators and the export are full size), not a time")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: every core)")
    parser.add_argument("--baseline-src", default="",
                        help="another checkout's umamba/src: adds float32 arms run with that code (the "
                             "'before' of a change, measured in the same run)")


def run_cpu(args, reporter=None) -> int:
    variants = [v for v in args.variants.split(",") if v]
    if args.plain_nnunet:
        variants = ["plain", *variants]
    arms = [(v, p, "") for v in variants for p in args.cpu_precisions.split(",") if p]
    if args.baseline_src:
        arms += [(v, "float32", os.path.abspath(args.baseline_src)) for v in variants if v != "plain"]
    modes = (["window"] if args.window_repeats > 0 else []) + (["volume"] if args.volume else [])
    results: dict[tuple, list[dict]] = {}
    for rnd in range(args.rounds):
        for mode in modes:
            for variant, precision, src in arms:
                spec = {"mode": mode, "variant": variant, "precision": precision, "threads": args.threads,
                        "repeats": args.window_repeats, "volume": args.volume,
                        "volume_spacing": args.volume_spacing, "save_labels": rnd == 0,
                        "max_windows": args.volume_max_windows if mode == "volume" else 0}
                r = _child(spec, src)
                r.update(mode=mode, variant=variant, arm=precision + (" (baseline)" if src else ""), round=rnd)
                results.setdefault((mode, variant, r["arm"]), []).append(r)
                print(json.dumps(r), flush=True)
    rows = _summarise(results)
    _table(rows)
    return 0


def _child(spec: dict, src: str) -> dict:
    """One measurement in a fresh interpreter; the child script is run by path, so that with --baseline-src
    it measures that checkout's umamba (first on the path) with this checkout's measuring code."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    child = os.path.join(os.path.dirname(os.path.abspath(__file__)), "predict_cpu_child.py")
    proc = subprocess.run([sys.executable, child, json.dumps(spec)], capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-400:]}
    return json.loads(lines[-1])


def _summarise(results):
    rows = []
    for (mode, variant, arm), rs in results.items():
        ok = [r for r in rs if "seconds" in r]
        row = {"mode": mode, "variant": variant, "arm": arm}
        if ok:
            row.update(seconds=statistics.median(r["seconds"] for r in ok),
                       peak_rss_gb=max(r["peak_rss_gb"] for r in ok),
                       agreement=ok[0].get("agreement"), windows=ok[0].get("windows"))
        else:
            row["error"] = rs[0].get("error", "")[-200:]
        rows.append(row)
    for row in rows:   # ratios within one mode: against the same network's float32 arm, and against Bot
        ref = next((r for r in rows if r["mode"] == row["mode"] and r["variant"] == row["variant"]
                    and r["arm"] == ("float32 (baseline)" if any(x["arm"].endswith("(baseline)") for x in rows)
                                     else "float32") and "seconds" in r), None)
        if ref and "seconds" in row:
            row["speedup"] = ref["seconds"] / row["seconds"]
        bot = next((r for r in rows if r["mode"] == row["mode"] and r["variant"] == "bot"
                    and r["arm"] == row["arm"] and "seconds" in r), None)
        if bot and "seconds" in row:
            row["x_bot"] = row["seconds"] / bot["seconds"]
    return rows


def _table(rows):
    from umamba.bench import harness

    harness.table(rows, ["mode", "variant", "arm", "seconds", "speedup", "x_bot", "peak_rss_gb", "agreement",
                         "windows"],
                  title=f"CPU prediction, plan: 6 stages, 32-320 features, patch 128³, {NUM_CLASSES} classes; "
                        f"{os.cpu_count()} CPUs, {_cpu_name()}")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="umamba bench predict --device cpu")
    p.add_argument("--variants", default="bot,enc")
    add_arguments(p)
    return run_cpu(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
