"""The local model store: validated nnU-Net model folders, each described by a `umamba_card.json`.

This module does not import torch (the Slicer module and `umamba models` use it). A store is a folder
(`umamba.paths.default_model_store()` unless `--store` says otherwise) with one sub-folder per model:

    <store>/<name>/dataset.json, plans.json, fold_X/checkpoint_*.pth, ... (an nnU-Net model folder)
    <store>/<name>/umamba_card.json

Card schema (version 1), every key always present:
    schema_version  int, 1
    name            str, the folder name in the store ([A-Za-z0-9._-], not starting with '.')
    dataset         str, e.g. "Dataset503_SpinalCord" (from the source's folder names or dataset.json "name")
    labels          {label name: int value, or list of int for regions}, from dataset.json, background included
    channel_names   [str], one per input channel, in channel order (file suffix _0000, _0001, ...)
    file_ending     str, e.g. ".nii.gz"
    trainer         str, e.g. "nnUNetTrainerUMambaBot"
    variant         "bot" | "enc"
    plans           str, plans identifier, e.g. "nnUNetPlans"
    configuration   str, e.g. "3d_fullres" or "2d"
    folds           [str], e.g. ["0", "1"] or ["all"]
    checkpoints     {fold: [checkpoint file names in fold_<fold>/]}
    created         str, ISO 8601 UTC time of the import, e.g. "2026-11-27T19:00:00Z"
    source          str, the folder or zip it was imported from
    umamba_version  str
Readers must ignore keys they do not know (later versions may add some).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from umamba import __version__
from umamba.errors import UserError

CARD_FILE = "umamba_card.json"
CARD_SCHEMA_VERSION = 1
# checkpoint trainer_name -> network variant; the names U-Mamba's checkpoints record.
TRAINER_VARIANTS = {
    "nnUNetTrainerUMambaBot": "bot",
    "nnUNetTrainerUMambaBotNoAMP": "bot",
    "nnUNetTrainerUMambaEnc": "enc",
    "nnUNetTrainerUMambaEncNoAMP": "enc",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_FOLD_RE = re.compile(r"^fold_(\d+|all)$")
# What an import copies from a model folder (nnU-Net's export keeps the same): the json files, checkpoints, and
# the small training records; validation predictions are left behind.
_KEEP_TOP = re.compile(r"^[^/]+\.json$")
_KEEP_FOLD = re.compile(r"^fold_(\d+|all)/([^/]+\.(pth|json|png|txt)|validation/summary\.json)$")


def trainer_variant(trainer: str) -> str | None:
    return TRAINER_VARIANTS.get(trainer)


@dataclass
class ModelFolder:
    """What a model folder holds, read without torch."""
    path: Path
    dataset: str
    trainer: str
    plans: str
    configuration: str
    dataset_json: dict
    checkpoints: dict[str, list[str]] = field(default_factory=dict)

    @property
    def folds(self) -> list[str]:
        return sorted(self.checkpoints, key=_fold_key)


def _fold_key(fold: str):
    return (1, 0) if fold == "all" else (0, int(fold))


def _read_json(path: Path, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path.parent} has no {path.name}",
                        f"a model folder needs dataset.json, plans.json and fold_X/checkpoint_final.pth; "
                        f"pass the Trainer__Plans__Configuration folder from nnUNet_results") from None
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON ({exc})", f"restore {what} from the original model") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} does not hold a JSON object", f"restore {what} from the original model")
    return value


def channel_names(dataset_json: dict) -> list[str]:
    """Input channel names in channel order ("channel_names" in nnU-Net v2, "modality" in older files)."""
    channels = dataset_json.get("channel_names") or dataset_json.get("modality") or {}
    return [str(channels[k]) for k in sorted(channels, key=lambda k: int(k))]


def labels(dataset_json: dict) -> dict:
    """{name: value}; also accepts the old {"0": "background"} orientation."""
    raw = dataset_json.get("labels") or {}
    if raw and all(str(k).isdigit() and isinstance(v, str) for k, v in raw.items()):
        return {v: int(k) for k, v in raw.items()}
    return dict(raw)


def inspect_model_folder(path: str | os.PathLike, checkpoint_name: str | None = None,
                         identity: tuple[str, str, str] | None = None, trust_checkpoint: bool = False) -> ModelFolder:
    """Validate an nnU-Net model folder (dataset.json, plans.json, >= 1 fold with a checkpoint, known trainer).

    Trainer, plans and configuration come from `identity` when given, else from the folder name
    (Trainer__Plans__Configuration, as nnU-Net names it), else from a checkpoint.
    """
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"model folder not found: {path}", "pass an nnU-Net model folder or a model name "
                                                           "from `umamba models`")
    dataset_json = _read_json(path / "dataset.json", "dataset.json")
    plans = _read_json(path / "plans.json", "plans.json")
    checkpoints: dict[str, list[str]] = {}
    for sub in sorted(path.iterdir()):
        m = _FOLD_RE.match(sub.name)
        if m and sub.is_dir():
            names = sorted(p.name for p in sub.glob("checkpoint*.pth") if p.is_file())
            if checkpoint_name is not None:
                names = [n for n in names if n == checkpoint_name]
            if names:
                checkpoints[m.group(1)] = names
    if not checkpoints:
        wanted = checkpoint_name or "checkpoint_final.pth"
        raise UserError(f"{path} has no fold_X/{wanted}",
                        "train the model to the end (or pass --checkpoint checkpoint_best.pth / "
                        "checkpoint_latest.pth), or copy the fold folders too")
    trainer, plans_name, configuration = identity or _split_model_folder_name(path.name)
    if trainer is None:
        trainer, configuration = _identity_from_checkpoint(path / f"fold_{next(iter(checkpoints))}" /
                                                           checkpoints[next(iter(checkpoints))][0], trust_checkpoint)
        plans_name = plans.get("plans_name", "nnUNetPlans")
    if configuration not in (plans.get("configurations") or {}):
        raise UserError(f"{path}/plans.json has no configuration '{configuration}'",
                        "the folder name or checkpoint names a configuration the plans lack; export the model again")
    if trainer_variant(trainer) is None:
        raise UserError(f"{path} was trained with {trainer}, which is not a U-Mamba trainer",
                        f"umamba runs models trained with {', '.join(TRAINER_VARIANTS)}")
    dataset = plans.get("dataset_name") or dataset_json.get("name") or path.parent.name
    return ModelFolder(path, str(dataset), trainer, plans_name, configuration, dataset_json, checkpoints)


def _split_model_folder_name(name: str) -> tuple[str | None, str | None, str | None]:
    parts = name.split("__")
    return tuple(parts) if len(parts) == 3 and all(parts) else (None, None, None)


def _identity_from_checkpoint(checkpoint: Path, trust: bool = False) -> tuple[str, str]:
    """Trainer and configuration for a folder not named Trainer__Plans__Configuration (needs torch)."""
    from umamba.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint, trust=trust)
    try:
        return str(ckpt["trainer_name"]), str(ckpt["init_args"]["configuration"])
    except (KeyError, TypeError):
        raise UserError(f"{checkpoint} does not say which trainer and configuration wrote it",
                        "name the model folder Trainer__Plans__Configuration, as nnU-Net does") from None


def make_card(model: ModelFolder, name: str, source: str) -> dict:
    return {
        "schema_version": CARD_SCHEMA_VERSION,
        "name": name,
        "dataset": model.dataset,
        "labels": labels(model.dataset_json),
        "channel_names": channel_names(model.dataset_json),
        "file_ending": model.dataset_json.get("file_ending", ".nii.gz"),
        "trainer": model.trainer,
        "variant": trainer_variant(model.trainer),
        "plans": model.plans,
        "configuration": model.configuration,
        "folds": model.folds,
        "checkpoints": {f: model.checkpoints[f] for f in model.folds},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": source,
        "umamba_version": __version__,
    }


def card_line(card: dict) -> str:
    """The one-line card `import-model` and `models` print."""
    labels_text = ", ".join(f"{k}={v}" for k, v in card["labels"].items())
    return (f"{card['name']}: {card['dataset']} | labels {labels_text} | channels {', '.join(card['channel_names'])}"
            f" | {card['trainer']} ({card['variant']}) | {card['configuration']} | folds {', '.join(card['folds'])}")


# -- the store ----------------------------------------------------------------------------------------------------
def read_card(model_dir: str | os.PathLike) -> dict:
    return _read_json(Path(model_dir) / CARD_FILE, CARD_FILE)


def list_models(store: str | os.PathLike) -> list[dict]:
    """Cards of every model in the store, sorted by name; folders without a readable card are skipped."""
    store = Path(store)
    cards = []
    if store.is_dir():
        for sub in sorted(store.iterdir()):
            if sub.name.startswith(".") or not (sub / CARD_FILE).is_file():
                continue
            try:
                cards.append(read_card(sub))
            except UserError:
                continue
    return cards


def resolve_model(spec: str | os.PathLike, store: str | os.PathLike) -> Path:
    """A model folder path, or the name of a model in the store -> the model folder."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "plans.json").is_file() or (path / "dataset.json").is_file():
            return path
        # a results folder above the model folder: fine when it holds exactly one model
        found = [f for f in (_find_model_folders(path) if any(p.is_dir() for p in path.iterdir()) else [])
                 if any(_FOLD_RE.match(p.name) for p in f.iterdir())]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise UserError(f"{path} holds {len(found)} model folders",
                            "pass one of them: " + ", ".join(str(f) for f in found))
        return path  # inspect_model_folder will say what is missing
    if _NAME_RE.match(str(spec)) and (Path(store) / str(spec)).is_dir():
        return Path(store) / str(spec)
    names = [c["name"] for c in list_models(store)]
    raise UserError(f"no model folder or stored model named '{spec}'",
                    f"models in {store}: {', '.join(names)}" if names else
                    "import one first with `umamba import-model SOURCE`, or pass a model folder")


def delete_model(store: str | os.PathLike, name: str) -> None:
    target = Path(store) / name
    if not _NAME_RE.match(name) or not (target / CARD_FILE).is_file():
        raise UserError(f"no model named '{name}' in {store}", "see `umamba models` for the names")
    trash = Path(store) / f".trash-{uuid.uuid4().hex}"
    os.rename(target, trash)  # atomic: the model disappears at once, the files go after
    shutil.rmtree(trash, ignore_errors=True)


def import_model(source: str | os.PathLike, store: str | os.PathLike, name: str | None = None,
                 configuration: str | None = None, force: bool = False, read_checkpoints: bool = False,
                 trust_checkpoint: bool = False) -> list[dict]:
    """Import a model folder, a results folder holding model folders, or an nnU-Net export zip; returns the cards.

    Several models in the source (e.g. 2d and 3d_fullres) are each imported, unless `configuration` picks one.
    With `read_checkpoints` (`umamba import-model` sets it; it needs torch, which the store itself does not, as
    Slicer's process uses it) every checkpoint is read once with umamba.checkpoint's loader before the model lands
    in the store, so a file that is truncated or would run pickled code is refused at import (`trust_checkpoint`
    allows the latter).
    """
    source = Path(source).expanduser()
    store = Path(store).expanduser()
    if name is not None and not _NAME_RE.match(name):
        raise UserError(f"invalid model name '{name}'", "use letters, digits, '.', '_' and '-' only")
    if source.is_file() and zipfile.is_zipfile(source):
        return _import_zip(source, store, name, configuration, force, read_checkpoints, trust_checkpoint)
    if source.is_dir():
        folders = _find_model_folders(source)
        folders = _pick_configuration(folders, configuration, source, lambda p: p.name)
        store.mkdir(parents=True, exist_ok=True)
        models = [inspect_model_folder(f, trust_checkpoint=trust_checkpoint) for f in folders]
        names = _names_for(models, name)
        _check_free(store, names, force)
        cards = []
        for model, model_name in zip(models, names):
            def fill(stage: Path, src=model.path):
                for rel in _kept_files(src):
                    (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src / rel, stage / rel)
            cards.append(_install(store, model_name, fill, _identity(model), str(model.path.resolve()), force,
                                  read_checkpoints, trust_checkpoint))
        return cards
    if source.exists():
        raise UserError(f"{source} is neither a folder nor a zip archive",
                        "pass an nnU-Net results/model folder or a zip from nnUNetv2_export_model_to_zip")
    raise UserError(f"{source} does not exist", "check the path")


def _find_model_folders(root: Path, depth: int = 3) -> list[Path]:
    if (root / "plans.json").is_file() or (root / "dataset.json").is_file():
        return [root]
    found: list[Path] = []
    if depth > 0:
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            found += _find_model_folders(sub, depth - 1)
    if not found and depth == 3:
        raise UserError(f"{root} holds no nnU-Net model folder (dataset.json + plans.json + fold_X/)",
                        "pass nnUNet_results/DatasetXXX_Name/Trainer__Plans__Configuration or a folder above it")
    return found


def _pick_configuration(items: list, configuration: str | None, source, name_of) -> list:
    if configuration is None:
        return items
    picked = [i for i in items if _split_model_folder_name(name_of(i))[2] == configuration]
    if not picked:
        have = sorted({str(_split_model_folder_name(name_of(i))[2]) for i in items})
        raise UserError(f"{source} holds no model with configuration '{configuration}'",
                        f"configurations present: {', '.join(have)}")
    return picked


def _names_for(models: list[ModelFolder], name: str | None) -> list[str]:
    def default(m: ModelFolder) -> str:
        return f"{m.dataset}_{m.trainer.replace('nnUNetTrainer', '')}_{m.configuration}"
    if len(models) == 1:
        names = [name or default(models[0])]
    else:
        names = [f"{name}_{m.configuration}" if name else default(m) for m in models]
        if len(set(names)) < len(names):  # same configuration, different trainer/plans
            names = [f"{name}_{m.path.name.replace('__', '_')}" if name else f"{m.dataset}_{m.path.name}"
                     .replace("__", "_") for m in models]
    for n in names:
        if not _NAME_RE.match(n):
            raise UserError(f"cannot make a valid model name from '{n}'", "pass --name")
    return names


def _check_free(store: Path, names: list[str], force: bool) -> None:
    taken = [n for n in names if (store / n).exists()]
    if taken and not force:
        raise UserError(f"the store already has a model named {', '.join(taken)}",
                        "pass --name NEW_NAME, or --force to replace it")


def _kept_files(model_dir: Path) -> list[str]:
    rels = []
    for p in sorted(model_dir.rglob("*")):
        rel = p.relative_to(model_dir).as_posix()
        if p.is_file() and not p.is_symlink() and (_KEEP_TOP.match(rel) or _KEEP_FOLD.match(rel)):
            rels.append(rel)
    return rels


def _identity(model: ModelFolder) -> tuple[str, str, str]:
    return model.trainer, model.plans, model.configuration


def _install(store: Path, name: str, fill, identity: tuple[str, str, str], source: str, force: bool,
             read_checkpoints: bool = False, trust_checkpoint: bool = False) -> dict:
    """Stage the model in a hidden folder inside the store, validate it (with `read_checkpoints`, every checkpoint
    is read with the safe loader), write its card, then rename it in place."""
    stage = store / f".staging-{uuid.uuid4().hex}"
    stage.mkdir(parents=True)
    try:
        fill(stage)
        model = inspect_model_folder(stage, identity=identity)
        if read_checkpoints:
            _read_checkpoints(model, source, trust_checkpoint)
        card = make_card(model, name, source)
        with open(stage / CARD_FILE, "w", encoding="utf-8") as f:
            json.dump(card, f, indent=2)
        target = store / name
        if target.exists():
            if not force:
                raise UserError(f"the store already has a model named {name}", "pass --name or --force")
            delete_model(store, name) if (target / CARD_FILE).exists() else shutil.rmtree(target)
        os.rename(stage, target)
        return card
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _read_checkpoints(model: ModelFolder, source: str, trust: bool) -> None:
    from umamba.checkpoint import load_checkpoint

    for fold, names in model.checkpoints.items():
        for checkpoint in names:
            try:
                load_checkpoint(model.path / f"fold_{fold}" / checkpoint, trust=trust)
            except UserError as exc:  # name the source's file, not the staging copy
                raise UserError(exc.message.replace(str(model.path), source), exc.hint) from None


# -- zips ---------------------------------------------------------------------------------------------------------
def check_zip_members(zf: zipfile.ZipFile) -> None:
    """Refuse the archive if any member would land outside the folder it is extracted into."""
    for info in zf.infolist():
        raw = info.filename
        norm = raw.replace("\\", "/")
        parts = PurePosixPath(norm).parts
        mode = info.external_attr >> 16
        if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or ".." in parts:
            raise UserError(f"refusing the archive: member '{raw}' would be written outside the target folder",
                            "this zip was not made by nnUNetv2_export_model_to_zip; do not use it")
        if stat.S_ISLNK(mode):
            raise UserError(f"refusing the archive: member '{raw}' is a symbolic link",
                            "this zip was not made by nnUNetv2_export_model_to_zip; do not use it")


def _import_zip(source: Path, store: Path, name: str | None, configuration: str | None, force: bool,
                read_checkpoints: bool = False, trust_checkpoint: bool = False) -> list[dict]:
    try:
        zf = zipfile.ZipFile(source)
    except zipfile.BadZipFile as exc:
        raise UserError(f"{source} is not a readable zip ({exc})", "download or export it again") from None
    with zf:
        check_zip_members(zf)
        files = [i.filename.replace("\\", "/") for i in zf.infolist() if not i.is_dir()]
        prefixes = sorted({f[: -len("plans.json")] for f in files
                           if f == "plans.json" or f.endswith("/plans.json")})
        if not prefixes:
            raise UserError(f"{source} holds no nnU-Net model (no plans.json inside)",
                            "export the model with nnUNetv2_export_model_to_zip")
        prefixes = _pick_configuration(prefixes, configuration, source, lambda p: PurePosixPath(p or "x").name)
        store.mkdir(parents=True, exist_ok=True)
        plans = [_zip_identity(zf, p, source) for p in prefixes]
        proxies = [ModelFolder(Path(p or source.stem), d, t, pl, c, {}) for p, (d, t, pl, c) in zip(prefixes, plans)]
        names = _names_for(proxies, name)
        _check_free(store, names, force)
        by_name = {i.filename.replace("\\", "/"): i for i in zf.infolist() if not i.is_dir()}
        cards = []
        for prefix, proxy, model_name in zip(prefixes, proxies, names):
            def fill(stage: Path, prefix=prefix, proxy=proxy):
                for member, info in by_name.items():
                    if not member.startswith(prefix):
                        continue
                    rel = member[len(prefix):]
                    if not (_KEEP_TOP.match(rel) or _KEEP_FOLD.match(rel)):
                        continue
                    out = (stage / rel).resolve()
                    if not out.is_relative_to(stage.resolve()):  # belt and braces after check_zip_members
                        raise UserError(f"refusing the archive: member '{member}' escapes the target folder")
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
            cards.append(_install(store, model_name, fill, _identity(proxy), str(source.resolve()), force,
                                  read_checkpoints, trust_checkpoint))
        return cards


def _zip_identity(zf: zipfile.ZipFile, prefix: str, source: Path) -> tuple[str, str, str, str]:
    folder = PurePosixPath(prefix.rstrip("/")) if prefix else None
    trainer, plans_name, configuration = _split_model_folder_name(folder.name) if folder else (None, None, None)
    if trainer is None:
        raise UserError(f"{source}: model folder '{prefix or '/'}' is not named Trainer__Plans__Configuration",
                        "export the model with nnUNetv2_export_model_to_zip, or unzip it and import the folder")
    if trainer_variant(trainer) is None:
        raise UserError(f"{source}: {folder.name} was trained with {trainer}, which is not a U-Mamba trainer",
                        f"umamba runs models trained with {', '.join(TRAINER_VARIANTS)}")
    dataset = folder.parent.name if folder.parent.name else source.stem
    return dataset, trainer, plans_name, configuration
