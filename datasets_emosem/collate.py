"""Collation: dataset rows -> the EmoSEM processor's model inputs.

The processor (``modeling_emosem.processing_emosem.EmoSEMProcessor``) is called as::

    processor(images=[PIL RGB], emotions=[str], explanations=[str] | None,
              masks=[bool ndarray (H, W)] | None, return_tensors="pt")

and returns a ``BatchFeature`` of tensors. Rows may come from :func:`load_artemis` (``utterance``),
:func:`load_apolo` (``utterances``) or the synthetic set (``explanation``); emotions may be
``ClassLabel`` ids or names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from modeling_emosem.configuration_emosem import ARTEMIS_EMOTIONS

from .images import open_rgb

__all__ = ["make_collate_fn", "row_explanation", "row_emotion", "row_mask"]


def row_emotion(row: dict, names: Sequence[str] = ARTEMIS_EMOTIONS) -> str:
    """The row's emotion as a name. Ids index ``names`` (ArtEmis' 9 labels; ids 0..7 are EmoSEM's 8)."""
    e = row["emotion"]
    if isinstance(e, str):
        return e
    e = int(e)
    if not 0 <= e < len(names):
        raise ValueError(f"emotion id {e} out of range for labels {list(names)}")
    return names[e]


def row_explanation(row: dict) -> str:
    """``explanation`` if present, else ``utterance``, else the first of ``utterances``."""
    for key in ("explanation", "utterance"):
        if row.get(key) is not None:
            return row[key]
    utterances = row.get("utterances")
    if utterances:
        return utterances[0]
    raise KeyError(f"row has no 'explanation', 'utterance' or non-empty 'utterances' (keys: {sorted(row)})")


def row_mask(row: dict) -> np.ndarray | None:
    """The row's mask as a bool ``(H, W)`` array (from a 1-bit image, nested lists or an array), or None."""
    m = row.get("mask")
    if m is None:
        return None
    arr = np.asarray(m)
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {arr.shape}")
    return arr if arr.dtype == bool else arr > (127 if arr.dtype == np.uint8 and arr.max() > 1 else 0.5)


def make_collate_fn(
    processor,
    with_explanations: bool = True,
    with_masks: bool = True,
    emotion_names: Sequence[str] = ARTEMIS_EMOTIONS,
    **processor_kwargs,
) -> Callable[[list[dict]], object]:
    """Return ``collate(rows) -> processor(...)`` for a ``torch.utils.data.DataLoader``.

    ``with_masks``: pass masks when the rows have them (rows without a ``mask`` give ``masks=None``;
    a batch that mixes rows with and without masks is an error, since the loss needs all or none).
    Extra ``processor_kwargs`` (e.g. ``padding``) are forwarded.
    """

    def collate(rows: list[dict]):
        if not rows:
            raise ValueError("cannot collate an empty batch")
        images = [open_rgb(r["image"]) for r in rows]
        emotions = [row_emotion(r, emotion_names) for r in rows]
        explanations = [row_explanation(r) for r in rows] if with_explanations else None
        masks = None
        if with_masks:
            masks = [row_mask(r) for r in rows]
            have = [m is not None for m in masks]
            if not any(have):
                masks = None
            elif not all(have):
                raise ValueError(f"batch mixes rows with and without masks ({sum(have)} of {len(rows)} have one)")
            else:
                for img, m in zip(images, masks):
                    if m.shape != img.size[::-1]:
                        raise ValueError(f"mask shape {m.shape} does not match image size (H, W) = {img.size[::-1]}")
        return processor(images=images, emotions=emotions, explanations=explanations, masks=masks, return_tensors="pt", **processor_kwargs)

    return collate
