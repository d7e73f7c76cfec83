"""The backbone: a timm image encoder + a Hugging Face text encoder-decoder, presets, and the stored image features."""

from dept_vl.models.backbone import load_backbone, save_backbone
from dept_vl.models.feature_cache import VisionFeatureCache
from dept_vl.models.feature_extraction import extract_features
from dept_vl.models.feature_store import FeatureStore
from dept_vl.models.presets import (
    VLModelSpec, build_vl_model, get_preset, list_presets, register_preset, register_vocabulary,
)
from dept_vl.models.tokenizer import word_level_tokenizer
from dept_vl.models.vision import ImageTransform, VisualProjection, load_image, to_rgb
from dept_vl.models.vl import VLConfig, VLEncoderDecoder

__all__ = [
    "FeatureStore",
    "ImageTransform",
    "VLConfig",
    "VLEncoderDecoder",
    "VLModelSpec",
    "VisionFeatureCache",
    "VisualProjection",
    "build_vl_model",
    "extract_features",
    "get_preset",
    "list_presets",
    "load_backbone",
    "load_image",
    "register_preset",
    "register_vocabulary",
    "save_backbone",
    "to_rgb",
    "word_level_tokenizer",
]
