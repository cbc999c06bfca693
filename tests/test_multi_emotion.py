"""Multi-emotion inference: one encoder pass per image, decoder and explainer batched over the emotions,
KV-cached generation, and results equal to asking one emotion at a time (same seed)."""

import numpy as np
import pytest
import torch
from transformers import pipeline

from modeling_emosem import EMOTIONS
from tests.helpers import random_image, tiny_model, tiny_processor


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=["single", "multi"])
def pipe(request):
    return pipeline(task="emotion-segmentation", model=tiny_model(paradigm=request.param).eval(),
                    processor=tiny_processor())


def test_all_emotions_equal_one_emotion_at_a_time(pipe):
    image = random_image(50, 70, seed=11)
    together = pipe(image, emotions=None, seed=5)
    assert [r["emotion"] for r in together] == list(EMOTIONS)
    for emotion, row in zip(EMOTIONS, together):
        alone = pipe(image, emotions=[emotion], seed=5)[0]
        assert alone["explanation"] == row["explanation"]
        np.testing.assert_allclose(alone["saliency"], row["saliency"], atol=1e-5)
        assert alone["score"] == pytest.approx(row["score"], abs=1e-5)
        assert np.array_equal(np.asarray(alone["mask"]), np.asarray(row["mask"]))


def test_encoders_once_decoder_and_explainer_batched_over_emotions(pipe):
    model = pipe.model
    calls = {"sam": [], "clip": [], "mixer": [], "lm": []}
    hooks = [
        model.sam.vision_encoder.register_forward_hook(lambda m, a, o: calls["sam"].append(a[0].shape[0])),
        model.clip.register_forward_hook(lambda m, a, kw, o: calls["clip"].append(kw["pixel_values"].shape[0]),
                                         with_kwargs=True),
        model.sam.mask_decoder.transformer.register_forward_hook(
            lambda m, a, kw, o: calls["mixer"].append(kw["point_embeddings"].shape[0]), with_kwargs=True),
        model.language_model.register_forward_hook(
            lambda m, a, kw, o: calls["lm"].append(
                (kw["inputs_embeds"] if kw.get("inputs_embeds") is not None else kw["input_ids"]).shape[:2]),
            with_kwargs=True),
    ]
    try:
        images = [random_image(40, 30, seed=i) for i in range(2)]
        pipe(images, emotions=None, batch_size=2, max_new_tokens=4, do_sample=False)
    finally:
        for h in hooks:
            h.remove()
    assert calls["sam"] == [2] and calls["clip"] == [2]  # one encoder pass for the 2 images
    assert calls["mixer"] == [16]  # 2 images x 8 emotions in one decoder call
    # Explainer: the prefix once, then one token per step with the key/value cache, all 16 rows together.
    prefix_len = model.config.prefix_length
    assert calls["lm"][0] == (16, prefix_len)
    assert all(tuple(shape) == (16, 1) for shape in calls["lm"][1:]) and 1 <= len(calls["lm"]) <= 4


@pytest.mark.parametrize("paradigm", ["single", "multi"])
def test_model_api_rows_of_one_image_equal_separate_calls(paradigm):
    model, proc = tiny_model(paradigm=paradigm).eval(), tiny_processor()
    pixels = proc(images=[random_image(seed=3)])
    feats = model.get_image_features(pixels["pixel_values"], pixels["clip_pixel_values"])
    emotions = proc.encode_emotions(list(EMOTIONS))
    seeds = list(range(100, 108))
    shared = model.segment_and_explain(image_embeddings=feats.image_embeddings, clip_features=feats.clip_features,
                                       image_index=torch.zeros(8, dtype=torch.long), seeds=seeds, **emotions)
    for i in range(8):
        single = model.segment_and_explain(
            image_embeddings=feats.image_embeddings, clip_features=feats.clip_features,
            emotion_ids=emotions["emotion_ids"][i : i + 1], prompt_input_ids=emotions["prompt_input_ids"][i : i + 1],
            seeds=seeds[i : i + 1],
        )
        torch.testing.assert_close(shared.pred_masks[i : i + 1], single.pred_masks, atol=1e-5, rtol=1e-5)
        n = single.sequences.shape[1]
        assert torch.equal(shared.sequences[i, :n], single.sequences[0])
