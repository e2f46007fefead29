"""One arm of `umamba bench predict --device cpu`, in its own process: prints one JSON line (seconds, peak RSS,
label agreement with the float32 arm's labels saved in UMAMBA_BENCH_DIR). Run by path (predict_cpu.py)."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch


def _bench_module():
    """predict_cpu.py beside this file (a baseline checkout on the path first may not have it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("predict_cpu", os.path.join(os.path.dirname(__file__),
                                                                              "predict_cpu.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(variant: str):
    CT_PLAN, NUM_CLASSES = _bench_module().CT_PLAN, _bench_module().NUM_CLASSES

    torch.manual_seed(0)
    if variant == "plain":
        with contextlib.redirect_stdout(sys.stderr):
            from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
        arch = CT_PLAN["configurations"]["3d_fullres"]["architecture"]
        net = get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                     1, NUM_CLASSES, deep_supervision=False)
    else:
        from umamba.nets import build_network
        net = build_network(variant, CT_PLAN, "3d_fullres", 1, NUM_CLASSES, deep_supervision=False)
    return net.eval()


def setup(spec):
    """Threads and precision as `umamba predict` sets them (a baseline checkout without cpu_speed: float32)."""
    try:
        from umamba.nnunet.cpu_speed import resolve_precision, set_threads
    except ImportError:
        torch.set_num_threads(spec["threads"] or len(os.sched_getaffinity(0)))
        return False
    set_threads(spec["threads"])
    return resolve_precision(spec["precision"]) == "bf16"


def window(spec, net, bf16):
    x = torch.randn(1, 1, 128, 128, 128, generator=torch.Generator().manual_seed(1))
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times = []
    with torch.inference_mode(), ctx:
        out = net(x)
        for _ in range(spec["repeats"]):
            t0 = time.perf_counter()
            out = net(x)
            times.append(time.perf_counter() - t0)
    return min(times), out[0].float().argmax(0).numpy().astype(np.uint8), 1


def ct_like_volume(shape, seed=0):
    """Air outside an ellipse of soft tissue (~40 HU) with bright and dark blobs, Gaussian noise: what the CT
    normalisation and the windows see in an abdominal CT."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in shape], indexing="ij")
    body = (y / 0.8) ** 2 + (x / 0.9) ** 2 < 1
    vol = np.where(body, 40.0, -1000.0).astype(np.float32)
    for _ in range(12):
        c = rng.uniform(-0.6, 0.6, 3)
        r = rng.uniform(0.08, 0.25)
        vol[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r * r] = rng.choice([-100.0, 150.0, 700.0])
    vol += rng.normal(0, 20, shape).astype(np.float32)
    return vol


def volume(spec, net, bf16):
    CT_PLAN = _bench_module().CT_PLAN

    with contextlib.redirect_stdout(sys.stderr):
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
        from umamba.nnunet.predictor import UMambaPredictor
    shape = [int(v) for v in spec["volume"].lower().split("x")]
    spacing = [float(v) for v in spec["volume_spacing"].split(",")]
    dataset_json = {"channel_names": {"0": "CT"}, "labels": {"background": 0, **{f"c{i}": i for i in range(1, 14)}},
                    "numTraining": 1, "file_ending": ".nii.gz"}
    plans_manager = PlansManager(CT_PLAN)
    conf = plans_manager.get_configuration("3d_fullres")
    kwargs = {"cpu_bf16": bf16} if bf16 else {}
    cls = UMambaPredictor
    if spec.get("max_windows"):
        class FirstWindows(UMambaPredictor):
            """Only the first windows: the accumulators and the export stay full size (the memory peak is the
            same), the time is not the volume's."""

            def _internal_get_sliding_window_slicers(self, image_size):
                slicers = super()._internal_get_sliding_window_slicers(image_size)
                self.all_windows = len(slicers)
                return slicers[:spec["max_windows"]]
        cls = FirstWindows
    with contextlib.redirect_stdout(sys.stderr):
        p = cls(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                            perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                            verbose_preprocessing=False, allow_tqdm=False, **kwargs)
        p.manual_initialization(net, plans_manager, conf, [net.state_dict()], dataset_json, "bench", None)
    image = ct_like_volume(shape)[None]
    props = {"spacing": spacing}
    t0 = time.perf_counter()
    pre = conf.preprocessor_class(verbose=False)
    with contextlib.redirect_stdout(sys.stderr):
        data, _, props = pre.run_case_npy(image, None, props, plans_manager, conf, dataset_json)
    del image
    logits = p.predict_logits_from_preprocessed_data(torch.from_numpy(data)).cpu()
    del data
    try:
        from umamba.nnunet.lean_export import segmentation_from_logits
        seg = segmentation_from_logits(logits, plans_manager, conf, p.label_manager, props)
    except ImportError:     # a baseline checkout: nnU-Net's own export
        from nnunetv2.inference.export_prediction import \
            convert_predicted_logits_to_segmentation_with_correct_shape as convert
        seg = convert(logits, plans_manager, conf, p.label_manager, props)
    seconds = time.perf_counter() - t0
    return seconds, np.asarray(seg, dtype=np.uint8), getattr(p, "all_windows", p.tiles_done)


def main(spec):
    bf16 = setup(spec)
    net = build(spec["variant"])
    fn = window if spec["mode"] == "window" else volume
    seconds, labels, windows = fn(spec, net, bf16)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20      # KiB -> GiB (Linux)
    store = os.path.join(os.environ.get("UMAMBA_BENCH_DIR", tempfile.gettempdir()),
                         f"umamba-bench-{spec['mode']}-{spec['variant']}-float32.npy")
    agreement = None
    if spec["precision"] == "float32" and spec["save_labels"]:
        np.save(store, labels)
    elif os.path.exists(store):
        ref = np.load(store)
        agreement = float((ref == labels).mean()) if ref.shape == labels.shape else None
    print(json.dumps({"seconds": seconds, "peak_rss_gb": rss, "agreement": agreement, "windows": windows,
                      "bf16": bf16, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
