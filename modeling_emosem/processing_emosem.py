"""EmoSEMProcessor: images, emotions, explanations and masks in; model inputs out; saliency maps back.

Wraps SAM's image processor (longest side -> S, pad to S x S), CLIP's image processor (shortest
side -> S_c, centre crop) and the language model's tokenizer. The geometry of SAM's resize-and-pad
is what the mask targets and the post-processing must follow, so all three live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, CLIPImageProcessor, SamImageProcessor
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .configuration_emosem import EMOTIONS, EmoSEMConfig
from .image_utils_emosem import load_image
from .tokenizer_emosem import build_tiny_tokenizer

# Tokenizers of the paper-size presets (Hub ids).
_PRESET_TOKENIZERS = {"paper": "distilgpt2", "sca": "gpt2", "llava": "llava-hf/llava-1.5-7b-hf"}


class EmoSEMProcessor(ProcessorMixin):
    r"""
    Prepares EmoSEM inputs.

    Args:
        image_processor (`SamImageProcessor`): SAM preprocessing (resize longest side, normalise, pad).
        clip_image_processor (`CLIPImageProcessor`): CLIP preprocessing for the explainer's image input: the
            cross-attention's CLIP (EmoSEM), or LLaVA's own vision tower (EmoSEM-LLaVA: LLaVA's CLIP processor,
            at its image size, e.g. 336 px). SCAbase ignores `clip_pixel_values`.
        tokenizer: the language model's tokenizer (emotional prompts and explanations).
        emotions (`list[str]`): emotion names; index = emotion id.
        prompt_template (`str`): the emotional prompt, with ``{emotion}``.
        prompt_length (`int`): prompts are padded with the end-of-text token to this many tokens.
        max_explanation_tokens (`int`): explanations are truncated to this many tokens (+ end-of-text).
        mask_size (`int`): side of the decoder's saliency logits (targets are made at this size).
    """

    def __init__(
        self,
        image_processor=None,
        clip_image_processor=None,
        tokenizer=None,
        emotions: Sequence[str] | None = None,
        prompt_template: str = "generate the mask for the emotion {emotion}",
        prompt_length: int = 8,
        max_explanation_tokens: int = 25,
        mask_size: int = 256,
        **kwargs,
    ):
        super().__init__(image_processor, clip_image_processor, tokenizer, **kwargs)
        self.emotions = list(emotions or EMOTIONS)
        self.prompt_template = prompt_template
        self.prompt_length = prompt_length
        self.max_explanation_tokens = max_explanation_tokens
        self.mask_size = mask_size
        self._prompt_ids = self._tokenize_prompts()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: EmoSEMConfig, tokenizer=None) -> "EmoSEMProcessor":
        """A processor whose sizes follow `config` (the single source of truth)."""
        s, c = config.sam_image_size, config.clip_image_size
        image_processor = SamImageProcessor(size={"longest_edge": s}, pad_size={"height": s, "width": s})
        clip_image_processor = CLIPImageProcessor(size={"shortest_edge": c}, crop_size={"height": c, "width": c})
        if tokenizer is None:
            raise ValueError("tokenizer is required (use from_preset('tiny') for an offline one)")
        return cls(
            image_processor,
            clip_image_processor,
            tokenizer,
            emotions=config.emotions,
            prompt_template=config.prompt_template,
            prompt_length=config.prompt_length,
            max_explanation_tokens=config.max_explanation_tokens,
            mask_size=config.mask_size,
        )

    @classmethod
    def from_preset(cls, name: str, tokenizer=None, **config_overrides) -> "EmoSEMProcessor":
        """Tiny presets (``"tiny"``, ``"llava-tiny"``, ``"sca-tiny"``) build their tokenizer locally (offline);
        ``"paper"`` loads distilgpt2's, ``"sca"`` gpt2's and ``"llava"`` llava-1.5-7b's, unless given."""
        config = EmoSEMConfig.from_preset(name, **config_overrides)
        if tokenizer is None:
            if name == "tiny" or name.endswith("-tiny"):
                tokenizer = build_tiny_tokenizer(config.language_model_config.vocab_size, config.emotions)
            else:
                tokenizer = AutoTokenizer.from_pretrained(_PRESET_TOKENIZERS.get(name, "distilgpt2"))
        return cls.from_config(config, tokenizer=tokenizer)

    @classmethod
    def from_components(
        cls, sam: str, clip: str | None = None, language_model: str = "distilgpt2", config: EmoSEMConfig | None = None,
        **kwargs,
    ):
        """Load the three public preprocessors (e.g. facebook/sam-vit-base, openai/clip-vit-base-patch16,
        distilgpt2) or local folders of the same form. For EmoSEM-LLaVA (a LLaVA `language_model`, e.g.
        llava-hf/llava-1.5-7b-hf), the image processor for LLaVA's vision tower and the tokenizer both come
        from the LLaVA folder; ``clip`` is not needed. SCAbase without ``clip`` uses CLIP's default preprocessing
        (its pixels are not read)."""
        from transformers import AutoImageProcessor

        image_processor = SamImageProcessor.from_pretrained(sam, **kwargs)
        if config is not None and config.explainer == "llava":
            clip = language_model
        if clip is not None:
            clip_image_processor = AutoImageProcessor.from_pretrained(clip, **kwargs)
        else:
            c = config.clip_image_size if config is not None else 224
            clip_image_processor = CLIPImageProcessor(size={"shortest_edge": c}, crop_size={"height": c, "width": c})
        tokenizer = AutoTokenizer.from_pretrained(language_model, **kwargs)
        extra = {}
        if config is not None:
            extra = dict(
                emotions=config.emotions,
                prompt_template=config.prompt_template,
                prompt_length=config.prompt_length,
                max_explanation_tokens=config.max_explanation_tokens,
                mask_size=config.mask_size,
            )
        return cls(image_processor, clip_image_processor, tokenizer, **extra)

    # ------------------------------------------------------------------ emotions
    @property
    def eos_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    def _tokenize_prompts(self) -> list[list[int]]:
        ids = []
        for emotion in self.emotions:
            prompt = self.prompt_template.format(emotion=emotion)
            tokens = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            if len(tokens) > self.prompt_length:
                raise ValueError(
                    f"prompt {prompt!r} is {len(tokens)} tokens, longer than prompt_length={self.prompt_length}"
                )
            ids.append(tokens + [self.eos_token_id] * (self.prompt_length - len(tokens)))
        return ids

    def emotion_id(self, emotion: str | int) -> int:
        """Index of an emotion given by name (case and surrounding space ignored) or by index."""
        if isinstance(emotion, (int, np.integer)) and not isinstance(emotion, bool):
            if not 0 <= int(emotion) < len(self.emotions):
                raise ValueError(f"emotion index {emotion} out of range; expected 0..{len(self.emotions) - 1}")
            return int(emotion)
        if isinstance(emotion, str):
            key = emotion.strip().lower()
            if key in self.emotions:
                return self.emotions.index(key)
        raise ValueError(f"unknown emotion {emotion!r}; expected one of: {', '.join(self.emotions)}")

    def encode_emotions(self, emotions: Sequence[str | int] | str) -> dict[str, torch.Tensor]:
        """`emotions` -> `emotion_ids (N,)` and `prompt_input_ids (N, L_e)`."""
        if isinstance(emotions, (str, int)):
            emotions = [emotions]
        ids = [self.emotion_id(e) for e in emotions]
        return {
            "emotion_ids": torch.tensor(ids, dtype=torch.long),
            "prompt_input_ids": torch.tensor([self._prompt_ids[i] for i in ids], dtype=torch.long).reshape(len(ids), -1),
        }

    # ------------------------------------------------------------------ explanations
    def encode_explanations(self, explanations: Sequence[str]) -> dict[str, torch.Tensor]:
        """Explanations -> `input_ids`, `attention_mask`, `labels` `(N, T)`; each ends with end-of-text,
        padding is masked out and labelled -100."""
        rows = []
        for i, text in enumerate(explanations):
            if not isinstance(text, str):
                raise TypeError(f"explanations[{i}]: expected a string, got {type(text).__name__}")
            tokens = self.tokenizer(text.strip(), add_special_tokens=False)["input_ids"][: self.max_explanation_tokens]
            rows.append(tokens + [self.eos_token_id])
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.eos_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r)
            attention_mask[i, : len(r)] = 1
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def batch_decode(self, sequences: torch.Tensor, **kwargs) -> list[str]:
        """Token ids `(N, T)` -> explanation strings (cut at the first end-of-text)."""
        texts = []
        for row in sequences.tolist():
            if self.eos_token_id in row:
                row = row[: row.index(self.eos_token_id)]
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True, **kwargs).strip())
        return texts

    # ------------------------------------------------------------------ masks
    def _target_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """Size of the un-padded image region in the decoder's mask grid (SAM resizes the longest side)."""
        h, w = image_hw
        scale = self.mask_size / max(h, w)
        return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))

    def encode_masks(self, masks: Sequence[Any], image_sizes: Sequence[tuple[int, int]] | None = None) -> torch.Tensor:
        """Ground-truth (or pseudo) masks of any resolution -> `(N, mask_size, mask_size)` float targets.

        A mask covers its whole image: it is resized (bilinear, so soft heat maps stay soft) to the image's
        place in SAM's padded frame, and the padding is background.
        """
        out = torch.zeros(len(masks), self.mask_size, self.mask_size)
        for i, mask in enumerate(masks):
            array = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
            if array.ndim != 2 or array.size == 0:
                raise ValueError(f"masks[{i}]: expected a non-empty 2-D array, got shape {array.shape}")
            values = torch.from_numpy(array.astype(np.float32))
            if not torch.isfinite(values).all():
                raise ValueError(f"masks[{i}]: contains NaN or infinite values")
            if values.min() < 0 or values.max() > 1:
                raise ValueError(f"masks[{i}]: values must lie in [0, 1], got [{values.min():.3g}, {values.max():.3g}]")
            hw = image_sizes[i] if image_sizes is not None else tuple(array.shape)
            th, tw = self._target_hw(hw)
            resized = F.interpolate(values[None, None], size=(th, tw), mode="bilinear", align_corners=False)
            out[i, :th, :tw] = resized[0, 0].clamp(0, 1)
        return out

    def post_process_masks(
        self,
        pred_masks: torch.Tensor,
        original_sizes: Sequence[Sequence[int]] | torch.Tensor,
        reshaped_input_sizes: Sequence[Sequence[int]] | torch.Tensor,
    ) -> list[torch.Tensor]:
        """Saliency logits `(N, H, W)` -> per-row saliency in [0, 1] at the original image size `(h_i, w_i)`.

        Undoes SAM's geometry: upsample to the padded S x S frame, crop the padding, resize to the original.
        """
        if pred_masks.dim() != 3:
            raise ValueError(f"pred_masks: expected shape (N, H, W), got {tuple(pred_masks.shape)}")
        if len(original_sizes) != pred_masks.shape[0] or len(reshaped_input_sizes) != pred_masks.shape[0]:
            raise ValueError(
                f"original_sizes / reshaped_input_sizes: expected {pred_masks.shape[0]} entries, "
                f"got {len(original_sizes)} / {len(reshaped_input_sizes)}"
            )
        s = self.image_processor.pad_size["height"]
        frame = F.interpolate(pred_masks[:, None].float(), size=(s, s), mode="bilinear", align_corners=False)
        out = []
        for i in range(pred_masks.shape[0]):
            rh, rw = (int(v) for v in reshaped_input_sizes[i])
            oh, ow = (int(v) for v in original_sizes[i])
            crop = frame[i : i + 1, :, :rh, :rw]
            out.append(F.interpolate(crop, size=(oh, ow), mode="bilinear", align_corners=False)[0, 0].sigmoid())
        return out

    # ------------------------------------------------------------------ images
    def encode_images(self, images: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Images -> `pixel_values`, `clip_pixel_values`, `original_sizes (N, 2)`, `reshaped_input_sizes (N, 2)`."""
        rgb = [load_image(img, name=f"images[{i}]" if not isinstance(img, str) else None) for i, img in enumerate(images)]
        sam = self.image_processor(images=rgb, return_tensors="pt")
        clip = self.clip_image_processor(images=rgb, return_tensors="pt")
        return {
            "pixel_values": sam["pixel_values"],
            "clip_pixel_values": clip["pixel_values"],
            "original_sizes": sam["original_sizes"],
            "reshaped_input_sizes": sam["reshaped_input_sizes"],
        }

    # ------------------------------------------------------------------ everything at once
    def __call__(
        self,
        images: Any = None,
        emotions: Sequence[str | int] | str | None = None,
        explanations: Sequence[str] | str | None = None,
        masks: Sequence[Any] | None = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Prepare a batch of N rows (one image, emotion, explanation and mask per row; each optional).

        Returns a `BatchFeature` with `pixel_values (N,3,S,S)`, `clip_pixel_values (N,3,S_c,S_c)`,
        `original_sizes`, `reshaped_input_sizes`, `emotion_ids (N,)`, `prompt_input_ids (N,L_e)`,
        `input_ids`/`attention_mask`/`labels (N,T)` and `mask_labels (N,H,W)`, as given.
        """
        if return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors: only 'pt' is supported, got {return_tensors!r}")
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        single = lambda x: [x] if isinstance(x, (str, int)) or not isinstance(x, Sequence) else list(x)  # noqa: E731
        data: dict[str, Any] = {}
        counts = {}
        image_sizes = None
        if images is not None:
            images = single(images) if not isinstance(images, (list, tuple)) else list(images)
            if not images:
                raise ValueError("images: got an empty list")
            data.update(self.encode_images(images))
            counts["images"] = len(images)
            image_sizes = [tuple(int(v) for v in s) for s in data["original_sizes"]]
        if emotions is not None:
            emotions = single(emotions)
            if not emotions:
                raise ValueError("emotions: got an empty list")
            data.update(self.encode_emotions(emotions))
            counts["emotions"] = len(emotions)
        if explanations is not None:
            explanations = [explanations] if isinstance(explanations, str) else list(explanations)
            if not explanations:
                raise ValueError("explanations: got an empty list")
            data.update(self.encode_explanations(explanations))
            counts["explanations"] = len(explanations)
        if masks is not None:
            masks = list(masks) if isinstance(masks, (list, tuple)) else [masks]
            counts["masks"] = len(masks)
            if image_sizes is not None and len(masks) == len(image_sizes):
                data["mask_labels"] = self.encode_masks(masks, image_sizes)
            else:
                data["mask_labels"] = self.encode_masks(masks)
        if len(set(counts.values())) > 1:
            raise ValueError(f"every argument needs one entry per row; got {counts}")
        return BatchFeature(data=data)
