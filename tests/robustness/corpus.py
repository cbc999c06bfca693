"""A generated corpus of awkward and broken image files, as they turn up in real copies of WikiArt.

`build_corpus(folder)` writes every case and returns `{file name: expectation}`; an expectation is either
`("ok", (width, height))`, the upright size the file must load at, or `("error", words)`, words that the error
message must contain (besides the file's name).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _png_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def _jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decompression_bomb_png(side: int = 20000) -> bytes:
    """A real bomb: a `side` x `side` 1-bit PNG of zeros, a few tens of kB on disk, `side`**2 pixels decoded."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row * 1000) for _ in range(side // 1000)]
    parts.append(compressor.compress(row * (side % 1000)))
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def build_corpus(folder: str | Path) -> dict[str, tuple[str, object]]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(_noise(48, 64))
    png, jpeg = _png_bytes(rgb), _jpeg_bytes(rgb, quality=90)
    cases: dict[str, tuple[bytes, tuple[str, object]]] = {}

    # Broken files: rejected, naming the file.
    cases["truncated.jpg"] = (jpeg[: len(jpeg) // 2], ("error", "cannot be decoded"))
    cases["truncated.png"] = (png[: len(png) // 2], ("error", "cannot be decoded"))
    cases["header_only.png"] = (png[:33], ("error", "cannot be decoded"))
    cases["zero_bytes.jpg"] = (b"", ("error", "cannot be decoded"))
    cases["text_not_image.png"] = (b"<html><body>not a painting</body></html>\n", ("error", "cannot be decoded"))
    damaged = bytearray(png)
    damaged[len(damaged) // 2] ^= 0xFF  # inside the compressed data: a CRC / zlib error
    cases["bit_flip.png"] = (bytes(damaged), ("error", "cannot be decoded"))
    cases["bomb.png"] = (decompression_bomb_png(), ("error", "too large"))
    cases["thin_strip.png"] = (_png_bytes(Image.new("RGB", (2000, 3), (9, 9, 9))), ("error", "aspect ratio"))

    # Awkward but valid files: handled, at the right upright size.
    cases["png_named.jpg"] = (png, ("ok", (64, 48)))  # wrong extension: the content decides
    cases["jpeg_named.png"] = (jpeg, ("ok", (64, 48)))
    cases["cmyk.jpg"] = (_jpeg_bytes(rgb.convert("CMYK")), ("ok", (64, 48)))
    sixteen = Image.fromarray((np.linspace(0, 65535, 48 * 64).reshape(48, 64)).astype(np.uint16))
    cases["sixteen_bit.png"] = (_png_bytes(sixteen), ("ok", (64, 48)))
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    cases["palette_transparent.png"] = (_png_bytes(palette, transparency=0), ("ok", (64, 48)))
    cases["rgba.png"] = (_png_bytes(rgb.convert("RGBA")), ("ok", (64, 48)))
    cases["grey_alpha.png"] = (_png_bytes(rgb.convert("LA")), ("ok", (64, 48)))
    cases["one_bit.png"] = (_png_bytes(rgb.convert("1")), ("ok", (64, 48)))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    cases["exif_rotated.jpg"] = (_jpeg_bytes(rgb, exif=exif.tobytes()), ("ok", (48, 64)))
    cases["one_pixel.png"] = (_png_bytes(Image.new("RGB", (1, 1), (200, 30, 30))), ("ok", (1, 1)))
    frames = [Image.fromarray(_noise(40, 30, seed=s)).convert("P") for s in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    cases["animated.gif"] = (buffer.getvalue(), ("ok", (30, 40)))
    buffer = io.BytesIO()
    rgb.save(buffer, format="TIFF")
    cases["tiff.tif"] = (buffer.getvalue(), ("ok", (64, 48)))
    buffer = io.BytesIO()
    rgb.save(buffer, format="WEBP")
    cases["webp.webp"] = (buffer.getvalue(), ("ok", (64, 48)))

    for name, (data, _) in cases.items():
        (folder / name).write_bytes(data)
    return {name: expectation for name, (_, expectation) in cases.items()}
