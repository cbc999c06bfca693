"""The paper's variants as config: EmoSEM-LLaVA (explainer="llava", LoRA) and SCAbase (bridge="sca_mixer").

Tiny presets built from config (no network): forward, backward, which parameters learn, generation
(batch-size invariant), the image-feature cache, save -> AutoModel(trust_remote_code) in a fresh process,
the LoRA adapter (saved beside the weights, reloaded, merged), optimizer groups, parameter counts.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from modeling_emosem import EmoSEMConfig, EmoSEMModel, EmoSEMProcessor
from tests.helpers import model_inputs, random_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ["llava-tiny", "sca-tiny"]
_PROCESSORS: dict = {}


def processor(preset):
    if preset not in _PROCESSORS:
        _PROCESSORS[preset] = EmoSEMProcessor.from_preset(preset)
    return _PROCESSORS[preset]


def model(preset, seed=0, **overrides):
    torch.manual_seed(seed)
    return EmoSEMModel(EmoSEMConfig.from_preset(preset, **overrides))


def batch(preset, n=3):
    images = [random_image(80 + 8 * i, 128 - 8 * i, seed=i) for i in range(n)]
    masks = [torch.rand(img.height, img.width) for img in images]
    texts = ["the yellow star makes me smile", "the dark tree scares me", "the grey rain makes me sad"][:n]
    return processor(preset)(images=images, emotions=["amusement", "fear", "sadness"][:n], explanations=texts, masks=masks)


def _randomise_lora(m):
    """LoRA B starts at zero (the adapter is a no-op): give it values so that saving/loading it is visible."""
    with torch.no_grad():
        for name, p in m.named_parameters():
            if ".lora_B" in name:
                p.normal_(0.0, 0.2)


def test_presets_and_checks():
    llava = EmoSEMConfig.from_preset("llava-tiny")
    assert llava.explainer == "llava" and llava.text_config.model_type == "llava"
    assert llava.language_model_config.vocab_size >= 512  # covers the tiny tokenizer
    assert llava.clip_image_size == llava.text_config.vision_config.image_size
    sca = EmoSEMConfig.from_preset("sca-tiny")
    assert sca.bridge == "sca_mixer" and not sca.text_config.add_cross_attention
    assert "sca_mixer" in sca.trainable_modules and "prefix_adapter" not in sca.trainable_modules
    assert EmoSEMConfig.from_preset("tiny").text_config.add_cross_attention
    with pytest.raises(ValueError, match="text_config"):
        EmoSEMConfig.from_preset("tiny", explainer="llava")
    with pytest.raises(ValueError, match="sca_mixer"):
        EmoSEMConfig.from_preset("llava-tiny", bridge="sca_mixer")
    # the config (LLaVA sub-config included) survives to_dict -> from_dict
    again = EmoSEMConfig.from_dict(llava.to_dict())
    assert again.text_config.text_config.to_dict() == llava.text_config.text_config.to_dict()


def test_processor_feeds_llavas_own_vision_tower():
    cfg = EmoSEMConfig.from_preset("llava-tiny", text_config={"vision_config": {"image_size": 48}})
    proc = EmoSEMProcessor.from_config(cfg, tokenizer=processor("llava-tiny").tokenizer)
    out = proc(images=[random_image()], emotions="awe")
    assert out["clip_pixel_values"].shape == (1, 3, 48, 48)
    assert out["pixel_values"].shape[-1] == cfg.sam_image_size


@pytest.mark.parametrize("preset", VARIANTS)
def test_forward_backward_and_which_parameters_learn(preset):
    m = model(preset)
    b = batch(preset)
    out = m(**model_inputs(b))
    n, t = b["input_ids"].shape
    assert out.logits.shape == (n, m.config.prefix_length + t, m.config.language_model_config.vocab_size)
    assert out.prefix_embeds.shape == (n, m.config.prefix_length, m.config.word_embedding_size)
    assert torch.isfinite(out.loss) and out.mask_loss is not None and out.lm_loss is not None
    out.loss.backward()
    with_grad = {name for name, p in m.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = {name for name, p in m.named_parameters() if p.requires_grad}
    assert with_grad and with_grad <= trainable
    own = ("emotion_projector", "mask_tokens", "sam.mask_decoder.upscale", "sam.mask_decoder.output_hypernetworks_mlps.0")
    if preset == "llava-tiny":
        lora = {name for name in trainable if ".lora_" in name}
        assert lora and all(".language_model." in name and "vision_tower" not in name for name in lora)
        assert all(name.split(".")[-4] in ("q_proj", "k_proj", "v_proj", "o_proj") for name in lora), sorted(lora)[:4]
        # only LoRA and EmoSEM's own modules: no LLaVA base weight, no vision tower, no SAM encoder/mixer
        assert all(n in lora or n.startswith(own + ("prefix_adapter",)) for n in trainable), sorted(trainable - lora)
        assert any(n in lora for n in with_grad) and any(n.startswith("prefix_adapter") for n in with_grad)
        assert m.clip is None
    else:
        assert m.clip is None and m.prefix_adapter is None  # SCAbase: no CLIP, mixer instead of the adapter
        assert all(n.startswith(own + ("sca_mixer", "language_model")) for n in trainable)
        assert any(n.startswith("sca_mixer.transformer") for n in with_grad)
        assert any(n.startswith("sca_mixer.query_tokens") for n in with_grad)
        assert any(n.startswith("sca_mixer.task_tokens") for n in with_grad)
        assert not any("crossattention" in n for n, _ in m.named_parameters())


@pytest.mark.parametrize("preset", VARIANTS)
def test_generation_is_batch_size_invariant_and_reuses_image_features(preset):
    m = model(preset).eval()
    if preset == "llava-tiny":
        _randomise_lora(m)
    b = batch(preset)
    args = dict(emotion_ids=b["emotion_ids"], prompt_input_ids=b["prompt_input_ids"], seeds=[7, 8, 9])
    whole = m.segment_and_explain(pixel_values=b["pixel_values"], clip_pixel_values=b["clip_pixel_values"], **args)
    assert whole.sequences.shape[0] == 3 and whole.sequences.shape[1] <= m.config.max_explanation_tokens
    for i in range(3):
        one = m.segment_and_explain(
            emotion_ids=b["emotion_ids"][i : i + 1], prompt_input_ids=b["prompt_input_ids"][i : i + 1], seeds=[7 + i],
            pixel_values=b["pixel_values"][i : i + 1], clip_pixel_values=b["clip_pixel_values"][i : i + 1],
        )
        width = one.sequences.shape[1]
        assert torch.equal(one.sequences[0], whole.sequences[i, :width])
        assert (whole.sequences[i, width:] == m.config.eos_token_id).all()
    feats = m.get_image_features(b["pixel_values"], b["clip_pixel_values"])
    if preset == "sca-tiny":
        assert feats.clip_features is None  # SCAbase reads no CLIP
    else:  # LLaVA's image tokens, at the language model's width
        assert feats.clip_features.shape[-1] == m.config.word_embedding_size
    cached = m.segment_and_explain(image_embeddings=feats.image_embeddings, clip_features=feats.clip_features, **args)
    assert torch.equal(cached.sequences, whole.sequences)
    torch.testing.assert_close(cached.pred_masks, whole.pred_masks)


_RELOAD = textwrap.dedent(
    """
    import sys, torch
    from PIL import Image
    from transformers import AutoModel, AutoProcessor
    image_path, out_path, *folders = sys.argv[1:]
    results = {}
    for folder in folders:
        model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        batch = processor(images=[Image.open(image_path)] * 2, emotions=["awe", "fear"],
                          explanations=["the star makes me smile", "the dark tree"])
        inputs = {k: v for k, v in batch.items() if k not in ("original_sizes", "reshaped_input_sizes")}
        with torch.no_grad():
            out = model(**inputs)
            gen = model.segment_and_explain(emotion_ids=batch["emotion_ids"], pixel_values=batch["pixel_values"],
                                            clip_pixel_values=batch["clip_pixel_values"],
                                            prompt_input_ids=batch["prompt_input_ids"], seeds=[5, 6])
        results[folder] = {"pred_masks": out.pred_masks, "logits": out.logits, "sequences": gen.sequences,
                           "module": type(model).__module__}
    torch.save(results, out_path)
    """
)


def test_save_and_reload_through_auto_classes_in_a_fresh_process(tmp_path):
    image_path = tmp_path / "art.png"
    random_image(70, 110).save(image_path)
    expected, folders = {}, []
    for preset in VARIANTS:
        m = model(preset).eval()
        if preset == "llava-tiny":
            _randomise_lora(m)
        proc = processor(preset)
        folder = tmp_path / preset
        m.save_pretrained(folder)
        proc.save_pretrained(folder)
        b = proc(images=[str(image_path)] * 2, emotions=["awe", "fear"], explanations=["the star makes me smile", "the dark tree"])
        with torch.no_grad():
            out = m(**model_inputs(b))
            gen = m.segment_and_explain(emotion_ids=b["emotion_ids"], pixel_values=b["pixel_values"],
                                        clip_pixel_values=b["clip_pixel_values"], prompt_input_ids=b["prompt_input_ids"],
                                        seeds=[5, 6])
        expected[str(folder)] = (out, gen)
        folders.append(str(folder))
    llava = tmp_path / "llava-tiny"
    assert (llava / "lora_adapter" / "adapter_model.safetensors").exists()
    adapter_config = json.loads((llava / "lora_adapter" / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "LORA" and adapter_config["r"] == 4
    assert (llava / "explainer_llava_emosem.py").exists() and (tmp_path / "sca-tiny" / "sca_mixer_emosem.py").exists()

    script = tmp_path / "elsewhere" / "load.py"
    script.parent.mkdir()
    script.write_text(_RELOAD)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    result = subprocess.run([sys.executable, "-I", str(script), str(image_path), str(tmp_path / "out.pt"), *folders],
                            cwd=script.parent, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    for folder in folders:
        out, gen = expected[folder]
        assert got[folder]["module"].startswith("transformers_modules")
        torch.testing.assert_close(got[folder]["pred_masks"], out.pred_masks)
        torch.testing.assert_close(got[folder]["logits"], out.logits)
        assert torch.equal(got[folder]["sequences"], gen.sequences)


def test_lora_adapter_reloads_identically_and_merges(tmp_path):
    m = model("llava-tiny").eval()
    _randomise_lora(m)
    inputs = model_inputs(batch("llava-tiny"))
    with torch.no_grad():
        expected = m(**inputs).logits
    m.save_pretrained(tmp_path / "a")

    # the adapter alone restores the LoRA weights on a model with the same base weights
    fresh = model("llava-tiny").eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(**inputs).logits, expected)
    reloaded = EmoSEMModel.from_pretrained(tmp_path / "a", adapter=str(tmp_path / "a" / "lora_adapter")).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, expected)
    from modeling_emosem.explainer_llava_emosem import load_adapter

    load_adapter(fresh.language_model, str(tmp_path / "a" / "lora_adapter" / "adapter_model.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(fresh(**inputs).logits, expected)

    # merging: same outputs, no LoRA modules left, config says so, and it saves/loads as a plain LLaVA
    reloaded.merge_lora()
    assert reloaded.config.lora_rank == 0
    assert not any(".lora_" in n or ".base_layer." in n for n, _ in reloaded.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, expected, rtol=1e-4, atol=1e-4)
    reloaded.save_pretrained(tmp_path / "merged")
    assert not (tmp_path / "merged" / "lora_adapter").exists()
    merged = EmoSEMModel.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(**inputs).logits, expected, rtol=1e-4, atol=1e-4)
    # without LoRA, the language-model group is the whole language model (not its vision tower)
    names = {id(p) for p in merged.group_parameters("language_model")}
    vision = {id(p) for p in merged.language_model.model.vision_tower.parameters()}
    assert names and not names & vision


def test_optimizer_groups_hold_only_lora_for_the_language_model():
    from types import SimpleNamespace

    from emosem.training.optim import parameter_groups

    m = model("llava-tiny")
    groups = parameter_groups(m, {"language_model": 2e-4, "default": 1e-4}, 0.01)
    lm = [p for g in groups if g["name"].startswith("language_model") for p in g["params"]]
    lora = {id(p) for n, p in m.named_parameters() if ".lora_" in n}
    assert lm and {id(p) for p in lm} == lora
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in m.parameters() if p.requires_grad)
    sca = model("sca-tiny")
    names = {g["name"].split("/")[0] for g in parameter_groups(sca, {"default": 1e-4}, 0.0)}
    assert names == {"emotion_projector", "mask_tokens", "mask_head", "sca_mixer", "language_model"}
    del SimpleNamespace


def test_readme_variants_table_is_measured():
    sys.path.insert(0, os.path.join(REPO, "examples"))
    try:
        import count_parameters
    finally:
        sys.path.pop(0)
    numbers = count_parameters.measure()
    # the designs' anchors: EmoSEM within 0.5% of 276.72M, SCAbase of 237.67M, EmoSEM-LLaVA about 7B
    assert abs(numbers["EmoSEM (Single-Mask)"]["total"] / 276.72e6 - 1) < 0.005
    assert abs(numbers["SCAbase"]["total"] / 237.67e6 - 1) < 0.005
    assert 6.9e9 < numbers["EmoSEM-LLaVA"]["total"] < 7.4e9
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    assert "## Variants" in readme
    assert count_parameters.markdown(numbers) in readme.split("## Variants", 1)[1]


def test_pipeline_runs_both_variants(tmp_path):
    from transformers import pipeline

    for preset in VARIANTS:
        model(preset).eval().save_pretrained(tmp_path / preset)
        processor(preset).save_pretrained(tmp_path / preset)
        pipe = pipeline("emotion-segmentation", model=str(tmp_path / preset), trust_remote_code=True)
        images = [random_image(), random_image(60, 90, seed=2)]
        out = pipe(images, emotions=["awe", "fear"], batch_size=2)
        assert len(out) == 2 and [r["emotion"] for r in out[1]] == ["awe", "fear"]
        assert out[1][0]["mask"].size == (90, 60) and isinstance(out[1][0]["explanation"], str)
