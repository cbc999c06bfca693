"""Shared builders for the tests: tiny models, processors and batches (no network)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from modeling_emosem import EmoSEMConfig, EmoSEMModel, EmoSEMProcessor

_PROCESSOR = None


def tiny_processor() -> EmoSEMProcessor:
    global _PROCESSOR
    if _PROCESSOR is None:  # training the tokenizer is cheap, but there is no need to repeat it
        _PROCESSOR = EmoSEMProcessor.from_preset("tiny")
    return _PROCESSOR


def tiny_model(seed: int = 0, **overrides) -> EmoSEMModel:
    torch.manual_seed(seed)
    return EmoSEMModel(EmoSEMConfig.from_preset("tiny", **overrides))


def random_image(height: int = 96, width: int = 128, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def tiny_batch(n: int = 3, with_masks: bool = True, with_text: bool = True):
    proc = tiny_processor()
    images = [random_image(80 + 8 * i, 128 - 8 * i, seed=i) for i in range(n)]
    emotions = ["amusement", "fear", "sadness", "awe", "anger"][:n]
    texts = ["the yellow star makes me smile", "the dark tree scares me", "the grey rain makes me sad",
             "the huge mountain amazes me", "the red fire makes me angry"][:n] if with_text else None
    masks = None
    if with_masks:
        masks = []
        for i, img in enumerate(images):
            m = np.zeros((img.height, img.width), dtype=bool)
            m[10 + i : 40 + i, 20 : 60 + 4 * i] = True
            masks.append(m)
    return proc(images=images, emotions=emotions, explanations=texts, masks=masks)


def model_inputs(batch) -> dict:
    return {k: v for k, v in batch.items() if k not in ("original_sizes", "reshaped_input_sizes")}
