"""Logits -> label map at the image's original geometry, one class at a time.

nnU-Net's `convert_predicted_logits_to_segmentation_with_correct_shape` resamples all class logits at once to the
original shape in float32 and takes the argmax: for 14 classes and a 512×512×300 CT that is 4.4 GB on top of the
logits. Here each class's logits are resampled alone, with nnU-Net's own resampling function (it resamples each
channel independently, so the values are the same), and folded into a running maximum and argmax: the extra
memory is one class at full resolution plus the maximum (float32) and the labels. Ties keep the lower class, as
argmax does. Region-based label managers (sigmoid per region) go through nnU-Net's function unchanged.
"""

from __future__ import annotations

import contextlib
import sys

import numpy as np
import torch

with contextlib.redirect_stdout(sys.stderr):
    from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape


def segmentation_from_logits(logits: torch.Tensor, plans_manager, configuration_manager, label_manager,
                             properties: dict) -> np.ndarray:
    """Same result as nnU-Net's convert_predicted_logits_to_segmentation_with_correct_shape (no probabilities)."""
    if label_manager.has_regions:
        return convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, plans_manager, configuration_manager, label_manager, properties, num_threads_torch=1)
    original_spacing = [properties["spacing"][i] for i in plans_manager.transpose_forward]
    shape = properties["shape_after_cropping_and_before_resampling"]
    current_spacing = configuration_manager.spacing if len(configuration_manager.spacing) == len(shape) \
        else [original_spacing[0], *configuration_manager.spacing]
    best = labels = None
    for c in range(logits.shape[0]):
        r = configuration_manager.resampling_fn_probabilities(logits[c:c + 1], shape, current_spacing,
                                                              original_spacing)
        r = (r.numpy() if isinstance(r, torch.Tensor) else np.asarray(r))[0]
        if best is None:
            best = r.astype(np.float32, copy=True)
            labels = np.zeros(best.shape, dtype=np.uint8 if logits.shape[0] <= 255 else np.uint16)
        else:
            better = r > best
            np.copyto(best, r, where=better)
            labels[better] = c
        del r
    del best
    full = np.zeros(properties["shape_before_cropping"],
                    dtype=np.uint8 if len(label_manager.foreground_labels) < 255 else np.uint16)
    full = insert_crop_into_image(full, labels, properties["bbox_used_for_cropping"])
    return full.transpose(plans_manager.transpose_backward)

