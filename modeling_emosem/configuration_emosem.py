"""EmoSEM configuration: the single source of truth for every size, flag and default.

`EmoSEMConfig` composes the three backbone configs (SAM, CLIP vision, GPT-2 with cross-attention)
with EmoSEM's own fields. Presets:

- ``"paper"``: SAM ViT-B + CLIP ViT-B/16 + 6-layer GPT-2 (distilgpt2), the sizes of the paper
  (276.72M parameters, Table 4).
- ``"tiny"``: a few hundred thousand parameters, seconds on a CPU; for tests and the demo.

Variants (paper Table 4 and appendix C) are config too, each with a paper-size and a tiny preset:

- ``"llava"`` / ``"llava-tiny"`` (``explainer="llava"``, EmoSEM-LLaVA): the explainer is a
  `LlavaForConditionalGeneration` (llava-1.5-7b sizes), fine-tuned with LoRA (`lora_*` fields) on the
  attention projections of its language model; the image reaches it through LLaVA's own vision tower
  (``vision_config`` is then unused: the CLIP pixels go to LLaVA), placed as LLaVA does, in front:
  the language model reads ``[image tokens, prefix f, explanation X]``.
- ``"sca"`` / ``"sca-tiny"`` (``bridge="sca_mixer"``, SCAbase): SCA's learnable query token q, task
  token k and 12-layer bidirectional text feature mixer replace the prefix adapter; the language model
  is a plain 12-layer GPT-2 without cross-attention and without CLIP (SCA has neither), which is what
  makes the 237.67M of Table 4.

``explainer`` / ``bridge`` can't be switched by a plain override of ``"paper"`` / ``"tiny"`` because
they change the sub-configs (LLaVA's text config, GPT-2's depth): use the variant presets.
"""

from __future__ import annotations

import copy
from typing import Any

from transformers import AutoConfig, CLIPVisionConfig, GPT2Config, PreTrainedConfig, SamConfig
from transformers.configuration_utils import SubConfigSpec

# The 8 emotions EmoSEM segments, in ArtEmis order (ArtEmis' 9th label, "something else", is dropped).
EMOTIONS = ("amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness")
# All 9 ArtEmis labels, in the release's canonical order (index 0..8).
ARTEMIS_EMOTIONS = EMOTIONS + ("something else",)

PARADIGMS = ("single", "multi")
EXPLAINERS = ("gpt2", "llava")
BRIDGES = ("prefix_adapter", "sca_mixer")

# Modules that can be trained; everything else (SAM image encoder, SAM feature mixer, CLIP) stays frozen.
TRAINABLE_MODULE_NAMES = (
    "image_encoder",  # SAM ViT (frozen in the paper)
    "feature_mixer",  # SAM two-way transformer (frozen in the paper)
    "clip",  # CLIP vision tower (frozen in the paper)
    "emotion_projector",
    "mask_tokens",
    "mask_head",  # FT-MH: SAM's upscaling + hypernetwork MLP
    "prefix_adapter",
    "sca_mixer",  # SCAbase: query + task tokens, text feature mixer, projection (empty with the prefix adapter)
    "language_model",  # EmoSEM-LLaVA with LoRA: the LoRA weights only
)
PAPER_TRAINABLE = ("emotion_projector", "mask_tokens", "mask_head", "prefix_adapter", "language_model")
SCA_TRAINABLE = ("emotion_projector", "mask_tokens", "mask_head", "sca_mixer", "language_model")
# LoRA on the language model's attention projections only (LLaVA's CLIP tower names its own q/k/v_proj too:
# the target is restricted to modules under the language model).
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")

_TINY_SAM = {
    "vision_config": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "mlp_dim": 64,
        "image_size": 128,
        "patch_size": 8,
        "window_size": 4,
        "global_attn_indexes": [1],
        "output_channels": 32,
        "num_pos_feats": 16,
        # transformers' SAM vision default is 1e-10 (it expects pretrained weights): a randomly initialised
        # encoder would output a constant and barely train.
        "initializer_range": 0.02,
    },
    "prompt_encoder_config": {"hidden_size": 32, "image_size": 128, "patch_size": 8, "mask_input_channels": 4},
    "mask_decoder_config": {
        "hidden_size": 32,
        "mlp_dim": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "iou_head_hidden_dim": 32,
    },
}
_TINY_CLIP = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}
TINY_VOCAB_SIZE = 512
_TINY_GPT2 = {
    "vocab_size": TINY_VOCAB_SIZE,
    "n_positions": 64,
    "n_embd": 32,
    "n_layer": 2,
    "n_head": 2,
    "bos_token_id": 0,
    "eos_token_id": 0,
}

# llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14 at 336 px (LlavaConfig's defaults) + Vicuna-7B (LlamaConfig's
# defaults) with the 64 extra rows of the released checkpoint's vocabulary (image and pad tokens).
_LLAVA_7B = {
    "model_type": "llava",
    "text_config": {"model_type": "llama", "vocab_size": 32064, "pad_token_id": 32001},
    "image_token_index": 32000,
    "vision_feature_layer": -2,
    "vision_feature_select_strategy": "default",
}
_TINY_LLAVA = {
    "model_type": "llava",
    "vision_config": {
        "model_type": "clip_vision_model",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
        "projection_dim": 32,
    },
    "text_config": {
        "model_type": "llama",
        "vocab_size": TINY_VOCAB_SIZE,  # covers the tiny tokenizer
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
        # A random, frozen (LoRA-only) LM head at std 0.02 caps logits near +-0.6 in 32 dimensions: nothing could
        # be learnt. 0.2 leaves the tiny model room to learn explanations through LoRA (quickstart, tests).
        "initializer_range": 0.2,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "pad_token_id": 0,
    },
    "image_token_index": TINY_VOCAB_SIZE - 1,  # never placed: EmoSEM puts LLaVA's image features in itself
    "vision_feature_layer": -2,
    "vision_feature_select_strategy": "default",
}

PRESETS: dict[str, dict[str, Any]] = {
    # distilgpt2 = GPT-2 with 6 layers; SamConfig() defaults are ViT-B; CLIP ViT-B/16 at 224 px.
    "paper": {
        "sam_config": {"vision_config": {"initializer_range": 0.02}},
        "vision_config": {"image_size": 224, "patch_size": 16},
        "text_config": {"n_layer": 6},
    },
    "tiny": {
        "sam_config": _TINY_SAM,
        "vision_config": _TINY_CLIP,
        "text_config": _TINY_GPT2,
        "prefix_hidden_size": 64,
    },
    # EmoSEM-LLaVA (Table 4): SAM ViT-B + llava-1.5-7b, LoRA on the language model's attention.
    # The LLaMA tokenizer spends more tokens on the emotional prompt than GPT-2's: l_e = 12.
    "llava": {
        "sam_config": {"vision_config": {"initializer_range": 0.02}},
        "explainer": "llava",
        "text_config": _LLAVA_7B,
        "prompt_length": 12,
    },
    "llava-tiny": {
        "sam_config": _TINY_SAM,
        "explainer": "llava",
        "text_config": _TINY_LLAVA,
        "prefix_hidden_size": 64,
        "lora_rank": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
    },
    # SCAbase (appendix C, Table 4: 237.67M): SAM ViT-B + 12-layer text feature mixer + GPT-2 (12 layers).
    "sca": {
        "sam_config": {"vision_config": {"initializer_range": 0.02}},
        "bridge": "sca_mixer",
        "text_config": {"n_layer": 12},
    },
    "sca-tiny": {
        "sam_config": _TINY_SAM,
        "vision_config": _TINY_CLIP,
        "bridge": "sca_mixer",
        "text_config": _TINY_GPT2,
        "sca_num_layers": 2,
    },
}


class EmoSEMConfig(PreTrainedConfig):
    r"""
    Configuration of [`EmoSEMModel`].

    Args:
        sam_config (`dict` or `SamConfig`): SAM (image encoder, prompt encoder, mask decoder).
        vision_config (`dict` or `CLIPVisionConfig`): the CLIP vision tower read by the explainer's
            cross-attention.
        text_config (`dict` or `GPT2Config`): the explainer; cross-attention is always switched on.
        paradigm (`str`): ``"single"`` (one learnable mask token + emotional prompt, the paper's default)
            or ``"multi"`` (8 learnable mask tokens, one per emotion, no prompt).
        explainer (`str`): ``"gpt2"`` (GPT-2 with cross-attention over CLIP) or ``"llava"`` (EmoSEM-LLaVA:
            `text_config` is then a `LlavaConfig`, and LLaVA's own vision tower reads the CLIP pixels).
        bridge (`str`): ``"prefix_adapter"`` (EmoSEM) or ``"sca_mixer"`` (SCAbase: query/task tokens and a
            bidirectional text feature mixer; GPT-2 without cross-attention, no CLIP).
        sca_num_layers (`int`): blocks of the SCAbase text feature mixer (12 in SCA).
        sca_num_query_tokens, sca_num_task_tokens (`int`): SCA's learnable query tokens q (mixer width) and
            task tokens k (language-model width); one each in the paper.
        lora_rank (`int`): LoRA rank for the LLaVA explainer; 0 = no LoRA (the whole language model is the
            "language_model" group, or the adapter was merged).
        lora_alpha (`float`), lora_dropout (`float`): LoRA scaling and dropout.
        lora_target_modules (`list[str]`): names of the language model's linear layers that get LoRA
            (default: the attention projections q/k/v/o; the vision tower never gets LoRA).
        emotions (`list[str]`): emotion names, in ArtEmis order; index = emotion id.
        prompt_template (`str`): the emotional prompt; ``{emotion}`` is replaced by the emotion name.
        prompt_length (`int`): tokens of the emotional prompt after padding (l_e = 8 in the paper).
        prefix_hidden_size (`int`, *optional*): hidden width of the prefix adapter MLP (defaults to the
            language model's width).
        clip_feature_layer (`int`): which CLIP hidden state the explainer attends to (-1 = last).
        trainable_modules (`list[str]`): modules that receive gradients, from `TRAINABLE_MODULE_NAMES`.
        dice_weight, focal_weight, lm_weight (`float`): weights of the three losses (the paper sums them).
        focal_alpha, focal_gamma (`float`): focal loss parameters.
        max_explanation_tokens (`int`): explanations are truncated to (and generated up to) this many tokens.
        top_p (`float`), temperature (`float`), do_sample (`bool`): decoding defaults (nucleus, p = 0.9).
        mask_threshold (`float`): logit threshold that turns saliency logits into a binary mask.
    """

    model_type = "emosem"
    # text_config is a GPT2Config, or a LlavaConfig for explainer="llava" (resolved by its `model_type`).
    sub_configs_defaults = {
        "sam_config": SamConfig,
        "vision_config": CLIPVisionConfig,
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="gpt2"),
    }

    sam_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    paradigm: str = "single"
    explainer: str = "gpt2"
    bridge: str = "prefix_adapter"
    emotions: list | tuple | None = None
    prompt_template: str = "generate the mask for the emotion {emotion}"
    prompt_length: int = 8
    prefix_hidden_size: int | None = None
    clip_feature_layer: int = -1
    trainable_modules: list | tuple | None = None
    dice_weight: float = 1.0
    focal_weight: float = 1.0
    lm_weight: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    max_explanation_tokens: int = 25
    top_p: float = 0.9
    temperature: float = 1.0
    do_sample: bool = True
    mask_threshold: float = 0.0
    initializer_range: float = 0.02
    sca_num_layers: int = 12
    sca_num_query_tokens: int = 1
    sca_num_task_tokens: int = 1
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    lora_target_modules: list | tuple | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.explainer == "gpt2" and self.text_config.model_type == "gpt2":
            # EmoSEM: cross-attention over CLIP features is part of the architecture, not an option.
            # SCAbase: SCA's language model reads the query tokens only (no cross-attention, no CLIP).
            self.text_config.add_cross_attention = self.bridge == "prefix_adapter"
            self.text_config.is_decoder = True
        if self.emotions is None:
            self.emotions = list(EMOTIONS)
        self.emotions = list(self.emotions)
        if self.trainable_modules is None:
            self.trainable_modules = list(SCA_TRAINABLE if self.bridge == "sca_mixer" else PAPER_TRAINABLE)
        if self.lora_target_modules is None:
            self.lora_target_modules = list(DEFAULT_LORA_TARGETS)
        self.lora_target_modules = list(self.lora_target_modules)
        self.trainable_modules = list(self.trainable_modules)
        self._check()

    def _check(self) -> None:
        if self.paradigm not in PARADIGMS:
            raise ValueError(f"paradigm must be one of {PARADIGMS}, got {self.paradigm!r}")
        if self.explainer not in EXPLAINERS:
            raise ValueError(f"explainer must be one of {EXPLAINERS}, got {self.explainer!r}")
        if self.bridge not in BRIDGES:
            raise ValueError(f"bridge must be one of {BRIDGES}, got {self.bridge!r}")
        expected_lm = {"gpt2": "gpt2", "llava": "llava"}[self.explainer]
        if self.text_config.model_type != expected_lm:
            raise ValueError(
                f"explainer={self.explainer!r} needs a {expected_lm!r} text_config, got {self.text_config.model_type!r} "
                f"(use the 'llava' / 'llava-tiny' presets, or from_pretrained_components)"
            )
        if self.bridge == "sca_mixer" and self.explainer != "gpt2":
            raise ValueError("bridge='sca_mixer' (SCAbase) is defined with the GPT-2 explainer only")
        if self.sca_num_layers < 1 or self.sca_num_query_tokens < 1 or self.sca_num_task_tokens < 0:
            raise ValueError("sca_num_layers and sca_num_query_tokens must be positive, sca_num_task_tokens >= 0")
        if self.lora_rank < 0 or not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_rank must be >= 0 and lora_dropout in [0, 1), got {self.lora_rank}, {self.lora_dropout}")
        if not self.lora_target_modules:
            raise ValueError("lora_target_modules must name at least one linear layer of the language model")
        unknown = sorted(set(self.trainable_modules) - set(TRAINABLE_MODULE_NAMES))
        if unknown:
            raise ValueError(f"trainable_modules has unknown names {unknown}; expected a subset of {TRAINABLE_MODULE_NAMES}")
        if "{emotion}" not in self.prompt_template:
            raise ValueError(f"prompt_template must contain '{{emotion}}', got {self.prompt_template!r}")
        if len(self.emotions) < 1 or len(set(self.emotions)) != len(self.emotions):
            raise ValueError(f"emotions must be a non-empty list of distinct names, got {self.emotions!r}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_explanation_tokens < 1 or self.prompt_length < 1:
            raise ValueError("max_explanation_tokens and prompt_length must be positive")
        sam_v, sam_p = self.sam_config.vision_config, self.sam_config.prompt_encoder_config
        if sam_v.image_size // sam_v.patch_size != sam_p.image_size // sam_p.patch_size:
            raise ValueError(
                "sam_config: vision_config and prompt_encoder_config disagree on the embedding grid "
                f"({sam_v.image_size}/{sam_v.patch_size} vs {sam_p.image_size}/{sam_p.patch_size})"
            )

    # ----- derived sizes (never stored, so they cannot disagree with the sub-configs) -----
    @property
    def language_model_config(self) -> PreTrainedConfig:
        """Config of the language model proper (GPT-2, or LLaVA's LLaMA)."""
        return self.text_config.text_config if self.explainer == "llava" else self.text_config

    @property
    def word_embedding_size(self) -> int:
        """d_w: width of the language model's word embeddings (768 for distilgpt2, 4096 for llava-7b)."""
        return self.language_model_config.hidden_size

    @property
    def eos_token_id(self) -> int:
        eos = self.language_model_config.eos_token_id
        return eos[0] if isinstance(eos, (list, tuple)) else eos

    @property
    def uses_lora(self) -> bool:
        return self.explainer == "llava" and self.lora_rank > 0

    @property
    def image_encoder_for_explainer(self) -> str | None:
        """Where the explainer's image pixels go: "clip" (cross-attention), "llava" (LLaVA's tower), None (SCAbase)."""
        if self.explainer == "llava":
            return "llava"
        return "clip" if self.bridge == "prefix_adapter" else None

    @property
    def variant_name(self) -> str:
        """"EmoSEM", "EmoSEM-LLaVA" or "SCAbase" (the paper's names)."""
        if self.explainer == "llava":
            return "EmoSEM-LLaVA"
        return "SCAbase" if self.bridge == "sca_mixer" else "EmoSEM"

    def describe_backbones(self) -> str:
        """One line naming the backbones and their sizes (model cards)."""
        sam = self.sam_config.vision_config
        parts = [f"SAM ViT ({sam.hidden_size}-d, {sam.num_hidden_layers} layers)"]
        if self.explainer == "llava":
            vis, lm = self.text_config.vision_config, self.language_model_config
            parts.append(f"LLaVA: CLIP ViT ({vis.hidden_size}-d, patch {vis.patch_size}, {vis.image_size} px) + "
                         f"{lm.model_type} ({lm.num_hidden_layers} layers, {lm.hidden_size}-d)"
                         + (f", LoRA r={self.lora_rank} on {'/'.join(self.lora_target_modules)}" if self.uses_lora else ""))
        elif self.bridge == "sca_mixer":
            parts.append(f"SCA text feature mixer ({self.sca_num_layers} layers)")
            parts.append(f"GPT-2 ({self.text_config.n_layer} layers, {self.text_config.n_embd}-d), no cross-attention")
        else:
            parts.append(f"CLIP ViT ({self.vision_config.hidden_size}-d, patch {self.vision_config.patch_size})")
            parts.append(f"GPT-2 ({self.text_config.n_layer} layers, {self.text_config.n_embd}-d) with cross-attention")
        return ", ".join(parts)

    @property
    def num_emotions(self) -> int:
        return len(self.emotions)

    @property
    def num_mask_tokens(self) -> int:
        """1 learnable mask token (Single-Mask) or one per emotion (Multi-Masks)."""
        return 1 if self.paradigm == "single" else self.num_emotions

    @property
    def prefix_length(self) -> int:
        """l_f: [p'', m''] in Single-Mask, m_i'' alone in Multi-Masks; SCAbase: [k, q'']."""
        if self.bridge == "sca_mixer":
            return self.sca_num_task_tokens + self.sca_num_query_tokens
        return self.prompt_length + 1 if self.paradigm == "single" else 1

    @property
    def sam_image_size(self) -> int:
        return self.sam_config.vision_config.image_size

    @property
    def image_embedding_size(self) -> int:
        """Side of SAM's image embedding grid (64 for ViT-B at 1024 px)."""
        return self.sam_config.prompt_encoder_config.image_embedding_size

    @property
    def mask_size(self) -> int:
        """Side of the saliency logits S: the mask head upsamples the grid 4x (256 at the paper preset)."""
        return 4 * self.image_embedding_size

    @property
    def clip_image_size(self) -> int:
        """Side of the explainer's image input (LLaVA's vision tower for explainer="llava")."""
        if self.explainer == "llava":
            return self.text_config.vision_config.image_size
        return self.vision_config.image_size

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "EmoSEMConfig":
        """Build a preset config; ``overrides`` replace top-level fields, and dicts given for
        ``sam_config`` / ``vision_config`` / ``text_config`` are merged into the preset's."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; available presets: {sorted(PRESETS)}")
        kwargs = copy.deepcopy(PRESETS[name])
        for key, value in overrides.items():
            if key in cls.sub_configs_defaults and isinstance(value, dict):
                kwargs[key] = _deep_merge(kwargs.get(key, {}), value)
            else:
                kwargs[key] = value
        return cls(**kwargs)


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
