"""Turning whatever users pass as an "image" into an RGB PIL image, with errors that name the input.

Artworks arrive as paths, PIL images of every mode (RGBA, LA, P, CMYK, I;16, 1, L, ...) and numpy
arrays; phone photos of paintings carry EXIF orientation. Everything becomes upright RGB here, once.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Wider (or taller) images are refused: SAM's resize would give a side of 0 pixels, and CLIP's shortest-side
# resize would blow a 1 x 40000 strip up to gigabytes. Real artworks (even hand scrolls) stay far below.
MAX_ASPECT_RATIO = 100.0


def check_aspect_ratio(width: int, height: int, label: str, max_aspect_ratio: float | None = MAX_ASPECT_RATIO) -> None:
    """Raise ValueError naming `label` when the image is empty or more than `max_aspect_ratio` : 1."""
    if width < 1 or height < 1:
        raise ValueError(f"{label}: the image is empty ({width}x{height} pixels)")
    if max_aspect_ratio is not None and max(width, height) / min(width, height) > max_aspect_ratio:
        raise ValueError(
            f"{label}: refused, {width}x{height} pixels has an aspect ratio over {max_aspect_ratio:g}:1 "
            "(too thin to segment)"
        )


def _describe(image: Any, name: str | None) -> str:
    if name:
        return name
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    return f"image of type {type(image).__name__}"


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite transparent images on white (what a viewer shows) instead of dropping alpha to black."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    """I;16 / I / F images: rescale the actual value range to 0..255 (a plain convert clips to white)."""
    array = np.asarray(image, dtype=np.float32)
    lo, hi = float(array.min()), float(array.max())
    scaled = np.zeros_like(array) if hi <= lo else (array - lo) / (hi - lo) * 255.0
    return Image.fromarray(scaled.round().astype(np.uint8), mode="L").convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright RGB copy of a PIL image of any mode (EXIF orientation applied)."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return _flatten_alpha(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_bit_depth_to_rgb(image)
    return image.convert("RGB")


def _array_to_pil(array: np.ndarray, label: str) -> Image.Image:
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # channels-first -> channels-last
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"{label}: expected an array of shape (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    if array.size == 0:
        raise ValueError(f"{label}: the image is empty (shape {array.shape})")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"{label}: the image array contains NaN or infinite values")
        # Float images are taken as [0, 1] when they fit, else as 0..255.
        scale = 255.0 if array.max() <= 1.0 and array.min() >= 0.0 else 1.0
        array = np.clip(array * scale, 0, 255).round().astype(np.uint8)
    elif array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return Image.fromarray(array)


def load_image(image: Any, name: str | None = None, max_aspect_ratio: float | None = MAX_ASPECT_RATIO) -> Image.Image:
    """Open `image` (path, PIL image, numpy array or torch tensor) as upright RGB.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is not a decodable image, is a decompression bomb, the array has a bad shape, or the
            image is thinner than 1 : `max_aspect_ratio` (None: no limit).
    """
    rgb = _load_image(image, name)
    check_aspect_ratio(rgb.width, rgb.height, _describe(image, name), max_aspect_ratio)
    return rgb


def _load_image(image: Any, name: str | None = None) -> Image.Image:
    label = _describe(image, name)
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{label}: no such file")
        if os.path.isdir(path):
            raise ValueError(f"{label}: is a directory, expected an image file")
        try:
            with Image.open(path) as opened:
                opened.load()  # decode now: truncated files fail here, not later in a batch
                return to_rgb(opened)
        except Image.DecompressionBombError as err:
            raise ValueError(f"{label}: refused, the image is too large ({err})") from err
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise ValueError(f"{label}: cannot be decoded as an image ({err})") from err
    if isinstance(image, Image.Image):
        try:
            image.load()
            return to_rgb(image)
        except (OSError, SyntaxError) as err:
            raise ValueError(f"{label}: cannot be decoded as an image ({err})") from err
    if hasattr(image, "detach") and hasattr(image, "numpy"):  # torch tensor, without importing torch here
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        return to_rgb(_array_to_pil(image, label))  # RGBA is composited on white, L -> RGB
    raise TypeError(f"{label}: expected a path, a PIL image or a numpy array")
