"""EmoSEM: Segment and Explain Emotion Stimuli in Visual Art (paper sections 3-4, appendix A).

Data flow for one batch of N (image, emotion) rows, paper preset in brackets:

1. SAM image encoder (frozen): `pixel_values (N,3,1024,1024)` -> `v (N,256,64,64)`.
2. CLIP vision tower (frozen): `clip_pixel_values (N,3,224,224)` -> `c (N,197,768)`.
3. Emotion projector: prompt tokens -> LM word embeddings -> Linear 768->256 -> `p (N,8,256)`.
4. Feature mixer = SAM's two-way transformer over `[p, m]` and `v` (Multi-Masks: `[m_0..m_7]`, no prompt).
5. Mask head (SAM upscaling + hypernetwork MLP) on `m'`, `v'` -> saliency logits `S (N,256,256)`.
6. Prefix adapter (token-wise MLP 256->768) on `[p', m']` -> `f (N,9,768)` (Multi-Masks: `m_i'` -> `(N,1,768)`).
7. GPT-2 with cross-attention over `c`, input `[f, X]`: cross-entropy on the explanation X.
8. Loss = Dice + Focal on S against the (pseudo) mask + language cross-entropy (each reported).

Steps 1-2 depend on the image only: `get_image_features` computes them once, and `forward` /
`segment_and_explain` accept them instead of pixels, so several emotions (and epochs) reuse them.

Variants (config, not copies; see configuration_emosem.py):
- EmoSEM-LLaVA (``explainer="llava"``): step 2 is LLaVA's vision tower + projector (image tokens
  `(N, 576, D)`), step 7 is LLaVA's language model (LoRA) over ``[image tokens, f, X]``
  (explainer_llava_emosem.py).
- SCAbase (``bridge="sca_mixer"``): step 6 is SCA's query/task tokens and text feature mixer, step 7 a GPT-2
  without cross-attention over ``[k, q'', X]``; no CLIP (sca_mixer_emosem.py).
"""

from __future__ import annotations

import contextvars
import os

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import CLIPVisionModel, GPT2LMHeadModel, PreTrainedModel, SamModel
from transformers.utils import ModelOutput

from .configuration_emosem import EmoSEMConfig
from .generation_emosem import decode_explanations
from .losses_emosem import dice_loss, sigmoid_focal_loss
from .sca_mixer_emosem import SCATextFeatureMixer

# Set by `from_pretrained_components` for LLaVA: the (7B) language model is then built on the meta device
# and replaced by the loaded checkpoint, instead of being randomly initialised first.
_DEFER_LANGUAGE_MODEL = contextvars.ContextVar("emosem_defer_language_model", default=False)


@dataclass
class EmoSEMImageFeatures(ModelOutput):
    """Image-only features: computed once per image, reused for every emotion and token.

    Args:
        image_embeddings: `(B, C_k, h, w)` SAM image embeddings v (256 x 64 x 64 at the paper preset).
        clip_features: `(B, S, D_clip)` CLIP patch features c (197 x 768 at the paper preset); for
            EmoSEM-LLaVA LLaVA's projected image tokens `(B, 576, D)`; None for SCAbase (no CLIP).
    """

    image_embeddings: torch.Tensor | None = None
    clip_features: torch.Tensor | None = None


@dataclass
class EmoSEMOutput(ModelOutput):
    """Output of `EmoSEMModel.forward` for N rows.

    Args:
        loss: total loss (weighted sum of the parts below that could be computed).
        mask_loss: Dice + Focal on the saliency logits (needs `mask_labels`).
        dice_loss, focal_loss: the two parts of `mask_loss`.
        lm_loss: explanation cross-entropy (needs `labels`).
        pred_masks: `(N, H, W)` saliency logits S of the requested emotion (H = W = `config.mask_size`).
        all_pred_masks: `(N, 8, H, W)` logits of every emotion (Multi-Masks only).
        logits: `(N, L_f + T, V)` language-model logits over `[f, X]`.
        prefix_embeds: `(N, L_f, D)` prefix tokens f.
        prompt_tokens: `(N, L_e, C_k)` updated emotional prompt tokens p' (Single-Mask only).
        mask_tokens: `(N, K, C_k)` updated mask tokens m' (K = 1, or 8 in Multi-Masks).
        image_embeddings, clip_features: the image features used (for reuse).
    """

    loss: torch.Tensor | None = None
    mask_loss: torch.Tensor | None = None
    dice_loss: torch.Tensor | None = None
    focal_loss: torch.Tensor | None = None
    lm_loss: torch.Tensor | None = None
    pred_masks: torch.Tensor | None = None
    all_pred_masks: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    prefix_embeds: torch.Tensor | None = None
    prompt_tokens: torch.Tensor | None = None
    mask_tokens: torch.Tensor | None = None
    image_embeddings: torch.Tensor | None = None
    clip_features: torch.Tensor | None = None


@dataclass
class EmoSEMGenerationOutput(ModelOutput):
    """Output of `EmoSEMModel.segment_and_explain`.

    Args:
        pred_masks: `(N, H, W)` saliency logits.
        sequences: `(N, T)` explanation token ids (eos-padded).
        prefix_embeds: `(N, L_f, D)`.
    """

    pred_masks: torch.Tensor | None = None
    sequences: torch.Tensor | None = None
    prefix_embeds: torch.Tensor | None = None


class PrefixAdapter(nn.Module):
    """Token-wise MLP from the mask decoder's width to the language model's (paper Eq. 3).

    `(N, L, C_k)` -> `(N, L, D)`.
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(tokens)))


def _check_tensor(name: str, value: torch.Tensor | None, shape: Sequence[int | None], dtype_kind: str | None = None):
    """Raise a ValueError naming `name` unless `value` has `shape` (None = any size)."""
    if value is None:
        return
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if value.dim() != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(value.shape)}")
    if dtype_kind == "int" and (value.is_floating_point() or value.is_complex()):
        raise ValueError(f"{name}: expected an integer tensor, got {value.dtype}")
    if dtype_kind == "float" and not value.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {value.dtype}")


class EmoSEMPreTrainedModel(PreTrainedModel):
    config: EmoSEMConfig
    config_class = EmoSEMConfig
    base_model_prefix = "emosem"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["SamVisionLayer", "CLIPEncoderLayer", "GPT2Block", "LlamaDecoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        if isinstance(module, EmoSEMModel):
            if module.emotion_projector is not None:
                # Word embeddings start at std = text initializer_range; scale the projector so the prompt
                # tokens p come out ~N(0, 1) like SAM's prompt embeddings and the N(0, 1) mask token.
                # (A 0.02-std projector makes p ~1e-3 of m: the mixer then ignores the emotion for long.)
                module.set_emotion_projector_gain(self.config.language_model_config.initializer_range)
            # nn.Embedding-style N(0, 1), as Meta's SAM initialises its mask tokens: small tokens would be
            # averaged into one by the first (residual-free) self-attention of the two-way transformer.
            module.mask_tokens.normal_(0.0, 1.0)
        if isinstance(module, SCATextFeatureMixer):
            module.query_tokens.normal_(0.0, 1.0)  # like SAM's tokens (nn.Embedding init)
            module.task_tokens.normal_(0.0, self.config.language_model_config.initializer_range)  # like word embeddings


class EmoSEMModel(EmoSEMPreTrainedModel):
    """EmoSEM: segments the pixels that evoke an emotion in an artwork and explains them in words.

    Built from `config` alone with random weights; `from_pretrained_components` loads the three public
    backbones, and `from_pretrained` loads a saved EmoSEM.
    """

    def __init__(self, config: EmoSEMConfig):
        super().__init__(config)
        self.sam = SamModel(config.sam_config)
        # The explainer's image encoder: CLIP for cross-attention (EmoSEM); LLaVA brings its own; SCAbase has none.
        self.clip = CLIPVisionModel(config.vision_config) if config.image_encoder_for_explainer == "clip" else None
        if config.explainer == "llava":
            from transformers import LlavaForConditionalGeneration

            if _DEFER_LANGUAGE_MODEL.get():
                with torch.device("meta"):
                    self.language_model = LlavaForConditionalGeneration(config.text_config)
            else:
                self.language_model = LlavaForConditionalGeneration(config.text_config)
        else:
            self.language_model = GPT2LMHeadModel(config.text_config)

        d_k = config.sam_config.mask_decoder_config.hidden_size
        d_w = config.word_embedding_size
        # Emotion projector P_E: LM word embeddings (d_w) -> mask decoder space (d_k). Multi-Masks has no prompt.
        self.emotion_projector = nn.Linear(d_w, d_k) if config.paradigm == "single" else None
        self.mask_tokens = nn.Parameter(torch.zeros(config.num_mask_tokens, d_k))
        self.prefix_adapter = self.sca_mixer = None
        if config.bridge == "prefix_adapter":
            self.prefix_adapter = PrefixAdapter(d_k, config.prefix_hidden_size or d_w, d_w)
        else:
            self.sca_mixer = SCATextFeatureMixer(
                config.sam_config.mask_decoder_config, config.sca_num_layers, config.sca_num_query_tokens,
                config.sca_num_task_tokens, d_w,
            )
        # GPT-2's cross-attention needs encoder states of its own width; the paper's CLIP (768) matches.
        self.clip_projection = None
        if self.clip is not None:
            d_clip = config.vision_config.hidden_size
            self.clip_projection = nn.Identity() if d_clip == d_w else nn.Linear(d_clip, d_w)
        self.post_init()
        if config.uses_lora and not _DEFER_LANGUAGE_MODEL.get():
            from .explainer_llava_emosem import inject_lora

            inject_lora(self.language_model, config)
        self.apply_trainable_modules()

    @classmethod
    def from_pretrained_components(
        cls,
        sam: str = "facebook/sam-vit-base",
        clip: str = "openai/clip-vit-base-patch16",
        language_model: str = "distilgpt2",
        **config_overrides,
    ) -> "EmoSEMModel":
        """Build EmoSEM from the three public checkpoints (or local folders of the same form).

        SAM, CLIP's vision tower and GPT-2 keep their weights; GPT-2's new cross-attention, the emotion
        projector and the prefix adapter start from the usual random init, and the learnable mask token(s)
        start from SAM's single-output mask token (Ambiguity-Unaware). `config_overrides` set EmoSEM's own
        fields (e.g. ``paradigm="multi"``).
        """
        return _from_pretrained_components_impl(cls, sam, clip, language_model, **config_overrides)

    # ------------------------------------------------------------------ saving, loading, LoRA
    def save_pretrained(self, save_directory, *args, **kwargs):
        """As `PreTrainedModel.save_pretrained`; EmoSEM-LLaVA with LoRA also writes the adapter in PEFT's format
        to ``lora_adapter/`` (`adapter_model.safetensors` + `adapter_config.json`)."""
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if self.config.uses_lora and _is_main_process(kwargs):
            from .explainer_llava_emosem import save_adapter

            save_adapter(self.language_model, self.config, str(save_directory))
        return result

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """As `PreTrainedModel.from_pretrained`; EmoSEM-LLaVA with LoRA then loads ``lora_adapter/`` when present
        (pass ``adapter=<folder or file>`` to load another adapter instead)."""
        adapter = kwargs.pop("adapter", None)
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        if getattr(model.config, "uses_lora", False):
            weights = _find_adapter(pretrained_model_name_or_path, adapter, kwargs)
            if weights is not None:
                from .explainer_llava_emosem import load_adapter

                load_adapter(model.language_model, weights)
        return model

    def merge_lora(self) -> "EmoSEMModel":
        """Merge the LoRA adapter into LLaVA's language model (in place). The config then says ``lora_rank=0``,
        so a saved merged model loads without peft wrappers, and the "language_model" group is the whole LM."""
        if not self.config.uses_lora:
            raise ValueError("merge_lora: this model has no LoRA adapter (explainer='llava' with lora_rank > 0)")
        from .explainer_llava_emosem import merge_lora

        merge_lora(self.language_model)
        self.config.lora_rank = 0
        self.apply_trainable_modules()
        return self

    # ------------------------------------------------------------------ parameter groups
    def module_groups(self) -> dict[str, list[nn.Module | nn.Parameter]]:
        """The trainable units of `config.trainable_modules`, by name (used for freezing and per-group LRs)."""
        dec = self.sam.mask_decoder
        cfg = self.config
        if cfg.explainer == "llava":
            llava = self.language_model.model
            clip = [llava.vision_tower, llava.multi_modal_projector]  # LLaVA's own image path
            if cfg.uses_lora:
                from .explainer_llava_emosem import lora_parameters

                lm = lora_parameters(self.language_model)  # LoRA only: the 7B base weights stay frozen
            else:
                lm = [llava.language_model, self.language_model.lm_head]
        else:
            clip = [self.clip] if self.clip is not None else []
            lm = [self.language_model] + ([self.clip_projection] if self.clip_projection is not None else [])
        groups: dict[str, list] = {
            "image_encoder": [self.sam.vision_encoder],
            "feature_mixer": [dec.transformer],
            "clip": clip,
            "emotion_projector": [self.emotion_projector] if self.emotion_projector is not None else [],
            "mask_tokens": [self.mask_tokens],
            # FT-MH: upscaling convolutions + the hypernetwork MLP of SAM's single-output mask token.
            "mask_head": [dec.upscale_conv1, dec.upscale_layer_norm, dec.upscale_conv2, dec.output_hypernetworks_mlps[0]],
            "prefix_adapter": [self.prefix_adapter] if self.prefix_adapter is not None else [],
            "sca_mixer": [self.sca_mixer] if self.sca_mixer is not None else [],
            "language_model": lm,
        }
        return groups

    @torch.no_grad()
    def set_emotion_projector_gain(self, embedding_std: float) -> None:
        """Re-initialise the emotion projector so projected word embeddings of std `embedding_std` have unit std."""
        d_w = self.emotion_projector.in_features
        self.emotion_projector.weight.normal_(0.0, 1.0 / (d_w**0.5 * max(embedding_std, 1e-6)))
        self.emotion_projector.bias.zero_()

    def group_parameters(self, name: str) -> list[nn.Parameter]:
        params = []
        for item in self.module_groups()[name]:
            params.extend([item] if isinstance(item, nn.Parameter) else item.parameters())
        return params

    def apply_trainable_modules(self) -> None:
        """Freeze everything, then unfreeze the groups named in `config.trainable_modules`."""
        self.requires_grad_(False)
        for name in self.config.trainable_modules:
            for param in self.group_parameters(name):
                param.requires_grad_(True)

    # ------------------------------------------------------------------ encoders
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def get_image_features(
        self, pixel_values: torch.Tensor | None = None, clip_pixel_values: torch.Tensor | None = None
    ) -> EmoSEMImageFeatures:
        """Run the two image encoders (the expensive, image-only part).

        Args:
            pixel_values: `(B, 3, S, S)` SAM-preprocessed images (S = 1024 at the paper preset).
            clip_pixel_values: `(B, 3, S_c, S_c)` CLIP-preprocessed images (S_c = 224).
        Returns:
            `EmoSEMImageFeatures` with `image_embeddings (B, C_k, h, w)` and `clip_features (B, S, D_clip)`
            (LLaVA: its image tokens `(B, S_img, D)`); either is None when its pixels are not given, and
            `clip_features` is always None for SCAbase, which has no CLIP.
        """
        cfg = self.config
        _check_tensor("pixel_values", pixel_values, (None, 3, cfg.sam_image_size, cfg.sam_image_size), "float")
        _check_tensor("clip_pixel_values", clip_pixel_values, (None, 3, cfg.clip_image_size, cfg.clip_image_size), "float")
        image_embeddings = clip_features = None
        if pixel_values is not None:
            # Frozen encoders run without autograd bookkeeping (SAM ViT-B activations are large).
            with torch.set_grad_enabled(torch.is_grad_enabled() and "image_encoder" in cfg.trainable_modules):
                image_embeddings = self.sam.vision_encoder(pixel_values).last_hidden_state
        if clip_pixel_values is not None and cfg.image_encoder_for_explainer == "llava":
            from .explainer_llava_emosem import llava_image_features

            with torch.set_grad_enabled(torch.is_grad_enabled() and "clip" in cfg.trainable_modules):
                tower = self.language_model.model.vision_tower
                clip_features = llava_image_features(self.language_model, clip_pixel_values.to(tower.dtype))
        elif clip_pixel_values is not None and cfg.image_encoder_for_explainer == "clip":
            with torch.set_grad_enabled(torch.is_grad_enabled() and "clip" in cfg.trainable_modules):
                if cfg.clip_feature_layer == -1:
                    clip_features = self.clip(pixel_values=clip_pixel_values).last_hidden_state
                else:
                    out = self.clip(pixel_values=clip_pixel_values, output_hidden_states=True)
                    clip_features = out.hidden_states[cfg.clip_feature_layer]
        return EmoSEMImageFeatures(image_embeddings=image_embeddings, clip_features=clip_features)

    # ------------------------------------------------------------------ segmentation branch
    def embed_prompts(self, prompt_input_ids: torch.Tensor) -> torch.Tensor:
        """Emotion projector: `(N, L_e)` prompt token ids -> `(N, L_e, C_k)` prompt tokens p."""
        words = self.get_input_embeddings()(prompt_input_ids)
        return self.emotion_projector(words.to(self.emotion_projector.weight.dtype))

    def mix_features(
        self, tokens: torch.Tensor, image_embeddings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Emotion-driven feature mixer: SAM's two-way transformer, driven directly (paper Eq. 1-2).

        Args:
            tokens: `(N, T, C_k)` query tokens ([p, m], or the 8 mask tokens).
            image_embeddings: `(N, C_k, h, w)` vision tokens v.
        Returns:
            updated tokens `(N, T, C_k)` and updated vision tokens v' `(N, C_k, h, w)`.
        """
        n, c, h, w = image_embeddings.shape
        # No mask prompt: SAM adds its "no mask" dense embedding to every vision token.
        dense = self.sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        positional = self.sam.get_image_wide_positional_embeddings().to(image_embeddings.dtype)
        queries, keys = self.sam.mask_decoder.transformer(
            point_embeddings=tokens.unsqueeze(1),  # SAM's point-batch axis, 1 here
            image_embeddings=image_embeddings + dense,
            image_positional_embeddings=positional.expand(n, -1, -1, -1),
            attention_similarity=None,
        )
        vision = keys.squeeze(1).transpose(1, 2).reshape(n, c, h, w)
        return queries.squeeze(1), vision

    def mask_head(self, mask_tokens: torch.Tensor, vision: torch.Tensor) -> torch.Tensor:
        """FT-MH: upsample v' 4x and classify every pixel with a linear classifier made from each mask token.

        Args:
            mask_tokens: `(N, K, C_k)` updated mask tokens m'.
            vision: `(N, C_k, h, w)` updated vision tokens v'.
        Returns:
            `(N, K, 4h, 4w)` saliency logits.
        """
        dec = self.sam.mask_decoder
        up = dec.activation(dec.upscale_layer_norm(dec.upscale_conv1(vision)))
        up = dec.activation(dec.upscale_conv2(up))  # (N, C_k/8, 4h, 4w)
        n, c8, hh, ww = up.shape
        hyper = dec.output_hypernetworks_mlps[0](mask_tokens)  # (N, K, C_k/8)
        return (hyper @ up.reshape(n, c8, hh * ww)).reshape(n, -1, hh, ww)

    def _segment(
        self, image_embeddings: torch.Tensor, emotion_ids: torch.Tensor, prompt_input_ids: torch.Tensor | None
    ) -> dict[str, torch.Tensor | None]:
        n = image_embeddings.shape[0]
        rows = torch.arange(n, device=image_embeddings.device)
        if self.config.paradigm == "single":
            if prompt_input_ids is None:
                raise ValueError("prompt_input_ids is required in the Single-Mask paradigm (the processor makes it)")
            prompts = self.embed_prompts(prompt_input_ids)
            tokens = torch.cat([prompts, self.mask_tokens.unsqueeze(0).expand(n, -1, -1).to(prompts.dtype)], dim=1)
            mixed, vision = self.mix_features(tokens, image_embeddings)
            prompt_out, mask_out = mixed[:, : prompts.shape[1]], mixed[:, prompts.shape[1] :]
            pred_masks = self.mask_head(mask_out, vision)[:, 0]
            prefix = self._bridge(mixed, vision)  # [p'', m''] (SCAbase: [k, q''])
            all_masks = None
        else:
            tokens = self.mask_tokens.unsqueeze(0).expand(n, -1, -1).to(image_embeddings.dtype)
            mask_out, vision = self.mix_features(tokens, image_embeddings)
            prompt_out = None
            all_masks = self.mask_head(mask_out, vision)
            pred_masks = all_masks[rows, emotion_ids]
            prefix = self._bridge(mask_out[rows, emotion_ids].unsqueeze(1), vision)  # m_i'' (SCAbase: [k, q''])
        return {
            "pred_masks": pred_masks,
            "all_pred_masks": all_masks,
            "prefix_embeds": prefix,
            "prompt_tokens": prompt_out,
            "mask_tokens": mask_out,
        }

    def _bridge(self, tokens: torch.Tensor, vision: torch.Tensor) -> torch.Tensor:
        """Decoder tokens `(N, T, C_k)` -> prefix `(N, L_f, D)`: the prefix adapter, or SCAbase's mixer."""
        if self.sca_mixer is None:
            return self.prefix_adapter(tokens)
        n = tokens.shape[0]
        positional = self.sam.get_image_wide_positional_embeddings().to(vision.dtype).expand(n, -1, -1, -1)
        return self.sca_mixer(tokens, vision, positional)

    def _explainer_context(
        self, prefix: torch.Tensor, clip_features: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (embeddings the explanation follows, encoder states for cross-attention or None).

        EmoSEM: `f`, with CLIP features for GPT-2's cross-attention. EmoSEM-LLaVA: `[image tokens, f]`,
        as LLaVA places its image in the sequence. SCAbase: `[k, q'']` alone.
        """
        dtype = self.get_input_embeddings().weight.dtype
        mode = self.config.image_encoder_for_explainer
        if mode == "clip":
            return prefix, self.clip_projection(clip_features)
        if mode == "llava":
            return torch.cat([clip_features.to(dtype), prefix.to(dtype)], dim=1), None
        return prefix.to(dtype), None

    # ------------------------------------------------------------------ public API
    def _resolve_features(self, pixel_values, clip_pixel_values, image_embeddings, clip_features):
        cfg = self.config
        mode = cfg.image_encoder_for_explainer
        if image_embeddings is None and pixel_values is None:
            raise ValueError("pass either pixel_values or image_embeddings")
        if mode is None:  # SCAbase: no CLIP; CLIP pixels (the processor makes them) are ignored
            clip_pixel_values = clip_features = None
        elif clip_features is None and clip_pixel_values is None:
            raise ValueError("pass either clip_pixel_values or clip_features")
        feats = self.get_image_features(
            pixel_values if image_embeddings is None else None,
            clip_pixel_values if clip_features is None else None,
        )
        image_embeddings = feats.image_embeddings if image_embeddings is None else image_embeddings
        clip_features = feats.clip_features if clip_features is None else clip_features
        d_k, g = cfg.sam_config.mask_decoder_config.hidden_size, cfg.image_embedding_size
        _check_tensor("image_embeddings", image_embeddings, (None, d_k, g, g), "float")
        d_c = cfg.word_embedding_size if mode == "llava" else cfg.vision_config.hidden_size
        _check_tensor("clip_features", clip_features, (None, None, d_c), "float")
        return image_embeddings, clip_features

    def _check_rows(self, n: int, **tensors: torch.Tensor | None) -> None:
        for name, value in tensors.items():
            if value is not None and value.shape[0] != n:
                raise ValueError(f"{name}: batch size {value.shape[0]} does not match the {n} images given")

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        clip_pixel_values: torch.Tensor | None = None,
        emotion_ids: torch.Tensor | None = None,
        prompt_input_ids: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        mask_labels: torch.Tensor | None = None,
        image_embeddings: torch.Tensor | None = None,
        clip_features: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> EmoSEMOutput:
        """Segment, and score an explanation (teacher forcing).

        Args:
            pixel_values: `(N, 3, S, S)` SAM pixels, or `image_embeddings (N, C_k, h, w)` instead.
            clip_pixel_values: `(N, 3, S_c, S_c)` CLIP pixels, or `clip_features (N, S, D_clip)` instead.
            emotion_ids: `(N,)` emotion index per row (into `config.emotions`).
            prompt_input_ids: `(N, L_e)` tokenised emotional prompts (Single-Mask).
            input_ids, attention_mask: `(N, T)` explanation tokens X (optional).
            labels: `(N, T)` explanation targets, -100 where ignored (gives `lm_loss`).
            mask_labels: `(N, H, W)` targets in [0, 1] at `config.mask_size` (gives `mask_loss`).
        """
        cfg = self.config
        image_embeddings, clip_features = self._resolve_features(
            pixel_values, clip_pixel_values, image_embeddings, clip_features
        )
        n = image_embeddings.shape[0]
        if emotion_ids is None:
            raise ValueError("emotion_ids is required: one emotion index per row")
        _check_tensor("emotion_ids", emotion_ids, (None,), "int")
        _check_tensor("prompt_input_ids", prompt_input_ids, (None, cfg.prompt_length), "int")
        _check_tensor("input_ids", input_ids, (None, None), "int")
        _check_tensor("attention_mask", attention_mask, (None, None if input_ids is None else input_ids.shape[1]))
        _check_tensor("labels", labels, (None, None if input_ids is None else input_ids.shape[1]), "int")
        _check_tensor("mask_labels", mask_labels, (None, cfg.mask_size, cfg.mask_size), "float")
        self._check_rows(
            n, clip_features=clip_features, emotion_ids=emotion_ids, prompt_input_ids=prompt_input_ids,
            input_ids=input_ids, attention_mask=attention_mask, labels=labels, mask_labels=mask_labels,
        )
        if emotion_ids.numel() and (emotion_ids.min() < 0 or emotion_ids.max() >= cfg.num_emotions):
            raise ValueError(f"emotion_ids: expected values in [0, {cfg.num_emotions}), got {emotion_ids.tolist()}")
        if labels is not None and input_ids is None:
            raise ValueError("labels were given without input_ids: pass the explanation tokens as input_ids too")

        seg = self._segment(image_embeddings, emotion_ids, prompt_input_ids)
        out = EmoSEMOutput(image_embeddings=image_embeddings, clip_features=clip_features, **seg)

        losses = []
        if mask_labels is not None:
            logits = seg["pred_masks"].float()
            out.dice_loss = dice_loss(logits, mask_labels.float()).mean()
            out.focal_loss = sigmoid_focal_loss(logits, mask_labels.float(), cfg.focal_alpha, cfg.focal_gamma).mean()
            out.mask_loss = cfg.dice_weight * out.dice_loss + cfg.focal_weight * out.focal_loss
            losses.append(out.mask_loss)
        if input_ids is not None:
            lead, encoder_states = self._explainer_context(seg["prefix_embeds"], clip_features)
            embeds = torch.cat([lead, self.get_input_embeddings()(input_ids).to(lead.dtype)], dim=1)
            mask = None
            if attention_mask is not None:
                ones = attention_mask.new_ones(n, lead.shape[1])
                mask = torch.cat([ones, attention_mask], dim=1)
            full_labels = None
            if labels is not None:
                full_labels = torch.cat([labels.new_full((n, lead.shape[1]), -100), labels], dim=1)
            lm_kwargs = {} if encoder_states is None else {"encoder_hidden_states": encoder_states}
            lm = self.language_model(inputs_embeds=embeds, attention_mask=mask, labels=full_labels, **lm_kwargs)
            # logits over [f, X] (LLaVA's image positions are left out)
            out.logits = lm.logits[:, lead.shape[1] - seg["prefix_embeds"].shape[1] :]
            if full_labels is not None:
                out.lm_loss = lm.loss
                losses.append(cfg.lm_weight * lm.loss)
        if losses:
            out.loss = torch.stack(losses).sum()
        return out

    @torch.inference_mode()
    def segment_and_explain(
        self,
        emotion_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        clip_pixel_values: torch.Tensor | None = None,
        prompt_input_ids: torch.Tensor | None = None,
        image_embeddings: torch.Tensor | None = None,
        clip_features: torch.Tensor | None = None,
        image_index: torch.Tensor | None = None,
        explain: bool = True,
        max_new_tokens: int | None = None,
        do_sample: bool | None = None,
        top_p: float | None = None,
        temperature: float | None = None,
        seeds: Sequence[int] | None = None,
    ) -> EmoSEMGenerationOutput:
        """Inference: predict the saliency logits and generate an explanation for each row.

        Args:
            emotion_ids: `(N,)` emotion per row.
            pixel_values / clip_pixel_values or image_embeddings / clip_features: B images.
            image_index: `(N,)` which of the B images each row reads (default: row i reads image i).
                Lets all emotions of one image share one encoder pass.
            prompt_input_ids: `(N, L_e)` (Single-Mask).
            seeds: one sampling seed per row; decoding defaults come from the config.
        Returns:
            `EmoSEMGenerationOutput` with `pred_masks (N, H, W)` and `sequences (N, T)`.
        """
        cfg = self.config
        image_embeddings, clip_features = self._resolve_features(
            pixel_values, clip_pixel_values, image_embeddings, clip_features
        )
        _check_tensor("emotion_ids", emotion_ids, (None,), "int")
        n = emotion_ids.shape[0]
        if image_index is None:
            if image_embeddings.shape[0] != n:
                raise ValueError(
                    f"emotion_ids: {n} rows but {image_embeddings.shape[0]} images; pass image_index to map rows to images"
                )
        else:
            _check_tensor("image_index", image_index, (n,), "int")
            if image_index.min() < 0 or image_index.max() >= image_embeddings.shape[0]:
                raise ValueError(f"image_index: values must be in [0, {image_embeddings.shape[0]})")
            image_embeddings = image_embeddings[image_index]
            clip_features = clip_features[image_index] if clip_features is not None else None
        _check_tensor("prompt_input_ids", prompt_input_ids, (n, cfg.prompt_length), "int")
        if emotion_ids.numel() and (emotion_ids.min() < 0 or emotion_ids.max() >= cfg.num_emotions):
            raise ValueError(f"emotion_ids: expected values in [0, {cfg.num_emotions}), got {emotion_ids.tolist()}")
        seg = self._segment(image_embeddings, emotion_ids, prompt_input_ids)
        sequences = None
        if explain:
            lead, encoder_states = self._explainer_context(seg["prefix_embeds"], clip_features)
            sequences = decode_explanations(
                self.language_model,
                lead,
                encoder_states,
                eos_token_id=cfg.eos_token_id,
                max_new_tokens=cfg.max_explanation_tokens if max_new_tokens is None else max_new_tokens,
                do_sample=cfg.do_sample if do_sample is None else do_sample,
                top_p=cfg.top_p if top_p is None else top_p,
                temperature=cfg.temperature if temperature is None else temperature,
                seeds=seeds,
            )
        return EmoSEMGenerationOutput(
            pred_masks=seg["pred_masks"], sequences=sequences, prefix_embeds=seg["prefix_embeds"]
        )


def _is_main_process(kwargs) -> bool:
    return bool(kwargs.get("is_main_process", True))


def _find_adapter(pretrained, adapter, kwargs) -> str | None:
    """The adapter weights file to load: `adapter` (folder or file) if given, else ``lora_adapter/`` of the model."""
    from .explainer_llava_emosem import ADAPTER_SUBFOLDER, ADAPTER_WEIGHTS

    if adapter is not None:
        path = os.path.join(adapter, ADAPTER_WEIGHTS) if os.path.isdir(adapter) else str(adapter)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"adapter: no {ADAPTER_WEIGHTS} at {adapter!r}")
        return path
    if os.path.isdir(pretrained):
        path = os.path.join(pretrained, ADAPTER_SUBFOLDER, ADAPTER_WEIGHTS)
        return path if os.path.isfile(path) else None
    from transformers.utils import cached_file

    hub = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
    return cached_file(
        pretrained, f"{ADAPTER_SUBFOLDER}/{ADAPTER_WEIGHTS}", _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False, **hub,
    )


def _components_config(sam_model, clip_model, language_model, **overrides) -> EmoSEMConfig:
    return EmoSEMConfig(
        sam_config=sam_model.config.to_dict(),
        vision_config=clip_model.config.to_dict() if clip_model is not None else None,
        text_config=language_model.config.to_dict(),
        **overrides,
    )


def _from_pretrained_components_impl(
    cls,
    sam: str = "facebook/sam-vit-base",
    clip: str | None = "openai/clip-vit-base-patch16",
    language_model: str = "distilgpt2",
    load_in_4bit: bool = False,
    load_in_8bit: bool = False,
    language_model_dtype: str | None = None,
    **config_overrides,
) -> "EmoSEMModel":
    from transformers import AutoConfig

    lm_type = AutoConfig.from_pretrained(language_model).model_type
    if lm_type == "llava":
        return _from_llava_components(cls, sam, language_model, load_in_4bit, load_in_8bit, language_model_dtype,
                                      **config_overrides)
    if load_in_4bit or load_in_8bit:
        raise ValueError("load_in_4bit / load_in_8bit are for the LLaVA explainer only")
    sam_model = SamModel.from_pretrained(sam)
    sca = config_overrides.get("bridge") == "sca_mixer"
    # SCAbase has no CLIP; EmoSEM reads a CLIP vision tower (a full CLIP checkpoint works too: its vision part).
    clip_model = None if sca else CLIPVisionModel.from_pretrained(clip)
    lm = GPT2LMHeadModel.from_pretrained(language_model)
    config = _components_config(sam_model, clip_model, lm, **config_overrides)
    model = cls(config)
    model.sam.load_state_dict(sam_model.state_dict(), strict=True)
    if clip_model is not None:
        model.clip.load_state_dict(clip_model.state_dict(), strict=True)
    missing, unexpected = model.language_model.load_state_dict(lm.state_dict(), strict=False)
    new_params = ("crossattention", "ln_cross_attn")
    if unexpected or any(not any(tag in key for tag in new_params) for key in missing):
        raise ValueError(
            f"language_model={language_model!r} does not fit a GPT-2 with cross-attention: "
            f"unexpected keys {unexpected[:5]}, missing keys {[k for k in missing if not any(t in k for t in new_params)][:5]}"
        )
    _finish_components(model, sam_model)
    return model


def _from_llava_components(cls, sam, language_model, load_in_4bit, load_in_8bit, dtype, **config_overrides):
    """EmoSEM-LLaVA: SAM + a LLaVA checkpoint (its vision tower replaces CLIP). The LLaVA model object loaded by
    `from_pretrained` (optionally 4-/8-bit) becomes the explainer as is; LoRA is injected afterwards."""
    from .explainer_llava_emosem import inject_lora, load_llava

    sam_model = SamModel.from_pretrained(sam)
    lm = load_llava(language_model, load_in_4bit=load_in_4bit, load_in_8bit=load_in_8bit, dtype=dtype)
    config_overrides.setdefault("explainer", "llava")
    config_overrides.setdefault("prompt_length", 12)
    config = EmoSEMConfig(sam_config=sam_model.config.to_dict(), text_config=lm.config.to_dict(), **config_overrides)
    token = _DEFER_LANGUAGE_MODEL.set(True)
    try:
        model = cls(config)  # LLaVA built on the meta device, then replaced by the loaded one
    finally:
        _DEFER_LANGUAGE_MODEL.reset(token)
    model.language_model = lm
    model.sam.load_state_dict(sam_model.state_dict(), strict=True)
    if config.uses_lora:
        inject_lora(model.language_model, config)
    _finish_components(model, sam_model)
    return model


def _finish_components(model, sam_model) -> None:
    if model.emotion_projector is not None:
        model.set_emotion_projector_gain(float(model.get_input_embeddings().weight.float().std()))
    with torch.no_grad():
        sam_token = sam_model.mask_decoder.mask_tokens.weight[0]
        model.mask_tokens.copy_(sam_token.expand_as(model.mask_tokens))
    model.apply_trainable_modules()
