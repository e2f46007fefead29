"""Class and function names in a plans file that nnU-Net cannot find, reported before any work starts.

nnU-Net looks the preprocessor, the normalisation schemes, the resampling functions and the image reader/writer
up by name when it first needs them; an unknown name comes back as None and ends in `TypeError: 'NoneType' object
is not callable` deep inside training or prediction. The same look-ups (nnU-Net's own finders) run here first.
"""

from __future__ import annotations

import pydoc
from os.path import join

from umamba.errors import UserError


def unknown_names(plans: dict, configuration: str) -> list[str]:
    """'field: name' for each name in the configuration that nnU-Net cannot resolve."""
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    root = nnunetv2.__path__[0]
    config = PlansManager(plans).get_configuration(configuration).configuration

    def find(folder: str, name) -> bool:
        return isinstance(name, str) and recursive_find_python_class(
            join(root, *folder.split(".")), name, f"nnunetv2.{folder}") is not None

    missing = []
    if not find("preprocessing", config.get("preprocessor_name", "DefaultPreprocessor")):
        missing.append(f"preprocessor_name: {config.get('preprocessor_name')}")
    for scheme in config.get("normalization_schemes") or []:
        if not find("preprocessing.normalization", scheme):
            missing.append(f"normalization_schemes: {scheme}")
    for key in ("resampling_fn_data", "resampling_fn_seg", "resampling_fn_probabilities"):
        if key in config and not find("preprocessing.resampling", config[key]):
            missing.append(f"{key}: {config[key]}")
    reader = plans.get("image_reader_writer")
    if reader is not None and not find("imageio", reader):
        missing.append(f"image_reader_writer: {reader}")
    architecture = config.get("architecture") or {}
    kwargs = architecture.get("arch_kwargs") or {}
    for key in architecture.get("_kw_requires_import") or []:
        if key in kwargs and kwargs[key] is not None and pydoc.locate(kwargs[key]) is None:
            missing.append(f"architecture.arch_kwargs.{key}: {kwargs[key]}")
    return missing


def check_plan_names(plans: dict, configuration: str, plans_file) -> None:
    missing = unknown_names(plans, configuration)
    if missing:
        raise UserError(f"{plans_file} (configuration {configuration}) names what nnU-Net does not have: "
                        + "; ".join(missing),
                        "correct these names in the plans file (nnU-Net's class and function names are case-"
                        "sensitive), or plan the dataset again with `umamba plan`")
