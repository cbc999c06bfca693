"""Safe, Unicode-tolerant file paths for names that come from CSV / JSON files.

Two concerns live here:

* Path safety. Painting and style names are data, not paths: a name such as ``../../etc/x``,
  an absolute path or a name with a NUL byte must never make a loader read, or the pseudo-mask
  writer write, outside the root it was given. :func:`check_name` rejects such names with an
  error that names the offending value.
* Unicode normalisation. WikiArt names carry accents (``Pierre-Auguste_Renoir/...é...``); the
  ArtEmis CSV stores them NFC while some disks (macOS copies, some unzip tools) store them NFD,
  or the other way round. :class:`NameResolver` finds the file whichever form each side uses,
  listing every directory once (ArtEmis references ~80k files in ~27 folders).
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

__all__ = ["UnsafeNameError", "check_name", "safe_join", "NameResolver"]


# Longest file/folder name (in bytes, UTF-8) that POSIX file systems accept.
MAX_NAME_BYTES = 255


class UnsafeNameError(ValueError):
    """A name read from a data file would escape its root directory."""


def check_name(name: str, *, what: str = "name") -> str:
    """Return ``name`` if it is a single, safe path component; raise :class:`UnsafeNameError` otherwise.

    Rejected: empty names, ``.``/``..``, absolute paths, path separators (``/`` and ``\\``), NUL bytes,
    names longer than :data:`MAX_NAME_BYTES` bytes (the file-system limit) or not encodable as a file name.
    Separators are rejected because ArtEmis and APOLO names are flat: a painting is one file name,
    a style is one folder name.
    """
    if not isinstance(name, str):
        raise UnsafeNameError(f"{what} must be a string, got {type(name).__name__}: {name!r}")
    if name in ("", ".", ".."):
        raise UnsafeNameError(f"{what} {name!r} is not a usable file name")
    if "\x00" in name:
        raise UnsafeNameError(f"{what} {name!r} contains a NUL byte")
    if "/" in name or "\\" in name or os.path.isabs(name):
        raise UnsafeNameError(
            f"{what} {name!r} contains a path separator or is absolute; expected a single file/folder name"
        )
    try:
        encoded = os.fsencode(name)
    except UnicodeError:
        raise UnsafeNameError(f"{what} {name!r} cannot be encoded as a file name") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise UnsafeNameError(
            f"{what} {name[:60]!r}... is {len(encoded)} bytes long; file names are limited to {MAX_NAME_BYTES} bytes"
        )
    return name


def safe_join(root: str | os.PathLike, *names: str, what: str = "name") -> Path:
    """Join checked single-component ``names`` under ``root`` and verify the result stays inside it.

    Returns a path (not resolved through symlinks of the user's own tree, which we respect);
    raises :class:`UnsafeNameError` when a component is unsafe.
    """
    root = Path(root)
    for n in names:
        check_name(n, what=what)
    path = root.joinpath(*names)
    # Defence in depth: the component check above already forbids escapes; this catches anything
    # a future edit lets through (e.g. a platform-specific separator).
    base = os.path.abspath(root)
    if os.path.commonpath([base, os.path.abspath(path)]) != base:
        raise UnsafeNameError(f"{what} {names!r} resolves outside {root}")
    return path


def _nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


class NameResolver:
    """Find ``root/<names...>`` on disk when names may differ in Unicode normalisation (NFC vs NFD).

    Each directory is listed at most once and cached as ``{NFC(name): name on disk}``, so resolving
    N files in D folders costs D directory listings, not N.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._listings: dict[Path, dict[str, str] | None] = {}

    def _listing(self, directory: Path) -> dict[str, str] | None:
        if directory not in self._listings:
            try:
                entries = os.listdir(directory)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                self._listings[directory] = None
            else:
                self._listings[directory] = {_nfc(e): e for e in entries}
        return self._listings[directory]

    def resolve(self, *names: str, what: str = "name") -> Path | None:
        """Return the existing path for ``root/names...`` (any normalisation), or ``None`` if absent.

        Raises :class:`UnsafeNameError` for unsafe names, before touching the disk.
        """
        for n in names:
            check_name(n, what=what)
        current = self.root
        for n in names:
            listing = self._listing(current)
            if listing is None:
                return None
            on_disk = listing.get(_nfc(n))
            if on_disk is None:
                return None
            current = current / on_disk
        return current
