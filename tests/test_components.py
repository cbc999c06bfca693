"""from_pretrained_components: the three public backbones (here: tiny local folders of the same form)."""

import pytest
import torch
from transformers import CLIPConfig, CLIPModel, GPT2Config, GPT2LMHeadModel, SamConfig, SamModel

from modeling_emosem import EmoSEMModel
from modeling_emosem.configuration_emosem import PRESETS


@pytest.fixture(scope="module")
def component_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("components")
    torch.manual_seed(0)
    tiny = PRESETS["tiny"]
    sam = SamModel(SamConfig(**tiny["sam_config"]))
    # openai/clip-vit-base-patch16 is a full CLIPModel checkpoint: use the same form.
    clip = CLIPModel(CLIPConfig(vision_config=tiny["vision_config"],
                                text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                             "num_attention_heads": 2, "vocab_size": 99}, projection_dim=16))
    gpt2 = GPT2LMHeadModel(GPT2Config(**tiny["text_config"]))  # distilgpt2 has no cross-attention
    for name, model in (("sam", sam), ("clip", clip), ("gpt2", gpt2)):
        model.save_pretrained(root / name)
    return root, sam, clip, gpt2


@pytest.mark.parametrize("paradigm", ["single", "multi"])
def test_components_keep_their_weights(component_folders, paradigm):
    root, sam, clip, gpt2 = component_folders
    model = EmoSEMModel.from_pretrained_components(
        sam=str(root / "sam"), clip=str(root / "clip"), language_model=str(root / "gpt2"), paradigm=paradigm
    )
    for key, value in sam.state_dict().items():
        torch.testing.assert_close(model.sam.state_dict()[key], value, msg=key)
    for key, value in clip.vision_model.state_dict().items():
        torch.testing.assert_close(model.clip.state_dict()[key], value, msg=key)
    lm_state = model.language_model.state_dict()
    for key, value in gpt2.state_dict().items():
        torch.testing.assert_close(lm_state[key], value, msg=key)
    new = [k for k in lm_state if k not in gpt2.state_dict()]
    assert new and all("crossattention" in k or "ln_cross_attn" in k for k in new)
    # Cross-attention is freshly initialised (not zeros), and the mask token(s) start from SAM's token 0.
    assert lm_state[next(k for k in new if k.endswith("q_attn.weight"))].std() > 0
    assert torch.equal(model.mask_tokens, sam.mask_decoder.mask_tokens.weight[0].expand_as(model.mask_tokens))
    assert model.config.paradigm == paradigm and model.config.text_config.add_cross_attention
    assert not any(p.requires_grad for p in model.clip.parameters())


def test_components_that_do_not_fit_are_rejected(component_folders, tmp_path):
    root, *_ = component_folders
    with pytest.raises(OSError):
        EmoSEMModel.from_pretrained_components(sam=str(tmp_path / "nope"), clip=str(root / "clip"),
                                               language_model=str(root / "gpt2"))
