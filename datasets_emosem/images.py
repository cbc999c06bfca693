"""Safe image opening and the up-front "is every referenced file usable?" check.

The loaders keep images lazy (a ``datasets.Image`` column of file paths, decoded when a row is
read), so a missing or corrupt file would otherwise surface in the middle of an epoch. Instead
every loader calls :func:`check_files` first: it opens each file header and runs PIL's
``verify()`` (cheap: no full decode), in a thread pool because the work is I/O bound.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

from modeling_emosem.image_utils_emosem import MAX_ASPECT_RATIO  # what the processor refuses

__all__ = [
    "open_rgb",
    "image_size",
    "verify_image",
    "check_files",
    "FileCheck",
    "MissingFilesError",
    "format_missing",
]


def open_rgb(path_or_image) -> Image.Image:
    """Open an image as displayed (EXIF orientation applied) in RGB.

    Accepts a path, a PIL image, or a ``datasets`` image dict ``{"path", "bytes"}``.
    CMYK, grayscale, palette and RGBA inputs all come back as ``RGB``, converted exactly as the
    loaders' ``datasets.Image(mode="RGB")`` column decodes them (``exif_transpose`` then
    ``convert("RGB")``, which drops alpha), so a file gives the same pixels whichever way it is read.
    """
    if isinstance(path_or_image, dict):
        if path_or_image.get("bytes") is not None:
            import io

            img = Image.open(io.BytesIO(path_or_image["bytes"]))
        else:
            img = Image.open(path_or_image["path"])
    elif isinstance(path_or_image, Image.Image):
        img = path_or_image
    else:
        img = Image.open(path_or_image)
    # exif_transpose drops the orientation tag it applied, so an already-upright image is untouched.
    img = ImageOps.exif_transpose(img)
    return img if img.mode == "RGB" else img.convert("RGB")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of the image as displayed, i.e. after EXIF rotation, without decoding pixels."""
    with Image.open(path) as img:
        w, h = img.size
        orientation = img.getexif().get(0x0112)  # ExifTags.Base.Orientation
    # Orientations 5..8 swap the axes (90/270 degree rotations, with or without mirroring).
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return w, h


_JPEG_TAIL = 1 << 16


def _jpeg_is_complete(path: str | os.PathLike) -> bool:
    """A JPEG ends with the end-of-image marker FF D9 (some writers append a little data after it). PIL's
    ``verify()`` does not decode JPEG data, so a file cut short by a broken copy would otherwise pass."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - _JPEG_TAIL))
        return b"\xff\xd9" in f.read()


def verify_image(path: str | os.PathLike) -> str | None:
    """Return ``None`` if ``path`` is an existing, decodable image, else a short reason.

    Cheap (no full decode): PIL's ``verify()`` (PNG checksums, headers), an end-of-image marker for JPEG,
    the decompression-bomb limit and the aspect ratio the processor accepts.
    """
    try:
        with Image.open(path) as img:
            fmt, (w, h) = img.format, img.size
            img.verify()
        if fmt == "JPEG" and not _jpeg_is_complete(path):
            return "undecodable (truncated JPEG: no end-of-image marker)"
        if w < 1 or h < 1 or max(w, h) / min(w, h) > MAX_ASPECT_RATIO:
            return f"unusable ({w}x{h} pixels: aspect ratio over {MAX_ASPECT_RATIO:g}:1)"
    except FileNotFoundError:
        return "missing"
    except Exception as e:  # PIL raises many types (UnidentifiedImageError, SyntaxError, OSError...)
        return f"undecodable ({type(e).__name__}: {e})"
    return None


def _verify_npy(path: str | os.PathLike) -> str | None:
    """Check a ``.npy`` header without loading the data or unpickling anything."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                _, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                _, _, dtype = np.lib.format.read_array_header_2_0(f)
        if dtype.hasobject:
            return "object array (would need pickle; refused)"
    except FileNotFoundError:
        return "missing"
    except Exception as e:
        return f"unreadable .npy ({type(e).__name__}: {e})"
    return None


@dataclass
class FileCheck:
    """Result of :func:`check_files`: ``bad`` maps each unusable path to its reason."""

    checked: int = 0
    bad: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.bad


class MissingFilesError(FileNotFoundError):
    """Raised (once, before any training) when referenced files are missing or undecodable."""

    def __init__(self, message: str, bad: dict[str, str]):
        super().__init__(message)
        self.bad = bad


def format_missing(bad: dict[str, str], what: str, total: int, hint: str = "", show: int = 5) -> str:
    """One readable message: how many of ``total`` files are bad and the first ``show`` of them."""
    first = "\n".join(f"  {p}: {r}" for p, r in list(bad.items())[:show])
    more = f"\n  ... and {len(bad) - show} more" if len(bad) > show else ""
    return f"{len(bad)} of {total} {what} are missing or undecodable:\n{first}{more}" + (f"\n{hint}" if hint else "")


def check_files(
    paths: Iterable[str],
    *,
    kind: str = "image",
    verify: bool = True,
    num_threads: int = 8,
    checker: Callable[[str], str | None] | None = None,
) -> FileCheck:
    """Check every path once. ``kind`` is ``"image"`` (PIL verify) or ``"npy"`` (header check).

    With ``verify=False`` only existence is checked (fast path for very large copies).
    """
    unique: Sequence[str] = list(dict.fromkeys(paths))
    if checker is None:
        if not verify:
            checker = lambda p: None if os.path.isfile(p) else "missing"  # noqa: E731
        elif kind == "image":
            checker = verify_image
        elif kind == "npy":
            checker = _verify_npy
        else:
            raise ValueError(f"kind must be 'image' or 'npy', got {kind!r}")
    result = FileCheck(checked=len(unique))
    with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
        for path, reason in zip(unique, pool.map(checker, unique)):
            if reason is not None:
                result.bad[path] = reason
    return result
