"""EmoSEM as Hugging Face classes. Importing this package registers them with the Auto classes, so
`save_pretrained` writes `auto_map` and the saved folder loads with `trust_remote_code=True`."""

from transformers import AutoConfig, AutoModel, AutoProcessor
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_emosem import ARTEMIS_EMOTIONS, EMOTIONS, EmoSEMConfig
from .modeling_emosem import EmoSEMGenerationOutput, EmoSEMImageFeatures, EmoSEMModel, EmoSEMOutput
from .pipeline_emosem import EmotionSegmentationPipeline
from .processing_emosem import EmoSEMProcessor

EmoSEMConfig.register_for_auto_class()
EmoSEMModel.register_for_auto_class("AutoModel")
EmoSEMProcessor.register_for_auto_class("AutoProcessor")
AutoConfig.register("emosem", EmoSEMConfig, exist_ok=True)
AutoModel.register(EmoSEMConfig, EmoSEMModel, exist_ok=True)
AutoProcessor.register(EmoSEMConfig, EmoSEMProcessor, exist_ok=True)
# pipeline("emotion-segmentation", ...); the pipeline's save_pretrained writes `custom_pipelines` and its code.
PIPELINE_REGISTRY.register_pipeline(
    "emotion-segmentation", pipeline_class=EmotionSegmentationPipeline, pt_model=AutoModel, type="image"
)

__all__ = [
    "ARTEMIS_EMOTIONS",
    "EMOTIONS",
    "EmoSEMConfig",
    "EmoSEMGenerationOutput",
    "EmoSEMImageFeatures",
    "EmoSEMModel",
    "EmoSEMOutput",
    "EmoSEMProcessor",
    "EmotionSegmentationPipeline",
]
