"""emosem.visualization: heat map + mask outline + caption overlays, grids, PNG files."""

import numpy as np
import pytest
from PIL import Image

from emosem.visualization import (
    OUTLINE_COLOR,
    caption_text,
    colormap,
    draw_caption,
    grid,
    overlay,
    render_size,
    save_overlays,
)


def _result(width, height, emotion="awe", explanation="the pale light makes me feel small", box=None):
    saliency = np.zeros((height, width), np.float32)
    box = box or (width // 4, height // 4, 3 * width // 4, 3 * height // 4)
    saliency[box[1] : box[3], box[0] : box[2]] = 0.9
    mask = Image.fromarray(((saliency > 0.5) * 255).astype(np.uint8))
    return {"emotion": emotion, "score": 0.9, "mask": mask, "saliency": saliency, "explanation": explanation}


def test_colormap_is_inferno_like():
    colours = colormap(np.array([[0.0, 0.5, 1.0, 2.0, -1.0]]))
    assert colours.dtype == np.uint8 and colours.shape == (1, 5, 3)
    assert tuple(colours[0, 0]) == (0, 0, 4) and tuple(colours[0, 2]) == (252, 255, 164)
    assert tuple(colours[0, 3]) == tuple(colours[0, 2]) and tuple(colours[0, 4]) == tuple(colours[0, 0])  # clipped
    assert colours[0, 1].sum() > colours[0, 0].sum()


@pytest.mark.parametrize("size", [(517, 333), (4000, 300), (17, 17), (300, 4000), (1024, 768)])
def test_render_size_keeps_the_aspect_ratio(size):
    w, h = render_size(*size)
    assert abs(w / h - size[0] / size[1]) <= 1.0 / min(w, h) * max(1.0, size[0] / size[1])
    assert max(w, h) <= 2048 and (min(w, h) >= 320 or max(w, h) == 2048)


def test_overlay_draws_heat_outline_and_caption():
    art = Image.new("RGB", (200, 120), (40, 90, 160))
    result = _result(200, 120)
    picture = overlay(art, result, caption=False)
    assert picture.mode == "RGB" and picture.size == render_size(200, 120)
    pixels = np.asarray(picture)
    scale = picture.width / 200
    # Outside the salient box: the artwork unchanged; inside: blended towards the heat colour; an outline between.
    assert tuple(pixels[5, 5]) == (40, 90, 160)
    centre = pixels[int(60 * scale), int(100 * scale)]
    assert tuple(centre) != (40, 90, 160)
    outline = (pixels == OUTLINE_COLOR).all(-1)
    assert outline.any()
    ys, xs = np.nonzero(outline)
    assert abs(xs.min() - 50 * scale) <= 6 and abs(xs.max() - 150 * scale) <= 6
    assert abs(ys.min() - 30 * scale) <= 6 and abs(ys.max() - 90 * scale) <= 6

    captioned = np.asarray(overlay(art, result))
    assert captioned.shape == pixels.shape
    top, bottom = slice(0, picture.height // 3), slice(-picture.height // 8, None)
    assert np.array_equal(captioned[top], pixels[top])  # the caption sits in a band at the bottom
    assert not np.array_equal(captioned[bottom], pixels[bottom])


def test_full_mask_has_no_outline_along_the_border():
    art = Image.new("RGB", (64, 48), (10, 10, 10))
    result = _result(64, 48, box=(0, 0, 64, 48))
    assert not (np.asarray(overlay(art, result, caption=False)) == OUTLINE_COLOR).all(-1).any()


def test_caption_wraps_and_is_cut_when_too_long():
    text = caption_text({"emotion": "fear", "score": 0.25, "explanation": "the dark " * 200})
    assert text.startswith("fear (score 0.25): the dark")
    assert caption_text({"emotion": "awe", "score": 1, "explanation": None}) == "awe (score 1.00)"
    picture = Image.new("RGB", (320, 320), (255, 255, 255))
    captioned = np.asarray(draw_caption(picture, text, max_fraction=0.5))
    # The band covers at most half the picture, whatever the text length.
    assert (captioned[:150] == 255).all() and not (captioned[-20:] == 255).all()


def test_overlay_accepts_paths_and_odd_sizes(tmp_path):
    for width, height in [(17, 17), (4000, 300), (333, 517)]:
        path = tmp_path / f"art_{width}x{height}.png"
        Image.new("RGB", (width, height), (200, 100, 50)).save(path)
        picture = overlay(str(path), _result(width, height, explanation="x " * 80))
        assert abs(picture.width / picture.height - width / height) < 0.02 * width / height


def test_grid_tiles_several_emotions():
    art = Image.new("RGB", (90, 60), (0, 128, 0))
    results = [_result(90, 60, emotion=e) for e in ("awe", "fear", "anger")]
    sheet = grid(art, results, tile_side=120, gap=4)
    assert sheet.size == (2 * 120 + 4, 2 * 80 + 4)  # ceil(sqrt(3)) = 2 columns, 2 rows of 120x80 tiles
    assert tuple(np.asarray(sheet)[-1, -1]) == (255, 255, 255)  # the empty fourth cell
    with pytest.raises(ValueError, match="empty"):
        grid(art, [])


def test_save_overlays_writes_pngs_with_the_image_aspect_ratio(tmp_path):
    art = Image.new("RGB", (333, 517), (90, 60, 30))
    results = [_result(333, 517, emotion=e) for e in ("awe", "sadness")]
    paths = save_overlays(art, results, tmp_path / "out", stem="my art")
    assert [p.name for p in paths] == ["my_art_awe.png", "my_art_sadness.png", "my_art_grid.png"]
    for path in paths[:2]:
        with Image.open(path) as png:
            assert png.format == "PNG" and abs(png.width / png.height - 333 / 517) < 0.01
    assert [p.name for p in save_overlays(art, results[:1], tmp_path / "one")] == ["image_awe.png"]
