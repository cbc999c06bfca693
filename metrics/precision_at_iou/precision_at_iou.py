"""Precision at IoU thresholds (P@25 / P@50) for emotion-stimulus segmentation, APOLO protocol.

Self-contained `evaluate` module: it imports nothing from the emosem packages, so that
`evaluate.load("metrics/precision_at_iou")` works from a plain checkout, offline.

Protocol (per sample), as in the APOLO reference evaluation used by EmoSEM's Table 1:
1. The predicted saliency map (any float range, or a binary mask) is min-max normalised to [0, 1].
   A constant map has no defined normalisation; it is treated as all background (IoU 0), which is
   what the reference script's NaN comparison amounts to.
2. It is resized to the ground-truth mask size with bilinear interpolation
   (`torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`, float32).
3. Pixels strictly above `threshold` (0.35) are stimulus.
4. Segmentation scenario: foreground IoU |P and G| / |P or G| against the ground-truth mask (G = ref > 0).
   Bounding-box scenario: the thresholded prediction is split into 8-connected components
   (`scipy.ndimage.label` with a 3x3 structure of ones, OpenCV's default connectivity); each component
   is replaced by its filled bounding box; the ground truth stays the pixel mask.
5. Samples whose ground-truth mask is empty are skipped and counted.
P@k = percentage of scored samples with IoU >= k / 100.
"""

import math

import datasets
import evaluate
import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional

_CITATION = """\
@inproceedings{chen2024retrieving,
  title={Retrieving emotional stimuli in artworks},
  author={Chen, Tianwei and Garcia, Noa and Li, Liangzhi and Nakashima, Yuta},
  booktitle={ICMR},
  year={2024}
}
"""

_DESCRIPTION = """\
Precision at IoU 0.25 / 0.5 (P@25, P@50) of emotion-stimulus saliency maps against APOLO ground-truth
masks, in the segmentation and the bounding-box scenarios, following the APOLO protocol
(min-max normalise, bilinear resize to the mask size, threshold 0.35, foreground IoU).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of 2-D arrays (H_p, W_p): saliency maps of any float range, or binary masks.
    references: list of 2-D arrays (H_g, W_g): ground-truth masks (non-zero = stimulus). Sizes may differ
        from the predictions; each prediction is resized to its reference's size.
    threshold (float, default 0.35): a normalised, resized prediction pixel above it is stimulus.
    iou_thresholds (sequence of float, default (0.25, 0.5)): the P@ thresholds; keys use round(100 * t).
    return_per_sample (bool, default False): also return per-sample IoUs (None for skipped samples).
Returns:
    dict with `bbox_P@25`, `bbox_P@50`, `seg_P@25`, `seg_P@50` (percent), `bbox_mean_iou`, `seg_mean_iou`
    (fractions in [0, 1]), `num_scored`, `num_skipped_empty_reference`, `threshold`, and optionally
    `seg_ious`, `bbox_ious` (lists aligned with the inputs).
Examples:
    >>> metric = evaluate.load("metrics/precision_at_iou")
    >>> metric.compute(predictions=[[[0.0, 1.0], [0.0, 1.0]]], references=[[[0, 1], [0, 1]]])["seg_P@50"]
    100.0
"""

DEFAULT_THRESHOLD = 0.35
DEFAULT_IOU_THRESHOLDS = (0.25, 0.5)
# 8-connectivity, as OpenCV's connectedComponents uses by default.
EIGHT_CONNECTIVITY = np.ones((3, 3), dtype=bool)


def _as_2d_array(value, name, index, dtype):
    """Return `value` as a 2-D numpy array of `dtype`, or raise a ValueError naming the input."""
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}[{index}] could not be read as a numeric 2-D array: {error}") from error
    if array.ndim != 2:
        raise ValueError(f"{name}[{index}] must be a 2-D array (height, width); got shape {array.shape}.")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name}[{index}] is an empty array of shape {array.shape}; expected height, width >= 1.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}[{index}] contains NaN or infinite values; expected finite numbers.")
    return array


def binarize_prediction(saliency, size, threshold=DEFAULT_THRESHOLD):
    """Min-max normalise, bilinearly resize to `size` = (H_g, W_g), threshold: (H_p, W_p) -> bool (H_g, W_g)."""
    saliency = np.asarray(saliency, dtype=np.float32)
    low, high = float(saliency.min()), float(saliency.max())
    if high <= low:
        # A constant map carries no stimulus location; the reference divides by zero here and
        # its NaN map is never above the threshold, i.e. all background.
        return np.zeros(size, dtype=bool)
    normalised = (saliency - np.float32(low)) / np.float32(high - low)
    if normalised.shape != tuple(size):
        tensor = torch.from_numpy(np.ascontiguousarray(normalised))[None, None]
        resized = torch.nn.functional.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=False)
        normalised = resized[0, 0].numpy()
    return normalised > threshold


def fill_component_boxes(mask):
    """Replace each 8-connected component of a bool mask (H, W) by its filled bounding box -> bool (H, W)."""
    labels, _ = scipy.ndimage.label(mask, structure=EIGHT_CONNECTIVITY)
    boxes = np.zeros(mask.shape, dtype=bool)
    for box in scipy.ndimage.find_objects(labels):
        if box is not None:
            boxes[box] = True
    return boxes


def foreground_iou(prediction, reference):
    """|P and G| / |P or G| for bool masks of the same shape; 0.0 when both are empty."""
    union = np.logical_or(prediction, reference).sum()
    if union == 0:
        return 0.0
    return float(np.logical_and(prediction, reference).sum()) / float(union)


def compute_precision_at_iou(
    predictions,
    references,
    threshold=DEFAULT_THRESHOLD,
    iou_thresholds=DEFAULT_IOU_THRESHOLDS,
    return_per_sample=False,
):
    """Score N saliency maps against N ground-truth masks (APOLO protocol). See the module docstring.

    predictions: N 2-D arrays (H_p, W_p); references: N 2-D arrays (H_g, W_g). Returns the metric dict.
    """
    predictions = list(predictions)
    references = list(references)
    if len(predictions) != len(references):
        raise ValueError(
            f"Got {len(predictions)} predictions but {len(references)} references; expected one ground-truth "
            "mask per predicted saliency map."
        )
    if len(predictions) == 0:
        raise ValueError("predictions and references are empty; expected at least one (saliency map, mask) pair.")
    if not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"threshold must be in [0, 1) (maps are min-max normalised first); got {threshold}.")

    seg_ious, bbox_ious = [], []
    for index, (prediction, reference) in enumerate(zip(predictions, references)):
        prediction = _as_2d_array(prediction, "predictions", index, np.float32)
        reference = _as_2d_array(reference, "references", index, np.float32) > 0
        if not reference.any():
            seg_ious.append(None)
            bbox_ious.append(None)
            continue
        binary = binarize_prediction(prediction, reference.shape, threshold)
        seg_ious.append(foreground_iou(binary, reference))
        bbox_ious.append(foreground_iou(fill_component_boxes(binary), reference))

    scored_seg = [iou for iou in seg_ious if iou is not None]
    scored_bbox = [iou for iou in bbox_ious if iou is not None]
    num_scored = len(scored_seg)
    if num_scored == 0:
        raise ValueError(
            f"All {len(references)} reference masks are empty; nothing to score (empty references are skipped)."
        )

    result = {}
    for scenario, ious in (("bbox", scored_bbox), ("seg", scored_seg)):
        for iou_threshold in iou_thresholds:
            hits = sum(iou >= iou_threshold for iou in ious)
            result[f"{scenario}_P@{round(100 * iou_threshold)}"] = 100.0 * hits / num_scored
    result["bbox_mean_iou"] = math.fsum(scored_bbox) / num_scored
    result["seg_mean_iou"] = math.fsum(scored_seg) / num_scored
    result["num_scored"] = num_scored
    result["num_skipped_empty_reference"] = len(references) - num_scored
    result["threshold"] = float(threshold)
    if return_per_sample:
        result["seg_ious"] = seg_ious
        result["bbox_ious"] = bbox_ious
    return result


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PrecisionAtIoU(evaluate.Metric):
    """`evaluate` wrapper around `compute_precision_at_iou`.

    Inputs pass through Arrow as nested float lists, which is fine for a few thousand masks; for the
    full APOLO test set call `compute_precision_at_iou` on numpy arrays directly (emosem.metrics_utils does).
    """

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                    "references": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                }
            ),
        )

    def compute(self, *, predictions=None, references=None, **kwargs):
        """Validate counts and 2-D shapes, then run `evaluate`'s compute. Arguments below."""
        # Check counts and shapes before Arrow encoding, whose own errors do not say what is wrong.
        if predictions is not None and references is not None:
            if len(predictions) != len(references):
                raise ValueError(
                    f"Got {len(predictions)} predictions but {len(references)} references; expected one "
                    "ground-truth mask per predicted saliency map."
                )
            if len(predictions) == 0:
                raise ValueError("predictions and references are empty; expected at least one pair.")
            for name, values in (("predictions", predictions), ("references", references)):
                for index, value in enumerate(values):
                    _as_2d_array(value, name, index, np.float32)
        return super().compute(predictions=predictions, references=references, **kwargs)

    def _compute(
        self,
        predictions,
        references,
        threshold=DEFAULT_THRESHOLD,
        iou_thresholds=DEFAULT_IOU_THRESHOLDS,
        return_per_sample=False,
    ):
        return compute_precision_at_iou(
            [_stack_rows(p) for p in predictions],
            [_stack_rows(r) for r in references],
            threshold=threshold,
            iou_thresholds=iou_thresholds,
            return_per_sample=return_per_sample,
        )


def _stack_rows(rows):
    """Arrow hands back a list of rows; ragged rows (not a 2-D array) become an object array that fails clearly."""
    try:
        return np.asarray([np.asarray(row, dtype=np.float32) for row in rows], dtype=np.float32)
    except ValueError:
        return np.asarray(rows, dtype=object)
