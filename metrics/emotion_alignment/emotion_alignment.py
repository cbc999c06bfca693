"""Emotion Alignment (EA): % of generated explanations whose emotion, as read by a text -> emotion judge,
equals the target emotion (EmoSEM: the emotion of the mask / prompt). ArtEmis protocol (Achlioptas et al.).

Self-contained `evaluate` module (imports nothing from the emosem packages).

The judge is a local Hugging Face sequence-classification folder whose config has `id2label` over the
ArtEmis labels (e.g. one trained by examples/train_emotion_classifier.py). The prediction is the arg-max
over all of the judge's labels (so "something else" counts as a miss). EA depends on the judge: the result
names it (`classifier`, `classifier_base_model`) with its recorded `classifier_test_accuracy`
(`config.emosem_judge`, None when the folder has no record), so EA figures can state which judge was used.
"""

import datasets
import evaluate
import numpy as np
import sklearn.metrics
import torch
from transformers import AutoModelForSequenceClassification
from transformers import AutoTokenizer

_CITATION = """\
@inproceedings{achlioptas2021artemis,
  title={ArtEmis: Affective Language for Visual Art},
  author={Achlioptas, Panos and Ovsjanikov, Maks and Haydarov, Kilichbek and Elhoseiny, Mohamed and Guibas, Leonidas},
  booktitle={CVPR},
  year={2021}
}
"""

_DESCRIPTION = """\
Emotion Alignment: percentage of explanations that a text-to-emotion classifier assigns to their target emotion,
with the confusion matrix (rows: target, columns: predicted, in the judge's label order).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of N explanations (str).
    references: list of N target emotions (str, one of the judge's labels, e.g. "awe").
    classifier: path of a local sequence-classification folder (model + tokenizer) with `id2label`.
    batch_size (int, default 64), max_length (int, default 64), device (str, default "cpu").
Returns:
    dict with `emotion_alignment` (percent), `confusion_matrix` (list of lists, rows = target, cols = predicted),
    `labels` (the judge's label order), `predicted_emotions` (N str), `classifier`, `classifier_base_model`,
    `classifier_test_accuracy`, `num_samples`.
"""


def judge_labels(config):
    """The judge's labels in id order, or a ValueError when the config has only generic LABEL_i names."""
    labels = [config.id2label[index] for index in sorted(int(key) for key in config.id2label)]
    if all(label == f"LABEL_{index}" for index, label in enumerate(labels)):
        raise ValueError(
            "The classifier's config has no emotion names in id2label (only LABEL_0, LABEL_1, ...); "
            "expected a judge trained on ArtEmis labels, e.g. by examples/train_emotion_classifier.py."
        )
    return labels


def compute_emotion_alignment(predictions, references, classifier, batch_size=64, max_length=64, device="cpu"):
    """EA for N explanations against N target emotions with the judge folder `classifier`. Returns the metric dict."""
    predictions = list(predictions)
    references = list(references)
    if len(predictions) != len(references):
        raise ValueError(
            f"Got {len(predictions)} explanations but {len(references)} target emotions; expected one target each."
        )
    if len(predictions) == 0:
        raise ValueError("predictions and references are empty; expected at least one explanation.")
    if classifier is None:
        raise ValueError("`classifier` is required: the path of a local text-to-emotion sequence-classification folder.")
    for index, text in enumerate(predictions):
        if not isinstance(text, str):
            raise ValueError(f"predictions[{index}] must be a string; got {type(text).__name__}.")

    model = AutoModelForSequenceClassification.from_pretrained(classifier).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(classifier)
    labels = judge_labels(model.config)
    label_ids = {label: index for index, label in enumerate(labels)}
    unknown = sorted({str(target) for target in references if target not in label_ids})
    if unknown:
        raise ValueError(f"Unknown target emotion(s) {unknown}; the judge's labels are {labels}.")
    targets = np.array([label_ids[target] for target in references])

    predicted = []
    with torch.no_grad():
        for start in range(0, len(predictions), batch_size):
            batch = tokenizer(
                predictions[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            predicted.append(model(**batch).logits.argmax(dim=-1).cpu().numpy())
    predicted = np.concatenate(predicted)

    record = getattr(model.config, "emosem_judge", None) or {}
    matrix = sklearn.metrics.confusion_matrix(targets, predicted, labels=list(range(len(labels))))
    return {
        "emotion_alignment": 100.0 * float((predicted == targets).mean()),
        "confusion_matrix": matrix.tolist(),
        "labels": labels,
        "predicted_emotions": [labels[index] for index in predicted],
        "classifier": str(classifier),
        "classifier_base_model": record.get("base_model"),
        "classifier_test_accuracy": record.get("test_accuracy"),
        "num_samples": len(predictions),
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EmotionAlignment(evaluate.Metric):
    """`evaluate` wrapper around `compute_emotion_alignment`."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def compute(self, *, predictions=None, references=None, **kwargs):
        """Check counts before `evaluate`'s compute (its own message does not say what to fix). Arguments below."""
        if predictions is not None and references is not None and len(predictions) != len(references):
            raise ValueError(
                f"Got {len(predictions)} explanations but {len(references)} target emotions; expected one target each."
            )
        if predictions is not None and len(predictions) == 0:
            raise ValueError("predictions and references are empty; expected at least one explanation.")
        return super().compute(predictions=predictions, references=references, **kwargs)

    def _compute(self, predictions, references, classifier=None, batch_size=64, max_length=64, device="cpu"):
        return compute_emotion_alignment(predictions, references, classifier, batch_size, max_length, device)
