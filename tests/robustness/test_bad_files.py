"""A corpus of broken and awkward image files (tests/robustness/corpus.py) through every entry point that reads
images: `load_image`, the pipeline, `emosem predict`, the datasets' up-front file check and the web demo's
handler. Each file is handled (loaded upright, at its size, as RGB) or rejected with an error naming it; nothing
crashes or hangs."""

import os

import numpy as np
import pytest
import torch
from transformers import pipeline

from datasets_emosem.images import check_files, verify_image
from emosem.app import make_handler
from emosem.predict import predict_to_folder
from modeling_emosem.image_utils_emosem import load_image
from tests.helpers import tiny_model, tiny_processor
from tests.robustness._util import deadline
from tests.robustness.corpus import build_corpus
from tests.robustness.counters import tried


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return folder, build_corpus(folder)


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    return pipeline(task="emotion-segmentation", model=tiny_model().eval(), processor=tiny_processor())


def test_load_image_handles_or_names_every_file(corpus):
    folder, cases = corpus
    for name, (kind, detail) in cases.items():
        path = str(folder / name)
        with deadline(20, f"load_image({name})"):
            if kind == "ok":
                image = load_image(path)
                assert image.mode == "RGB" and image.size == detail, (name, image.mode, image.size)
            else:
                with pytest.raises(ValueError) as info:
                    load_image(path)
                assert name in str(info.value) and detail in str(info.value), (name, str(info.value))
        tried("bad inputs")


def test_pipeline_handles_or_names_every_file(corpus, pipe):
    folder, cases = corpus
    for name, (kind, detail) in cases.items():
        path = str(folder / name)
        with deadline(30, f"pipeline({name})"):
            if kind == "ok":
                (result,) = pipe(path, emotions=["awe"], max_new_tokens=3)
                assert result["mask"].size == detail and result["saliency"].shape == detail[::-1]
                assert result["saliency"].dtype == np.float32 and np.isfinite(result["saliency"]).all()
                assert 0.0 <= result["score"] <= 1.0 and isinstance(result["explanation"], str)
            else:
                with pytest.raises(ValueError) as info:
                    pipe(path, emotions=["awe"], max_new_tokens=3)
                assert name in str(info.value), str(info.value)
        tried("bad inputs")


def test_predict_writes_the_good_files_and_names_the_bad_ones(corpus, pipe, tmp_path):
    folder, cases = corpus
    paths = [folder / name for name in cases]
    with deadline(120, "predict_to_folder over the corpus"):
        report = predict_to_folder(pipe, paths, tmp_path / "out", emotions=["fear"], batch_size=4, max_new_tokens=3)
    bad = {name for name, (kind, _) in cases.items() if kind == "error"}
    assert {os.path.basename(p) for p in report.errors} == bad
    for path, message in report.errors.items():
        assert os.path.basename(path) in message
    assert len(report.json_files) == len(cases) - len(bad)
    assert not [p for p in os.listdir(tmp_path / "out") if p.endswith(".tmp")]  # no temporary file left
    tried("bad inputs", len(cases))


def test_the_up_front_dataset_check_flags_every_broken_file(corpus):
    """The loaders check every file before training; a file that passes must load (no failure mid-epoch)."""
    folder, cases = corpus
    with deadline(30, "check_files over the corpus"):
        report = check_files([str(folder / name) for name in cases], kind="image")
    flagged = {os.path.basename(p) for p in report.bad}
    assert flagged == {name for name, (kind, _) in cases.items() if kind == "error"}, flagged
    assert verify_image(str(folder / "missing.png")) == "missing"
    tried("bad inputs", len(cases) + 1)


def test_demo_handler_reports_each_bad_upload_and_keeps_working(corpus, pipe):
    folder, cases = corpus
    run = make_handler(pipe)
    for name, (kind, _) in cases.items():
        gallery, text, status = run(str(folder / name), ["awe"], 0, 0.5)
        if kind == "ok":
            assert status == f"Done: 1 emotion(s) for {name}.", status
            assert len(gallery) == 1
        else:
            assert status.startswith(f"Error: {name}:") and gallery == [] and text == "", status
            assert str(folder) not in status
        tried("bad inputs")


def test_arrays_and_objects_that_are_not_images(pipe):
    cases = [
        (np.zeros((0, 5, 3), np.uint8), "empty"),
        (np.zeros((5, 5, 2), np.uint8), "expected an array of shape"),
        (np.zeros((2, 3, 4, 5), np.uint8), "expected an array of shape"),
        (np.full((8, 8), np.nan, np.float32), "NaN"),
        (np.ones((1, 500), np.uint8), "aspect ratio"),
        (12345, "expected a path, a PIL image or a numpy array"),
        (b"\x89PNG", "expected a path, a PIL image or a numpy array"),
    ]
    for value, words in cases:
        with pytest.raises((ValueError, TypeError)) as info:
            pipe(value, emotions=["awe"], max_new_tokens=2)
        assert words in str(info.value), str(info.value)
        tried("bad inputs")
    with pytest.raises(FileNotFoundError, match="no-such-painting.jpg"):
        pipe("/nonexistent/no-such-painting.jpg", emotions=["awe"])
    with pytest.raises(ValueError, match=r"images\[1\]"):
        pipe([np.zeros((8, 8, 3), np.uint8), np.zeros((0, 0), np.uint8)], emotions=["awe"], max_new_tokens=2)
    tried("bad inputs", 2)
