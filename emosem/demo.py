"""A one-minute demo: the tiny EmoSEM (random weights) on a generated artwork.

It shows the whole inference path (processor -> one encoder pass -> masks and explanations for several
emotions -> saliency at the image's own size). Random weights explain nonsense; train first
(`examples/train.py`) for explanations that mean something.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from modeling_emosem import EmoSEMConfig, EmoSEMModel, EmoSEMProcessor


def draw_artwork(width: int = 320, height: int = 240, seed: int = 0) -> Image.Image:
    """A small procedural "painting": a gradient sky, a sun and a tree."""
    rng = np.random.default_rng(seed)
    sky = np.linspace(60, 200, height, dtype=np.float32)[:, None, None] * np.array([0.6, 0.8, 1.0], np.float32)
    pixels = np.broadcast_to(sky, (height, width, 3)) + rng.normal(0, 8, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.65, height * 0.1, width * 0.85, height * 0.35), fill=(250, 210, 40))
    draw.rectangle((width * 0.2, height * 0.55, width * 0.25, height * 0.95), fill=(90, 60, 30))
    draw.ellipse((width * 0.1, height * 0.3, width * 0.35, height * 0.65), fill=(30, 120, 40))
    return image


@torch.inference_mode()
def run_demo(emotions=("awe", "fear"), seed: int = 0) -> list[dict]:
    torch.manual_seed(seed)
    model = EmoSEMModel(EmoSEMConfig.from_preset("tiny")).eval()
    processor = EmoSEMProcessor.from_preset("tiny")
    image = draw_artwork(seed=seed)
    pixels = processor(images=[image])
    n = len(emotions)
    out = model.segment_and_explain(
        pixel_values=pixels["pixel_values"],
        clip_pixel_values=pixels["clip_pixel_values"],
        image_index=torch.zeros(n, dtype=torch.long),  # one encoder pass for all emotions
        seeds=[seed + i for i in range(n)],
        **processor.encode_emotions(list(emotions)),
    )
    saliency = processor.post_process_masks(
        out.pred_masks, pixels["original_sizes"].repeat(n, 1), pixels["reshaped_input_sizes"].repeat(n, 1)
    )
    texts = processor.batch_decode(out.sequences)
    return [
        {"emotion": e, "mask_size": tuple(s.shape), "coverage": float((s > 0.5).float().mean()), "explanation": t}
        for e, s, t in zip(emotions, saliency, texts)
    ]


def main() -> None:
    for row in run_demo():
        print(f"{row['emotion']:>10}: mask {row['mask_size'][1]}x{row['mask_size'][0]} px "
              f"({row['coverage']:.0%} of the image) | explanation: {row['explanation']!r}")


if __name__ == "__main__":
    main()
