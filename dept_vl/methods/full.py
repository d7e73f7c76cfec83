"""Full fine-tuning: every weight of the text model (and the visual projection, if any) trains."""

from __future__ import annotations

from torch import nn

from dept_vl.config import FullConfig, RunConfig
from dept_vl.methods.base_weights import BaseWeightsMethod, BaseWeightsModel
from dept_vl.methods.registry import register_method


class FullFineTuneModel(BaseWeightsModel):
    method = "full"

    def __init__(self, base_model: nn.Module, settings: FullConfig, train_image_encoder: bool = False):
        super().__init__(base_model, settings)
        base_model.requires_grad_(False)
        getattr(base_model, "text_model", base_model).requires_grad_(True)
        if hasattr(base_model, "visual_projection"):
            base_model.visual_projection.requires_grad_(True)
        if train_image_encoder:
            base_model.image_encoder.requires_grad_(True)


@register_method
class Full(BaseWeightsMethod):
    """Full fine-tuning of the text model and projection, in float32 with autocast on GPU (settings: full.*)."""

    name = "full"
    label = "full"
    frozen_base = False
    model_class = FullFineTuneModel
    settings_class = FullConfig

    def may_skip_parameters(self, config: RunConfig) -> bool:
        return True  # a text-only batch leaves the visual projection unused
