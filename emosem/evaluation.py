"""Run an EmoSEM checkpoint over an evaluation set and score it as the paper's Table 1 does.

`predict_dataset` runs the model (batched, progress bar, one seed per row so results do not depend
on the batch size); `score_predictions` applies the metrics of `metrics/`; `write_evaluation` writes
per-sample predictions (JSONL), saliency maps (compressed .npz), metrics (JSON) and the markdown table.
`main` is the command line behind `examples/evaluate.py` and `emosem evaluate`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from modeling_emosem.configuration_emosem import EMOTIONS

from .atomic_io import write_atomic
from .metrics_utils import PAPER_TABLE1_EMOSEM, TABLE1_COLUMNS, compute_table1, format_table1_markdown, load_metric_module


@dataclass
class Prediction:
    """One (painting, emotion) row: what the model said and what it was scored against."""

    painting: str
    emotion: str  # the emotion the model was asked about
    target_emotion: str  # the row's annotated emotion (differs only with an emotion offset)
    explanation: str
    saliency: np.ndarray  # (H, W) float32 in [0, 1], image size
    gt_mask: np.ndarray | None  # (H, W) bool, image size
    references: list[str] = field(default_factory=list)
    image: object = None  # PIL image, kept for CLIPScore and overlays


def _emotion_names(dataset) -> list[str]:
    feature = dataset.features.get("emotion") if hasattr(dataset, "features") else None
    return list(getattr(feature, "names", EMOTIONS))


def _references(row: dict) -> list[str]:
    if row.get("utterances"):
        return list(row["utterances"])
    for key in ("explanation", "utterance"):
        if row.get(key):
            return [row[key]]
    return []


@torch.inference_mode()
def predict_dataset(
    model,
    processor,
    dataset,
    *,
    batch_size: int = 16,
    seed: int = 0,
    emotion_offset: int = 0,
    max_samples: int | None = None,
    do_sample: bool | None = None,
    keep_images: bool = True,
    progress: bool = True,
    feature_cache=None,
) -> list[Prediction]:
    """Segment and explain every row of `dataset` (rows with `image`, `emotion`, optionally `mask`,
    `utterances`/`explanation`, `painting`).

    `emotion_offset` asks about emotion (e + offset) mod 8 instead of the annotated e: a model that
    really listens to the emotion then misses the annotated stimulus (the conditioning check).
    Row i samples with seed `seed + i`.

    `feature_cache`: a `emosem.feature_cache.FeatureCache` of `dataset` (or its folder, verified against the
    model, processor and dataset): the image encoders are skipped, and images are decoded only for `keep_images`.
    """
    model.eval()
    names = _emotion_names(dataset)
    n = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    device = next(model.parameters()).device
    if feature_cache is not None and not hasattr(feature_cache, "load"):
        from .feature_cache import open_feature_cache

        feature_cache = open_feature_cache(feature_cache, model, processor, dataset, role="eval")
    rows_source = dataset
    if feature_cache is not None and not keep_images and "image" in getattr(dataset, "column_names", []):
        rows_source = dataset.remove_columns(["image"])  # cached features: nothing needs the pixels
    out: list[Prediction] = []
    bar = tqdm(total=n, desc="evaluating", unit="img", disable=not progress)
    for start in range(0, n, batch_size):
        rows = [rows_source[i] for i in range(start, min(start + batch_size, n))]
        targets = [names[r["emotion"]] if not isinstance(r["emotion"], str) else r["emotion"] for r in rows]
        asked = [EMOTIONS[(EMOTIONS.index(t) + emotion_offset) % len(EMOTIONS)] for t in targets]
        if feature_cache is None:
            batch = processor(images=[r["image"] for r in rows], emotions=asked)
            inputs = {"pixel_values": batch["pixel_values"].to(device, model.dtype),
                      "clip_pixel_values": batch["clip_pixel_values"].to(device, model.dtype)}
        else:
            batch = dict(processor(emotions=asked))
            slots = [feature_cache.slot(start + i, r.get("painting")) for i, r in enumerate(rows)]
            cached = feature_cache.load(slots)
            batch.update(original_sizes=cached["original_sizes"], reshaped_input_sizes=cached["reshaped_input_sizes"])
            inputs = {"image_embeddings": cached["image_embeddings"].to(device, model.dtype),
                      "clip_features": cached["clip_features"].to(device, model.dtype)}
        gen = model.segment_and_explain(
            emotion_ids=batch["emotion_ids"].to(device),
            prompt_input_ids=batch["prompt_input_ids"].to(device),
            do_sample=do_sample,
            seeds=[seed + start + i for i in range(len(rows))],
            **inputs,
        )
        saliency = processor.post_process_masks(gen.pred_masks.float().cpu(), batch["original_sizes"], batch["reshaped_input_sizes"])
        texts = processor.batch_decode(gen.sequences.cpu())
        for i, (row, sal, text) in enumerate(zip(rows, saliency, texts)):
            mask = row.get("mask")
            out.append(
                Prediction(
                    painting=str(row.get("painting", start + i)),
                    emotion=asked[i],
                    target_emotion=targets[i],
                    explanation=text,
                    saliency=sal.numpy().astype(np.float32),
                    gt_mask=None if mask is None else np.asarray(mask).astype(bool),
                    references=_references(row),
                    image=row["image"] if keep_images else None,
                )
            )
        bar.update(len(rows))
    bar.close()
    return out


def table1_row(metrics: dict) -> dict:
    """The Table-1 columns of a metrics dict (others, like mean IoU or counts, stay in metrics.json)."""
    return {key: metrics.get(key) for _, key, _ in TABLE1_COLUMNS}


def element_mention_rate(predictions: Sequence[Prediction], elements: dict[str, str]) -> float:
    """Percent of explanations that name the visual element tied to the asked emotion (synthetic set)."""
    hits = sum(re.search(rf"\b{re.escape(elements[p.emotion])}\b", p.explanation.lower()) is not None for p in predictions)
    return 100.0 * hits / max(len(predictions), 1)


def score_predictions(
    predictions: Sequence[Prediction],
    *,
    judge: str | None = None,
    clip_model: str | None = None,
    threshold: float = 0.35,
    text_metrics: bool = True,
    synthetic_elements: dict[str, str] | None = None,
) -> dict:
    """Table-1 metrics of `predictions` (+ per-sample IoUs and, for the synthetic set, the element rate)."""
    scored = [p for p in predictions if p.gt_mask is not None]
    result: dict = {"num_samples": len(predictions)}
    if scored:
        seg = load_metric_module("precision_at_iou").compute_precision_at_iou(
            [p.saliency for p in scored], [p.gt_mask for p in scored], threshold=threshold, return_per_sample=True
        )
        for p, iou in zip(scored, seg.pop("seg_ious")):
            p.iou = iou
        seg.pop("bbox_ious")
        result.update(seg)
    if text_metrics and any(p.references for p in predictions):
        with_refs = [p for p in predictions if p.references]
        table = compute_table1(
            explanations=[p.explanation for p in with_refs],
            references=[p.references for p in with_refs],
            images=[p.image for p in with_refs] if clip_model else None,
            target_emotions=[p.emotion for p in with_refs] if judge else None,
            judge=judge,
            clip_model=clip_model,
        )
        for key, value in table["row"].items():
            if value is not None:
                result[key] = value
        if table["emotion_alignment"] is not None:
            ea = table["emotion_alignment"]
            result["EA_judge"] = {k: ea[k] for k in ea if k not in ("confusion_matrix", "emotion_alignment")}
        if table["explanation"] is not None and table["explanation"].get("meteor_error"):
            result["meteor_error"] = table["explanation"]["meteor_error"]
        if clip_model:
            result["clip_model"] = str(clip_model)
    if synthetic_elements is not None:
        result["element_mention_rate"] = element_mention_rate(predictions, synthetic_elements)
    return result


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "sample"
    return stem[:120]


def write_evaluation(out_dir: str, predictions: Sequence[Prediction], metrics: dict, *, name: str = "EmoSEM", overlays: int = 0) -> dict:
    """Write predictions.jsonl, saliency.npz, metrics.json and table.md (and N overlay PNGs) into `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, v) for k, v in
             {"predictions": "predictions.jsonl", "saliency": "saliency.npz", "metrics": "metrics.json", "table": "table.md"}.items()}
    # Every file goes to a temporary name and is renamed into place: a full disk or a crash never
    # leaves a truncated metrics.json that looks complete.
    lines = []
    for i, p in enumerate(predictions):
        record = {"index": i, "painting": p.painting, "emotion": p.emotion, "target_emotion": p.target_emotion,
                  "explanation": p.explanation, "iou": getattr(p, "iou", None)}
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    write_atomic(Path(paths["predictions"]), lambda f: f.write("".join(lines).encode("utf-8")))
    # float16 keeps the maps small; keys are row indices (painting names may repeat across emotions).
    maps = {f"{i:06d}": p.saliency.astype(np.float16) for i, p in enumerate(predictions)}
    write_atomic(Path(paths["saliency"]), lambda f: np.savez_compressed(f, **maps))
    text = json.dumps(metrics, indent=2, default=str)
    write_atomic(Path(paths["metrics"]), lambda f: f.write(text.encode("utf-8")))
    table = format_table1_markdown({name: table1_row(metrics), "EmoSEM (paper, APOLO test)": PAPER_TABLE1_EMOSEM})
    write_atomic(Path(paths["table"]), lambda f: f.write((table + "\n").encode("utf-8")))
    if overlays:
        from .visualization import overlay

        overlay_dir = os.path.join(out_dir, "overlays")
        os.makedirs(overlay_dir, exist_ok=True)
        for i, p in enumerate(predictions[:overlays]):
            if p.image is None:
                raise ValueError("overlays need the images: run predict_dataset with keep_images=True")
            result = {"emotion": p.emotion, "saliency": p.saliency, "mask": p.saliency >= 0.5, "explanation": p.explanation,
                      "score": getattr(p, "iou", None) or 0.0}  # the caption shows the IoU as the score
            overlay(p.image, result).save(os.path.join(overlay_dir, f"{i:04d}_{_safe_stem(p.painting)}_{p.emotion}.png"))
    return paths


# --------------------------------------------------------------------------- command line
def _load_eval_dataset(args):
    if args.dataset == "synthetic":
        from datasets_emosem import make_synthetic_artworks

        splits = make_synthetic_artworks(args.synthetic_n, seed=args.synthetic_seed, image_size=args.synthetic_image_size)
        return splits["test" if args.split in ("test", None) else args.split]
    from datasets_emosem import load_apolo

    if not args.apolo_root or not args.image_root:
        raise SystemExit("--dataset apolo needs --apolo-root and --image-root")
    return load_apolo(args.apolo_root, args.image_root, split=args.split or "test", artemis_csv=args.artemis_csv,
                      on_missing=args.on_missing)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emosem evaluate", description="Evaluate an EmoSEM checkpoint (paper Table 1 protocol).")
    p.add_argument("--model", required=True, help="folder written by save_pretrained / train.py, or a Hub id")
    p.add_argument("--dataset", choices=["apolo", "synthetic"], default="apolo")
    p.add_argument("--apolo-root", help="APOLO release folder (apolo.json, apolo_pixel_map/)")
    p.add_argument("--image-root", help="folder of APOLO images (<painting>.jpg)")
    p.add_argument("--artemis-csv", help="ArtEmis csv, needed when apolo_<split>.json is absent")
    p.add_argument("--split", default=None, help="APOLO: val | test (default test); synthetic: train | validation | test")
    p.add_argument("--on-missing", choices=["error", "skip"], default="error")
    p.add_argument("--synthetic-n", type=int, default=400)
    p.add_argument("--synthetic-seed", type=int, default=1)
    p.add_argument("--synthetic-image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0, help="row i samples its explanation with seed + i")
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of nucleus sampling")
    p.add_argument("--max-samples", type=int)
    p.add_argument("--emotion-offset", type=int, default=0, help="ask about emotion e+k: the conditioning check")
    p.add_argument("--judge", help="text-emotion classifier folder for EA (examples/train_emotion_classifier.py)")
    p.add_argument("--clip-model", help="local CLIP folder for CLIPScore")
    p.add_argument("--no-text-metrics", action="store_true", help="skip BLEU/METEOR/ROUGE-L")
    p.add_argument("--threshold", type=float, default=0.35)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--feature-cache", "--feature_cache", dest="feature_cache",
                   help="cached SAM/CLIP features of this evaluation set (examples/cache_features.py): DIR or DIR/eval")
    p.add_argument("--overlays", type=int, default=0, help="save this many overlay PNGs")
    p.add_argument("--out", required=True, help="output folder")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(args.model, trust_remote_code=True).to(args.device).eval()
    processor = AutoProcessor.from_pretrained(args.model, trust_remote_code=True)
    dataset = _load_eval_dataset(args)
    cache = None
    if args.feature_cache:
        from .feature_cache import open_feature_cache

        cache = open_feature_cache(args.feature_cache, model, processor, dataset, role="eval")
    predictions = predict_dataset(model, processor, dataset, batch_size=args.batch_size, seed=args.seed,
                                  emotion_offset=args.emotion_offset, max_samples=args.max_samples,
                                  do_sample=False if args.greedy else None, feature_cache=cache,
                                  keep_images=cache is None or bool(args.clip_model or args.overlays))
    elements = None
    if args.dataset == "synthetic":
        from datasets_emosem import SYNTHETIC_ELEMENTS as elements
    metrics = score_predictions(predictions, judge=args.judge, clip_model=args.clip_model, threshold=args.threshold,
                                text_metrics=not args.no_text_metrics, synthetic_elements=elements)
    metrics.update(model=args.model, dataset=args.dataset, split=args.split, seed=args.seed, emotion_offset=args.emotion_offset,
                   decoding="greedy" if args.greedy else f"nucleus p={model.config.top_p}")
    write_evaluation(args.out, predictions, metrics, overlays=args.overlays)
    print(format_table1_markdown({"EmoSEM (this run)": table1_row(metrics), "EmoSEM (paper, APOLO test)": PAPER_TABLE1_EMOSEM}))
    if "element_mention_rate" in metrics:
        print(f"explanations naming the emotion's element: {metrics['element_mention_rate']:.1f}%")
    return metrics
