"""EmoSEM-LLaVA (paper Table 4): LLaVA as the explainer, fine-tuned with LoRA through `peft`.

Everything here is used only when ``config.explainer == "llava"``; `peft` is imported inside the
functions, so the GPT-2 model loads without it.

- LLaVA's own vision tower + projector turn the CLIP-preprocessed pixels into image tokens `(N, 576, D)`
  (llava-1.5 at 336 px); EmoSEM places them as LLaVA does, in front: the language model reads
  ``[image tokens, prefix f, explanation X]``.
- LoRA goes on the language model's attention projections only (``lora_target_modules``; LLaVA's CLIP
  tower names its projections q/k/v_proj too, so the target pattern is anchored at the language model).
- `save_pretrained` writes the adapter in PEFT's format to ``lora_adapter/`` next to the EmoSEM weights
  (`adapter_model.safetensors` + `adapter_config.json`; loadable onto a plain LLaVA with
  `PeftModel.from_pretrained(llava.model.language_model, ...)`-style tooling); `from_pretrained` reads it back.
"""

from __future__ import annotations

import os
import re

import torch
from torch import nn

ADAPTER_SUBFOLDER = "lora_adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def lora_target_pattern(target_modules) -> str:
    """A full-match regex for peft: the named linear layers under LLaVA's language model only."""
    names = "|".join(re.escape(name) for name in target_modules)
    return rf"(.*\.)?language_model\.(.*\.)?({names})"


def build_lora_config(config):
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=lora_target_pattern(config.lora_target_modules),
        bias="none",
    )


def inject_lora(llava: nn.Module, config) -> None:
    """Wrap the targeted linear layers of `llava` with LoRA (in place; base weights keep their names + `.base_layer`)."""
    from peft import inject_adapter_in_model

    inject_adapter_in_model(build_lora_config(config), llava, adapter_name="default")
    if not lora_parameters(llava):
        raise ValueError(
            f"lora_target_modules={config.lora_target_modules} matched no linear layer of the language model"
        )


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [p for name, p in module.named_parameters() if ".lora_" in name]


def lora_state_dict(llava: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's weights, keyed as PEFT saves them (no adapter name)."""
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(llava, adapter_name="default")


def save_adapter(llava: nn.Module, config, save_directory: str) -> None:
    from safetensors.torch import save_file

    folder = os.path.join(save_directory, ADAPTER_SUBFOLDER)
    os.makedirs(folder, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in lora_state_dict(llava).items()}
    save_file(state, os.path.join(folder, ADAPTER_WEIGHTS), metadata={"format": "pt"})
    lora_config = build_lora_config(config)
    lora_config.base_model_name_or_path = getattr(config.text_config, "_name_or_path", None) or None
    lora_config.save_pretrained(folder)


def load_adapter(llava: nn.Module, weights_file: str) -> None:
    """Load adapter weights saved by `save_adapter` into the (already LoRA-wrapped) `llava`."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(weights_file)
    result = set_peft_model_state_dict(llava, state, adapter_name="default")
    missing = [k for k in result.missing_keys if ".lora_" in k]
    if result.unexpected_keys or missing:
        raise ValueError(
            f"{weights_file}: adapter does not fit this model (unexpected {list(result.unexpected_keys)[:5]}, "
            f"missing {missing[:5]})"
        )


@torch.no_grad()
def merge_lora(llava: nn.Module) -> int:
    """Merge every LoRA layer into its base linear layer and drop the LoRA wrappers; returns how many merged."""
    from peft.tuners.lora import LoraLayer

    targets = [(name, module) for name, module in llava.named_modules() if isinstance(module, LoraLayer)]
    for name, module in targets:
        module.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = llava.get_submodule(parent_name) if parent_name else llava
        setattr(parent, child, module.get_base_layer())
    if hasattr(llava, "peft_config"):
        del llava.peft_config
    return len(targets)


def llava_image_features(llava: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """LLaVA's vision tower + projector: `(N, 3, S, S)` -> image tokens `(N, S_img, D)`, as LLaVA selects them."""
    cfg = llava.config
    out = llava.model.get_image_features(
        pixel_values=pixel_values,
        vision_feature_layer=cfg.vision_feature_layer,
        vision_feature_select_strategy=cfg.vision_feature_select_strategy,
    )
    features = out.pooler_output
    return torch.stack(list(features)) if isinstance(features, (list, tuple)) else features


def load_llava(path: str, load_in_4bit: bool = False, load_in_8bit: bool = False, dtype=None, **kwargs):
    """`LlavaForConditionalGeneration.from_pretrained`, optionally quantised with bitsandbytes (GPU only)."""
    from transformers import LlavaForConditionalGeneration

    if load_in_4bit or load_in_8bit:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as err:
            raise ImportError("load_in_4bit / load_in_8bit need bitsandbytes (pip install bitsandbytes) and a CUDA GPU") from err
        if not torch.cuda.is_available():
            raise RuntimeError("load_in_4bit / load_in_8bit need a CUDA GPU (bitsandbytes quantisation is GPU-only)")
        from transformers import BitsAndBytesConfig

        compute = dtype if isinstance(dtype, torch.dtype) else getattr(torch, dtype or "bfloat16")
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=load_in_4bit, load_in_8bit=load_in_8bit,
            bnb_4bit_compute_dtype=compute, bnb_4bit_quant_type="nf4",
            # the vision tower and projector stay in `dtype`: only the language model is quantised
            llm_int8_skip_modules=["vision_tower", "multi_modal_projector", "lm_head"],
        )
        kwargs.setdefault("device_map", {"": torch.cuda.current_device()})
    if dtype is not None:
        kwargs["dtype"] = dtype
    return LlavaForConditionalGeneration.from_pretrained(path, **kwargs)
