"""Integrity of files we read back: checkpoints and model folders.

Two layers:

* Checksums. :func:`write_checksums` records the sha256 and size of every file of a folder in
  ``checksums.json``; :func:`verify_checksums` recomputes them. This catches what no file format
  notices by itself: a flipped byte inside tensor data (safetensors checks its header, not the data),
  a file cut short by a full disk or a crash, a file missing or added. Training checkpoints carry one.
* Structure. :func:`check_safetensors` reads a ``.safetensors`` header and checks that the file is
  exactly as long as the header says, without loading any tensor; :func:`check_model_folder` does it for
  every weights file of a ``save_pretrained`` folder (and checks ``checksums.json`` when there is one).
  safetensors' own errors ("incomplete metadata, file not fully covered") do not say which file is bad.

Every error is a :class:`CorruptFileError` (a ``ValueError``) whose message names the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable

CHECKSUM_FILE = "checksums.json"
_CHUNK = 1 << 20
# A header larger than this is not a real safetensors header (the format caps it at 100 MB).
_MAX_HEADER = 100_000_000

__all__ = [
    "CHECKSUM_FILE",
    "CorruptFileError",
    "sha256_file",
    "write_checksums",
    "verify_checksums",
    "check_safetensors",
    "check_model_folder",
]


class CorruptFileError(ValueError):
    """A file is truncated, damaged or does not match its recorded checksum. `path` is the file."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


def sha256_file(path: str | os.PathLike, fsync: bool = False) -> str:
    """Hex sha256 of a file; `fsync=True` also flushes the file to disk (what a writer records is what is stored)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
        if fsync:
            os.fsync(f.fileno())
    return digest.hexdigest()


def _files(folder: str, exclude: Iterable[str] = ()) -> list[str]:
    """Every regular file under `folder`, as `/`-separated relative paths, sorted."""
    skip = set(exclude)
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            if rel not in skip:
                found.append(rel)
    return sorted(found)


def write_checksums(folder: str | os.PathLike, exclude: Iterable[str] = ()) -> dict:
    """Write `folder/checksums.json`: `{"algorithm": "sha256", "files": {relpath: {"sha256", "size"}}}` for every
    file under `folder` except `exclude` (and the checksum file itself). Every file is fsynced. Returns the record."""
    folder = os.fspath(folder)
    files = {}
    for rel in _files(folder, exclude=[CHECKSUM_FILE, *exclude]):
        path = os.path.join(folder, rel)
        files[rel] = {"sha256": sha256_file(path, fsync=True), "size": os.path.getsize(path)}
    record = {"algorithm": "sha256", "files": files}
    path = os.path.join(folder, CHECKSUM_FILE)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    return record


def verify_checksums(folder: str | os.PathLike, what: str | None = None) -> int:
    """Check every file listed in `folder/checksums.json`; returns how many were checked.

    Raises:
        FileNotFoundError: there is no checksums.json.
        CorruptFileError: a listed file is missing, has another size (truncated) or another sha256;
            the message names the folder (as `what`, default its path) and the file.
    """
    folder = os.fspath(folder)
    label = what or folder
    path = os.path.join(folder, CHECKSUM_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{label}: no {CHECKSUM_FILE}, its files cannot be verified")
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        files = record["files"]
        if record.get("algorithm") != "sha256" or not isinstance(files, dict):
            raise ValueError("unexpected content")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"{label} is corrupt: {CHECKSUM_FILE} is unreadable ({err})", path) from err
    for rel, expected in files.items():
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts) or os.path.isabs(rel):
            raise CorruptFileError(f"{label} is corrupt: {CHECKSUM_FILE} lists an unsafe path {rel!r}", path)
        file = os.path.join(folder, *parts)
        if not os.path.isfile(file):
            raise CorruptFileError(f"{label} is corrupt: {rel} is missing", file)
        size = os.path.getsize(file)
        if size != expected.get("size"):
            kind = "truncated" if size < expected.get("size", 0) else "has extra bytes"
            raise CorruptFileError(
                f"{label} is corrupt: {rel} {kind} ({size} bytes, {expected.get('size')} were written)", file
            )
        if sha256_file(file) != expected.get("sha256"):
            raise CorruptFileError(f"{label} is corrupt: {rel} sha256 mismatch (the file changed after it was written)", file)
    return len(files)


def check_safetensors(path: str | os.PathLike) -> None:
    """Raise :class:`CorruptFileError` naming `path` if it is not a complete safetensors file: header length,
    header JSON, every tensor's byte range inside the file, and the file exactly as long as the data."""
    path = os.fspath(path)
    size = os.path.getsize(path)

    def bad(reason: str):
        return CorruptFileError(f"{path}: corrupt safetensors file: {reason}", path)

    if size < 8:
        raise bad(f"truncated ({size} bytes, not even the 8-byte header length)")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > _MAX_HEADER or 8 + n > size:
            raise bad(f"truncated or damaged header (header length {n}, file size {size} bytes)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("not a JSON object")
    except (UnicodeDecodeError, ValueError) as err:
        raise bad(f"damaged header ({err})") from err
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = (int(v) for v in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as err:
            raise bad(f"damaged header entry for {name!r}") from err
        if not 0 <= start <= stop:
            raise bad(f"damaged header entry for {name!r} (offsets {start}..{stop})")
        end = max(end, stop)
    data = size - 8 - n
    if data < end:
        raise bad(f"truncated ({size} bytes; the header needs {8 + n + end})")
    if data > end:
        raise bad(f"{data - end} unexpected bytes after the tensor data")


def check_model_folder(folder: str | os.PathLike) -> None:
    """Check the weights of a `save_pretrained` folder before loading them: each `*.safetensors` file
    structurally (:func:`check_safetensors`), and every file listed in `checksums.json` when there is one.
    Raises :class:`CorruptFileError` naming the file."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            check_safetensors(os.path.join(folder, name))
    if os.path.isfile(os.path.join(folder, CHECKSUM_FILE)):
        verify_checksums(folder)
