"""APOLO loader: emotion-stimulus masks for evaluation -> ``datasets.Dataset``.

Release layout (``root``)::

    apolo.json                  records: painting, artemis_id (rows of the ArtEmis v0 CSV), split (val|test)
    apolo_val.json              (optional, written by the release's reconstruct script) + emotion, utterances
    apolo_test.json             (optional) idem
    apolo_pixel_map/<painting>_<emotion>.npy    2-D, 1 = stimulus pixel, any resolution

Images are flat: ``<image_root>/<painting>.jpg``.

Mask column. ``mask`` is stored as a ``datasets.Image(mode="1")`` (1-bit PNG): it round-trips
through Arrow/save_to_disk at any size (``Array2D`` needs a fixed shape), costs a few hundred bytes
per mask, and ``np.asarray(row["mask"])`` is a ``bool`` array of shape ``(H, W)`` = the image's
displayed size (EXIF rotation applied). ``dataset.with_format("numpy")`` yields the same arrays.
The synthetic set uses the same column name and type.
"""

from __future__ import annotations

import json
import logging
import os
import unicodedata

import numpy as np
from datasets import ClassLabel, Dataset, Features, Image, Sequence, Value
from PIL import Image as PILImage

from modeling_emosem.configuration_emosem import EMOTIONS

from .images import MissingFilesError, check_files, format_missing, image_size
from .paths import NameResolver, check_name

__all__ = [
    "load_apolo",
    "read_apolo_records",
    "read_mask",
    "resize_mask",
    "read_heat_map",
    "mask_to_image",
    "APOLO_FEATURES",
]

logger = logging.getLogger(__name__)

MASK_FEATURE = Image(mode="1")

APOLO_FEATURES = Features(
    {
        "image": Image(mode="RGB"),  # lazy: file path, decoded on access
        "mask": MASK_FEATURE,  # bool (H, W) at the image's displayed size
        "mask_empty": Value("bool"),  # empty masks are kept (the metric skips and counts them)
        "emotion": ClassLabel(names=list(EMOTIONS)),
        "utterances": Sequence(Value("string")),
        "painting": Value("string"),
        "art_style": Value("string"),  # "" when no ArtEmis CSV tells it
        "artemis_id": Sequence(Value("int64")),
    }
)

_SPLIT_ALIASES = {"val": "val", "validation": "val", "test": "test"}


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read an APOLO pixel map as a ``bool`` array ``(h, w)``; values > 0.5 are stimulus pixels.

    ``allow_pickle=False``: a crafted ``.npy`` can't execute code. A leading/trailing singleton axis
    (``(1, h, w)`` / ``(h, w, 1)``) is squeezed; anything else that is not 2-D is an error.
    """
    arr = np.load(path, allow_pickle=False)
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr.squeeze(0) if arr.shape[0] == 1 else arr.squeeze(-1)
    if arr.ndim != 2:
        raise ValueError(f"mask {path}: expected a 2-D array, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    return arr.astype(np.float32) > 0.5


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool mask ``(h, w)`` to ``size = (width, height)`` with nearest neighbour (APOLO protocol)."""
    if mask.shape[::-1] == tuple(size):
        return mask
    img = PILImage.fromarray(mask.astype(np.uint8) * 255, mode="L").resize(tuple(size), PILImage.NEAREST)
    return np.asarray(img) > 127


def read_heat_map(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a float heat map (APOLO's released 7x7 pseudo maps, or ours at full size) as float32.

    Resized bilinearly to ``size = (width, height)`` when given, then min-max normalised to [0, 1]
    (a constant map becomes all zeros). Returns ``(H, W)`` float32.
    """
    arr = np.load(path, allow_pickle=False)
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr.squeeze(0) if arr.shape[0] == 1 else arr.squeeze(-1)
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"heat map {path}: expected a 2-D numeric array, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.float32)
    if size is not None and arr.shape[::-1] != tuple(size):
        arr = np.asarray(PILImage.fromarray(arr, mode="F").resize(tuple(size), PILImage.BILINEAR), dtype=np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)


def mask_to_image(mask: np.ndarray) -> PILImage.Image:
    """bool ``(H, W)`` -> PIL mode ``"1"`` image, the storage form of the ``mask`` column."""
    return PILImage.fromarray(np.asarray(mask, dtype=bool))


def _load_json_records(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        obj = json.load(f)
    if isinstance(obj, list):
        records = obj
    elif isinstance(obj, dict) and "painting" in obj and isinstance(obj["painting"], dict):
        # pandas' default ``to_json`` (orient="columns"): {column: {row_key: value}}
        keys = list(obj["painting"].keys())
        records = [{c: obj[c].get(k) for c in obj} for k in keys]
    elif isinstance(obj, dict) and all(isinstance(v, dict) for v in obj.values()):
        records = list(obj.values())  # orient="index"
    else:
        raise ValueError(f"{path}: expected a JSON list of records (or a pandas columns/index JSON)")
    for i, r in enumerate(records):
        if not isinstance(r, dict) or "painting" not in r:
            raise ValueError(f"{path}: record {i} has no 'painting' field: {r!r}"[:300])
    return records


def read_apolo_records(root: str | os.PathLike, split: str = "test", artemis_csv: str | os.PathLike | None = None) -> list[dict]:
    """Records of one APOLO split, each with ``painting, emotion, utterances, artemis_id, art_style``.

    Uses ``apolo_<split>.json`` when present (it already has emotion and utterances); otherwise
    ``apolo.json`` + ``artemis_csv``: the emotion and utterances come from the ArtEmis rows that
    ``artemis_id`` points at (0-based row positions of the v0 CSV).
    """
    if split not in _SPLIT_ALIASES:
        raise ValueError(f"split must be 'val' (or 'validation') or 'test', got {split!r}")
    split = _SPLIT_ALIASES[split]
    split_json = os.path.join(root, f"apolo_{split}.json")
    csv = None
    if artemis_csv is not None:
        from .artemis import read_artemis_csv

        csv = read_artemis_csv(artemis_csv)
    if os.path.isfile(split_json):
        records = _load_json_records(split_json)
        for r in records:
            if "emotion" not in r or "utterances" not in r:
                raise ValueError(f"{split_json}: records need 'emotion' and 'utterances' fields, got {sorted(r)}")
    else:
        main_json = os.path.join(root, "apolo.json")
        if not os.path.isfile(main_json):
            raise FileNotFoundError(f"APOLO root {root}: neither apolo_{split}.json nor apolo.json exists")
        if csv is None:
            raise ValueError(
                f"{root} has no apolo_{split}.json, so emotions and utterances must come from ArtEmis: "
                "pass artemis_csv=<artemis_dataset_release_v0.csv>"
            )
        records = [r for r in _load_json_records(main_json) if _SPLIT_ALIASES.get(str(r.get("split")), None) == split]
    out = []
    for r in records:
        ids = r.get("artemis_id", []) or []
        ids = [int(i) for i in (ids if isinstance(ids, list) else [ids])]
        rec = {"painting": r["painting"], "artemis_id": ids, "art_style": r.get("art_style", "") or ""}
        if "emotion" in r and "utterances" in r:
            rec["emotion"], rec["utterances"] = r["emotion"], list(r["utterances"])
        if csv is not None and ids:
            bad = [i for i in ids if not 0 <= i < len(csv)]
            if bad:
                raise ValueError(f"APOLO record {r['painting']!r}: artemis_id {bad} out of range for {artemis_csv} ({len(csv)} rows)")
            rows = csv.iloc[ids]
            emotions = set(rows["emotion"])
            paintings = {unicodedata.normalize("NFC", p) for p in rows["painting"]}
            if len(emotions) != 1 or paintings != {unicodedata.normalize("NFC", r["painting"])}:
                raise ValueError(
                    f"APOLO record {r['painting']!r}: artemis_id {ids} point at ArtEmis rows of "
                    f"paintings {sorted(paintings)} / emotions {sorted(emotions)}; expected one painting and one emotion "
                    "(is artemis_csv the v0 release CSV?)"
                )
            rec.setdefault("emotion", emotions.pop())
            rec.setdefault("utterances", rows["utterance"].tolist())
            rec["art_style"] = rec["art_style"] or rows["art_style"].iloc[0]
        if "emotion" not in rec:
            raise ValueError(f"APOLO record {r['painting']!r} has no emotion and no artemis_id to look it up")
        if rec["emotion"] not in EMOTIONS:
            raise ValueError(f"APOLO record {r['painting']!r}: emotion {rec['emotion']!r} is not one of {list(EMOTIONS)}")
        out.append(rec)
    return out


def load_apolo(
    root: str | os.PathLike,
    image_root: str | os.PathLike,
    split: str = "test",
    artemis_csv: str | os.PathLike | None = None,
    *,
    mask_dir: str = "apolo_pixel_map",
    image_extension: str = ".jpg",
    on_missing: str = "error",
    verify_images: bool = True,
    num_threads: int = 8,
) -> Dataset:
    """Load one APOLO split: one row per (painting, emotion), columns per :data:`APOLO_FEATURES`.

    Ground-truth masks are read with ``allow_pickle=False``, resized (nearest) to the image's
    displayed size and stored as 1-bit images; empty masks are kept with ``mask_empty=True``.

    Missing/undecodable images or masks: ``on_missing="error"`` (default) checks every file first
    and raises one :class:`MissingFilesError` with the count and first paths; ``"skip"`` drops
    those rows and logs how many.
    """
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    records = read_apolo_records(root, split, artemis_csv)
    images, masks = NameResolver(image_root), NameResolver(os.path.join(root, mask_dir))
    for r in records:
        name = r["painting"]
        check_name(name, what="APOLO painting")
        found = images.resolve(name + image_extension, what="APOLO painting")
        r["image"] = str(found or os.path.join(image_root, name + image_extension))
        found = masks.resolve(f"{name}_{r['emotion']}.npy", what="APOLO painting")
        r["mask_path"] = str(found or os.path.join(root, mask_dir, f"{name}_{r['emotion']}.npy"))

    bad = dict(check_files([r["image"] for r in records], kind="image", verify=verify_images, num_threads=num_threads).bad)
    bad.update(check_files([r["mask_path"] for r in records], kind="npy", num_threads=num_threads).bad)
    if bad:
        message = format_missing(
            bad, "APOLO images/masks", 2 * len(records),
            hint=f"(expected {image_root}/<painting>{image_extension} and {os.path.join(root, mask_dir)}/<painting>_<emotion>.npy; "
            "pass on_missing='skip' to drop those rows)",
        )
        if on_missing == "error":
            raise MissingFilesError(message, bad)
        n_before = len(records)
        records = [r for r in records if r["image"] not in bad and r["mask_path"] not in bad]
        logger.warning("load_apolo: skipped %d of %d records with a missing or undecodable file. %s", n_before - len(records), n_before, message)

    rows = {k: [] for k in APOLO_FEATURES}
    for r in records:
        mask = resize_mask(read_mask(r["mask_path"]), image_size(r["image"]))
        rows["image"].append(r["image"])
        rows["mask"].append(mask_to_image(mask))
        rows["mask_empty"].append(not bool(mask.any()))
        rows["emotion"].append(EMOTIONS.index(r["emotion"]))
        rows["utterances"].append(r["utterances"])
        rows["painting"].append(r["painting"])
        rows["art_style"].append(r["art_style"])
        rows["artemis_id"].append(r["artemis_id"])
    n_empty = sum(rows["mask_empty"])
    if n_empty:
        logger.info("load_apolo: %d of %d masks are empty (kept, flagged mask_empty)", n_empty, len(records))
    return Dataset.from_dict(rows, features=APOLO_FEATURES)
