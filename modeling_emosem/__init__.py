"""EmoSEM as Hugging Face classes. Importing this package registers them with the Auto classes, so
`save_pretrained` writes `auto_map` and the saved folder loads with `trust_remote_code=True`."""

from transformers import AutoConfig, AutoModel, AutoProcessor

from .configuration_emosem import ARTEMIS_EMOTIONS, EMOTIONS, EmoSEMConfig
from .modeling_emosem import EmoSEMGenerationOutput, EmoSEMImageFeatures, EmoSEMModel, EmoSEMOutput
from .processing_emosem import EmoSEMProcessor

EmoSEMConfig.register_for_auto_class()
EmoSEMModel.register_for_auto_class("AutoModel")
EmoSEMProcessor.register_for_auto_class("AutoProcessor")
AutoConfig.register("emosem", EmoSEMConfig, exist_ok=True)
AutoModel.register(EmoSEMConfig, EmoSEMModel, exist_ok=True)
AutoProcessor.register(EmoSEMConfig, EmoSEMProcessor, exist_ok=True)

__all__ = [
    "ARTEMIS_EMOTIONS",
    "EMOTIONS",
    "EmoSEMConfig",
    "EmoSEMGenerationOutput",
    "EmoSEMImageFeatures",
    "EmoSEMModel",
    "EmoSEMOutput",
    "EmoSEMProcessor",
]
