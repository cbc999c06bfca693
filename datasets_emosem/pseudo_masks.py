"""Pseudo masks for training: SAM candidate regions scored by CLIP against the utterances.

EmoSEM trains its mask head on pseudo masks built as APOLO built its pseudo heat maps (there:
VinVL boxes scored by CLIP, min-max normalised). We use SAM's automatic candidate regions instead
of boxes, so the map follows object outlines:

1. ``proposer(image) -> (masks (R, H, W) bool, quality (R,))``: :class:`SamRegionProposer` prompts
   SAM with a regular grid of points, keeps each point's best mask (by predicted IoU), drops tiny
   ones and near-duplicates.
2. Each region's bounding-box crop is scored by ``scorer(crops, texts) -> (R, T)`` similarities
   (:class:`ClipScorer`: CLIP cosine image-text similarity) against the utterances of every
   (painting, emotion); a region's score for an emotion is the mean over that emotion's utterances.
3. :func:`heat_map`: every pixel takes the **max** score of the regions covering it (pixels no
   region covers take the lowest region score), then the map is min-max normalised to [0, 1].
   Max (not a sum) so that many overlapping weak regions can't outvote the one region that
   matches the text best.
4. :func:`generate_pseudo_masks` writes ``<out_dir>/<painting>_<emotion>.npy`` (float32, image
   size or ``output_size``), the APOLO layout, atomically; finished files are skipped, so an
   interrupted run resumes where it stopped.

The scorer and proposer are plain callables: tests inject ones with known outputs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image as PILImage

from .images import open_rgb
from .paths import check_name, safe_join

__all__ = [
    "Stimulus",
    "group_stimuli",
    "region_crops",
    "heat_map",
    "SamRegionProposer",
    "ClipScorer",
    "generate_pseudo_masks",
    "pseudo_mask_path",
    "attach_pseudo_masks",
]

Proposer = Callable[[PILImage.Image], tuple[np.ndarray, np.ndarray]]
Scorer = Callable[[list[PILImage.Image], list[str]], np.ndarray]


@dataclass
class Stimulus:
    """One (painting, emotion) to build a pseudo map for. ``image``: path, PIL image or datasets dict."""

    painting: str
    emotion: str
    image: object
    utterances: list[str] = field(default_factory=list)


def group_stimuli(dataset, *, exclude: Iterable[str] = ("something else",)) -> list[Stimulus]:
    """Group dataset rows into one :class:`Stimulus` per (painting, emotion), utterances gathered.

    Works on :func:`load_artemis` splits (one ``utterance`` per row), :func:`load_apolo` and the
    synthetic set (``utterances`` lists). Images are not decoded (paths are kept when the column has
    them). Order: first appearance.
    """
    from datasets import Image

    names = dataset.features["emotion"].names if hasattr(dataset.features["emotion"], "names") else None
    ds = dataset.cast_column("image", Image(decode=False))
    cols = [c for c in ("painting", "emotion", "image", "utterance", "utterances") if c in ds.column_names]
    groups: dict[tuple[str, str], Stimulus] = {}
    for row in ds.select_columns(cols):
        emotion = names[row["emotion"]] if names is not None and not isinstance(row["emotion"], str) else row["emotion"]
        if emotion in exclude:
            continue
        key = (row["painting"], emotion)
        if key not in groups:
            image = row["image"]["path"] if row["image"].get("path") and not row["image"].get("bytes") else row["image"]
            groups[key] = Stimulus(row["painting"], emotion, image)
        texts = row.get("utterances") or ([row["utterance"]] if row.get("utterance") else [])
        groups[key].utterances.extend(t for t in texts if t not in groups[key].utterances)
    return list(groups.values())


def pseudo_mask_path(out_dir: str | os.PathLike, painting: str, emotion: str) -> str:
    """``<out_dir>/<painting>_<emotion>.npy``; unsafe painting names are rejected."""
    check_name(painting, what="painting")
    check_name(emotion, what="emotion")
    return str(safe_join(out_dir, f"{painting}_{emotion}.npy", what="painting"))


def region_crops(image: PILImage.Image, masks: np.ndarray, pad: float = 0.05) -> list[PILImage.Image]:
    """Bounding-box crops ``[PIL]`` (R of them) of ``masks (R, H, W)``, each box padded by ``pad`` of its size."""
    w, h = image.size
    crops = []
    for m in masks:
        ys, xs = np.nonzero(m)
        if len(xs) == 0:
            crops.append(image.copy())
            continue
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        px, py = int(pad * (x1 - x0)), int(pad * (y1 - y0))
        crops.append(image.crop((max(0, x0 - px), max(0, y0 - py), min(w, x1 + px), min(h, y1 + py))))
    return crops


def heat_map(masks: np.ndarray, scores: np.ndarray, size: tuple[int, int] | int | None = None) -> np.ndarray:
    """Combine regions into a [0, 1] float32 heat map ``(H, W)``.

    ``masks (R, H, W)`` bool, ``scores (R,)``. Pixel value = max score of the regions covering it;
    uncovered pixels = min score; then min-max normalisation. A constant map (one region, or all
    scores equal) becomes 1 on covered pixels and 0 elsewhere; no regions gives all zeros.
    ``size``: output ``(width, height)`` (or an int for a square map, e.g. 7 for APOLO's maps),
    resized bilinearly and re-normalised; default the masks' size.
    """
    masks = np.asarray(masks, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if masks.ndim != 3 or len(scores) != len(masks):
        raise ValueError(f"need masks (R, H, W) and scores (R,), got {masks.shape} and {scores.shape}")
    R, H, W = masks.shape
    if R == 0:
        out = np.zeros((H, W), np.float32)
    else:
        heat = np.full((H, W), scores.min(), np.float64)
        for m, s in zip(masks, scores):
            np.maximum(heat, np.where(m, s, -np.inf), out=heat)
        lo, hi = heat.min(), heat.max()
        out = ((heat - lo) / (hi - lo) if hi > lo else masks.any(0)).astype(np.float32)
    if size is not None:
        size = (size, size) if isinstance(size, int) else tuple(size)
        if size != (W, H):
            out = np.asarray(PILImage.fromarray(out, mode="F").resize(size, PILImage.BILINEAR), dtype=np.float32)
            lo, hi = out.min(), out.max()
            out = (out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)
    return out.astype(np.float32)


class SamRegionProposer:
    """Candidate regions from SAM prompted by a ``points_per_side``² grid of points.

    Args:
        model: a ``SamModel`` or a path / hub id for ``SamModel.from_pretrained``.
        processor: a ``SamProcessor`` (loaded from ``model`` when it is a path).
        points_per_batch: points sent through the mask decoder at once (memory vs speed).
        min_area_fraction: drop regions smaller than this fraction of the image.
        max_overlap: drop a region whose mask IoU with an already kept (better) one exceeds this.
        max_regions: keep at most this many regions (best predicted IoU first).

    ``__call__(image) -> (masks (R, H, W) bool, quality (R,) float)``, image size = input size.
    The image embedding is computed once per image and shared by all point batches.
    """

    def __init__(self, model, processor=None, *, points_per_side: int = 16, points_per_batch: int = 64,
                 min_area_fraction: float = 0.005, max_overlap: float = 0.85, max_regions: int = 48, device: str | None = None):
        import torch
        from transformers import SamModel, SamProcessor

        if isinstance(model, (str, os.PathLike)):
            processor = processor or SamProcessor.from_pretrained(model)
            model = SamModel.from_pretrained(model)
        if processor is None:
            raise ValueError("pass the SamProcessor when passing a SamModel instance")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model, self.processor = model.to(self.device).eval(), processor
        self.points_per_side, self.points_per_batch = points_per_side, points_per_batch
        self.min_area_fraction, self.max_overlap, self.max_regions = min_area_fraction, max_overlap, max_regions

    def __call__(self, image: PILImage.Image) -> tuple[np.ndarray, np.ndarray]:
        import torch

        w, h = image.size
        n = self.points_per_side
        xs, ys = (np.arange(n) + 0.5) / n * w, (np.arange(n) + 0.5) / n * h
        points = [[[float(x), float(y)]] for y in ys for x in xs]
        inputs = self.processor(images=image, input_points=[points], return_tensors="pt")
        all_points = inputs["input_points"].to(self.device)  # (1, P, 1, 2), in the resized frame
        masks, quality = [], []
        with torch.no_grad():
            embeddings = self.model.get_image_embeddings(inputs["pixel_values"].to(self.device))
            for start in range(0, all_points.shape[1], self.points_per_batch):
                out = self.model(image_embeddings=embeddings, input_points=all_points[:, start : start + self.points_per_batch],
                                 multimask_output=True)
                iou = out.iou_scores[0]  # (p, 3)
                best = iou.argmax(-1)
                idx = torch.arange(len(best), device=best.device)
                # Upsample only each point's best mask, not all three (3x less memory at full size).
                low_res = out.pred_masks[0, idx, best][:, None]  # (p, 1, h', w')
                full = self.processor.post_process_masks(low_res[None].cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"])[0]
                masks.append(full[:, 0].numpy().astype(bool))
                quality.append(iou[idx, best].float().cpu().numpy())
        masks, quality = np.concatenate(masks), np.concatenate(quality)
        return self._filter(masks, quality)

    def _filter(self, masks: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Drop tiny regions, then greedy mask-IoU suppression in order of predicted quality."""
        area = masks.reshape(len(masks), -1).mean(1)
        keep = area >= self.min_area_fraction
        masks, quality = masks[keep], quality[keep]
        order = np.argsort(-quality, kind="stable")
        # IoU on a strided copy: exact enough to find duplicates, ~16x cheaper on large images.
        step = max(1, min(masks.shape[1:]) // 128) if len(masks) else 1
        small = masks[:, ::step, ::step].reshape(len(masks), -1).astype(np.float32)
        kept: list[int] = []
        for i in order:
            if len(kept) >= self.max_regions:
                break
            if kept:
                inter = small[kept] @ small[i]
                union = small[kept].sum(1) + small[i].sum() - inter
                if (inter / np.maximum(union, 1)).max() > self.max_overlap:
                    continue
            kept.append(int(i))
        return masks[kept], quality[kept]


class ClipScorer:
    """CLIP image-text cosine similarity: ``__call__(crops, texts) -> (len(crops), len(texts))`` float32.

    ``model``: a ``CLIPModel`` or a path / hub id; ``processor``: a ``CLIPProcessor`` (loaded from
    ``model`` when it is a path). Crops and texts are embedded in batches of ``batch_size``.
    """

    def __init__(self, model, processor=None, *, batch_size: int = 64, device: str | None = None):
        import torch
        from transformers import CLIPModel, CLIPProcessor

        if isinstance(model, (str, os.PathLike)):
            processor = processor or CLIPProcessor.from_pretrained(model)
            model = CLIPModel.from_pretrained(model)
        if processor is None:
            raise ValueError("pass the CLIPProcessor when passing a CLIPModel instance")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model, self.processor, self.batch_size = model.to(self.device).eval(), processor, batch_size

    @staticmethod
    def _features(out):
        # transformers 5 returns a model output whose pooler_output is the projected embedding;
        # older versions return the tensor itself.
        return out if hasattr(out, "norm") else out.pooler_output

    def __call__(self, crops: Sequence[PILImage.Image], texts: Sequence[str]) -> np.ndarray:
        import torch

        if not crops or not texts:
            return np.zeros((len(crops), len(texts)), np.float32)
        with torch.no_grad():
            img, txt = [], []
            for i in range(0, len(crops), self.batch_size):
                px = self.processor(images=list(crops[i : i + self.batch_size]), return_tensors="pt")["pixel_values"]
                img.append(self._features(self.model.get_image_features(pixel_values=px.to(self.device))))
            for i in range(0, len(texts), self.batch_size):
                tok = self.processor(text=list(texts[i : i + self.batch_size]), padding=True, truncation=True, return_tensors="pt")
                tok = {k: v.to(self.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
                txt.append(self._features(self.model.get_text_features(**tok)))
            img = torch.nn.functional.normalize(torch.cat(img).float(), dim=-1)
            txt = torch.nn.functional.normalize(torch.cat(txt).float(), dim=-1)
            return (img @ txt.T).cpu().numpy().astype(np.float32)


def _save_atomic(path: str, array: np.ndarray) -> None:
    """np.save to a temp file in the same folder, then rename: a crash never leaves a truncated
    file that a resumed run would mistake for a finished one."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def generate_pseudo_masks(
    stimuli: Sequence[Stimulus],
    out_dir: str | os.PathLike,
    proposer: Proposer,
    scorer: Scorer,
    *,
    output_size: tuple[int, int] | int | None = None,
    progress: bool = True,
) -> dict[str, int]:
    """Write one heat map per stimulus to ``<out_dir>/<painting>_<emotion>.npy``.

    Paintings are processed one at a time: SAM runs once per painting and CLIP embeds its crops
    once, scored against the utterances of all its pending emotions in one call. Existing files
    are skipped (resume). ``output_size``: see :func:`heat_map` (default: the image's size).

    Returns counts ``{"written", "skipped", "paintings"}``.
    """
    from tqdm.auto import tqdm

    os.makedirs(out_dir, exist_ok=True)
    by_painting: dict[str, list[Stimulus]] = {}
    skipped = 0
    for s in stimuli:
        path = pseudo_mask_path(out_dir, s.painting, s.emotion)  # validates names before any work
        if os.path.exists(path):
            skipped += 1
            continue
        if not s.utterances:
            raise ValueError(f"stimulus ({s.painting!r}, {s.emotion!r}) has no utterances to score regions against")
        by_painting.setdefault(s.painting, []).append(s)
    written = 0
    for group in tqdm(by_painting.values(), desc="pseudo masks", unit="painting", disable=not progress):
        image = open_rgb(group[0].image)
        masks, _ = proposer(image)
        crops = region_crops(image, masks)
        texts = [t for s in group for t in s.utterances]
        sims = np.asarray(scorer(crops, texts), dtype=np.float64) if len(masks) else np.zeros((0, len(texts)))
        if sims.shape != (len(masks), len(texts)):
            raise ValueError(f"scorer returned shape {sims.shape}; expected (regions, texts) = {(len(masks), len(texts))}")
        start = 0
        for s in group:
            scores = sims[:, start : start + len(s.utterances)].mean(1) if len(masks) else np.zeros(0)
            start += len(s.utterances)
            if not len(masks):  # no candidate region survived: an all-zero map of the image's size
                masks = np.zeros((0, image.size[1], image.size[0]), bool)
            heat = heat_map(masks, scores, output_size)
            _save_atomic(pseudo_mask_path(out_dir, s.painting, s.emotion), heat)
            written += 1
    return {"written": written, "skipped": skipped, "paintings": len(by_painting)}


def attach_pseudo_masks(dataset, mask_dir: str | os.PathLike, *, threshold: float = 0.5, on_missing: str = "error"):
    """Give ``dataset`` (rows with ``painting``, ``emotion``, ``image``) lazy ``mask`` and ``heat`` columns
    from ``<mask_dir>/<painting>_<emotion>.npy`` heat maps: ours (image size) or APOLO's 7x7 ones.

    On access, each map is resized bilinearly to the decoded image's size and min-max normalised
    (``heat``, float32 ``(H, W)`` in [0, 1]); ``mask = heat >= threshold`` (bool ``(H, W)``), the
    form :func:`make_collate_fn` passes to the processor. Every file is checked up front:
    ``on_missing="error"`` raises one error with the count and first paths, ``"skip"`` drops rows.
    Returns a new dataset with a ``datasets`` transform set (the input is not modified).
    """
    import logging

    from .apolo import read_heat_map
    from .images import MissingFilesError, check_files, format_missing

    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    names = getattr(dataset.features["emotion"], "names", None)

    def emotion_name(e):
        return names[e] if names is not None and not isinstance(e, str) else e

    paths = [pseudo_mask_path(mask_dir, p, emotion_name(e)) for p, e in zip(dataset["painting"], dataset["emotion"])]
    report = check_files(paths, kind="npy")
    if not report.ok:
        message = format_missing(report.bad, "pseudo masks", report.checked, hint=f"(expected {mask_dir}/<painting>_<emotion>.npy)")
        if on_missing == "error":
            raise MissingFilesError(message, report.bad)
        keep = [i for i, p in enumerate(paths) if p not in report.bad]
        logging.getLogger(__name__).warning("attach_pseudo_masks: skipped %d rows. %s", len(paths) - len(keep), message)
        dataset = dataset.select(keep)

    def transform(batch):
        heats = [
            read_heat_map(pseudo_mask_path(mask_dir, p, emotion_name(e)), size=open_rgb(img).size if not hasattr(img, "size") else img.size)
            for p, e, img in zip(batch["painting"], batch["emotion"], batch["image"])
        ]
        batch["heat"] = heats
        batch["mask"] = [h >= threshold for h in heats]
        return batch

    dataset = dataset.with_transform(transform)
    return dataset
