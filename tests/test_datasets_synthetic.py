"""The synthetic demo set: determinism, masks that match the drawings, explanations, export round-trip."""

import re

import numpy as np
import pytest

from datasets_emosem import SYNTHETIC_ELEMENTS, export_release, load_apolo, load_artemis, make_synthetic_artworks
from datasets_emosem.synthetic import SYNTHETIC_COLORS
from modeling_emosem.configuration_emosem import EMOTIONS


@pytest.fixture(scope="module")
def synth():
    return make_synthetic_artworks(48, seed=3, image_size=96)


def test_shapes_splits_and_features(synth):
    assert {k: len(v) for k, v in synth.items()} == {"train": 38, "validation": 5, "test": 5}
    ds = synth["train"]
    assert ds.features["emotion"].names == list(EMOTIONS)
    assert ds.column_names == ["image", "mask", "emotion", "explanation", "utterances", "painting", "art_style"]
    row = ds[0]
    assert row["image"].mode == "RGB" and row["image"].size == (96, 96)
    mask = np.asarray(row["mask"])
    assert mask.dtype == bool and mask.shape == (96, 96)
    # Emotions are balanced: train rows 0..37 cycle through the 8 emotions.
    assert ds["emotion"][:16] == list(range(8)) * 2
    assert set(SYNTHETIC_ELEMENTS) == set(EMOTIONS) and len(set(SYNTHETIC_ELEMENTS.values())) == 8


def test_deterministic_per_seed():
    a = make_synthetic_artworks(10, seed=7, image_size=64)
    b = make_synthetic_artworks(10, seed=7, image_size=64)
    c = make_synthetic_artworks(10, seed=8, image_size=64)
    for split in a:
        for ra, rb in zip(a[split], b[split]):
            assert np.array_equal(np.asarray(ra["image"]), np.asarray(rb["image"]))
            assert np.array_equal(np.asarray(ra["mask"]), np.asarray(rb["mask"]))
            assert ra["utterances"] == rb["utterances"]
    assert not np.array_equal(np.asarray(a["train"][0]["image"]), np.asarray(c["train"][0]["image"]))
    # Artwork i does not depend on n: a bigger set starts with the same drawings.
    bigger = make_synthetic_artworks(20, seed=7, image_size=64)
    assert np.array_equal(np.asarray(bigger["train"][3]["image"]), np.asarray(a["train"][3]["image"]))


def test_masks_match_drawings(synth):
    for split in synth.values():
        for row in split:
            emotion = EMOTIONS[row["emotion"]]
            img = np.asarray(row["image"]).astype(int)
            mask = np.asarray(row["mask"])
            assert 30 < mask.sum() < 0.3 * mask.size  # a visible, not overwhelming element
            inside = img[mask]
            # One flat colour, within the +-10 jitter of the emotion's base colour.
            assert (inside == inside[0]).all()
            assert np.abs(inside[0] - np.array(SYNTHETIC_COLORS[emotion])).max() <= 10
            # Outside the mask that exact colour (almost) never occurs: the mask is the whole element.
            outside = (img[~mask] == inside[0]).all(axis=1).mean()
            assert outside < 0.002


def test_distractors_present(synth):
    # Each image has 1-3 other elements: pixels of other element colours exist outside the mask.
    for row in synth["train"].select(range(16)):
        img = np.asarray(row["image"]).astype(int)
        mask = np.asarray(row["mask"])
        others = [e for e in EMOTIONS if e != EMOTIONS[row["emotion"]]]
        found = 0
        for e in others:
            close = (np.abs(img - np.array(SYNTHETIC_COLORS[e])) <= 10).all(axis=-1) & ~mask
            found += close.sum() > 20
        assert 1 <= found <= 3


def test_explanations_name_the_element(synth):
    seen = set()
    for split in synth.values():
        for row in split:
            word = SYNTHETIC_ELEMENTS[EMOTIONS[row["emotion"]]]
            assert row["explanation"] == row["utterances"][0]
            assert len(row["utterances"]) == 5 and len(set(row["utterances"])) == 5
            for u in row["utterances"]:
                assert f" {word} " in f" {u.lower().rstrip('.')} "
                assert {"me", "my", "i"} & set(re.findall(r"[a-z]+", u.lower()))  # first person
                for other in set(SYNTHETIC_ELEMENTS.values()) - {word}:
                    assert f" {other} " not in f" {u.lower().rstrip('.')} "
                seen.add(u)
    assert len(seen) > 150  # varied, not one sentence per emotion


def test_export_round_trips_through_real_loaders(synth, tmp_path):
    paths = export_release(synth, tmp_path, image_extension=".png")
    artemis = load_artemis(paths["artemis_csv"], paths["wikiart"], image_extension=".png")
    rows = [r for d in artemis.values() for r in d]
    assert len(rows) == 5 * 48
    by_painting = {}
    for split in synth.values():
        for r in split:
            by_painting[r["painting"]] = r
    for r in rows:
        src = by_painting[r["painting"]]
        assert r["emotion"] == src["emotion"]  # ArtEmis ids 0..7 equal EmoSEM ids
        assert r["utterance"] in src["utterances"] and r["art_style"] == src["art_style"]
        assert r["repetition"] == 5
    # PNG export is lossless: the image comes back pixel-identical.
    r = rows[0]
    assert np.array_equal(np.asarray(r["image"]), np.asarray(by_painting[r["painting"]]["image"]))

    for split, apolo_split in (("validation", "val"), ("test", "test")):
        ds = load_apolo(paths["apolo_root"], paths["apolo_images"], split=apolo_split, image_extension=".png")
        assert sorted(ds["painting"]) == sorted(synth[split]["painting"])
        for row in ds:
            src = by_painting[row["painting"]]
            assert row["emotion"] == src["emotion"] and row["utterances"] == src["utterances"]
            assert np.array_equal(np.asarray(row["mask"]), np.asarray(src["mask"]))
            assert not row["mask_empty"]
    # Without the split JSONs, emotions and utterances come through artemis_id into the CSV.
    for f in ("apolo_val.json", "apolo_test.json"):
        (tmp_path / "apolo" / f).unlink()
    ds = load_apolo(paths["apolo_root"], paths["apolo_images"], split="test", artemis_csv=paths["artemis_csv"], image_extension=".png")
    assert [by_painting[p]["utterances"] for p in ds["painting"]] == ds["utterances"]


def test_export_jpeg_default_layout(tmp_path):
    small = make_synthetic_artworks(8, seed=0, image_size=64)
    paths = export_release(small, tmp_path)
    row = small["train"][0]
    jpg = tmp_path / "wikiart" / row["art_style"] / f"{row['painting']}.jpg"
    assert jpg.is_file()
    assert (tmp_path / "apolo" / "apolo_pixel_map" / f"{small['test'][0]['painting']}_{EMOTIONS[small['test'][0]['emotion']]}.npy").is_file()
    dsd = load_artemis(paths["artemis_csv"], paths["wikiart"])
    r = next(x for d in dsd.values() for x in d if x["painting"] == row["painting"])
    diff = np.abs(np.asarray(r["image"]).astype(int) - np.asarray(row["image"]).astype(int))
    assert diff.mean() < 6  # JPEG quality 95


def test_bad_arguments():
    with pytest.raises(ValueError, match="n must be"):
        make_synthetic_artworks(2)
    with pytest.raises(ValueError, match="split_fractions"):
        make_synthetic_artworks(10, split_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="image_size"):
        make_synthetic_artworks(10, image_size=8)
