"""Procedural demo "artworks": each emotion is tied to one kind of visual element.

Every image is a textured background (colour gradient + stripes + noise) with the *target* element
of the row's emotion and 1-3 *distractor* elements of other kinds. The mask is exactly the target
element's pixels, and the explanations are first-person sentences that always name the element
with one fixed word (:data:`SYNTHETIC_ELEMENTS`). A tiny model at ~128x128 can therefore learn
emotion-conditioned masks (find the element of that emotion, ignore the others) and explanations.

Determinism: artwork ``i`` is drawn from ``numpy.random.default_rng([seed, i])``, so the same seed
gives byte-identical images whatever ``n`` is, and rows never depend on each other.

:func:`export_release` writes the set in the ArtEmis CSV + WikiArt layout and in the APOLO layout,
so the real loaders are tested on it.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Sequence, Value
from PIL import Image as PILImage
from PIL import ImageDraw

from modeling_emosem.configuration_emosem import EMOTIONS

from .apolo import MASK_FEATURE, mask_to_image

__all__ = ["SYNTHETIC_ELEMENTS", "SYNTHETIC_COLORS", "SYNTHETIC_FEATURES", "make_synthetic_artworks", "draw_artwork", "export_release"]

# emotion -> the one word every explanation uses for its element.
SYNTHETIC_ELEMENTS: dict[str, str] = {
    "amusement": "star",
    "awe": "moon",
    "contentment": "tree",
    "excitement": "kite",
    "anger": "bolt",
    "disgust": "slime",
    "fear": "eye",
    "sadness": "teardrop",
}
# emotion -> base RGB colour of its element (well separated hues; backgrounds are kept muted).
SYNTHETIC_COLORS: dict[str, tuple[int, int, int]] = {
    "amusement": (250, 215, 20),  # yellow
    "awe": (240, 240, 255),  # pale white
    "contentment": (30, 165, 60),  # green
    "excitement": (255, 125, 0),  # orange
    "anger": (225, 15, 25),  # red
    "disgust": (125, 140, 10),  # olive
    "fear": (115, 30, 170),  # purple
    "sadness": (25, 80, 230),  # blue
}
_STYLES = ("Abstract_Expressionism", "Color_Field_Painting", "Minimalism", "Pop_Art")

SYNTHETIC_FEATURES = Features(
    {
        "image": Image(mode="RGB"),
        "mask": MASK_FEATURE,  # 1-bit image; np.asarray(row["mask"]) -> bool (H, W), as in load_apolo
        "emotion": ClassLabel(names=list(EMOTIONS)),
        "explanation": Value("string"),
        "utterances": Sequence(Value("string")),
        "painting": Value("string"),
        "art_style": Value("string"),
    }
)

# --------------------------------------------------------------------------- shapes
# Each shape draws filled white (255) on an "L" canvas, without anti-aliasing, so the same canvas is
# both the paint stencil and the exact mask of the element.


def _rot(points, cx, cy, angle):
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]


def _star(d, cx, cy, r, rng):
    pts = [((r if k % 2 == 0 else 0.45 * r) * math.sin(k * math.pi / 5), -(r if k % 2 == 0 else 0.45 * r) * math.cos(k * math.pi / 5)) for k in range(10)]
    d.polygon(_rot(pts, cx, cy, rng.uniform(-0.3, 0.3)), fill=255)


def _moon(d, cx, cy, r, rng):
    # Crescent: a disc minus an offset disc (drawn in 0 on the same stencil).
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    a = rng.uniform(0, 2 * math.pi)
    ox, oy = cx + 0.45 * r * math.cos(a), cy + 0.45 * r * math.sin(a)
    d.ellipse([ox - 0.85 * r, oy - 0.85 * r, ox + 0.85 * r, oy + 0.85 * r], fill=0)


def _tree(d, cx, cy, r, rng):
    d.polygon([(cx, cy - r), (cx - 0.75 * r, cy + 0.5 * r), (cx + 0.75 * r, cy + 0.5 * r)], fill=255)
    d.rectangle([cx - 0.18 * r, cy + 0.5 * r, cx + 0.18 * r, cy + r], fill=255)


def _kite(d, cx, cy, r, rng):
    pts = [(0, -r), (0.6 * r, -0.15 * r), (0, r), (-0.6 * r, -0.15 * r)]
    d.polygon(_rot(pts, cx, cy, rng.uniform(-0.5, 0.5)), fill=255)


def _bolt(d, cx, cy, r, rng):
    pts = [(0.15, -1), (-0.55, 0.1), (-0.05, 0.1), (-0.3, 1), (0.55, -0.2), (0.05, -0.2), (0.35, -1)]
    d.polygon(_rot([(x * r, y * r) for x, y in pts], cx, cy, rng.uniform(-0.3, 0.3)), fill=255)


def _slime(d, cx, cy, r, rng):
    k = 14
    radii = r * rng.uniform(0.55, 1.0, size=k)
    pts = [(cx + radii[i] * math.cos(2 * math.pi * i / k), cy + radii[i] * math.sin(2 * math.pi * i / k)) for i in range(k)]
    d.polygon(pts, fill=255)


def _eye(d, cx, cy, r, rng):
    d.ellipse([cx - r, cy - 0.6 * r, cx + r, cy + 0.6 * r], fill=255)
    d.ellipse([cx - 0.8 * r, cy - 0.42 * r, cx + 0.8 * r, cy + 0.42 * r], fill=0)
    d.ellipse([cx - 0.3 * r, cy - 0.3 * r, cx + 0.3 * r, cy + 0.3 * r], fill=255)


def _teardrop(d, cx, cy, r, rng):
    d.ellipse([cx - 0.6 * r, cy - 0.2 * r, cx + 0.6 * r, cy + r], fill=255)
    d.polygon([(cx, cy - r), (cx - 0.57 * r, cy + 0.25 * r), (cx + 0.57 * r, cy + 0.25 * r)], fill=255)


_SHAPES = {
    "amusement": _star, "awe": _moon, "contentment": _tree, "excitement": _kite,
    "anger": _bolt, "disgust": _slime, "fear": _eye, "sadness": _teardrop,
}

# --------------------------------------------------------------------------- explanations
_FEELINGS = {
    "amusement": ["makes me smile", "makes me laugh", "looks playful and funny to me", "amuses me"],
    "awe": ["fills me with awe", "makes me feel small before something grand", "leaves me in wonder", "feels majestic to me"],
    "contentment": ["makes me feel calm and content", "feels peaceful to me", "gives me a quiet happy feeling", "makes me feel at ease"],
    "excitement": ["makes me feel excited", "gives me a rush of energy", "makes my heart race with joy", "feels thrilling to me"],
    "anger": ["makes me angry", "makes me furious", "irritates me", "fills me with rage"],
    "disgust": ["disgusts me", "makes me feel sick", "looks gross to me", "makes me want to look away in disgust"],
    "fear": ["scares me", "makes me feel afraid", "frightens me", "gives me a creepy feeling"],
    "sadness": ["makes me feel sad", "makes me feel lonely and blue", "brings me to tears", "feels sorrowful to me"],
}
_ADJECTIVES = {
    "amusement": ["bright", "little", "shiny", "yellow"],
    "awe": ["pale", "glowing", "silent", "white"],
    "contentment": ["green", "small", "gentle", "lush"],
    "excitement": ["orange", "soaring", "bold", "lively"],
    "anger": ["red", "sharp", "jagged", "harsh"],
    "disgust": ["oozing", "murky", "shapeless", "sticky"],
    "fear": ["staring", "purple", "watching", "strange"],
    "sadness": ["blue", "falling", "lonely", "heavy"],
}
_TEMPLATES = [
    "the {adj} {word} {feeling}",
    "I think the {adj} {word} {feeling}",
    "when I look at the {word} it {feeling}",
    "seeing the {adj} {word} in this painting {feeling}",
    "the {word} {feeling} because it stands out so much",
    "my eyes go to the {adj} {word} and it {feeling}",
    "the way the {word} is drawn {feeling}",
]


def _explanations(emotion: str, k: int, rng: np.random.Generator) -> list[str]:
    """``k`` distinct first-person explanations naming the element of ``emotion``."""
    word = SYNTHETIC_ELEMENTS[emotion]
    # De-duplicate rendered sentences (templates without {adj} repeat across adjectives); a dict keeps
    # the construction order, so the choice below is deterministic per rng.
    sentences = list(dict.fromkeys(
        t.format(adj=a, word=word, feeling=f) for t in _TEMPLATES for f in _FEELINGS[emotion] for a in _ADJECTIVES[emotion]
    ))
    picks = rng.choice(len(sentences), size=min(k, len(sentences)), replace=False)
    return [sentences[i][0].upper() + sentences[i][1:] + "." for i in picks]


# --------------------------------------------------------------------------- drawing


def _background(size: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Muted textured background ``(size, size, 3)`` uint8 and its style index."""
    style = int(rng.integers(len(_STYLES)))
    # Muted colours: mid-grey plus a small tint, so that saturated elements stay visible.
    c0, c1 = (rng.uniform(70, 170, 3) for _ in range(2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * math.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    freq, phase = rng.uniform(3, 12), rng.uniform(0, 2 * math.pi)
    stripes = np.sin(2 * math.pi * freq * (np.cos(angle + 1.3) * xx + np.sin(angle + 1.3) * yy) + phase)
    img += rng.uniform(5, 20) * stripes[..., None]
    img += rng.normal(0, 8, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), style


def draw_artwork(emotion: str, rng: np.random.Generator, image_size: int = 128, n_distractors: tuple[int, int] = (1, 3)):
    """Draw one artwork for ``emotion``.

    Returns ``(image, mask, art_style)``: RGB PIL image ``image_size x image_size``, bool mask
    ``(image_size, image_size)`` of the target element's pixels, style name.
    """
    size = image_size
    canvas, style = _background(size, rng)
    others = [e for e in EMOTIONS if e != emotion]
    k = int(rng.integers(n_distractors[0], n_distractors[1] + 1))
    kinds = list(rng.choice(others, size=k, replace=False)) + [emotion]  # target drawn last, on top
    boxes: list[tuple[float, float, float]] = []
    mask = None
    for kind in kinds:
        r = rng.uniform(0.11, 0.2) * size
        # Rejection-sample a centre whose disc does not touch earlier elements, so the target is whole.
        for _ in range(50):
            cx, cy = rng.uniform(r + 1, size - r - 1, 2)
            if all(math.hypot(cx - x, cy - y) > r + rr + 2 for x, y, rr in boxes):
                break
        boxes.append((cx, cy, r))
        stencil = PILImage.new("L", (size, size), 0)
        _SHAPES[kind](ImageDraw.Draw(stencil), cx, cy, r, rng)
        sel = np.asarray(stencil) > 127
        colour = np.clip(np.array(SYNTHETIC_COLORS[kind]) + rng.integers(-10, 11, 3), 0, 255).astype(np.uint8)
        canvas[sel] = colour  # one flat colour per element: the mask matches the drawing exactly
        if kind == emotion:
            mask = sel
    return PILImage.fromarray(canvas), mask, _STYLES[style]


def make_synthetic_artworks(
    n: int = 800,
    *,
    seed: int = 0,
    image_size: int = 128,
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    n_distractors: tuple[int, int] = (1, 3),
    n_utterances: int = 5,
) -> DatasetDict:
    """Draw ``n`` artworks and split them into ``train``/``validation``/``test``.

    Emotions cycle through :data:`EMOTIONS` by index (balanced in every split). Columns per
    :data:`SYNTHETIC_FEATURES`; ``explanation`` is the first of ``utterances``.
    """
    if n < 3:
        raise ValueError(f"n must be at least 3 (one artwork per split), got {n}")
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32 pixels, got {image_size}")
    if len(split_fractions) != 3 or abs(sum(split_fractions) - 1) > 1e-6 or min(split_fractions) < 0:
        raise ValueError(f"split_fractions must be 3 non-negative numbers summing to 1, got {split_fractions}")
    n_train = int(round(split_fractions[0] * n))
    n_val = int(round(split_fractions[1] * n))
    bounds = {"train": (0, n_train), "validation": (n_train, n_train + n_val), "test": (n_train + n_val, n)}
    out = {}
    for split, (lo, hi) in bounds.items():
        rows = {k: [] for k in SYNTHETIC_FEATURES}
        for i in range(lo, hi):
            rng = np.random.default_rng([seed, i])
            emotion = EMOTIONS[i % len(EMOTIONS)]
            image, mask, style = draw_artwork(emotion, rng, image_size, n_distractors)
            utterances = _explanations(emotion, n_utterances, rng)
            rows["image"].append(image)
            rows["mask"].append(mask_to_image(mask))
            rows["emotion"].append(EMOTIONS.index(emotion))
            rows["explanation"].append(utterances[0])
            rows["utterances"].append(utterances)
            rows["painting"].append(f"synthetic_s{seed}_{i:05d}")
            rows["art_style"].append(style)
        out[split] = Dataset.from_dict(rows, features=SYNTHETIC_FEATURES)
    return DatasetDict(out)


# --------------------------------------------------------------------------- export


def export_release(
    dataset: DatasetDict,
    out_dir: str | os.PathLike,
    *,
    image_extension: str = ".jpg",
    apolo_splits: dict[str, str] | None = None,
    write_split_json: bool = True,
) -> dict[str, str]:
    """Write ``dataset`` in the ArtEmis and APOLO release layouts under ``out_dir``.

    Layout::

        artemis_dataset_release_v0.csv      one row per utterance (art_style, painting, emotion, utterance, repetition)
        wikiart/<art_style>/<painting>.jpg
        apolo/apolo.json                    records (painting, artemis_id, split)
        apolo/apolo_<val|test>.json         + emotion, utterances (only if write_split_json)
        apolo/apolo_pixel_map/<painting>_<emotion>.npy   uint8 0/1 at image size
        apolo_images/<painting>.jpg         flat, as APOLO expects

    ``apolo_splits`` maps dataset splits to APOLO splits (default validation->val, test->test).
    Returns the paths: ``artemis_csv``, ``wikiart``, ``apolo_root``, ``apolo_images``.
    """
    import pandas as pd

    apolo_splits = apolo_splits or {"validation": "val", "test": "test"}
    paths = {
        "artemis_csv": os.path.join(out_dir, "artemis_dataset_release_v0.csv"),
        "wikiart": os.path.join(out_dir, "wikiart"),
        "apolo_root": os.path.join(out_dir, "apolo"),
        "apolo_images": os.path.join(out_dir, "apolo_images"),
    }
    os.makedirs(os.path.join(paths["apolo_root"], "apolo_pixel_map"), exist_ok=True)
    os.makedirs(paths["apolo_images"], exist_ok=True)
    csv_rows, records = [], []
    fmt = "JPEG" if image_extension.lower() in (".jpg", ".jpeg") else None
    save_kwargs = {"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}
    for split, ds in dataset.items():
        names = ds.features["emotion"].names
        for row in ds:
            emotion, painting, style = names[row["emotion"]], row["painting"], row["art_style"]
            os.makedirs(os.path.join(paths["wikiart"], style), exist_ok=True)
            row["image"].save(os.path.join(paths["wikiart"], style, painting + image_extension), format=fmt, **save_kwargs)
            ids = list(range(len(csv_rows), len(csv_rows) + len(row["utterances"])))
            for u in row["utterances"]:
                csv_rows.append({"art_style": style, "painting": painting, "emotion": emotion, "utterance": u, "repetition": len(row["utterances"])})
            if split in apolo_splits:
                row["image"].save(os.path.join(paths["apolo_images"], painting + image_extension), format=fmt, **save_kwargs)
                mask = np.asarray(row["mask"], dtype=bool).astype(np.uint8)
                np.save(os.path.join(paths["apolo_root"], "apolo_pixel_map", f"{painting}_{emotion}.npy"), mask, allow_pickle=False)
                records.append({"painting": painting, "artemis_id": ids, "split": apolo_splits[split], "emotion": emotion, "utterances": list(row["utterances"])})
    pd.DataFrame(csv_rows, columns=["art_style", "painting", "emotion", "utterance", "repetition"]).to_csv(paths["artemis_csv"], index=False)
    with open(os.path.join(paths["apolo_root"], "apolo.json"), "w", encoding="utf-8") as f:
        json.dump([{k: r[k] for k in ("painting", "artemis_id", "split")} for r in records], f)
    if write_split_json:
        for s in set(apolo_splits.values()):
            with open(os.path.join(paths["apolo_root"], f"apolo_{s}.json"), "w", encoding="utf-8") as f:
                json.dump([r for r in records if r["split"] == s], f, ensure_ascii=False)
    return paths
