"""Property-based tests (hypothesis): the processor, the pipeline's pre/post-processing and the metrics over random
image sizes, modes, dtypes and mask shapes. Each input is handled (outputs of the right shape, finite, in range)
or rejected with a ValueError/TypeError, never anything else."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from metrics.precision_at_iou.precision_at_iou import compute_precision_at_iou
from modeling_emosem.image_utils_emosem import MAX_ASPECT_RATIO, load_image
from tests.helpers import tiny_processor
from tests.robustness.counters import tried

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "I;16", "F", "YCbCr", "HSV"]
DTYPES = [np.uint8, np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_]
sides = st.integers(min_value=1, max_value=120)


@st.composite
def pil_images(draw):
    w, h, mode = draw(sides), draw(sides), draw(st.sampled_from(MODES))
    seed = draw(st.integers(0, 2**16))
    rgb = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))
    if mode == "P":
        image = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
        if draw(st.booleans()):
            image.info["transparency"] = 0
        return image
    if mode in ("I", "I;16", "F"):
        return rgb.convert("L").convert(mode)
    return rgb.convert(mode)


@st.composite
def arrays(draw):
    h, w = draw(sides), draw(sides)
    shape = draw(st.sampled_from([(h, w), (h, w, 1), (h, w, 3), (h, w, 4), (3, h, w), (h, w, 2), (h,), (h, w, 3, 1)]))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).normal(0, draw(st.sampled_from([0.3, 100.0, 1e5])), size=shape)
    if draw(st.booleans()) and values.size:
        values.flat[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 0.0]))
    with np.errstate(all="ignore"):
        return values.astype(dtype)


def _aspect_ok(w, h):
    return max(w, h) / min(w, h) <= MAX_ASPECT_RATIO


@FAST
@given(pil_images())
def test_processor_encodes_any_pil_image(image):
    proc = tiny_processor()
    if not _aspect_ok(*image.size):
        with pytest.raises(ValueError, match=r"images\[0\]: refused, .* aspect ratio"):
            proc(images=[image], emotions=["awe"])
        tried("bad inputs")
        return
    batch = proc(images=[image], emotions=["awe"])
    s = proc.image_processor.pad_size["height"]
    assert tuple(batch["pixel_values"].shape) == (1, 3, s, s) and torch.isfinite(batch["pixel_values"]).all()
    assert torch.isfinite(batch["clip_pixel_values"]).all()
    assert batch["original_sizes"][0].tolist() == [image.height, image.width]
    tried("bad inputs")


@FAST
@given(arrays())
def test_load_image_on_any_array_loads_or_says_why(array):
    try:
        image = load_image(array)
    except (ValueError, TypeError) as err:
        assert "image of type ndarray" in str(err)
        tried("bad inputs")
        return
    assert image.mode == "RGB" and image.width >= 1 and image.height >= 1
    assert np.isfinite(array.astype(np.float64)).all() or array.dtype.kind in "iub"
    tried("bad inputs")


@FAST
@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 4), st.sampled_from([np.float32, np.float16, np.float64]))
def test_post_process_masks_any_size(h, w, n, dtype):
    assume(_aspect_ok(w, h))
    proc = tiny_processor()
    s = proc.image_processor.pad_size["height"]
    scale = proc.image_processor.size["longest_edge"] / max(h, w)
    reshaped = [[max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))]] * n
    logits = torch.from_numpy(np.random.default_rng(h * w).normal(0, 5, (n, proc.mask_size, proc.mask_size)).astype(dtype))
    maps = proc.post_process_masks(logits, [[h, w]] * n, reshaped)
    assert len(maps) == n and all(tuple(m.shape) == (h, w) for m in maps)
    assert all(torch.isfinite(m).all() and m.min() >= 0 and m.max() <= 1 for m in maps)
    assert s > 0


@FAST
@given(st.integers(1, 200), st.integers(1, 200), st.sampled_from([np.bool_, np.uint8, np.float32, np.float64]),
       st.booleans())
def test_encode_masks_any_shape(h, w, dtype, soft):
    proc = tiny_processor()
    rng = np.random.default_rng(h + w)
    mask = (rng.random((h, w)) if soft else rng.random((h, w)) > 0.5).astype(dtype)
    if dtype == np.uint8:
        mask = np.minimum(mask, 1)
    out = proc.encode_masks([mask])
    assert tuple(out.shape) == (1, proc.mask_size, proc.mask_size) and out.min() >= 0 and out.max() <= 1


@FAST
@given(st.sampled_from([(0, 4), (4, 0), (3,), (2, 2, 2)]), st.sampled_from([np.nan, 2.0, -1.0, 0.5]))
def test_encode_masks_rejects_bad_masks(shape, value):
    proc = tiny_processor()
    mask = np.full(shape, value, np.float32)
    if len(shape) == 2 and 0 not in shape and 0.0 <= value <= 1.0:
        return
    with pytest.raises(ValueError, match=r"masks\[0\]"):
        proc.encode_masks([mask])
    tried("bad inputs")


@FAST
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40), st.integers(1, 40), st.integers(1, 40),
                          st.integers(0, 2**16)), min_size=1, max_size=5),
       st.floats(0.0, 0.99))
def test_precision_at_iou_any_shapes(pairs, threshold):
    predictions, references = [], []
    for hp, wp, hg, wg, seed in pairs:
        rng = np.random.default_rng(seed)
        predictions.append(rng.normal(size=(hp, wp)).astype(np.float32))
        reference = rng.random((hg, wg)) > 0.6
        reference[0, 0] = True  # never all-empty: those are skipped, tested below
        references.append(reference)
    result = compute_precision_at_iou(predictions, references, threshold=threshold, return_per_sample=True)
    for key, value in result.items():
        if key.endswith(("P@25", "P@50")):
            assert 0.0 <= value <= 100.0
    assert all(0.0 <= iou <= 1.0 for iou in result["seg_ious"] + result["bbox_ious"])
    assert result["num_scored"] == len(pairs)


@FAST
@given(st.sampled_from(["nan", "empty", "3d", "count", "allempty", "ragged", "string"]))
def test_precision_at_iou_rejects_bad_inputs_clearly(kind):
    good = np.ones((4, 4), np.float32)
    cases = {
        "nan": ([np.full((4, 4), np.nan)], [good]),
        "empty": ([np.zeros((0, 4))], [good]),
        "3d": ([np.zeros((2, 4, 4))], [good]),
        "count": ([good, good], [good]),
        "allempty": ([good], [np.zeros((4, 4))]),
        "ragged": ([[[1.0, 2.0], [3.0]]], [good]),
        "string": ([[["a", "b"]]], [good]),
    }
    predictions, references = cases[kind]
    with pytest.raises(ValueError):
        compute_precision_at_iou(predictions, references)
    tried("bad inputs")


@pytest.fixture(scope="module")
def pipe():
    from transformers import pipeline

    from tests.helpers import tiny_model

    return pipeline(task="emotion-segmentation", model=tiny_model().eval(), processor=tiny_processor())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(image=pil_images(), threshold=st.floats(0.0, 1.0), emotions=st.lists(st.sampled_from(
    ["amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness"]), min_size=1, max_size=3,
    unique=True))
def test_pipeline_pre_and_post_processing_any_image(pipe, image, threshold, emotions):
    if not _aspect_ok(*image.size):
        with pytest.raises(ValueError, match="aspect ratio"):
            pipe(image, emotions=emotions, explain=False)
        tried("bad inputs")
        return
    results = pipe(image, emotions=emotions, threshold=threshold, explain=False)
    assert [r["emotion"] for r in results] == emotions
    for r in results:
        assert r["mask"].mode == "L" and r["mask"].size == image.size
        assert r["saliency"].shape == (image.height, image.width) and r["saliency"].dtype == np.float32
        assert np.isfinite(r["saliency"]).all() and r["saliency"].min() >= 0 and r["saliency"].max() <= 1
        assert 0.0 <= r["score"] <= 1.0
        inside = np.asarray(r["mask"]) > 0
        assert (inside == (r["saliency"] > threshold)).all()
    tried("bad inputs")


@FAST
@given(st.one_of(st.floats(allow_nan=True), st.integers(-5, 5), st.text(max_size=5), st.none(), st.booleans()))
def test_pipeline_call_arguments_are_validated(pipe, value):
    for name in ("threshold", "seed", "max_new_tokens", "top_p", "max_pixels"):
        try:
            pipe._sanitize_parameters(**{name: value})
        except (ValueError, TypeError):
            tried("bad inputs")
