"""Builders of tiny ArtEmis / APOLO copies in the exact release formats, with real-world quirks.

Quirks covered: painting names with accents stored NFC in the CSV but NFD on disk, a missing
image, an undecodable image, CMYK / grayscale / RGBA images, an EXIF-rotated JPEG, masks of
another resolution than their image, an empty mask, artworks with repetition >= 41.
"""

from __future__ import annotations

import json
import os
import unicodedata

import numpy as np
import pandas as pd
from PIL import Image

from modeling_emosem.configuration_emosem import ARTEMIS_EMOTIONS, EMOTIONS

STYLES = ("Impressionism", "Baroque", "Cubism")
# Accented names: NFC in the CSV, written NFD on disk (what macOS copies of WikiArt do).
ACCENTED = ("pierre-auguste-renoir_le-café-à-paris", "édouard-manet_the-bar-ü")
SPECIAL = {
    "missing": "claude-monet_missing-painting",
    "corrupt": "claude-monet_corrupt-file",
    "cmyk": "paul-cezanne_cmyk-scan",
    "gray": "kathe-kollwitz_grayscale",
    "rgba": "unknown_rgba-with-alpha",
    "exif": "vincent-van-gogh_rotated",
}
SHORT = "so sad"  # 2 tokens: dropped by the deep-net filter
LONG = " ".join(["the colours and the lines keep pulling me back into the scene"] * 4)


def _utterance(rng, i: int) -> str:
    words = ["the", "colors", "make", "me", "feel", "calm", "and", "the", "woman", "looks", "happy", "today"]
    return " ".join(words[: 5 + (i % 6)]) + f" {rng.integers(1000)}"


def _save_image(path: str, kind: str, rng) -> None:
    rgb = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    if kind == "cmyk":
        rgb.convert("CMYK").save(path, format="JPEG")
    elif kind == "gray":
        rgb.convert("L").save(path, format="JPEG")
    elif kind == "rgba":
        rgba = rgb.convert("RGBA")
        rgba.putalpha(128)
        rgba.save(path, format="PNG")  # PNG bytes behind a .jpg name: PIL goes by content
    elif kind == "exif":
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed: 32x24 stored -> 24x32 shown
        rgb.save(path, format="JPEG", exif=exif)
    elif kind == "corrupt":
        with open(path, "wb") as f:
            f.write(b"\xff\xd8\xff not really a jpeg")
    else:
        rgb.save(path, format="JPEG")


def write_artemis_fixture(root: str, n_artworks: int = 40, seed: int = 0) -> dict:
    """Write ``root/artemis_dataset_release_v0.csv`` and ``root/wikiart/<style>/<painting>.jpg``.

    Returns a dict with the csv path, image root, the list of (style, painting) artworks, the
    missing/corrupt paintings, and the artworks with repetition >= 41.
    """
    rng = np.random.default_rng(seed)
    names = list(ACCENTED) + list(SPECIAL.values())
    names += [f"artist-{i:02d}_painting-{i:02d}" for i in range(n_artworks - len(names))]
    artworks = [(STYLES[i % len(STYLES)], n) for i, n in enumerate(names)]
    high_rep = {artworks[-1], artworks[-2]}  # two artworks with 41 / 45 annotations
    rows = []
    for k, (style, painting) in enumerate(artworks):
        reps = {artworks[-1]: 41, artworks[-2]: 45}.get((style, painting), 5)
        for j in range(reps):
            utt = _utterance(rng, k + j)
            if k == 3 and j == 0:
                utt = SHORT
            if k == 4 and j == 0:
                utt = LONG
            rows.append({"art_style": style, "painting": painting, "emotion": ARTEMIS_EMOTIONS[(k + j) % 9], "utterance": utt, "repetition": reps})
    csv_path = os.path.join(root, "artemis_dataset_release_v0.csv")
    os.makedirs(root, exist_ok=True)
    pd.DataFrame(rows).to_csv(csv_path, index=False)
    image_root = os.path.join(root, "wikiart")
    for style, painting in artworks:
        kind = next((k for k, v in SPECIAL.items() if v == painting), "rgb")
        if kind == "missing":
            continue
        os.makedirs(os.path.join(image_root, style), exist_ok=True)
        on_disk = unicodedata.normalize("NFD", painting)  # NFD on disk, NFC in the CSV
        _save_image(os.path.join(image_root, style, on_disk + ".jpg"), kind, rng)
    return {
        "csv": csv_path,
        "image_root": image_root,
        "artworks": artworks,
        "rows": rows,
        "missing": SPECIAL["missing"],
        "corrupt": SPECIAL["corrupt"],
        "high_repetition": high_rep,
    }


def write_apolo_fixture(root: str, artemis: dict, seed: int = 0, with_split_json: bool = True) -> dict:
    """Write an APOLO copy over the artworks of an ArtEmis fixture.

    One record per (painting, emotion) for a handful of paintings; images flat under
    ``root/images``; masks at half the image resolution for one record, empty for another.
    """
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame(artemis["rows"])
    image_root = os.path.join(root, "images")
    mask_dir = os.path.join(root, "apolo", "apolo_pixel_map")
    os.makedirs(image_root, exist_ok=True)
    os.makedirs(mask_dir, exist_ok=True)
    chosen = [ACCENTED[0], SPECIAL["exif"], SPECIAL["cmyk"], "artist-10_painting-10", "artist-11_painting-11", "artist-12_painting-12"]
    records = []
    for i, painting in enumerate(chosen):
        sub = rows[(rows.painting == painting) & (rows.emotion.isin(EMOTIONS))]
        kind = next((k for k, v in SPECIAL.items() if v == painting), "rgb")
        _save_image(os.path.join(image_root, unicodedata.normalize("NFD", painting) + ".jpg"), kind, rng)
        for emotion, group in sub.groupby("emotion", sort=True):
            # Displayed size is 32x24 (w x h), or 24x32 for the EXIF-rotated one.
            h, w = (32, 24) if kind == "exif" else (24, 32)
            mask = np.zeros((h, w), np.uint8)
            mask[h // 4 : h // 2, w // 4 : w // 2] = 1
            if painting == "artist-11_painting-11":
                mask[:] = 0  # an empty mask: kept and flagged
            if painting == "artist-10_painting-10":
                mask = mask[::2, ::2].copy()  # stored at half resolution
            np.save(os.path.join(mask_dir, f"{painting}_{emotion}.npy"), mask, allow_pickle=False)
            records.append({"painting": painting, "artemis_id": group.index.tolist(), "split": "val" if i % 3 == 0 else "test",
                            "emotion": emotion, "utterances": group.utterance.tolist()})
    with open(os.path.join(root, "apolo", "apolo.json"), "w", encoding="utf-8") as f:
        json.dump([{k: r[k] for k in ("painting", "artemis_id", "split")} for r in records], f)
    if with_split_json:
        for s in ("val", "test"):
            with open(os.path.join(root, "apolo", f"apolo_{s}.json"), "w", encoding="utf-8") as f:
                json.dump([r for r in records if r["split"] == s], f, ensure_ascii=False)
    return {"root": os.path.join(root, "apolo"), "image_root": image_root, "records": records}
