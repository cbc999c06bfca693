"""Emotion Alignment with a real judge trained by examples/train_emotion_classifier.py on a fixture."""

import json
from pathlib import Path

import evaluate
import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from modeling_emosem.configuration_emosem import ARTEMIS_EMOTIONS
from tests.test_metrics_helpers import trained_judge, write_artemis_fixture

METRIC_DIR = str(Path(__file__).resolve().parents[1] / "metrics" / "emotion_alignment")

# Unseen sentences carrying the fixture's keywords, with the emotion each is written for.
EXPLANATIONS = [
    ("the funny dog makes me laugh", "amusement"),
    ("i am in awe of the majestic sky", "awe"),
    ("i feel calm and peaceful by the river", "contentment"),
    ("the thrilling exciting horses", "excitement"),
    ("the furious angry king", "anger"),
    ("a gross disgusting swamp", "disgust"),
    ("the scary frightening ghost", "fear"),
    ("the sad lonely boy", "sadness"),
]


@pytest.fixture(scope="module")
def judge():
    return trained_judge()


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(METRIC_DIR)


def _judge_predictions(folder, texts):
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")).logits
    return [model.config.id2label[int(i)] for i in logits.argmax(-1)]


def test_training_script_saves_a_named_judge_with_its_accuracy(judge):
    folder, record = judge
    config = json.loads((folder / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(9)] == list(ARTEMIS_EMOTIONS)
    assert config["label2id"] == {label: i for i, label in enumerate(ARTEMIS_EMOTIONS)}
    saved = config["emosem_judge"]
    assert saved == record
    assert saved["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    # 27 artworks -> test split round(0.1 * 27) = 3 artworks x 3 utterances, minus those the length filter drops.
    assert 0 < saved["num_test"] <= 9
    assert saved["test_accuracy"] >= 0.75, "the keyword fixture should be easy for MiniLM"


def test_ea_equals_hand_computed_value_and_confusion(judge, metric):
    folder, record = judge
    texts = [text for text, _ in EXPLANATIONS]
    targets = [emotion for _, emotion in EXPLANATIONS]
    predicted = _judge_predictions(folder, texts)
    result = metric.compute(predictions=texts, references=targets, classifier=str(folder))

    assert result["predicted_emotions"] == predicted
    assert result["emotion_alignment"] == pytest.approx(100.0 * np.mean([p == t for p, t in zip(predicted, targets)]))
    expected = np.zeros((9, 9), dtype=int)
    for target, guess in zip(targets, predicted):
        expected[ARTEMIS_EMOTIONS.index(target), ARTEMIS_EMOTIONS.index(guess)] += 1
    assert result["confusion_matrix"] == expected.tolist()
    assert result["labels"] == list(ARTEMIS_EMOTIONS)
    assert result["classifier"] == str(folder)
    assert result["classifier_base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert result["classifier_test_accuracy"] == record["test_accuracy"]
    assert result["num_samples"] == 8


def test_ea_is_100_when_the_judge_reads_every_target(judge, metric):
    folder, _ = judge
    texts = [text for text, _ in EXPLANATIONS]
    predicted = _judge_predictions(folder, texts)
    assert metric.compute(predictions=texts, references=predicted, classifier=str(folder))["emotion_alignment"] == 100.0
    # One target flipped to a different emotion -> exactly one miss in eight.
    flipped = list(predicted)
    flipped[0] = "sadness" if predicted[0] != "sadness" else "awe"
    result = metric.compute(predictions=texts, references=flipped, classifier=str(folder))
    assert result["emotion_alignment"] == pytest.approx(100.0 * 7 / 8)


def test_bad_input(judge, metric):
    folder, _ = judge
    with pytest.raises(ValueError, match="2 explanations but 1 target"):
        metric.compute(predictions=["a", "b"], references=["awe"], classifier=str(folder))
    with pytest.raises(ValueError, match="empty"):
        metric.compute(predictions=[], references=[], classifier=str(folder))
    with pytest.raises(ValueError, match=r"Unknown target emotion\(s\) \['joy'\]"):
        metric.compute(predictions=["a"], references=["joy"], classifier=str(folder))
    with pytest.raises(ValueError, match="`classifier` is required"):
        metric.compute(predictions=["a"], references=["awe"])


def test_text_splits_follow_the_official_artemis_split(tmp_path):
    from sklearn.model_selection import train_test_split

    from emosem.emotion_classifier import load_artemis_text_splits

    csv_path = write_artemis_fixture(tmp_path / "fixture.csv")
    splits = load_artemis_text_splits(csv_path, for_deep_nets=False)
    import pandas as pd

    df = pd.read_csv(csv_path)
    ids = sorted(set(df.art_style + df.painting))
    train, rest = train_test_split(ids, test_size=0.05 + 0.10, random_state=2021)
    val, test = train_test_split(rest, test_size=round(0.10 * len(ids)), random_state=2021)
    for name, artworks in (("train", train), ("val", val), ("test", test)):
        expected = df[(df.art_style + df.painting).isin(artworks)]
        assert sorted(splits[name]["utterance"]) == sorted(expected["utterance"])
        assert sorted(splits[name]["label"]) == sorted(expected["emotion"].map(ARTEMIS_EMOTIONS.index))


def test_deep_net_filter_drops_high_repetition_short_and_long(tmp_path):
    import csv

    from emosem.emotion_classifier import load_artemis_text_splits

    csv_path = write_artemis_fixture(tmp_path / "fixture.csv")
    with csv_path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Baroque", "crowded", "awe", "a majestic view seen by many people", 41])
        writer.writerow(["Baroque", "fear_painting-0", "fear", "so scary", 5])  # 2 tokens < 5
        writer.writerow(["Baroque", "fear_painting-0", "fear", " ".join(["scary"] * 40), 5])  # > 95th percentile
    kept = load_artemis_text_splits(csv_path)
    # The split is drawn over the artworks with repetition < 41 only, as the release script does.
    from sklearn.model_selection import train_test_split
    import pandas as pd

    df = pd.read_csv(csv_path)
    ids = sorted(set((df.art_style + df.painting)[df.repetition < 41]))
    train, rest = train_test_split(ids, test_size=0.15, random_state=2021)
    val, test = train_test_split(rest, test_size=round(0.10 * len(ids)), random_state=2021)
    in_test = df[(df.art_style + df.painting).isin(test) & (df.utterance.str.split().str.len() >= 5)]
    dropped = set(in_test["utterance"]) - set(kept["test"]["utterance"])
    assert set(kept["test"]["utterance"]) <= set(in_test["utterance"])
    # Only utterances longer than every kept train utterance (the 95th-percentile cut) may be missing.
    longest_kept = kept["train"]["utterance"].str.split().str.len().max()
    assert all(len(u.split()) > longest_kept for u in dropped)
    all_kept = [u for frame in kept.values() for u in frame["utterance"]]
    assert "a majestic view seen by many people" not in all_kept  # repetition >= 41 -> "rest"
    assert "so scary" not in all_kept
    assert " ".join(["scary"] * 40) not in all_kept
    unfiltered = load_artemis_text_splits(csv_path, for_deep_nets=False)
    assert "so scary" in [u for frame in unfiltered.values() for u in frame["utterance"]]
