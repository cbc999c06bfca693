"""APOLO loader on a fixture in the release format."""

import json
import logging
import os

import numpy as np
import pytest

from datasets_emosem import MissingFilesError, UnsafeNameError, load_apolo, read_heat_map, read_mask, resize_mask
from tests.datasets_fixtures import ACCENTED, SPECIAL, write_apolo_fixture, write_artemis_fixture
from modeling_emosem.configuration_emosem import EMOTIONS


@pytest.fixture
def copies(tmp_path):
    artemis = write_artemis_fixture(str(tmp_path / "artemis"))
    apolo = write_apolo_fixture(str(tmp_path), artemis)
    return artemis, apolo


def _expected(apolo, split):
    return {(r["painting"], r["emotion"]): r for r in apolo["records"] if r["split"] == split}


@pytest.mark.parametrize("split", ["val", "test"])
def test_rows_masks_and_utterances(copies, split):
    _, apolo = copies
    ds = load_apolo(apolo["root"], apolo["image_root"], split=split)
    expected = _expected(apolo, split)
    assert len(ds) == len(expected) > 0
    assert ds.features["emotion"].names == list(EMOTIONS)
    for row in ds:
        rec = expected[(row["painting"], EMOTIONS[row["emotion"]])]
        assert row["utterances"] == rec["utterances"]
        assert row["artemis_id"] == rec["artemis_id"]
        mask = np.asarray(row["mask"])
        assert mask.dtype == bool and mask.shape == row["image"].size[::-1]
        if row["painting"] == "artist-11_painting-11":
            assert row["mask_empty"] and not mask.any()
        else:
            # The stimulus is the top-left-centre quarter block drawn by the fixture.
            h, w = mask.shape
            block = np.zeros_like(mask)
            block[h // 4 : h // 2, w // 4 : w // 2] = True
            assert not row["mask_empty"]
            assert np.array_equal(mask, block), row["painting"]


def test_accented_exif_and_half_resolution_masks(copies):
    _, apolo = copies
    ds = load_apolo(apolo["root"], apolo["image_root"], split="validation")  # alias of "val"
    by_name = {}
    for row in ds:
        by_name.setdefault(row["painting"], row)
    assert ACCENTED[0] in by_name  # NFC in the JSON, NFD on disk
    rows = list(ds) + list(load_apolo(apolo["root"], apolo["image_root"], split="test"))
    sizes = {r["painting"]: (r["image"].size, np.asarray(r["mask"]).shape) for r in rows}
    assert sizes[SPECIAL["exif"]] == ((24, 32), (32, 24))  # displayed 24 wide x 32 high
    # Stored at 12x16, resized (nearest) to the 24x32 image.
    assert sizes["artist-10_painting-10"] == ((32, 24), (24, 32))
    assert sizes[SPECIAL["cmyk"]][0] == (32, 24)


def test_utterances_from_artemis_csv_when_no_split_json(tmp_path):
    artemis = write_artemis_fixture(str(tmp_path / "artemis"))
    apolo = write_apolo_fixture(str(tmp_path), artemis, with_split_json=False)
    with pytest.raises(ValueError, match="artemis_csv"):
        load_apolo(apolo["root"], apolo["image_root"], split="test")
    ds = load_apolo(apolo["root"], apolo["image_root"], split="test", artemis_csv=artemis["csv"])
    expected = _expected(apolo, "test")
    assert len(ds) == len(expected)
    for row in ds:
        rec = expected[(row["painting"], EMOTIONS[row["emotion"]])]
        assert row["utterances"] == rec["utterances"]
        assert row["art_style"] in ("Impressionism", "Baroque", "Cubism")


def test_missing_files_one_error_or_skip(copies, caplog):
    _, apolo = copies
    rec = next(r for r in apolo["records"] if r["split"] == "test" and r["painting"] == "artist-12_painting-12")
    os.remove(os.path.join(apolo["image_root"], rec["painting"] + ".jpg"))
    n_bad = sum(r["painting"] == rec["painting"] for r in apolo["records"] if r["split"] == "test")
    with pytest.raises(MissingFilesError, match=r"^1 of \d+ APOLO images/masks") as err:
        load_apolo(apolo["root"], apolo["image_root"], split="test")
    assert rec["painting"] in str(err.value)
    with caplog.at_level(logging.WARNING):
        ds = load_apolo(apolo["root"], apolo["image_root"], split="test", on_missing="skip")
    assert f"skipped {n_bad} of" in caplog.text
    assert len(ds) == len(_expected(apolo, "test")) - n_bad
    assert rec["painting"] not in ds["painting"]


def test_pickled_mask_is_refused(copies):
    _, apolo = copies
    rec = next(r for r in apolo["records"] if r["split"] == "test")
    path = os.path.join(apolo["root"], "apolo_pixel_map", f"{rec['painting']}_{rec['emotion']}.npy")
    np.save(path, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(MissingFilesError, match="pickle"):
        load_apolo(apolo["root"], apolo["image_root"], split="test")
    with pytest.raises(ValueError):
        read_mask(path)


def test_unsafe_painting_in_json(copies):
    _, apolo = copies
    path = os.path.join(apolo["root"], "apolo_test.json")
    records = json.load(open(path))
    records[0]["painting"] = "../../etc/passwd"
    json.dump(records, open(path, "w"))
    with pytest.raises(UnsafeNameError, match="APOLO painting"):
        load_apolo(apolo["root"], apolo["image_root"], split="test")


def test_mask_and_heat_map_helpers(tmp_path):
    m = np.zeros((2, 3), bool)
    m[0, 1] = True
    big = resize_mask(m, (6, 4))
    assert big.shape == (4, 6) and big[:2, 2:4].all() and big.sum() == 4
    heat = np.arange(49, dtype=np.float64).reshape(7, 7)
    np.save(tmp_path / "h.npy", heat)
    out = read_heat_map(tmp_path / "h.npy", size=(28, 14))
    assert out.dtype == np.float32 and out.shape == (14, 28)
    assert out.min() == 0.0 and out.max() == 1.0
    assert out[0, 0] < out[-1, -1]
    np.save(tmp_path / "m3.npy", np.ones((1, 4, 5), np.uint8))
    assert read_mask(tmp_path / "m3.npy").shape == (4, 5)
    np.save(tmp_path / "bad.npy", np.ones((2, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        read_mask(tmp_path / "bad.npy")


def test_bad_split_and_missing_root(tmp_path):
    with pytest.raises(ValueError, match="split must be"):
        load_apolo(tmp_path, tmp_path, split="train")
    with pytest.raises(FileNotFoundError, match="apolo.json"):
        load_apolo(tmp_path, tmp_path, split="test")
