"""examples/evaluate.py and the library behind it: outputs, table order, batching invariance, offsets."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from datasets_emosem import SYNTHETIC_ELEMENTS, make_synthetic_artworks
from emosem.evaluation import Prediction, element_mention_rate, predict_dataset, score_predictions, write_evaluation
from tests.helpers import tiny_model, tiny_processor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    tiny_model().save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    return folder


def test_predictions_do_not_depend_on_batch_size():
    rows = make_synthetic_artworks(12, seed=2, image_size=64)["train"]
    model, proc = tiny_model(), tiny_processor()
    a = predict_dataset(model, proc, rows, batch_size=1, seed=7, progress=False)
    b = predict_dataset(model, proc, rows, batch_size=4, seed=7, progress=False)
    assert [p.explanation for p in a] == [p.explanation for p in b]
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.saliency, y.saliency, atol=1e-5)
        assert x.saliency.shape == x.gt_mask.shape == (64, 64)
        assert x.saliency.dtype == np.float32 and 0 <= x.saliency.min() and x.saliency.max() <= 1


def test_emotion_offset_asks_about_another_emotion():
    rows = make_synthetic_artworks(8, seed=2, image_size=64)["train"]
    preds = predict_dataset(tiny_model(), tiny_processor(), rows, emotion_offset=1, progress=False)
    for p in preds:
        assert p.emotion != p.target_emotion


def test_element_mention_rate_counts_whole_words():
    def pred(emotion, text):
        return Prediction("p", emotion, emotion, text, np.zeros((2, 2), np.float32), None)

    preds = [pred("amusement", "the star makes me smile"), pred("awe", "the moonlight"), pred("fear", "an eye!")]
    assert element_mention_rate(preds, SYNTHETIC_ELEMENTS) == pytest.approx(200 / 3)


def test_score_predictions_with_hand_made_masks():
    gt = np.zeros((10, 10), bool)
    gt[:5] = True
    good = Prediction("a", "awe", "awe", "the moon", gt.astype(np.float32), gt, ["the moon is big"])
    bad = Prediction("b", "awe", "awe", "the moon", (~gt).astype(np.float32), gt, ["the moon is big"])
    metrics = score_predictions([good, bad], text_metrics=False)
    assert metrics["seg_P@50"] == 50.0 and metrics["num_scored"] == 2
    assert good.iou == 1.0 and bad.iou == 0.0


def test_evaluate_script_writes_everything(tmp_path, saved_model):
    out = tmp_path / "eval"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "examples", "evaluate.py"), "--model", str(saved_model), "--dataset", "synthetic",
         "--synthetic-n", "30", "--synthetic-image-size", "64", "--batch-size", "4", "--overlays", "2", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 3 and {"painting", "emotion", "explanation", "iou"} <= set(records[0])
    saliency = np.load(out / "saliency.npz", allow_pickle=False)
    assert sorted(saliency.files) == ["000000", "000001", "000002"] and saliency["000000"].shape == (64, 64)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"seg_P@50", "bbox_P@25", "B1", "R", "element_mention_rate"} <= set(metrics)
    header = (out / "table.md").read_text().splitlines()[0]
    columns = [c.strip() for c in header.strip("|").split("|")][1:]
    assert columns == ["Bbox P@25", "Bbox P@50", "Seg P@25", "Seg P@50", "EA", "B1", "B2", "B3", "B4", "M", "R", "CS"]
    assert len(list((out / "overlays").glob("*.png"))) == 2
    assert "Seg P@50" in result.stdout


def test_full_disk_while_writing_predictions_is_reported_and_leaves_no_partial_file(tmp_path, monkeypatch):
    import errno

    from emosem.atomic_io import OutputWriteError

    gt = np.ones((4, 4), bool)
    preds = [Prediction("a", "awe", "awe", "the moon", gt.astype(np.float32), gt, ["the moon"])]
    metrics = score_predictions(preds, text_metrics=False)

    def full_disk_savez(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full_disk_savez)
    with pytest.raises(OutputWriteError, match=r"saliency.npz: cannot write the output file \(no space left on the device\)"):
        write_evaluation(str(tmp_path), preds, metrics)
    assert not (tmp_path / "saliency.npz").exists() and not (tmp_path / "metrics.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
