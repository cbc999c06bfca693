"""Checkpoints that survive crashes: write to a temporary folder, then rename it into place.

A folder `step-000123` exists only once its save finished (the rename is atomic on POSIX), so a crash
during a save leaves the previous checkpoint as the latest one. Only the last `keep` are kept.

Integrity: before the rename, `checksums.json` records the sha256 and size of every file of the checkpoint.
`resolve_resume` verifies them (and that every pickled file of accelerate's state loads with
`torch.load(weights_only=True)`, i.e. holds tensors and plain containers only) before training resumes:

* `--resume <folder>`: a corrupt checkpoint raises `CorruptFileError`, e.g.
  `checkpoint step-000003 is corrupt: model.safetensors sha256 mismatch (...)`.
* `--resume latest`: a corrupt newest checkpoint is skipped with a warning naming it and the problem, and the
  newest good one is used; if none is good, `CorruptFileError` lists them all.

Checkpoints written before checksums existed (no `checksums.json`) are still accepted, with a warning; their
safetensors files are checked structurally (truncation, damaged header).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import warnings

from emosem.integrity import CHECKSUM_FILE, CorruptFileError, check_safetensors, verify_checksums, write_checksums

logger = logging.getLogger(__name__)

_PATTERN = re.compile(r"^step-(\d+)$")
STATE_FILE = "trainer_state.json"


def checkpoint_root(output_dir: str) -> str:
    return os.path.join(output_dir, "checkpoints")


def list_checkpoints(output_dir: str) -> list[str]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(output_dir)
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        match = _PATTERN.match(name)
        if match and os.path.isfile(os.path.join(root, name, STATE_FILE)):
            found.append((int(match.group(1)), os.path.join(root, name)))
    return [path for _, path in sorted(found)]


# accelerate's pickled state files (optimizer, scheduler, RNG, sampler, custom objects).
_PICKLED = (".bin", ".pkl", ".pt", ".pth")


def _check_pickled(path: str, label: str) -> None:
    """Refuse a pickled state file that holds anything but tensors, numbers and plain containers: accelerate
    loads some of them (custom objects, RNG states) with `weights_only=False`, so check them first."""
    import torch
    from accelerate.utils.other import TORCH_SAFE_GLOBALS

    try:
        with torch.serialization.safe_globals(TORCH_SAFE_GLOBALS):
            torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means: do not unpickle it for real
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CorruptFileError(
            f"{label} is corrupt or unsafe: {os.path.basename(path)} does not load as plain tensors "
            f"(torch.load weights_only=True: {first[:200]})", path
        ) from err


def verify_checkpoint(checkpoint: str) -> None:
    """Raise `CorruptFileError` (naming the checkpoint and the file) unless `checkpoint` is intact and safe."""
    label = f"checkpoint {os.path.basename(os.path.normpath(checkpoint))}"
    if os.path.isfile(os.path.join(checkpoint, CHECKSUM_FILE)):
        verify_checksums(checkpoint, what=label)
    else:
        warnings.warn(f"{label} has no {CHECKSUM_FILE} (written by an older version): only its structure is checked")
    for name in sorted(os.listdir(checkpoint)):
        path = os.path.join(checkpoint, name)
        if name.endswith(".safetensors"):
            try:
                check_safetensors(path)
            except CorruptFileError as err:
                raise CorruptFileError(f"{label} is corrupt: {err}", path) from err
        elif name.endswith(_PICKLED):
            _check_pickled(path, label)
    try:
        load_trainer_state(checkpoint)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"{label} is corrupt: {STATE_FILE} is unreadable ({err})") from err


def resolve_resume(output_dir: str, resume: str) -> str:
    """`latest` -> the newest complete and intact checkpoint of `output_dir` (corrupt newer ones are skipped
    with a warning); otherwise the given checkpoint folder, which must be intact. See the module docstring."""
    if resume == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise FileNotFoundError(f"--resume latest: no complete checkpoint in {checkpoint_root(output_dir)}")
        problems = []
        for checkpoint in reversed(found):
            try:
                verify_checkpoint(checkpoint)
            except CorruptFileError as err:
                problems.append(str(err))
                message = f"--resume latest: skipping {checkpoint}: {err}"
                logger.warning(message)
                warnings.warn(message)
                continue
            return checkpoint
        raise CorruptFileError(
            f"--resume latest: every checkpoint in {checkpoint_root(output_dir)} is corrupt:\n  " + "\n  ".join(problems)
        )
    if not os.path.isfile(os.path.join(resume, STATE_FILE)):
        raise FileNotFoundError(f"--resume {resume}: not a complete checkpoint (no {STATE_FILE})")
    verify_checkpoint(resume)
    return resume


def save_checkpoint(accelerator, output_dir: str, step: int, state: dict, keep: int) -> str:
    """Save model, optimizer, scheduler, RNG and dataloader state plus `state` (all processes must call)."""
    root = checkpoint_root(output_dir)
    final = os.path.join(root, f"step-{step:06d}")
    tmp = os.path.join(root, f".tmp-step-{step:06d}")
    if accelerator.is_main_process:
        os.makedirs(root, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # The state file is what marks a checkpoint complete: written last, fsynced, then the rename.
        path = os.path.join(tmp, STATE_FILE)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        # Last: the sha256 of every file (what resolve_resume verifies), fsynced, before the rename.
        write_checksums(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _fsync_dir(root)
        for old in list_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_trainer_state(checkpoint: str) -> dict:
    with open(os.path.join(checkpoint, STATE_FILE), encoding="utf-8") as f:
        return json.load(f)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
