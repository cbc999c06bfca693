"""Table 1 aggregation (emosem.metrics_utils) and offline loading of the three metric modules."""

import os
from pathlib import Path

import evaluate
import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.rouge.rouge import Rouge

from emosem.metrics_utils import (
    PAPER_TABLE1_EMOSEM,
    compute_table1,
    format_table1_markdown,
    group_references,
    load_metric_module,
)
from tests.test_metrics_helpers import build_tiny_clip, random_images, trained_judge
from tests.test_metrics_precision_at_iou import crafted_samples

METRICS = Path(__file__).resolve().parents[1] / "metrics"

EXPLANATIONS = [
    "the funny dog makes me laugh",
    "i am in awe of the majestic sky",
    "the scary frightening ghost",
    "the sad lonely boy",
    "the furious angry king",
]
TARGETS = ["amusement", "awe", "fear", "sadness", "anger"]
ANNOTATIONS = [  # (painting, emotion, utterance) as in ArtEmis rows
    ("p0", "amusement", "the dog is funny"),
    ("p0", "amusement", "this makes me laugh"),
    ("p1", "awe", "the sky is majestic"),
    ("p2", "fear", "a scary ghost"),
    ("p3", "sadness", "the boy is sad and lonely"),
    ("p4", "anger", "the king is angry"),
    ("p4", "anger", "a furious king"),
]


@pytest.mark.parametrize("name", ["precision_at_iou", "emotion_alignment", "explanation"])
def test_evaluate_load_works_offline(name):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert isinstance(evaluate.load(str(METRICS / name)), evaluate.Metric)


def test_group_references():
    groups = group_references(*zip(*ANNOTATIONS))
    assert groups[("p0", "amusement")] == ["the dog is funny", "this makes me laugh"]
    assert len(groups) == 5


def test_compute_table1_and_markdown(tmp_path):
    masks, gts = crafted_samples()  # 5 samples; hand-computed in test_metrics_precision_at_iou
    groups = group_references(*zip(*ANNOTATIONS))
    references = [groups[(f"p{i}", target)] for i, target in enumerate(TARGETS)]
    judge, record = trained_judge()
    clip = build_tiny_clip(tmp_path / "clip")
    images = random_images(5)

    result = compute_table1(
        masks, gts, EXPLANATIONS, references, images, TARGETS, judge=judge, clip_model=clip
    )
    row = result["row"]
    assert (row["bbox_P@25"], row["bbox_P@50"], row["seg_P@25"], row["seg_P@50"]) == (75.0, 50.0, 75.0, 75.0)

    gts_coco = dict(enumerate(references))
    res_coco = {i: [text] for i, text in enumerate(EXPLANATIONS)}
    bleu, _ = Bleu(4).compute_score(gts_coco, res_coco, verbose=0)
    rouge, _ = Rouge().compute_score(gts_coco, res_coco)
    assert [row[f"B{n}"] for n in range(1, 5)] == pytest.approx([100 * b for b in bleu])
    assert row["R"] == pytest.approx(100 * rouge)
    assert row["M"] == pytest.approx(100 * result["explanation"]["meteor"])

    ea = load_metric_module("emotion_alignment").compute_emotion_alignment(EXPLANATIONS, TARGETS, str(judge))
    assert row["EA"] == ea["emotion_alignment"]
    cosines = load_metric_module("explanation").clip_cosines(EXPLANATIONS, images, str(clip), "A photo depicts ")
    assert row["CS"] == pytest.approx(100 * float(np.mean(2.5 * np.maximum(cosines, 0.0))))

    table = format_table1_markdown({"EmoSEM (paper)": PAPER_TABLE1_EMOSEM, "ours": result})
    lines = table.splitlines()
    assert lines[0] == "| Method | Bbox P@25 | Bbox P@50 | Seg P@25 | Seg P@50 | EA | B1 | B2 | B3 | B4 | M | R | CS |"
    assert lines[2] == (
        "| EmoSEM (paper) | 86.29 | 68.65 | 78.06 | 45.45 | 56.6 | 21.4 | 8.8 | 4.0 | 2.0 | 8.4 | 18.2 | 56.8 |"
    )
    assert lines[3].startswith("| ours | 75.00 | 50.00 | 75.00 | 75.00 | ")
    assert f"{row['EA']:.1f} | {row['B1']:.1f} |" in lines[3]
    footnote = lines[-1]
    assert "4 masks (1 empty skipped)" in footnote
    assert f"EA judge sentence-transformers/all-MiniLM-L6-v2 (ArtEmis test accuracy {100 * record['test_accuracy']:.1f}%)" in footnote
    assert f"CLIPScore with {clip}" in footnote


def test_segmentation_only_rows_show_dashes():
    masks, gts = crafted_samples()
    result = compute_table1(masks, gts)
    assert result["explanation"] is None and result["row"]["EA"] is None
    line = format_table1_markdown({"seg only": result}).splitlines()[2]
    assert line == "| seg only | 75.00 | 50.00 | 75.00 | 75.00 | – | – | – | – | – | – | – | – |"


def test_mismatched_lengths_and_bad_rows():
    masks, gts = crafted_samples()
    with pytest.raises(ValueError, match="one entry per"):
        compute_table1(masks, gts[:4])
    with pytest.raises(ValueError, match="both `saliency_maps` and `gt_masks`"):
        compute_table1(masks)
    with pytest.raises(ValueError, match="unknown column"):
        format_table1_markdown({"x": {"P@25": 1.0}})
