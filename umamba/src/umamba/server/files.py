"""Files that cross the wire: uploads saved under server-chosen names, dataset zips unpacked safely, model zips.

No name a client sends becomes a path on the server: channel files are saved as `case_0000<ending>`, ... with
the ending taken from a fixed list; dataset archives are checked member by member (no absolute paths, no `..`,
no links) before anything is written, and unpacked only inside the job folder.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from umamba.errors import UserError
from umamba.model_store import CARD_FILE, check_zip_members, read_card

# Single-file image formats a channel can be uploaded as (header + data in one file).
UPLOAD_ENDINGS = (".nii.gz", ".seg.nrrd", ".nrrd", ".nii", ".mha")
MAX_ZIP_MEMBERS = 100_000


def upload_ending(filename: str | None) -> str:
    name = (filename or "").lower()
    ending = next((e for e in UPLOAD_ENDINGS if name.endswith(e)), None)
    if ending is None:
        raise UserError(f"cannot tell the image format of the upload '{filename}'",
                        f"upload single-file images: {', '.join(UPLOAD_ENDINGS)}")
    return ending


def save_stream(src: BinaryIO, target: Path) -> int:
    """Copy an upload to `target` (written as a temporary, then renamed); returns the bytes written."""
    tmp = target.with_name(target.name + ".part")
    size = 0
    with open(tmp, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
            size += len(chunk)
    tmp.replace(target)
    return size


def extract_dataset_zip(archive: Path, target: Path, max_bytes: int) -> Path:
    """Unpack a dataset zip into `target`; returns the dataset folder (the single top folder, else `target`).

    Refuses (UserError, nothing written) members that are absolute, contain `..` or are links, archives of too
    many members, and archives whose uncompressed size exceeds `max_bytes` (a zip bomb)."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise UserError(f"the uploaded dataset is not a readable zip ({exc})", "zip the dataset folder again") from None
    with zf:
        try:
            check_zip_members(zf)
        except UserError as exc:
            raise UserError(exc.message, "zip the dataset folder itself; members must be relative paths "
                                         "inside it") from None
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise UserError(f"the dataset zip has {len(infos)} members (at most {MAX_ZIP_MEMBERS})")
        total = sum(i.file_size for i in infos)
        if total > max_bytes:
            raise UserError(f"the dataset unpacks to {total / 1e9:.2f} GB, over the server's limit of "
                            f"{max_bytes / 1e9:.2f} GB", "ask the server's administrator to raise --max-upload-mb")
        target.mkdir(parents=True, exist_ok=True)
        root = target.resolve()
        for info in infos:
            rel = PurePosixPath(info.filename.replace("\\", "/"))
            if any(part.startswith("__MACOSX") for part in rel.parts):
                continue
            out = (root / rel).resolve()
            if not out.is_relative_to(root):  # belt and braces after check_zip_members
                raise UserError(f"refusing the archive: member '{info.filename}' escapes the dataset folder")
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    tops = [p for p in target.iterdir() if not p.name.startswith(".")]
    return tops[0] if len(tops) == 1 and tops[0].is_dir() else target


def model_zip(model_dir: Path, target: Path) -> Path:
    """Zip a stored model as nnUNetv2_export_model_to_zip lays it out (DATASET/Trainer__Plans__Config/...), the
    layout `umamba import-model` takes. The card stays behind: the importing store writes its own."""
    card = read_card(model_dir)
    prefix = f"{card['dataset']}/{card['trainer']}__{card['plans']}__{card['configuration']}"
    tmp = target.with_name(target.name + ".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:  # checkpoints do not compress; speed wins
        for path in sorted(model_dir.rglob("*")):
            rel = path.relative_to(model_dir).as_posix()
            if path.is_file() and not path.is_symlink() and rel != CARD_FILE:
                zf.write(path, f"{prefix}/{rel}")
    tmp.replace(target)
    return target


_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")


def check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise UserError(f"invalid {what} '{value}'", "use letters, digits, '.', '_' and '-' only")
    return value
