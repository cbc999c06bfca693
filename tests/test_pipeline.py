"""pipeline("emotion-segmentation"): output contract, batching, seeds, sizes, shared encoder pass, bad input,
and loading in a fresh process with no prior import."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from modeling_emosem import EMOTIONS, EmotionSegmentationPipeline
from modeling_emosem.pipeline_emosem import row_seed
from tests.helpers import random_image, tiny_model, tiny_processor


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add synchronisation (and stall badly on a busy 2-core runner)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipe():
    return pipeline(task="emotion-segmentation", model=tiny_model().eval(), processor=tiny_processor())


def _check_result(result, image_size, emotions):
    width, height = image_size
    assert isinstance(result, list) and [r["emotion"] for r in result] == list(emotions)
    for r in result:
        assert set(r) == {"emotion", "score", "mask", "saliency", "explanation"}
        assert isinstance(r["score"], float) and 0.0 <= r["score"] <= 1.0
        assert isinstance(r["mask"], Image.Image) and r["mask"].mode == "L" and r["mask"].size == (width, height)
        assert set(np.unique(np.asarray(r["mask"]))) <= {0, 255}
        assert r["saliency"].dtype == np.float32 and r["saliency"].shape == (height, width)
        assert r["saliency"].min() >= 0.0 and r["saliency"].max() <= 1.0
        assert isinstance(r["explanation"], str)


def test_pipeline_class_and_task(pipe):
    assert isinstance(pipe, EmotionSegmentationPipeline)
    assert pipe.task == "emotion-segmentation"


def test_one_image_one_emotion(pipe):
    image = random_image(60, 90)
    result = pipe(image, emotions="awe", threshold=0.5)
    _check_result(result, image.size, ["awe"])
    r = result[0]
    inside = np.asarray(r["mask"]) == 255
    # The documented score: mean saliency over the mask (0 when empty); the mask is saliency > threshold.
    assert np.array_equal(inside, r["saliency"] > 0.5)
    expected = float(r["saliency"][inside].mean()) if inside.any() else 0.0
    assert r["score"] == pytest.approx(expected)


def test_threshold_changes_mask_and_score(pipe):
    image = random_image(40, 40)
    low = pipe(image, emotions="fear", threshold=0.0)[0]
    high = pipe(image, emotions="fear", threshold=1.0)[0]
    assert np.asarray(low["mask"]).min() == 255 or low["saliency"].min() == 0.0
    assert np.asarray(high["mask"]).max() == 0 and high["score"] == 0.0
    assert low["score"] == pytest.approx(float(low["saliency"][low["saliency"] > 0].mean()))


def test_emotions_none_gives_all_eight_in_order(pipe):
    image = random_image(50, 70)
    result = pipe(image, emotions=None)
    _check_result(result, image.size, EMOTIONS)
    assert len(result) == 8
    assert [r["emotion"] for r in pipe(image)] == list(EMOTIONS)  # the default is all eight too


def test_list_of_mixed_inputs(pipe, tmp_path):
    path = tmp_path / "art.png"
    random_image(45, 65, seed=1).save(path)
    images = [str(path), random_image(30, 20, seed=2), np.asarray(random_image(25, 35, seed=3))]
    results = pipe(images, emotions=["Awe", " sadness ", 2])
    assert isinstance(results, list) and len(results) == 3
    for result, size in zip(results, [(65, 45), (20, 30), (35, 25)]):
        _check_result(result, size, ["awe", "sadness", EMOTIONS[2]])


def test_batch_size_1_and_3_give_the_same_results(pipe):
    images = [random_image(40 + 7 * i, 60 - 5 * i, seed=i) for i in range(4)]
    emotions = ["awe", "fear", "contentment"]
    one = pipe(images, emotions=emotions, batch_size=1, seed=7, do_sample=True)
    three = pipe(images, emotions=emotions, batch_size=3, seed=7, do_sample=True)
    for a_image, b_image in zip(one, three):
        for a, b in zip(a_image, b_image):
            assert a["explanation"] == b["explanation"]
            np.testing.assert_allclose(a["saliency"], b["saliency"], atol=1e-5)
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)
    # Same seed, same answer (sampling is the model's default decoding).
    assert pipe(images, emotions=emotions, seed=7)[1][0]["explanation"] == one[1][0]["explanation"]


def test_results_do_not_depend_on_the_other_emotions_asked(pipe):
    image = random_image(44, 55, seed=5)
    alone = pipe([image], emotions=["fear"], seed=3)[0][0]
    among = pipe([image], emotions=["awe", "fear", "anger"], seed=3)[0][1]
    assert alone["explanation"] == among["explanation"]
    np.testing.assert_allclose(alone["saliency"], among["saliency"], atol=1e-5)


def test_seed_changes_sampled_explanations(pipe):
    image = random_image(44, 55, seed=5)
    texts = {tuple(r["explanation"] for r in pipe(image, emotions=None, seed=s, do_sample=True)) for s in range(3)}
    assert len(texts) == 3


def test_row_seed_is_a_function_of_seed_position_and_emotion():
    assert row_seed(0, 1, 2) == row_seed(0, 1, 2)
    assert len({row_seed(s, p, e) for s in range(3) for p in range(3) for e in range(8)}) == 72
    assert 0 <= row_seed(2**40, 10**6, 7) < 2**64


@pytest.mark.parametrize("height, width", [(333, 517), (300, 4000), (17, 17), (517, 333), (1, 9)])
def test_masks_and_saliency_at_the_original_size(pipe, height, width):
    image = random_image(height, width, seed=height)
    _check_result(pipe(image, emotions=["awe", "anger"]), (width, height), ["awe", "anger"])


def test_encoders_run_once_per_image_whatever_the_number_of_emotions(pipe):
    seen = {"sam": [], "clip": []}
    hooks = [
        pipe.model.sam.vision_encoder.register_forward_hook(lambda m, a, o: seen["sam"].append(a[0].shape[0])),
        pipe.model.clip.register_forward_hook(lambda m, a, kw, o: seen["clip"].append(kw["pixel_values"].shape[0]),
                                              with_kwargs=True),
    ]
    try:
        images = [random_image(30, 40, seed=i) for i in range(3)]
        pipe(images, emotions=None, batch_size=1)
        assert seen == {"sam": [1, 1, 1], "clip": [1, 1, 1]}
        seen["sam"].clear(), seen["clip"].clear()
        pipe(images, emotions=None, batch_size=3)
        assert seen == {"sam": [3], "clip": [3]}
        seen["sam"].clear(), seen["clip"].clear()
        pipe(images[0], emotions="awe")
        assert seen == {"sam": [1], "clip": [1]}
    finally:
        for h in hooks:
            h.remove()


def test_decoding_options(pipe):
    image = random_image(30, 30)
    short = pipe(image, emotions=["awe", "fear"], max_new_tokens=2)
    assert all(len(pipe.processor.tokenizer(r["explanation"])["input_ids"]) <= 4 for r in short)
    greedy = [pipe(image, emotions="awe", do_sample=False, seed=s)[0]["explanation"] for s in (0, 1)]
    assert greedy[0] == greedy[1]
    masks_only = pipe(image, emotions="awe", explain=False)[0]
    assert masks_only["explanation"] is None and masks_only["mask"].size == image.size


def test_init_parameters_are_defaults_for_calls():
    p = pipeline(task="emotion-segmentation", model=tiny_model().eval(), processor=tiny_processor(),
                 emotions="fear", threshold=1.0)
    result = p(random_image(20, 20))
    assert [r["emotion"] for r in result] == ["fear"] and result[0]["score"] == 0.0
    assert [r["emotion"] for r in p(random_image(20, 20), emotions=["awe"])] == ["awe"]


# ---------------------------------------------------------------------- bad input
def test_missing_path_is_named(pipe, tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        pipe(str(missing))


def test_non_image_file_is_named(pipe, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    with pytest.raises(ValueError, match=r"notes\.png.*cannot be decoded"):
        pipe(str(text))


def test_truncated_jpeg_is_named(pipe, tmp_path):
    full = tmp_path / "full.jpg"
    random_image(200, 200).save(full, quality=95)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cut\.jpg.*cannot be decoded"):
        pipe(str(cut))


def test_decompression_bomb_is_refused_before_decoding(pipe, tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("L", (12000, 12000)).save(bomb, optimize=True)  # 144 Mpx of zeros: a small file
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(ValueError, match=r"bomb\.png.*refused"):
        pipe(str(bomb))
    with pytest.raises(ValueError, match=r"refused.*over the limit of 1000"):
        pipe(random_image(40, 40), max_pixels=1000)


def test_unknown_emotion_and_empty_lists(pipe):
    image = random_image(20, 20)
    with pytest.raises(ValueError, match=r"unknown emotion 'joyful'.*amusement"):
        pipe(image, emotions=["awe", "joyful"])
    with pytest.raises(ValueError, match="emotions: got an empty list"):
        pipe(image, emotions=[])
    with pytest.raises(ValueError, match="images: got an empty list"):
        pipe([])


def test_bad_image_in_a_batch_is_reported_by_position(pipe, tmp_path):
    good = tmp_path / "good.png"
    random_image(30, 30).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match=r"images\[2\] '.*bad\.png'"):
        pipe([str(good), random_image(20, 20), str(bad)], batch_size=2)
    with pytest.raises(ValueError, match=r"images\[1\] array of shape \(5, 5, 2\)"):
        pipe([str(good), np.zeros((5, 5, 2), np.uint8)])


def test_bad_parameters(pipe):
    image = random_image(20, 20)
    for kwargs, message in [({"threshold": 1.5}, "threshold"), ({"seed": -1}, "seed"), ({"batch_size": 0}, "batch_size"),
                            ({"top_p": 0}, "top_p"), ({"max_new_tokens": 0}, "max_new_tokens")]:
        with pytest.raises(ValueError, match=message):
            pipe(image, **kwargs)
    with pytest.raises(TypeError, match="colour"):
        pipe(image, colour="red")


# ---------------------------------------------------------------------- Hub folder, fresh process
_LOAD_AND_RUN = textwrap.dedent(
    """
    import json, sys
    from transformers import pipeline
    folder, image_path, out_path = sys.argv[1:4]
    pipe = pipeline("emotion-segmentation", model=folder, trust_remote_code=True)
    results = pipe([image_path, image_path], emotions=["awe", "fear"], batch_size=2, seed=4)
    json.dump({"module": type(pipe).__module__,
               "rows": [[{"emotion": r["emotion"], "score": r["score"], "size": list(r["mask"].size),
                          "mode": r["mask"].mode, "saliency_sum": float(r["saliency"].sum()),
                          "explanation": r["explanation"]} for r in res] for res in results]},
              open(out_path, "w"))
    """
)


def test_saved_pipeline_loads_in_a_fresh_process_without_prior_import(tmp_path, pipe):
    folder = tmp_path / "emosem-pipe"
    pipe.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"]["emotion-segmentation"]["impl"] == "pipeline_emosem.EmotionSegmentationPipeline"
    assert (folder / "pipeline_emosem.py").exists() and (folder / "processor_config.json").exists()
    assert not any(p.is_dir() for p in folder.iterdir())

    image_path = tmp_path / "art.png"
    random_image(33, 51).save(image_path)
    expected = pipe([str(image_path)] * 2, emotions=["awe", "fear"], seed=4)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = elsewhere / "load.py"
    script.write_text(_LOAD_AND_RUN)
    out_path = tmp_path / "out.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    result = subprocess.run([sys.executable, "-I", str(script), str(folder), str(image_path), str(out_path)],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(out_path.read_text())
    assert got["module"].startswith("transformers_modules")
    for got_image, exp_image in zip(got["rows"], expected):
        for g, e in zip(got_image, exp_image):
            assert g["emotion"] == e["emotion"] and g["size"] == [51, 33] and g["mode"] == "L"
            assert g["explanation"] == e["explanation"]
            assert g["score"] == pytest.approx(e["score"], abs=1e-5)
            assert g["saliency_sum"] == pytest.approx(float(e["saliency"].sum()), rel=1e-4)


def test_registered_task_loads_a_plain_checkpoint_folder(tmp_path):
    """A folder written by model/processor save_pretrained (no custom_pipelines): the task registered by
    `import modeling_emosem` finds the model and the processor."""
    tiny_model().save_pretrained(tmp_path)
    tiny_processor().save_pretrained(tmp_path)
    loaded = pipeline("emotion-segmentation", model=str(tmp_path))
    assert isinstance(loaded, EmotionSegmentationPipeline)
    _check_result(loaded(random_image(21, 34), emotions=["awe"]), (34, 21), ["awe"])
