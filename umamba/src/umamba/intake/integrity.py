"""Is an image file complete? Gzip CRC and length, and the size of the voxel data against its header.

ITK reads a truncated `.nii.gz` without a word: the voxels it could not decompress are left at zero. So every
image is checked here before any use (intake, plan's dataset check, predict, the Slicer module's import of a
predicted label file): the gzip stream is decompressed to its end (which checks its CRC-32 and length), and the
bytes of voxel data are compared with what the header describes
    NIfTI-1 / NIfTI-2:  vox_offset + prod(dim[1..dim[0]]) * bitpix / 8
    NRRD (raw, gzip, bzip2; attached or a detached .nhdr data file):  prod(sizes) * sizeof(type) (+ byte skip)
    MetaImage (.mha / .mhd, uncompressed):  prod(DimSize) * channels * sizeof(ElementType)
Formats or encodings not listed (ASCII NRRD, DICOM, PNG, ...) are left to their reader.

Standard library only, so the Slicer module can use it in its own process (no torch, no SimpleITK).
"""

from __future__ import annotations

import bz2
import gzip
import os
import struct
import zlib
from pathlib import Path

_CHUNK = 1 << 20
_NRRD_TYPES = {
    1: ("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"),
    2: ("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort", "unsigned short",
        "unsigned short int", "uint16", "uint16_t"),
    4: ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t", "float"),
    8: ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64", "int64_t",
        "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t", "double"),
}
_NRRD_SIZE = {name: size for size, names in _NRRD_TYPES.items() for name in names}
_MET_SIZE = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
             "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
             "MET_DOUBLE": 8}


class _Damaged(Exception):
    """What is wrong with the file, in words."""


def integrity_problem(path: str | os.PathLike) -> str | None:
    """None when the file is complete as far as can be checked, else what is wrong (without the file name)."""
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith((".nii.gz", ".nii")):
            _check_nifti(path, name.endswith(".gz"))
        elif name.endswith((".nrrd", ".nhdr")):
            _check_nrrd(path)
        elif name.endswith((".mha", ".mhd")):
            _check_metaimage(path)
        elif name.endswith(".gz"):
            _decompressed_length(path, 0)
    except _Damaged as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def check_image_file(path: str | os.PathLike) -> None:
    """Raise `UserError` naming the file when it is incomplete or corrupt."""
    problem = integrity_problem(path)
    if problem:
        from umamba.errors import UserError

        raise UserError(f"{path}: {problem}", "the file is damaged or incomplete (an interrupted copy or download?); "
                                              "copy or export it again")


# -- compressed streams ----------------------------------------------------------------------------------------------
def _decompressed_length(path: Path, offset: int, keep: int = 0, codec: str = "gzip") -> tuple[int, bytes]:
    """Decompress the file from `offset` to its end: (length, the first `keep` bytes). Raises _Damaged."""
    head, total = b"", 0
    with open(path, "rb") as raw:
        raw.seek(offset)
        stream = gzip.GzipFile(fileobj=raw) if codec == "gzip" else bz2.BZ2File(raw)
        try:
            while chunk := stream.read(_CHUNK):
                if len(head) < keep:
                    head += chunk[: keep - len(head)]
                total += len(chunk)
        except EOFError:
            raise _Damaged(f"is truncated: its {codec} stream stops before its end (the file was cut off)") \
                from None
        except (gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise _Damaged(f"is corrupt: its {codec} data fails the check ({exc})") from None
    return total, head


def _short(have: int, want: int, what: str) -> _Damaged:
    return _Damaged(f"is truncated: it holds {have} bytes of voxel data but its header describes {want} ({what})")


# -- NIfTI -----------------------------------------------------------------------------------------------------------
def _check_nifti(path: Path, compressed: bool) -> None:
    if compressed:
        with open(path, "rb") as f:
            if f.read(2) != b"\x1f\x8b":
                return  # not gzip at all: the reader says what it is
        length, head = _decompressed_length(path, 0, keep=540)
    else:
        length = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(540)
    if len(head) < 348:
        raise _Damaged(f"is not a complete NIfTI file ({len(head)} bytes; the header alone has 348)")
    for endian in "<>":
        sizeof_hdr = struct.unpack(endian + "i", head[:4])[0]
        if sizeof_hdr == 348:
            if head[344:347] != b"n+1":
                return  # a .hdr/.img pair (or not NIfTI at all): left to the reader
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if sizeof_hdr == 540 and len(head) >= 540:
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            dims = struct.unpack(endian + "8q", head[16:80])
            offset = struct.unpack(endian + "q", head[168:176])[0]
            break
    else:
        return  # not a NIfTI header: the reader says what it is
    n = dims[0]
    if not 1 <= n <= 7 or any(d < 1 for d in dims[1:n + 1]) or bitpix <= 0:
        return  # a malformed header: the reader's own message is clearer than ours
    voxels = 1
    for d in dims[1:n + 1]:
        voxels *= d
    want = voxels * bitpix // 8
    have = length - max(offset, 348)
    if have < want:
        raise _short(max(have, 0), want, f"{'x'.join(map(str, dims[1:n + 1]))} voxels of {bitpix} bits")


# -- NRRD ------------------------------------------------------------------------------------------------------------
def _read_text_header(path: Path, first: bytes) -> tuple[list[str], int]:
    """Header lines up to the blank line and the offset of the byte after it."""
    with open(path, "rb") as f:
        if f.read(len(first)) != first:
            return [], -1
        f.seek(0)
        lines, offset = [], 0
        while True:
            line = f.readline(1 << 16)
            if not line:
                return lines, -1  # no blank line: a detached header, or the data never starts
            offset += len(line)
            text = line.decode("latin-1").rstrip("\r\n")
            if not text.strip():
                return lines, offset
            lines.append(text)


def _check_nrrd(path: Path) -> None:
    lines, data_start = _read_text_header(path, b"NRRD")
    if not lines:
        return
    fields = {}
    for line in lines[1:]:
        if line.startswith("#") or ":=" in line or ": " not in line:
            continue
        key, value = line.split(": ", 1)
        fields[key.strip().lower().replace(" ", "")] = value.strip()
    type_size = _NRRD_SIZE.get(fields.get("type", "").lower())
    encoding = fields.get("encoding", "raw").lower()
    try:
        sizes = [int(s) for s in fields.get("sizes", "").split()]
        byte_skip = int(fields.get("byteskip", "0"))
        line_skip = int(fields.get("lineskip", "0"))
    except ValueError:
        return
    if type_size is None or not sizes or encoding not in ("raw", "gzip", "gz", "bzip2", "bz2"):
        return  # ASCII / hex / block data: the reader checks those
    data_file = fields.get("datafile") or fields.get("data file")
    if data_file:
        if data_file.startswith("LIST") or "%" in data_file or " " in data_file.strip():
            return  # several data files: left to the reader
        target = (path.parent / data_file) if not os.path.isabs(data_file) else Path(data_file)
        if not target.is_file():
            raise _Damaged(f"names the data file {data_file}, which does not exist next to it")
        start = 0
    else:
        if data_start < 0:
            raise _Damaged("is truncated: its header never ends (no blank line), so it holds no voxel data")
        target, start = path, data_start
    if line_skip:
        return  # text lines before the data: not worth reading here
    want = type_size
    for s in sizes:
        want *= s
    what = f"{'x'.join(map(str, sizes))} values of {type_size} byte(s), {encoding}"
    if encoding == "raw":
        have = target.stat().st_size - start - max(byte_skip, 0)
    else:
        have = _decompressed_length(target, start, codec="gzip" if encoding.startswith("gz") else "bzip2")[0] \
            - max(byte_skip, 0)
    if have < want:
        raise _short(max(have, 0), want, what)


# -- MetaImage -------------------------------------------------------------------------------------------------------
def _check_metaimage(path: Path) -> None:
    fields, data_start = {}, -1
    with open(path, "rb") as f:
        offset = 0
        for _ in range(64):  # MetaImage headers are a few lines; ElementDataFile is always the last one
            line = f.readline(1 << 16)
            if not line:
                break
            offset += len(line)
            text = line.decode("latin-1").strip()
            if "=" not in text:
                return
            key, value = (s.strip() for s in text.split("=", 1))
            fields[key.lower()] = value
            if key.lower() == "elementdatafile":
                data_start = offset
                break
    data_file = fields.get("elementdatafile")
    if not data_file or fields.get("compresseddata", "false").lower() == "true" or "headersize" in fields:
        return  # compressed data carries its own size (zlib), and a header size moves the data: left to the reader
    size = _MET_SIZE.get(fields.get("elementtype", ""))
    try:
        dims = [int(s) for s in fields.get("dimsize", "").split()]
        channels = int(fields.get("elementnumberofchannels", "1"))
    except ValueError:
        return
    if size is None or not dims:
        return
    if data_file.upper() == "LOCAL":
        target, start = path, data_start
    elif data_file.upper().startswith("LIST") or "%" in data_file:
        return
    else:
        target, start = path.parent / data_file, 0
        if not target.is_file():
            raise _Damaged(f"names the data file {data_file}, which does not exist next to it")
    want = size * channels
    for d in dims:
        want *= d
    have = target.stat().st_size - start
    if have < want:
        raise _short(max(have, 0), want, f"{'x'.join(map(str, dims))} values of {fields.get('elementtype')}")
