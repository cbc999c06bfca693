"""P@IoU (APOLO protocol) against values computed by hand on small crafted masks."""

from pathlib import Path

import evaluate
import numpy as np
import pytest

METRIC_DIR = str(Path(__file__).resolve().parents[1] / "metrics" / "precision_at_iou")


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(METRIC_DIR)


def _mask(shape, pixels):
    mask = np.zeros(shape, dtype=np.float32)
    for row, col in pixels:
        mask[row, col] = 1
    return mask


def crafted_samples():
    """Five (prediction, reference) pairs whose IoUs are worked out in the comments."""
    # A: prediction split into two 8-connected components (a diagonal pair and an L), 5 px, all inside
    # the 8-px reference. seg IoU = 5/8; each component's filled box covers exactly the reference: bbox 1.
    pred_a = _mask((8, 8), [(1, 1), (2, 2), (5, 5), (5, 6), (6, 5)])
    ref_a = _mask((8, 8), [(1, 1), (1, 2), (2, 1), (2, 2), (5, 5), (5, 6), (6, 5), (6, 6)])
    # B: a diagonal line is ONE component under 8-connectivity: its box is the whole 4x4 -> bbox 4/16 = 0.25
    # (4-connectivity would give four 1-px boxes and IoU 1). seg IoU = 1.
    diagonal = _mask((4, 4), [(0, 0), (1, 1), (2, 2), (3, 3)])
    # C: empty reference -> skipped and counted.
    pred_c = _mask((4, 4), [(0, 0)])
    ref_c = np.zeros((4, 4), dtype=np.float32)
    # D: saliency in [-3, 5], 4x4, reference 8x8 (different size). Normalised: 1 on the top-left 2x2.
    # Bilinear 2x upsampling (align_corners=False) gives 1 / 0.75 / 0.25 / 0 along each axis, so above
    # 0.35 is exactly the top-left 4x4 = the reference: seg 1, bbox 1.
    pred_d = np.full((4, 4), -3.0, dtype=np.float32)
    pred_d[:2, :2] = 5.0
    ref_d = np.zeros((8, 8), dtype=np.float32)
    ref_d[:4, :4] = 1
    # E: disjoint -> 0 and 0.
    pred_e = _mask((4, 4), [(0, 0)])
    ref_e = _mask((4, 4), [(3, 3)])
    predictions = [pred_a, diagonal, pred_c, pred_d, pred_e]
    references = [ref_a, diagonal.copy(), ref_c, ref_d, ref_e]
    return predictions, references


def test_crafted_masks_match_hand_computed_values(metric):
    predictions, references = crafted_samples()
    result = metric.compute(predictions=predictions, references=references, return_per_sample=True)
    assert result["seg_ious"] == [pytest.approx(0.625), 1.0, None, 1.0, 0.0]
    assert result["bbox_ious"] == [1.0, 0.25, None, 1.0, 0.0]
    assert result["num_scored"] == 4
    assert result["num_skipped_empty_reference"] == 1
    # seg IoUs [0.625, 1, 1, 0]; bbox IoUs [1, 0.25, 1, 0] (0.25 counts for P@25: ">=").
    assert result["seg_P@25"] == 75.0
    assert result["seg_P@50"] == 75.0
    assert result["bbox_P@25"] == 75.0
    assert result["bbox_P@50"] == 50.0
    assert result["seg_mean_iou"] == pytest.approx(2.625 / 4)
    assert result["bbox_mean_iou"] == pytest.approx(2.25 / 4)
    assert result["threshold"] == 0.35


def test_bilinear_resize_and_configurable_threshold(metric):
    # 2x2 saliency with the top-right pixel hot, upsampled to 4x4 (align_corners=False): row weights on the
    # top row are 1, .75, .25, 0 and column weights on the right column 0, .25, .75, 1; their products
    # exceed 0.35 exactly on the top-right 2x2 block, and exceed 0.2 there plus at (0, 1) and (2, 3) (0.25 each).
    prediction = np.array([[0.0, 1.0], [0.0, 0.0]], dtype=np.float32)
    reference = np.zeros((4, 4), dtype=bool)
    reference[:2, 2:] = True
    assert metric.compute(predictions=[prediction], references=[reference])["seg_mean_iou"] == 1.0
    lower = metric.compute(predictions=[prediction], references=[reference], threshold=0.2)
    assert lower["seg_mean_iou"] == pytest.approx(4 / 6)
    # The 6-px blob is one 8-connected component; its box spans rows 0..2, cols 1..3 = 9 px.
    assert lower["bbox_mean_iou"] == pytest.approx(4 / 9)


def test_constant_prediction_is_background(metric):
    result = metric.compute(predictions=[np.ones((3, 3))], references=[np.ones((3, 3))])
    assert result["seg_mean_iou"] == 0.0 and result["seg_P@25"] == 0.0


@pytest.mark.parametrize(
    "predictions, references, message",
    [
        ([np.ones((2, 2))], [np.ones((2, 2)), np.ones((2, 2))], "1 predictions but 2 references"),
        ([], [], "empty"),
        ([np.full((2, 2), np.nan)], [np.ones((2, 2))], "NaN"),
        ([np.ones((1, 2, 2))], [np.ones((2, 2))], "2-D"),
        ([np.ones((2, 2))], [np.ones(4)], "2-D"),
    ],
)
def test_bad_input_raises_clear_errors(metric, predictions, references, message):
    with pytest.raises(ValueError, match=message):
        metric.compute(predictions=predictions, references=references)


def test_all_references_empty_is_an_error(metric):
    with pytest.raises(ValueError, match="empty"):
        metric.compute(predictions=[np.eye(3)], references=[np.zeros((3, 3))])


def test_pil_masks_as_loaded_from_apolo():
    # datasets_emosem.load_apolo stores masks as 1-bit PIL images; the library function takes them as they are.
    from PIL import Image

    from emosem.metrics_utils import load_metric_module

    reference = np.zeros((6, 6), dtype=bool)
    reference[1:4, 1:4] = True
    mask_image = Image.fromarray(reference).convert("1")
    prediction = reference.astype(np.float32) * 0.8 + 0.1
    module = load_metric_module("precision_at_iou")
    result = module.compute_precision_at_iou([prediction], [mask_image])
    assert result["seg_mean_iou"] == 1.0 and result["bbox_P@50"] == 100.0
