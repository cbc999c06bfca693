"""EmotionSegmentationPipeline: the task ``"emotion-segmentation"``.

    from transformers import pipeline
    pipe = pipeline("emotion-segmentation", model="path/or/repo", trust_remote_code=True)
    results = pipe("painting.jpg", emotions=["awe", "fear"])   # one dict per emotion
    results = pipe(["a.jpg", "b.png"], emotions=None, batch_size=2)  # a list per image, all 8 emotions

Every result dict has

- ``emotion`` (`str`): the emotion's name.
- ``score`` (`float` in [0, 1]): the model's confidence that the emotion's stimulus is where the mask says:
  the mean saliency over the pixels of ``mask`` (0.0 when the mask is empty, i.e. no pixel's saliency
  exceeds ``threshold``).
- ``mask`` (`PIL.Image`, mode "L", the original image size): 255 where ``saliency > threshold``, else 0.
- ``saliency`` (`np.ndarray`, float32, shape (height, width), values in [0, 1]): sigmoid of the saliency logits,
  mapped back through SAM's resize-and-pad to the original image size.
- ``explanation`` (`str`): the first-person explanation (None when ``explain=False``).

All requested emotions of one image share one pass of the two image encoders (SAM, CLIP). ``batch_size``
images are encoded together. Explanations are sampled with one random generator per (image, emotion) row,
seeded from (``seed``, the image's position in the input list, the emotion's id) by `row_seed`, so results do
not depend on ``batch_size`` or on which other emotions were asked for.

This file is copied next to the weights by `save_pretrained`: it imports its siblings only as
``from .module import name``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import Pipeline

from .image_utils_emosem import load_image

# Images above this many pixels are refused (a decompression bomb, or more memory than one request should
# take: the saliency map of every emotion is a float32 array of the image's size). Pass `max_pixels=` to change.
DEFAULT_MAX_PIXELS = 40_000_000

_UNSET = object()


def row_seed(seed: int, image_position: int, emotion_id: int) -> int:
    """The sampling seed of one (image, emotion) row: a hash of the three numbers (independent of batching)."""
    state = np.random.SeedSequence([int(seed), int(image_position), int(emotion_id)]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _is_path(image: Any) -> bool:
    return isinstance(image, (str, os.PathLike))


def _label(image: Any, position: int, batched: bool) -> str:
    """How errors name an input: its path, or its position and type (prefixed by the position in a list)."""
    if _is_path(image):
        desc = repr(os.fspath(image))
    elif isinstance(image, Image.Image):
        desc = f"PIL image {image.width}x{image.height}"
    elif isinstance(image, np.ndarray):
        desc = f"array of shape {image.shape}"
    else:
        desc = f"{type(image).__name__}"
    return f"images[{position}] {desc}" if batched else desc


def _check_pixels(width: int, height: int, max_pixels: int | None, label: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ValueError(
            f"{label}: refused, {width}x{height} = {width * height} pixels is over the limit of {max_pixels} "
            f"(a possible decompression bomb; pass max_pixels= to raise the limit)"
        )


def _peek_size(path: str, label: str, max_pixels: int | None) -> None:
    """Check a file's pixel count from its header, before decoding it. Undecodable files are left to
    `load_image`, which reports them."""
    if not os.path.isfile(path):
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                size = opened.size
    except Image.DecompressionBombError as err:
        raise ValueError(f"{label}: refused, the image is too large ({err})") from err
    except Exception:  # noqa: BLE001 - load_image gives the precise message
        return
    _check_pixels(size[0], size[1], max_pixels, label)


class EmotionSegmentationPipeline(Pipeline):
    r"""
    Segment and explain the emotion stimuli of artworks with EmoSEM.

    Call arguments:
        images: a path, a PIL image, a numpy array (H, W[, 3|4]), or a list of them. One image gives a list with
            one dict per emotion; a list gives a list of such lists, in input order.
        emotions (`str`, `list[str | int]` or None): emotion names (or ids); None means all eight.
        batch_size (`int`, defaults to 1): images encoded per forward pass.
        threshold (`float`, defaults to 0.5): saliency above which a pixel is in `mask`.
        seed (`int`, defaults to 0): sampling seed (see `row_seed`); the same seed gives the same results.
        explain (`bool`, defaults to True): generate explanations (False: masks only, `explanation` is None).
        max_new_tokens, do_sample, top_p, temperature: decoding options (defaults from the model's config:
            nucleus sampling with p = 0.9 and at most 25 tokens in the paper).
        max_pixels (`int` or None, defaults to `DEFAULT_MAX_PIXELS` = 40M): larger images are refused.
        position_offset (`int`, defaults to 0): the position of the first image in a longer list that the caller
            splits into several calls (seeds and error messages use `position_offset + i`), so that the split
            does not change the results.

    Errors name the input: a missing path (FileNotFoundError), a non-image or truncated file, a decompression
    bomb, an unknown emotion or an empty list (ValueError); in a list, the message starts with ``images[i]``.
    """

    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.processor is None:
            raise ValueError(
                "EmotionSegmentationPipeline needs the EmoSEMProcessor: pass processor=, or a model folder that "
                "holds processor_config.json"
            )
        self.model.eval()

    # ------------------------------------------------------------------ parameters
    def _sanitize_parameters(
        self,
        emotions=_UNSET,
        threshold=None,
        seed=None,
        explain=None,
        max_new_tokens=None,
        do_sample=None,
        top_p=None,
        temperature=None,
        max_pixels=_UNSET,
        position_offset=None,
        **kwargs,
    ):
        if kwargs:
            raise TypeError(f"EmotionSegmentationPipeline: unexpected arguments {sorted(kwargs)}")
        preprocess, forward, postprocess = {}, {}, {}
        if emotions is not _UNSET:
            preprocess["emotions"] = emotions
        if max_pixels is not _UNSET:
            if max_pixels is not None and (not isinstance(max_pixels, int) or max_pixels < 1):
                raise ValueError(f"max_pixels: expected a positive integer or None, got {max_pixels!r}")
            preprocess["max_pixels"] = max_pixels
        if position_offset is not None:
            if isinstance(position_offset, bool) or not isinstance(position_offset, int) or position_offset < 0:
                raise ValueError(f"position_offset: expected a non-negative integer, got {position_offset!r}")
            preprocess["position_offset"] = position_offset
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
                raise ValueError(f"threshold: expected a number in [0, 1], got {threshold!r}")
            postprocess["threshold"] = float(threshold)
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
            forward["seed"] = int(seed)
        if explain is not None:
            forward["explain"] = bool(explain)
        if max_new_tokens is not None:
            if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
                raise ValueError(f"max_new_tokens: expected a positive integer, got {max_new_tokens!r}")
            forward["max_new_tokens"] = max_new_tokens
        if do_sample is not None:
            forward["do_sample"] = bool(do_sample)
        if top_p is not None:
            if not 0.0 < float(top_p) <= 1.0:
                raise ValueError(f"top_p: expected a number in (0, 1], got {top_p!r}")
            forward["top_p"] = float(top_p)
        if temperature is not None:
            if not float(temperature) > 0.0:
                raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
            forward["temperature"] = float(temperature)
        return preprocess, forward, postprocess

    def resolve_emotions(self, emotions: Any) -> list[int]:
        """`emotions` (name, id, list of them, or None for all) -> emotion ids; unknown names raise ValueError."""
        if emotions is None:
            return list(range(len(self.processor.emotions)))
        if isinstance(emotions, (str, int, np.integer)):
            emotions = [emotions]
        emotions = list(emotions)
        if not emotions:
            raise ValueError(
                f"emotions: got an empty list; pass names from {', '.join(self.processor.emotions)}, or None for all"
            )
        return [self.processor.emotion_id(e) for e in emotions]

    # ------------------------------------------------------------------ call
    def __call__(self, images, batch_size: int | None = None, num_workers: int | None = None, **kwargs):
        """Run the pipeline; see the class docstring. `num_workers` is accepted and ignored."""
        batched = isinstance(images, (list, tuple))
        items = list(images) if batched else [images]
        if not items:
            raise ValueError("images: got an empty list; pass at least one image")
        if batch_size is None:
            batch_size = self._batch_size or 1
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")

        preprocess_params, forward_params, postprocess_params = self._sanitize_parameters(**kwargs)
        preprocess_params = {**self._preprocess_params, **preprocess_params}
        forward_params = {**self._forward_params, **forward_params}
        postprocess_params = {**self._postprocess_params, **postprocess_params}
        emotion_ids = self.resolve_emotions(preprocess_params.pop("emotions", None))
        max_pixels = preprocess_params.pop("max_pixels", DEFAULT_MAX_PIXELS)
        offset = preprocess_params.pop("position_offset", 0)
        self.call_count += 1

        results = []
        for start in range(0, len(items), batch_size):
            rows = [
                self.preprocess(
                    {"image": image, "position": position, "label": _label(image, position, batched)},
                    emotion_ids=emotion_ids,
                    max_pixels=max_pixels,
                )
                for position, image in enumerate(items[start : start + batch_size], start=offset + start)
            ]
            model_outputs = self.forward(self._collate(rows), **forward_params)
            results.extend(self.postprocess(model_outputs, **postprocess_params))
        return results if batched else results[0]

    # ------------------------------------------------------------------ the three steps
    def preprocess(self, inputs: dict, emotion_ids: Sequence[int] = (), max_pixels: int | None = DEFAULT_MAX_PIXELS):
        """One image -> its SAM and CLIP pixels (and the emotions' prompts)."""
        image, label = inputs["image"], inputs["label"]
        if _is_path(image):
            _peek_size(os.fspath(image), label, max_pixels)
        elif isinstance(image, Image.Image):
            _check_pixels(image.width, image.height, max_pixels, label)
        rgb = load_image(image, name=label)
        _check_pixels(rgb.width, rgb.height, max_pixels, label)
        encoded = self.processor.encode_images([rgb])
        prompts = self.processor.encode_emotions(list(emotion_ids))
        return {**encoded, **prompts, "position": inputs["position"]}

    @staticmethod
    def _collate(rows: list[dict]) -> dict:
        batch = {key: torch.cat([r[key] for r in rows]) for key in ("pixel_values", "clip_pixel_values",
                                                                    "original_sizes", "reshaped_input_sizes")}
        batch["emotion_ids"] = rows[0]["emotion_ids"]
        batch["prompt_input_ids"] = rows[0]["prompt_input_ids"]
        batch["positions"] = [r["position"] for r in rows]
        return batch

    def _forward(self, batch: dict, seed: int = 0, explain: bool = True, **decoding) -> dict:
        """B images x K emotions: the encoders run once on the B images, the decoder on B*K rows."""
        n_images, emotion_ids = batch["pixel_values"].shape[0], batch["emotion_ids"]
        k = emotion_ids.shape[0]
        dtype = self.model.dtype
        features = self.model.get_image_features(
            batch["pixel_values"].to(dtype), batch["clip_pixel_values"].to(dtype)
        )
        image_index = torch.arange(n_images, device=emotion_ids.device).repeat_interleave(k)
        seeds = [row_seed(seed, pos, e) for pos in batch["positions"] for e in emotion_ids.tolist()]
        out = self.model.segment_and_explain(
            emotion_ids=emotion_ids.repeat(n_images),
            prompt_input_ids=batch["prompt_input_ids"].repeat(n_images, 1),
            image_embeddings=features.image_embeddings,
            clip_features=features.clip_features,
            image_index=image_index,
            explain=explain,
            seeds=seeds,
            **decoding,
        )
        return {
            "pred_masks": out.pred_masks.float(),
            "sequences": out.sequences,
            "emotion_ids": emotion_ids,
            "original_sizes": batch["original_sizes"],
            "reshaped_input_sizes": batch["reshaped_input_sizes"],
        }

    def postprocess(self, model_outputs: dict, threshold: float = 0.5) -> list[list[dict]]:
        """Saliency at each image's size, thresholded masks, scores and decoded explanations."""
        emotion_ids = model_outputs["emotion_ids"].tolist()
        k = len(emotion_ids)
        n_images = model_outputs["original_sizes"].shape[0]
        texts = None
        if model_outputs["sequences"] is not None:
            texts = self.processor.batch_decode(model_outputs["sequences"])
        results = []
        for i in range(n_images):
            rows = slice(i * k, (i + 1) * k)
            maps = self.processor.post_process_masks(
                model_outputs["pred_masks"][rows],
                model_outputs["original_sizes"][i : i + 1].repeat(k, 1),
                model_outputs["reshaped_input_sizes"][i : i + 1].repeat(k, 1),
            )
            per_image = []
            for j, (emotion_id, saliency) in enumerate(zip(emotion_ids, maps)):
                saliency = saliency.clamp(0.0, 1.0).numpy().astype(np.float32, copy=False)
                inside = saliency > threshold
                score = float(saliency[inside].mean()) if inside.any() else 0.0
                per_image.append(
                    {
                        "emotion": self.processor.emotions[emotion_id],
                        "score": score,
                        "mask": Image.fromarray(inside.astype(np.uint8) * 255),
                        "saliency": saliency,
                        "explanation": texts[i * k + j] if texts is not None else None,
                    }
                )
            results.append(per_image)
        return results

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any):
        """Save the model, this pipeline's code (`custom_pipelines` in config.json) and the EmoSEMProcessor, so
        that `pipeline("emotion-segmentation", model=save_directory, trust_remote_code=True)` loads it."""
        saved = self.tokenizer, self.image_processor, self.feature_extractor
        # The processor saves its tokenizer and image processors itself; the base class would save them again.
        self.tokenizer = self.image_processor = self.feature_extractor = None
        try:
            super().save_pretrained(save_directory, **kwargs)
        finally:
            self.tokenizer, self.image_processor, self.feature_extractor = saved
        self.processor.save_pretrained(save_directory, **kwargs)
