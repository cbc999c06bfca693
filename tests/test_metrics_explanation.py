"""Explanation metrics: equal pycocoevalcap's own scorers, METEOR without Java, CLIPScore by hand."""

import shutil
from pathlib import Path

import evaluate
import numpy as np
import pytest
import torch
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from transformers import CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

from tests.test_metrics_helpers import build_tiny_clip, random_images

METRIC_DIR = str(Path(__file__).resolve().parents[1] / "metrics" / "explanation")

# Already in ArtEmis token form, so the metric's tokenisation leaves them unchanged and the direct
# pycocoevalcap calls below see exactly the same strings.
PREDICTIONS = [
    "the sky makes me feel calm",
    "a dark scary forest at night",
    "the bright colors are joyful and fun",
]
REFERENCES = [
    ["the calm blue sky feels peaceful", "i feel calm looking at the sky"],
    ["the forest is dark and scary", "the night scene is frightening", "dark trees scare me"],
    ["the colors are bright and happy"],
]


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(METRIC_DIR)


@pytest.fixture(scope="module")
def module(metric):
    import sys

    return sys.modules[type(metric).__module__]


def _direct_coco():
    gts = {i: refs for i, refs in enumerate(REFERENCES)}
    res = {i: [hyp] for i, hyp in enumerate(PREDICTIONS)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    return bleu, rouge, gts, res


def test_tokenizer_is_identity_on_fixture_and_artemis_like(module):
    for text in PREDICTIONS + [ref for refs in REFERENCES for ref in refs]:
        assert module.artemis_tokenize(text) == text
    assert module.artemis_tokenize("I'm amazed by the 'bright' colors, it's the painting's mood!") == (
        "i am amazed by the bright colors it is the painting 's mood"
    )
    assert module.artemis_tokenize("It doesn't look-good; can't stop... (sad)") == (
        "it does not look good cannot stop ( sad )"
    )


def test_bleu_meteor_rouge_equal_pycocoevalcap(metric):
    bleu, rouge, gts, res = _direct_coco()
    result = metric.compute(predictions=PREDICTIONS, references=REFERENCES)
    for n in range(4):
        assert result[f"bleu_{n + 1}"] == pytest.approx(bleu[n], rel=1e-12)
    assert result["rouge_l"] == pytest.approx(rouge, rel=1e-12)
    assert shutil.which("java") is not None, "this test machine is expected to have Java for METEOR"
    meteor = Meteor()
    expected_meteor, _ = meteor.compute_score(gts, res)
    del meteor
    assert result["meteor"] == pytest.approx(expected_meteor, rel=1e-9)
    assert "meteor_error" not in result
    assert result["num_samples"] == 3


def test_missing_java_fails_meteor_only(metric, monkeypatch, tmp_path):
    bleu, rouge, _, _ = _direct_coco()
    monkeypatch.setenv("PATH", str(tmp_path))  # no java here
    with pytest.warns(UserWarning, match="Java"):
        result = metric.compute(predictions=PREDICTIONS, references=REFERENCES)
    assert result["meteor"] is None
    assert "no `java` executable" in result["meteor_error"]
    assert result["bleu_4"] == pytest.approx(bleu[3], rel=1e-12)
    assert result["rouge_l"] == pytest.approx(rouge, rel=1e-12)


def test_clip_score_equals_hand_computation(metric, tmp_path):
    folder = build_tiny_clip(tmp_path / "clip")
    images = random_images(len(PREDICTIONS))
    result = metric.compute(
        predictions=PREDICTIONS, references=REFERENCES, images=images, clip_model=str(folder)
    )
    model = CLIPModel.from_pretrained(folder).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    processor = CLIPImageProcessor.from_pretrained(folder)
    expected = []
    with torch.no_grad():
        for text, image in zip(PREDICTIONS, images):
            ids = tokenizer("A photo depicts " + text, return_tensors="pt")
            text_out = model.get_text_features(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"])
            image_out = model.get_image_features(pixel_values=processor(images=image, return_tensors="pt").pixel_values)
            t = getattr(text_out, "pooler_output", text_out)[0].double()
            v = getattr(image_out, "pooler_output", image_out)[0].double()
            cos = float(t @ v / (t.norm() * v.norm()))
            expected.append(2.5 * max(cos, 0.0))
    assert result["clip_score"] == pytest.approx(float(np.mean(expected)), rel=1e-6)
    assert result["clip_model"] == str(folder)
    assert "2.5 * max(cos, 0)" in result["clip_score_definition"]


@pytest.mark.parametrize(
    "predictions, references, message",
    [
        (["a"], [["a"], ["b"]], "1 predictions but 2 reference lists"),
        ([], [], "empty"),
        (["a", "b"], [["a"], []], r"references\[1\] must be a non-empty list"),
    ],
)
def test_bad_input_raises_clear_errors(metric, predictions, references, message):
    with pytest.raises(ValueError, match=message):
        metric.compute(predictions=predictions, references=references)


def test_clip_needs_images_and_model(metric):
    with pytest.raises(ValueError, match="CLIPScore needs both"):
        metric.compute(predictions=["a"], references=[["a"]], images=random_images(1))
