"""make_collate_fn maps dataset rows to the processor call (checked with a recording fake processor)."""

import numpy as np
import pytest
from PIL import Image

from datasets_emosem import make_synthetic_artworks
from datasets_emosem.collate import make_collate_fn


class RecordingProcessor:
    def __init__(self):
        self.calls = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return {"n": len(kwargs["images"])}


def test_synthetic_rows():
    dsd = make_synthetic_artworks(8, seed=0, image_size=48)
    rows = [dsd["train"][i] for i in range(3)]
    proc = RecordingProcessor()
    out = make_collate_fn(proc)(rows)
    assert out == {"n": 3}
    call = proc.calls[0]
    assert call["return_tensors"] == "pt"
    assert call["emotions"] == ["amusement", "awe", "contentment"]
    assert call["explanations"] == [r["explanation"] for r in rows]
    assert all(img.mode == "RGB" and img.size == (48, 48) for img in call["images"])
    for m, r in zip(call["masks"], rows):
        assert m.dtype == bool and m.shape == (48, 48)
        assert np.array_equal(m, np.asarray(r["mask"]))


def test_explanation_column_choice_and_flags():
    img = Image.new("RGB", (6, 4))
    proc = RecordingProcessor()
    rows = [
        {"image": img, "emotion": 8, "utterance": "from utterance"},  # ArtEmis row, "something else"
        {"image": img, "emotion": "fear", "utterances": ["first", "second"]},  # APOLO row
    ]
    make_collate_fn(proc)(rows)
    call = proc.calls[-1]
    assert call["emotions"] == ["something else", "fear"]
    assert call["explanations"] == ["from utterance", "first"]
    assert call["masks"] is None  # no row has a mask
    make_collate_fn(proc, with_explanations=False, with_masks=False)(
        [{"image": img, "emotion": 2, "mask": np.ones((4, 6), np.uint8), "explanation": "x"}]
    )
    call = proc.calls[-1]
    assert call["explanations"] is None and call["masks"] is None and call["emotions"] == ["contentment"]


def test_masks_from_lists_and_errors():
    img = Image.new("L", (3, 2))  # grayscale input comes out RGB
    proc = RecordingProcessor()
    make_collate_fn(proc)([{"image": img, "emotion": 0, "explanation": "e", "mask": [[0, 1, 0], [1, 1, 0]]}])
    call = proc.calls[-1]
    assert call["images"][0].mode == "RGB"
    assert call["masks"][0].tolist() == [[False, True, False], [True, True, False]]
    collate = make_collate_fn(proc)
    with pytest.raises(ValueError, match="mixes rows"):
        collate([{"image": img, "emotion": 0, "explanation": "e", "mask": [[0, 1, 0], [1, 1, 0]]}, {"image": img, "emotion": 0, "explanation": "e"}])
    with pytest.raises(ValueError, match="does not match image size"):
        collate([{"image": img, "emotion": 0, "explanation": "e", "mask": np.zeros((3, 2), bool)}])
    with pytest.raises(KeyError, match="no 'explanation'"):
        collate([{"image": img, "emotion": 0}])
    with pytest.raises(ValueError, match="out of range"):
        collate([{"image": img, "emotion": 9, "explanation": "e"}])


def test_real_processor_on_synthetic_and_apolo_style_rows():
    """Integration with the real tiny EmoSEMProcessor."""
    from modeling_emosem.processing_emosem import EmoSEMProcessor

    proc = EmoSEMProcessor.from_preset("tiny")
    dsd = make_synthetic_artworks(8, seed=0, image_size=64)
    rows = [dsd["train"][i] for i in range(4)]
    batch = make_collate_fn(proc)(rows)
    assert batch["pixel_values"].shape[0] == 4
    assert batch["mask_labels"].shape[0] == 4 and batch["labels"].shape[0] == 4
    assert batch["emotion_ids"].tolist() == [0, 1, 2, 3]
    batch = make_collate_fn(proc, with_explanations=False, with_masks=False)(rows)
    assert "labels" not in batch and "mask_labels" not in batch


def test_open_rgb_matches_dataset_decoding(tmp_path):
    """Collation of raw paths gives the same pixels as the loaders' Image(mode="RGB") column."""
    from datasets import Dataset, Features
    from datasets import Image as ImageFeature

    from datasets_emosem.images import open_rgb

    rgba = Image.fromarray(np.random.default_rng(0).integers(0, 255, (5, 7, 4), dtype=np.uint8), "RGBA")
    rgba.save(tmp_path / "a.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("CMYK", (7, 5), (10, 20, 30, 40)).save(tmp_path / "c.jpg", exif=exif)
    paths = [str(tmp_path / "a.png"), str(tmp_path / "c.jpg")]
    ds = Dataset.from_dict({"image": paths}, features=Features({"image": ImageFeature(mode="RGB")}))
    for p, row in zip(paths, ds):
        direct = open_rgb(p)
        assert direct.mode == "RGB" and direct.size == row["image"].size
        assert np.array_equal(np.asarray(direct), np.asarray(row["image"]))
        assert open_rgb(row["image"]).size == row["image"].size  # no second rotation
    assert ds[1]["image"].size == (5, 7)
