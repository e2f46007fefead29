"""What the module needs to know about a trained model folder (Qt-free, no torch, no umamba import).

A model folder is nnU-Net's training output for one trainer/plans/configuration:
    <Trainer>__<Plans>__<configuration>/dataset.json, plans.json, fold_<k>/checkpoint_final.pth
Everything is read from these files before anything runs, so a corrupt or incompatible folder is reported
in the panel instead of as a failure deep inside a background process.
"""

import json
import os

from .Errors import UserFacingError

CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth")


def _readJson(path, what, modelDir):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserFacingError(
            f"The model folder {modelDir} has no {os.path.basename(path)} ({what}).",
            "Choose the folder that nnU-Net/umamba training wrote (it contains dataset.json, plans.json and "
            "fold_* folders), or import the model again.") from None
    except (OSError, ValueError) as exc:
        raise UserFacingError(
            f"{os.path.basename(path)} in {modelDir} cannot be read ({exc}).",
            "The model folder is damaged: import the model again from its original folder or zip.") from None


class ModelInfo:
    """Labels, channels, configuration and folds of one model folder. Use `ModelInfo.fromFolder(path)`."""

    def __init__(self, folder, name, labels, channelNames, configuration, dimensions, folds, trainer, card=None):
        self.folder = folder
        self.name = name
        self.labels = labels              # [(value, name)] of the foreground labels, in value order
        self.channelNames = channelNames  # ["CT"] or ["T1", "T2", ...]: one input volume each
        self.configuration = configuration
        self.dimensions = dimensions      # 2 (slice-wise model) or 3
        self.folds = folds                # ["0"], ["all"], ...
        self.trainer = trainer
        self.card = card or {}

    @property
    def numberOfChannels(self):
        return len(self.channelNames)

    def labelValues(self):
        return [value for value, _name in self.labels]

    def summary(self):
        labels = ", ".join(name for _v, name in self.labels)
        channels = ", ".join(self.channelNames)
        return (f"{self.name}: {len(self.labels)} labels ({labels}); input {channels}; "
                f"{self.trainer or 'trainer ?'} {self.configuration} ({self.dimensions}D); "
                f"folds {', '.join(self.folds)}")

    @classmethod
    def fromFolder(cls, folder, name=None, card=None):
        folder = os.path.abspath(str(folder))
        if not os.path.isdir(folder):
            raise UserFacingError(f"The model folder {folder} does not exist.",
                                  "Choose another model, or import it again into the model store.")
        dataset = _readJson(os.path.join(folder, "dataset.json"), "labels and input channels", folder)
        plans = _readJson(os.path.join(folder, "plans.json"), "network configuration", folder)
        labels = cls._labels(dataset, folder)
        channels = cls._channels(dataset, folder)
        trainer, configuration = cls._trainerAndConfiguration(folder, plans, card)
        dimensions = cls._dimensions(plans, configuration, folder)
        folds = cls._folds(folder)
        return cls(folder, name or os.path.basename(os.path.dirname(folder)) or os.path.basename(folder),
                   labels, channels, configuration, dimensions, folds, trainer, card)

    # -- parts -----------------------------------------------------------------------------------------------------
    @staticmethod
    def _labels(dataset, folder):
        raw = dataset.get("labels") if isinstance(dataset, dict) else None
        if not isinstance(raw, dict) or not raw:
            raise UserFacingError(
                f"dataset.json in {folder} lists no labels, so the segments cannot be named.",
                'dataset.json needs "labels": {"background": 0, "<structure>": 1, ...}; '
                "fix it or re-export the model from its training folder.")
        if all(str(k).isdigit() and isinstance(v, str) for k, v in raw.items()):  # old {"1": "liver"} form
            raw = {v: int(k) for k, v in raw.items()}
        regionOrder = dataset.get("regions_class_order")
        foreground = [(n, v) for n, v in raw.items() if n != "background" and v not in (0, [0])]
        labels = []
        for index, (labelName, value) in enumerate(foreground):
            if isinstance(value, (list, tuple)):  # region-based training: output values follow the region order
                if not isinstance(regionOrder, list) or index >= len(regionOrder):
                    raise UserFacingError(f"dataset.json in {folder} uses regions without 'regions_class_order'.",
                                          "Add 'regions_class_order' (as nnU-Net writes it) to dataset.json.")
                value = regionOrder[index]
            if isinstance(value, bool) or not isinstance(value, int):
                raise UserFacingError(f"dataset.json in {folder}: label '{labelName}' has the value {value!r}, "
                                      "not an integer.", "Label values must be integers 0, 1, 2, ...")
            labels.append((value, str(labelName)))
        if not labels:
            raise UserFacingError(f"dataset.json in {folder} has only a background label.",
                                  "A segmentation model needs at least one foreground label in dataset.json.")
        if len({v for v, _n in labels}) != len(labels):
            raise UserFacingError(f"dataset.json in {folder} gives two labels the same value.",
                                  "Each label name needs its own value.")
        return sorted(labels)

    @staticmethod
    def _channels(dataset, folder):
        raw = dataset.get("channel_names") or dataset.get("modality")  # "modality": the nnU-Net v1 name
        if not isinstance(raw, dict) or not raw:
            raise UserFacingError(f"dataset.json in {folder} lists no input channels ('channel_names').",
                                  'dataset.json needs "channel_names": {"0": "CT"} (one entry per input).')
        try:
            ordered = sorted(raw.items(), key=lambda kv: int(kv[0]))
        except ValueError:
            raise UserFacingError(f"dataset.json in {folder}: channel keys must be 0, 1, 2, ...", None) from None
        return [str(v) for _k, v in ordered]

    @staticmethod
    def _trainerAndConfiguration(folder, plans, card):
        card = card or {}
        parts = os.path.basename(folder).split("__")
        trainer = card.get("trainer") or (parts[0] if len(parts) == 3 else None)
        configuration = card.get("configuration") or (parts[2] if len(parts) == 3 else None)
        configurations = plans.get("configurations") if isinstance(plans, dict) else None
        if not isinstance(configurations, dict) or not configurations:
            raise UserFacingError(f"plans.json in {folder} has no 'configurations'.",
                                  "This is not an nnU-Net v2 model folder; import the model again.")
        if configuration is None and len(configurations) == 1:
            configuration = next(iter(configurations))
        if configuration not in configurations:
            raise UserFacingError(
                f"The model folder {folder} does not say which configuration it was trained with "
                f"(found {configuration!r}; plans.json has {', '.join(configurations)}).",
                "Keep nnU-Net's folder name <Trainer>__<Plans>__<configuration>, or import it with umamba.")
        return trainer, configuration

    @staticmethod
    def _dimensions(plans, configuration, folder):
        configurations = plans["configurations"]
        seen = set()
        current = configuration
        while current is not None and current not in seen:  # follow 'inherits_from' to the patch size
            seen.add(current)
            entry = configurations.get(current) or {}
            patch = entry.get("patch_size")
            if isinstance(patch, list) and len(patch) in (2, 3):
                return len(patch)
            current = entry.get("inherits_from")
        raise UserFacingError(f"plans.json in {folder} gives no patch size for '{configuration}'.",
                              "The model folder is damaged or not from nnU-Net v2.")

    @staticmethod
    def _folds(folder):
        folds = []
        for entry in sorted(os.listdir(folder)):
            path = os.path.join(folder, entry)
            if entry.startswith("fold_") and os.path.isdir(path) and \
                    any(os.path.isfile(os.path.join(path, c)) for c in CHECKPOINT_NAMES):
                folds.append(entry[len("fold_"):])
        if not folds:
            raise UserFacingError(f"The model folder {folder} has no trained fold (fold_*/checkpoint_final.pth).",
                                  "Training may not have finished: train it to the end or import a finished "
                                  "model.")
        return folds

    def checkpointName(self):
        """checkpoint_final.pth when every fold has it, else the best one every fold has."""
        for name in CHECKPOINT_NAMES:
            if all(os.path.isfile(os.path.join(self.folder, f"fold_{fold}", name)) for fold in self.folds):
                return name
        return CHECKPOINT_NAMES[0]
