"""Table 1 of the EmoSEM paper from model outputs: all metrics, then a markdown table in the paper's order.

No model dependency: callers (examples/evaluate.py, the CLI) pass what the model produced. The metric
code is the one in ``metrics/<name>/<name>.py`` (the `evaluate` modules), imported directly as Python
modules so that full-size saliency maps do not go through `evaluate`'s Arrow cache.

Units in the table (as in the paper): P@25 / P@50 and EA in percent; BLEU-1..4, METEOR, ROUGE-L as
100 x the COCO-toolkit fraction; CS as 100 x CLIPScore, where CLIPScore = 2.5 * max(cos, 0)
(Hessel et al.). A footnote names the EA judge (and its test accuracy), the CLIP model and the protocol.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "PAPER_TABLE1_EMOSEM",
    "TABLE1_COLUMNS",
    "compute_table1",
    "format_table1_markdown",
    "group_references",
    "load_metric_module",
]

METRICS_DIR = Path(__file__).resolve().parents[1] / "metrics"

# (header, key in a Table-1 row, decimals), in the order of the paper's Table 1.
TABLE1_COLUMNS = (
    ("Bbox P@25", "bbox_P@25", 2),
    ("Bbox P@50", "bbox_P@50", 2),
    ("Seg P@25", "seg_P@25", 2),
    ("Seg P@50", "seg_P@50", 2),
    ("EA", "EA", 1),
    ("B1", "B1", 1),
    ("B2", "B2", 1),
    ("B3", "B3", 1),
    ("B4", "B4", 1),
    ("M", "M", 1),
    ("R", "R", 1),
    ("CS", "CS", 1),
)

# EmoSEM's published row (paper, Table 1), for side-by-side comparison.
PAPER_TABLE1_EMOSEM = {
    "bbox_P@25": 86.29, "bbox_P@50": 68.65, "seg_P@25": 78.06, "seg_P@50": 45.45, "EA": 56.6,
    "B1": 21.4, "B2": 8.8, "B3": 4.0, "B4": 2.0, "M": 8.4, "R": 18.2, "CS": 56.8,
}


def load_metric_module(name: str, metrics_dir: str | os.PathLike | None = None):
    """Import ``<metrics_dir>/<name>/<name>.py`` (default: this checkout's ``metrics/``) as a Python module."""
    path = Path(metrics_dir or METRICS_DIR) / name / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"metric module {name!r} not found at {path}; expected the repository's metrics/ folder.")
    module_name = f"emosem_metric_{name}"
    if module_name in sys.modules and getattr(sys.modules[module_name], "__file__", None) == str(path):
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[module_name] = module
    return module


def group_references(paintings: Iterable[str], emotions: Iterable[str], utterances: Iterable[str]) -> dict:
    """All utterances per (painting, emotion): the reference sets of the explanation metrics.

    Three aligned sequences (one entry per ArtEmis annotation) -> {(painting, emotion): [utterance, ...]}.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for painting, emotion, utterance in zip(paintings, emotions, utterances, strict=True):
        groups.setdefault((painting, emotion), []).append(utterance)
    return groups


def _same_length(**named: Sequence | None) -> int:
    lengths = {name: len(values) for name, values in named.items() if values is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"Inputs must have one entry per (painting, emotion) sample; got lengths {lengths}.")
    if not lengths or 0 in lengths.values():
        raise ValueError("No samples to evaluate: every given input is empty.")
    return next(iter(lengths.values()))


def compute_table1(
    saliency_maps: Sequence | None = None,
    gt_masks: Sequence | None = None,
    explanations: Sequence[str] | None = None,
    references: Sequence[Sequence[str]] | None = None,
    images: Sequence | None = None,
    target_emotions: Sequence[str] | None = None,
    *,
    judge: str | os.PathLike | None = None,
    clip_model: str | os.PathLike | None = None,
    threshold: float = 0.35,
    clip_prompt_prefix: str | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    metrics_dir: str | os.PathLike | None = None,
) -> dict:
    """Every Table-1 metric over N (painting, emotion) samples; groups whose inputs are None are skipped.

    Args:
        saliency_maps: N 2-D float arrays (any size / range), with ``gt_masks``: N 2-D masks -> P@IoU.
            Masks may be the 1-bit PIL images of ``datasets_emosem.load_apolo``'s ``mask`` column (already at
            image size); each saliency map is resized to its mask's size.
        explanations: N generated explanations, with ``references``: N lists of the (painting, emotion)'s
            utterances -> BLEU/METEOR/ROUGE-L; with ``images`` (N) and ``clip_model`` -> CLIPScore;
            with ``target_emotions`` (N emotion names, e.g. ``EMOTIONS[row["emotion"]]``) and ``judge``
            (classifier folder) -> EA. APOLO rows give ``references=row["utterances"]``, ``images=row["image"]``.
    Returns:
        {"row": {column key: value in table units or None}, "segmentation": ..., "explanation": ...,
         "emotion_alignment": ... (the full metric outputs, or None when not computed)}.
    """
    _same_length(
        saliency_maps=saliency_maps, gt_masks=gt_masks, explanations=explanations, references=references,
        images=images, target_emotions=target_emotions,
    )
    if (saliency_maps is None) != (gt_masks is None):
        raise ValueError("P@IoU needs both `saliency_maps` and `gt_masks`.")
    if references is not None and explanations is None:
        raise ValueError("`references` given without `explanations`.")
    if explanations is not None and references is None:
        raise ValueError("`explanations` need `references` (the utterances of each painting + emotion).")
    if (target_emotions is None) != (judge is None) and explanations is not None:
        raise ValueError("EA needs both `target_emotions` and `judge` (a text-to-emotion classifier folder).")

    row = {key: None for _, key, _ in TABLE1_COLUMNS}
    result = {"row": row, "segmentation": None, "explanation": None, "emotion_alignment": None}
    if saliency_maps is not None:
        seg = load_metric_module("precision_at_iou", metrics_dir).compute_precision_at_iou(
            saliency_maps, gt_masks, threshold=threshold
        )
        result["segmentation"] = seg
        for key in ("bbox_P@25", "bbox_P@50", "seg_P@25", "seg_P@50"):
            row[key] = seg[key]
    if explanations is not None:
        explanation_module = load_metric_module("explanation", metrics_dir)
        kwargs = {} if clip_prompt_prefix is None else {"clip_prompt_prefix": clip_prompt_prefix}
        text = explanation_module.compute_explanation_metrics(
            explanations, references, images=images, clip_model=clip_model, batch_size=batch_size, device=device,
            **kwargs,
        )
        result["explanation"] = text
        for n in range(1, 5):
            row[f"B{n}"] = 100.0 * text[f"bleu_{n}"]
        row["M"] = None if text["meteor"] is None else 100.0 * text["meteor"]
        row["R"] = 100.0 * text["rouge_l"]
        row["CS"] = 100.0 * text["clip_score"] if "clip_score" in text else None
        if target_emotions is not None:
            ea = load_metric_module("emotion_alignment", metrics_dir).compute_emotion_alignment(
                explanations, target_emotions, str(judge), batch_size=batch_size, device=device
            )
            result["emotion_alignment"] = ea
            row["EA"] = ea["emotion_alignment"]
    return result


def _cell(value, decimals: int) -> str:
    return "–" if value is None else f"{value:.{decimals}f}"


def _footnotes(results: Mapping[str, Mapping]) -> list[str]:
    notes = []
    for method, result in results.items():
        parts = []
        seg = result.get("segmentation")
        if seg:
            parts.append(
                f"P@IoU over {seg['num_scored']} masks ({seg['num_skipped_empty_reference']} empty skipped), "
                f"threshold {seg['threshold']}"
            )
        ea = result.get("emotion_alignment")
        if ea:
            accuracy = ea.get("classifier_test_accuracy")
            accuracy = "unknown" if accuracy is None else f"{100 * accuracy:.1f}%"
            parts.append(f"EA judge {ea.get('classifier_base_model') or ea['classifier']} (ArtEmis test accuracy {accuracy})")
        text = result.get("explanation")
        if text:
            if "clip_model" in text:
                parts.append(f"CS = 100 x CLIPScore with {text['clip_model']} ({text['clip_score_definition']})")
            if text.get("meteor_error"):
                parts.append(text["meteor_error"])
        if parts:
            notes.append(f"{method}: " + "; ".join(parts) + ".")
    return notes


def format_table1_markdown(rows: Mapping[str, Mapping]) -> str:
    """Markdown Table 1: one line per method, columns in the paper's order, "–" where not available.

    ``rows`` maps a method name to either a Table-1 row ({column key: value}, e.g. PAPER_TABLE1_EMOSEM)
    or the dict returned by :func:`compute_table1` (then a footnote names the judge, CLIP and counts).
    """
    if not rows:
        raise ValueError("rows is empty; expected {method name: Table-1 row or compute_table1 result}.")
    headers = ["Method"] + [header for header, _, _ in TABLE1_COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join([":---"] + ["---:"] * len(TABLE1_COLUMNS)) + "|"]
    computed = {}
    for method, row in rows.items():
        if "row" in row:
            computed[method] = row
            row = row["row"]
        unknown = set(row) - {key for _, key, _ in TABLE1_COLUMNS}
        if unknown:
            raise ValueError(f"row {method!r} has unknown column key(s) {sorted(unknown)}.")
        cells = [_cell(row.get(key), decimals) for _, key, decimals in TABLE1_COLUMNS]
        lines.append("| " + " | ".join([method] + cells) + " |")
    notes = _footnotes(computed)
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines) + "\n"
