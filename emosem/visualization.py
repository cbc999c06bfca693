"""Pictures of what EmoSEM says about an artwork: saliency heat map + mask outline + caption, and grids.

    from emosem.visualization import overlay, grid, save_overlays
    results = pipe("painting.jpg", emotions=["awe", "fear"])
    overlay("painting.jpg", results[0]).save("awe.png")      # one emotion
    grid("painting.jpg", results).save("all.png")             # several, side by side
    save_overlays("painting.jpg", results, "out/", stem="painting")

An overlay has the artwork's aspect ratio: it is the artwork, scaled so that its short side is at least
`min_side` pixels (small images stay legible) and its long side at most `max_side`, with the saliency blended
in as a heat map, the predicted mask's outline drawn on top, and the emotion, score and explanation written
in a translucent band at the bottom (wrapped; cut with an ellipsis if the band would cover over half the
picture). Pure PIL + numpy: no matplotlib needed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from modeling_emosem.image_utils_emosem import load_image

# Anchors of matplotlib's "inferno" colour map (dark purple -> orange -> pale yellow), interpolated to 256.
_INFERNO_ANCHORS = np.array(
    [
        [0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
        [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164],
    ],
    dtype=np.float32,
)
OUTLINE_COLOR = (0, 255, 255)


def colormap(values: np.ndarray) -> np.ndarray:
    """`(H, W)` floats in [0, 1] -> `(H, W, 3)` uint8 colours of the "inferno" map."""
    values = np.nan_to_num(np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0))
    position = values * (len(_INFERNO_ANCHORS) - 1)
    low = np.floor(position).astype(np.int64).clip(0, len(_INFERNO_ANCHORS) - 2)
    frac = (position - low)[..., None]
    colours = _INFERNO_ANCHORS[low] * (1.0 - frac) + _INFERNO_ANCHORS[low + 1] * frac
    return colours.round().astype(np.uint8)


def render_size(width: int, height: int, min_side: int = 320, max_side: int = 2048) -> tuple[int, int]:
    """The overlay's size: the image's aspect ratio, short side >= min_side unless the long side would pass
    max_side, long side <= max_side."""
    scale = max(1.0, min_side / min(width, height))
    scale = min(scale, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(text: str, font: ImageFont.ImageFont, max_width: int) -> list[str]:
    """Greedy word wrap by rendered width (long words are split)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            while font.getlength(word) > max_width and len(word) > 1:
                # split a word that is wider than the line on its own
                cut = max(1, int(len(word) * max_width / font.getlength(word)))
                if line:
                    lines.append(line)
                    line = ""
                lines.append(word[:cut])
                word = word[cut:]
            candidate = f"{line} {word}".strip()
            if font.getlength(candidate) <= max_width or not line:
                line = candidate
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def caption_text(result: Mapping[str, Any]) -> str:
    """`"awe (score 0.62): the light makes me feel small"` (the explanation is left out when there is none)."""
    head = f"{result['emotion']} (score {float(result.get('score', 0.0)):.2f})"
    explanation = result.get("explanation")
    return f"{head}: {explanation}" if explanation else head


def draw_caption(picture: Image.Image, text: str, max_fraction: float = 0.5) -> Image.Image:
    """Write `text` in a translucent band at the bottom of `picture` (wrapped; at most `max_fraction` of the
    height, cut with an ellipsis beyond)."""
    width, height = picture.size
    font_size = max(10, min(width, height) // 16)
    font = _font(font_size)
    pad = max(2, font_size // 3)
    line_height = font_size + max(1, font_size // 4)
    lines = _wrap(text, font, max(1, width - 2 * pad))
    max_lines = max(1, int((height * max_fraction - 2 * pad) // line_height))
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and font.getlength(last + "…") > width - 2 * pad:
            last = last[:-1]
        lines[-1] = last + "…"
    band_height = min(height, len(lines) * line_height + 2 * pad)
    base = picture.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.rectangle((0, height - band_height, width, height), fill=(0, 0, 0, 170))
    for i, line in enumerate(lines):
        draw.text((pad, height - band_height + pad + i * line_height), line, font=font, fill=(255, 255, 255, 255))
    return Image.alpha_composite(base, layer).convert("RGB")


def _as_array(value: Any, name: str) -> np.ndarray:
    if isinstance(value, Image.Image):
        array = np.asarray(value.convert("L"), dtype=np.float32) / 255.0
    else:
        array = np.asarray(value, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D map, got shape {array.shape}")
    return array


def _resize_map(array: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    if array.shape[::-1] == size:
        return array
    return np.asarray(Image.fromarray(array.astype(np.float32)).resize(size, resample), dtype=np.float32)


def overlay(
    image: Any,
    result: Mapping[str, Any],
    alpha: float = 0.55,
    caption: bool = True,
    outline_color: tuple[int, int, int] = OUTLINE_COLOR,
    min_side: int = 320,
    max_side: int = 2048,
) -> Image.Image:
    """The artwork with the saliency heat map blended in (`alpha` at full saliency, fading to 0 where the
    saliency is 0), the mask's outline, and the caption.

    Args:
        image: the artwork (path, PIL image or array), as given to the pipeline.
        result: one dict of the pipeline's output (`emotion`, `score`, `mask`, `saliency`, `explanation`).
    Returns:
        An RGB PIL image with the artwork's aspect ratio (see `render_size`).
    """
    art = load_image(image)
    size = render_size(art.width, art.height, min_side, max_side)
    art = art.resize(size, Image.Resampling.LANCZOS) if art.size != size else art.copy()
    saliency = _resize_map(_as_array(result["saliency"], "saliency"), size, Image.Resampling.BILINEAR).clip(0, 1)
    heat = colormap(saliency).astype(np.float32)
    weight = (alpha * saliency)[..., None]
    blended = np.asarray(art, dtype=np.float32) * (1.0 - weight) + heat * weight
    picture = Image.fromarray(blended.round().clip(0, 255).astype(np.uint8))

    mask = result.get("mask")
    if mask is not None:
        inside = _resize_map(_as_array(mask, "mask"), size, Image.Resampling.NEAREST) > 0.5
        mask_image = Image.fromarray(inside.astype(np.uint8) * 255)
        thickness = max(1, min(size) // 160) * 2 + 1
        edge = np.asarray(mask_image.filter(ImageFilter.MaxFilter(thickness)), dtype=bool) & ~np.asarray(
            mask_image.filter(ImageFilter.MinFilter(thickness)), dtype=bool
        )
        # No outline along the picture's border: a mask that fills the image has no boundary to show.
        pixels = np.asarray(picture).copy()
        pixels[edge] = outline_color
        picture = Image.fromarray(pixels)
    if caption:
        picture = draw_caption(picture, caption_text(result))
    return picture


def grid(
    image: Any,
    results: Sequence[Mapping[str, Any]],
    columns: int | None = None,
    tile_side: int = 512,
    gap: int = 8,
    **overlay_kwargs,
) -> Image.Image:
    """Overlays of several emotions of one artwork side by side, in tiles whose long side is `tile_side`
    (`columns` defaults to ceil(sqrt(n)))."""
    if not results:
        raise ValueError("results: got an empty list, nothing to draw")
    art = load_image(image)
    scale = tile_side / max(art.size)  # every tile: the artwork's aspect ratio, long side = tile_side
    tile_size = (max(1, round(art.width * scale)), max(1, round(art.height * scale)))
    overlay_kwargs.setdefault("min_side", min(tile_size))
    overlay_kwargs.setdefault("max_side", max(tile_size))
    tiles = [overlay(art, r, **overlay_kwargs).resize(tile_size, Image.Resampling.LANCZOS) for r in results]
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    tw, th = tile_size
    sheet = Image.new("RGB", (columns * tw + (columns - 1) * gap, rows * th + (rows - 1) * gap), (255, 255, 255))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * (tw + gap), (i // columns) * (th + gap)))
    return sheet


def _safe(name: str, max_length: int = 100) -> str:
    """A file-name-safe stem: letters, digits, `-`, `_`, `.` (no leading dot), at most `max_length` characters."""
    safe = "".join(c if (c.isalnum() and c.isprintable()) or c in "-_." else "_" for c in name)
    return safe.lstrip(".")[:max_length] or "image"


def _save_png(picture: Image.Image, path: Path) -> None:
    """Save as PNG through a temporary file and a rename: never a partial PNG under `path`. Errors (a full
    disk...) are re-raised as OSError with `filename=path`."""
    tmp = path.with_name(f".{path.name[:50]}.{os.getpid()}.tmp")
    try:
        picture.save(tmp, format="PNG")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OSError(err.errno, f"{path}: cannot write ({err.strerror or err})", str(path)) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_overlays(
    image: Any,
    results: Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike,
    stem: str = "image",
    with_grid: bool = True,
    **overlay_kwargs,
) -> list[Path]:
    """Write one PNG per emotion (`{stem}_{emotion}.png`, the artwork's aspect ratio) and, for several
    emotions, `{stem}_grid.png`. Returns the written paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    art = load_image(image)
    paths = []
    for result in results:
        path = out / f"{_safe(stem)}_{_safe(str(result['emotion']))}.png"
        _save_png(overlay(art, result, **overlay_kwargs), path)
        paths.append(path)
    if with_grid and len(results) > 1:
        path = out / f"{_safe(stem)}_grid.png"
        _save_png(grid(art, results, **overlay_kwargs), path)
        paths.append(path)
    return paths
