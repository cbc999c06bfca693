"""EmoSEMProcessor: image modes and orientation, emotions, explanations, mask geometry, post-processing."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from modeling_emosem import EMOTIONS
from modeling_emosem.image_utils_emosem import load_image
from tests.helpers import tiny_processor


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "I;16", "L", "1", "I", "F"])
def test_every_pil_mode_becomes_rgb(mode):
    base = Image.new("RGB", (40, 30), (200, 100, 50))
    if mode == "I;16":
        img = Image.fromarray((np.arange(30 * 40).reshape(30, 40) * 50).astype(np.uint16))
        assert img.mode == "I;16"
    else:
        img = base.convert(mode)
    out = load_image(img)
    assert out.mode == "RGB" and out.size == (40, 30)
    batch = tiny_processor()(images=[img], emotions=["awe"])
    assert batch["pixel_values"].shape == (1, 3, 128, 128)
    assert batch["original_sizes"].tolist() == [[30, 40]]


def test_transparency_is_composited_on_white_and_16_bit_keeps_contrast():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)
    ramp = Image.fromarray(np.linspace(0, 4000, 16).astype(np.uint16).reshape(4, 4))
    values = np.asarray(load_image(ramp))[..., 0]
    assert values.min() == 0 and values.max() == 255


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (60, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 20))  # white stripe at the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif)
    out = load_image(path)
    assert out.size == (20, 60)
    top = np.asarray(out)[:10].mean()
    bottom = np.asarray(out)[-10:].mean()
    assert top > 200 and bottom < 50  # the stripe ends up on top after the 90-degree turn


def test_undecodable_and_missing_images_name_the_file(tmp_path):
    bad = tmp_path / "not_an_image.jpg"
    bad.write_bytes(b"this is text")
    with pytest.raises(ValueError, match="not_an_image.jpg: cannot be decoded"):
        tiny_processor()(images=[str(bad)], emotions=["awe"])
    with pytest.raises(FileNotFoundError, match="missing.png: no such file"):
        load_image(tmp_path / "missing.png")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ValueError, match="truncated.jpg: cannot be decoded"):
        load_image(str(truncated))
    with pytest.raises(ValueError, match=r"images\[0\]: expected an array of shape"):
        tiny_processor()(images=[np.zeros((5, 5, 7), dtype=np.uint8)], emotions=["awe"])


def test_emotion_names_are_normalised_and_unknown_ones_rejected():
    proc = tiny_processor()
    ids = proc.encode_emotions([" Awe", "FEAR ", "sadness", 3])["emotion_ids"]
    assert ids.tolist() == [1, 6, 7, 3]
    with pytest.raises(ValueError) as err:
        proc(emotions=["joy"])
    assert "unknown emotion 'joy'" in str(err.value)
    for name in EMOTIONS:
        assert name in str(err.value)


def test_prompts_are_padded_to_prompt_length_and_differ_only_in_the_emotion():
    proc = tiny_processor()
    prompts = proc.encode_emotions(list(EMOTIONS))["prompt_input_ids"]
    assert prompts.shape == (8, 8)
    assert len({tuple(p.tolist()) for p in prompts}) == 8
    assert (prompts[:, :6] == prompts[0, :6]).all()  # "generate the mask for the emotion"
    text = proc.tokenizer.decode([t for t in prompts[2].tolist() if t != proc.eos_token_id])
    assert text == "generate the mask for the emotion contentment"


def test_explanations_become_labels_with_padding_ignored():
    proc = tiny_processor()
    enc = proc.encode_explanations(["the star makes me smile", "dark"])
    eos = proc.eos_token_id
    assert enc["input_ids"].shape == enc["labels"].shape == enc["attention_mask"].shape
    for row in range(2):
        n = int(enc["attention_mask"][row].sum())
        assert enc["input_ids"][row, n - 1] == eos
        assert (enc["labels"][row, n:] == -100).all() and (enc["labels"][row, :n] >= 0).all()
    assert proc.batch_decode(enc["input_ids"]) == ["the star makes me smile", "dark"]
    long = proc.encode_explanations(["word " * 100])
    assert long["input_ids"].shape[1] == proc.max_explanation_tokens + 1


def test_mask_targets_follow_sams_resize_and_pad():
    proc = tiny_processor()  # mask_size 64, SAM frame 128
    image = Image.new("RGB", (200, 100))  # landscape: width 200 -> 64 cells, height 100 -> 32
    mask = np.zeros((50, 100), dtype=bool)  # half resolution of the image
    mask[:, 50:] = True  # right half
    targets = proc(images=[image], masks=[mask])["mask_labels"]
    assert targets.shape == (1, 64, 64)
    assert targets[0, 32:].sum() == 0  # SAM's padding (bottom) is background
    assert targets[0, :32, 34:].min() == 1 and targets[0, :32, :30].max() == 0
    soft = proc.encode_masks([np.full((7, 7), 0.5, dtype=np.float32)])
    assert torch.allclose(soft[0], torch.full((64, 64), 0.5))
    with pytest.raises(ValueError, match=r"masks\[0\]: expected a non-empty 2-D array"):
        proc.encode_masks([np.zeros((2, 3, 4))])
    with pytest.raises(ValueError, match=r"masks\[0\]: contains NaN"):
        proc.encode_masks([np.full((3, 3), np.nan)])


def test_post_processing_returns_original_sizes_and_inverts_the_geometry():
    proc = tiny_processor()
    sizes = [(333, 517), (17, 17), (40, 300)]
    images = [Image.new("RGB", (w, h)) for h, w in sizes]
    masks = []
    for h, w in sizes:
        m = np.zeros((h, w), dtype=np.float32)
        m[: h // 2, : w // 2] = 1.0  # top-left quadrant
        masks.append(m)
    batch = proc(images=images, masks=masks)
    logits = (batch["mask_labels"] * 2 - 1) * 20  # targets as confident logits
    maps = proc.post_process_masks(logits, batch["original_sizes"], batch["reshaped_input_sizes"])
    for saliency, (h, w), m in zip(maps, sizes, masks):
        assert saliency.shape == (h, w)
        assert 0 <= saliency.min() and saliency.max() <= 1
        agreement = ((saliency > 0.5).numpy() == (m > 0.5)).mean()
        assert agreement > 0.95, agreement


def test_mismatched_row_counts_are_rejected():
    proc = tiny_processor()
    with pytest.raises(ValueError, match="one entry per row"):
        proc(images=[Image.new("RGB", (8, 8))] * 2, emotions=["awe"])
    with pytest.raises(ValueError, match="images: got an empty list"):
        proc(images=[], emotions=[])
