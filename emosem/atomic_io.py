"""Writing output files so that a crash or a full disk never leaves a half-written file behind."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path


class OutputWriteError(OSError):
    """An output file could not be written (full disk, read-only folder, ...); `filename` is the file."""


def write_atomic(path: Path, write) -> None:
    """`write(file_object)` into a temporary file next to `path`, fsync, rename to `path`. On failure the temporary
    file is removed and `OutputWriteError` names `path` (and says so when the disk is full)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:50]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(err, OutputWriteError):
            raise
        reason = "no space left on the device" if err.errno == errno.ENOSPC else (err.strerror or str(err))
        raise OutputWriteError(err.errno, f"{path}: cannot write the output file ({reason})", str(path)) from err
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
