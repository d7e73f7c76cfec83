"""Image preprocessing (timm's or VL-Adapter's) and the pool mode: what they do to pixels and tokens, and that the
feature key separates them; the CLIP RN101 preset's structure built offline."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from dept_vl.models import build_vl_model, get_preset
from dept_vl.models.presets import TINY_VIT
from dept_vl.models.vision import ImageTransform, create_image_encoder, patch_tokens

# a 32x32 ViT whose data config crops (timm's default crop_pct 0.875), so the two preprocessings differ
SMALL = dict(TINY_VIT, img_size=32, pretrained_cfg_overlay=dict(input_size=(3, 32, 32), mean=(0.5, 0.5, 0.5),
                                                                std=(0.5, 0.5, 0.5), crop_pct=0.875))


def _picture() -> Image.Image:
    """64x32 (wide): a red band in the left eighth, grey elsewhere."""
    image = Image.new("RGB", (64, 32), (128, 128, 128))
    image.paste((255, 0, 0), (0, 0, 8, 32))
    return image


def test_vl_adapter_preprocessing_resizes_the_whole_image_without_a_crop():
    from torchvision import transforms

    timm_side = ImageTransform(create_image_encoder("vit_tiny_patch16_224", **SMALL))
    vl_adapter = ImageTransform(create_image_encoder("vit_tiny_patch16_224", preprocessing="vl-adapter", **SMALL))
    manual = transforms.Compose([transforms.Resize((32, 32), interpolation=transforms.InterpolationMode.BICUBIC),
                                 transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])
    picture = _picture()
    assert torch.equal(vl_adapter(picture), manual(picture))
    assert vl_adapter(picture)[0, 16, 0] > 0.9 and vl_adapter(picture)[1, 16, 0] < -0.9  # the red band is kept (squashed)
    assert timm_side(picture)[0].max() < 0.1  # timm's centre crop cuts the band away: no red pixel left
    assert timm_side.input_size == vl_adapter.input_size == (3, 32, 32)


def _vl(**options):
    return build_vl_model("tiny", vocabulary=["a"], image_encoder_kwargs=dict(SMALL), pool_size=2, **options)


def test_feature_key_changes_with_preprocessing_and_pool_mode_only():
    torch.manual_seed(0)
    base = _vl()
    keys = {}
    for name, options in {"timm": {}, "vl-adapter": {"image_preprocessing": "vl-adapter"}, "max": {"pool_mode": "max"}}.items():
        model = _vl(**options)
        model.image_encoder.load_state_dict(base.image_encoder.state_dict())  # the same weights
        keys[name] = model.feature_key
    assert len(set(keys.values())) == 3
    again = _vl()
    again.image_encoder.load_state_dict(base.image_encoder.state_dict())
    assert again.feature_key == keys["timm"] == base.feature_key  # the default options key as before


class _Grid(nn.Module):
    """A fake CNN encoder whose feature map is 0..48 in a 7x7 grid (one channel)."""

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.arange(49.0).reshape(1, 1, 7, 7).expand(pixels.shape[0], 1, 7, 7)


@pytest.mark.parametrize("mode, first, last", [("avg", (0 + 1 + 7 + 8) / 4, (40 + 41 + 47 + 48) / 4), ("max", 8.0, 48.0)])
def test_pool_mode_pools_the_grid_to_6x6_by_average_or_maximum(mode, first, last):
    encoder = _Grid()
    encoder.dept_vl_image_options = {"preprocessing": "timm", "pool_mode": mode}
    tokens = patch_tokens(encoder, torch.zeros(2, 3, 8, 8), pool_size=6)
    assert tokens.shape == (2, 36, 1)
    assert (tokens[0, 0, 0].item(), tokens[0, 35, 0].item()) == (first, last)


def test_bad_options_name_the_value():
    with pytest.raises(ValueError, match="image preprocessing 'clip' is unknown; choose one of timm, vl-adapter"):
        create_image_encoder("vit_tiny_patch16_224", preprocessing="clip", **SMALL)
    with pytest.raises(ValueError, match="pool_mode 'mean' is unknown"):
        create_image_encoder("vit_tiny_patch16_224", pool_mode="mean", **SMALL)


def test_rn101_clip_preset_is_vl_adapters_setting_offline():
    spec = get_preset("t5-base+rn101-clip")
    assert (spec.text_model, spec.image_encoder) == ("t5-base", "resnet101_clip.openai")
    assert (spec.pool_size, spec.pool_mode, spec.image_preprocessing) == (6, "max", "vl-adapter")
    encoder = create_image_encoder(spec.image_encoder, False, preprocessing="vl-adapter", pool_mode="max")  # structure only
    transform = ImageTransform(encoder)
    assert "Resize(size=(224, 224)" in repr(transform.transform) and "CenterCrop" not in repr(transform.transform)
    with torch.no_grad():
        tokens = patch_tokens(encoder, transform.batch([_picture()]), pool_size=6)
    assert tokens.shape == (1, 36, 2048)  # CLIP RN101's 7x7 grid of 2048 features, max-pooled to 6x6
