"""The vision side: loading images, timm's preprocessing, patch tokens of a frozen encoder, the projection."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

ImageLike = Union["PIL.Image.Image", str, Path]  # noqa: F821
PROJECTIONS = ("linear", "mlp")
# How images become pixels: timm's data config of the encoder (resize the short side, centre crop at crop_pct), or
# VL-Adapter's: Resize((H, W)) straight to the input size (no crop, aspect ratio not kept), bicubic, same normalisation.
PREPROCESSING = ("timm", "vl-adapter")
POOL_MODES = ("avg", "max")  # how pool_size shrinks the patch grid (VL-Adapter max-pools CLIP RN101's 7x7 grid to 6x6)
OPTIONS_ATTRIBUTE = "dept_vl_image_options"  # set on the encoder by create_image_encoder; read by ImageTransform, patch_tokens
DEFAULT_OPTIONS = {"preprocessing": "timm", "pool_mode": "avg"}


def image_options(encoder: nn.Module) -> dict[str, str]:
    """The encoder's preprocessing and pool mode (as :func:`create_image_encoder` set them; timm's and avg otherwise)."""
    return {**DEFAULT_OPTIONS, **(getattr(encoder, OPTIONS_ATTRIBUTE, None) or {})}


def to_rgb(image: Any) -> Any:
    """Return ``image`` as a 3-channel RGB PIL image.

    Grayscale (``L``, ``1``, ``I``, ``F``), palette, CMYK and YCbCr images are converted with PIL's
    ``convert("RGB")``; images with transparency (``RGBA``, ``LA``, ``PA``, palette with a
    transparent colour) are composited onto a white background first, so transparent pixels do not
    turn black. 16- and 32-bit grayscale values above 255 are clipped by PIL; rescale such images first.
    """
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}; open files with dept_vl.models.load_image(path)")
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | Path | Any) -> Any:
    """Open an image file fully (so a corrupt file fails here, naming the path) and convert it to RGB.

    ``path`` may also be a lazy image of a data set (an object with ``load_pil()``, e.g. ``dept_vl.data.hub_vl.HubImage``).
    """
    from PIL import Image, UnidentifiedImageError

    if hasattr(path, "load_pil"):
        try:
            image = path.load_pil()
            image.load()
            return to_rgb(image)
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise ValueError(f"cannot read image {path!r}: {err}; the data set's image is corrupt") from err
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image file {path}: {err}; the file is corrupt or not an image, re-create or drop it") from err


class ImageTransform:
    """PIL image (or image path) -> normalised tensor (C, H, W), built from the timm encoder's data config.

    Every image is converted to RGB first (see :func:`to_rgb`); sizes, interpolation and the normalisation
    constants come from ``timm.data.resolve_data_config({}, model=encoder)``. The encoder's ``preprocessing``
    option (:func:`create_image_encoder`) picks timm's eval transform (resize, centre crop at ``crop_pct``) or
    VL-Adapter's (``Resize((H, W))`` to the input size, bicubic, no crop).
    """

    def __init__(self, encoder: nn.Module):
        from timm.data import create_transform, resolve_data_config

        config = resolve_data_config({}, model=encoder)  # lists (a config read from JSON) become tuples
        self.data_config: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
        self.options = image_options(encoder)
        if self.options["preprocessing"] == "vl-adapter":
            self.transform = _resize_transform(self.data_config)
        else:
            self.transform = create_transform(**self.data_config)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.data_config["input_size"])  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """A short hash of the preprocessing and the pool mode (feature caches key on it): two encoders that differ in
        either never share cached features. The default options (timm, avg) add nothing, so older keys stay valid."""
        text = json.dumps(self.data_config, sort_keys=True, default=str) + repr(self.transform)
        if self.options != DEFAULT_OPTIONS:
            text += json.dumps(self.options, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def __call__(self, image: ImageLike) -> torch.Tensor:
        if isinstance(image, (str, Path)) or hasattr(image, "load_pil"):
            image = load_image(image)
        return self.transform(to_rgb(image))

    def batch(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """pixel_values (B, C, H, W) for a list of PIL images or paths."""
        return torch.stack([self(image) for image in images])

    def __repr__(self) -> str:
        return f"ImageTransform({self.data_config})"


def stack_with_mask(
    rows: Sequence[torch.Tensor | None], image_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A list of (C, H, W) tensors with ``None`` for rows without an image -> zero-filled pixel_values + image mask."""
    rows = list(rows)
    present = [row for row in rows if row is not None]
    if not present:
        raise ValueError("pixel_values is a list of None only; pass pixel_values=None for a text-only batch")
    filler = torch.zeros_like(present[0])
    stacked = torch.stack([filler if row is None else row for row in rows])
    mask = torch.tensor([row is not None for row in rows], device=stacked.device)
    if image_mask is not None and not torch.equal(image_mask.bool().cpu(), mask.cpu()):
        raise ValueError("image_mask disagrees with the None rows of pixel_values; pass one or the other")
    return stacked, mask


def _resize_transform(data_config: dict[str, Any]) -> Any:
    """VL-Adapter's preprocessing: ``Resize((H, W), bicubic)``, to tensor, normalise with the encoder's mean and std."""
    from torchvision import transforms

    _, height, width = (int(v) for v in data_config["input_size"])
    return transforms.Compose([
        transforms.Resize((height, width), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.ToTensor(),
        transforms.Normalize(mean=list(data_config["mean"]), std=list(data_config["std"])),
    ])


def create_image_encoder(name: str, pretrained: bool = False, *, preprocessing: str = "timm", pool_mode: str = "avg",
                         **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=..., num_classes=0, **kwargs)``: a headless feature extractor.

    ``preprocessing`` (``timm`` or ``vl-adapter``) and ``pool_mode`` (``avg`` or ``max``) are kept on the encoder: the
    model's image transform, its patch pooling and its feature key follow them.
    """
    import timm

    if preprocessing not in PREPROCESSING:
        raise ValueError(f"image preprocessing {preprocessing!r} is unknown; choose one of {', '.join(PREPROCESSING)}")
    if pool_mode not in POOL_MODES:
        raise ValueError(f"pool_mode {pool_mode!r} is unknown; choose one of {', '.join(POOL_MODES)}")

    kwargs.setdefault("num_classes", 0)
    overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
    if kwargs.get("img_size") is not None:
        # The data config (and so image_transform) follows the image size the model is built for.
        size = kwargs["img_size"]
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        overlay["input_size"] = (int(kwargs.get("in_chans", 3)), int(height), int(width))
        kwargs["pretrained_cfg_overlay"] = overlay
    try:
        encoder = timm.create_model(name, pretrained=pretrained, **kwargs)
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise ValueError(f"timm has no image encoder named {name!r}; see timm.list_models('vit_*')") from err
        raise
    setattr(encoder, OPTIONS_ATTRIBUTE, {"preprocessing": preprocessing, "pool_mode": pool_mode})
    return encoder


def grid_of(encoder: nn.Module, num_tokens: int) -> tuple[int, int]:
    """The (rows, cols) patch grid behind ``num_tokens`` patch tokens."""
    grid = getattr(getattr(encoder, "patch_embed", None), "grid_size", None)
    if grid is not None and int(grid[0]) * int(grid[1]) == num_tokens:
        return int(grid[0]), int(grid[1])
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"cannot pool {num_tokens} patch tokens: they do not form a square grid; set pool_size=None")
    return side, side


def patch_tokens(
    encoder: nn.Module, pixel_values: torch.Tensor, keep_prefix_tokens: bool = False, pool_size: int | None = None
) -> torch.Tensor:
    """Tokens (B, N, width) from ``encoder.forward_features``.

    ViT-style outputs (B, T, D) lose their class/register tokens unless ``keep_prefix_tokens``; CNN
    feature maps (B, C, H, W) become H*W tokens. ``pool_size`` average-pools the patch grid to
    ``pool_size x pool_size`` tokens (prefix tokens, when kept, stay in front, unpooled).
    """
    features = encoder.forward_features(pixel_values)
    prefix: torch.Tensor | None = None
    if features.dim() == 4:  # CNN feature map: B, C, H, W (no prefix tokens)
        grid = features
    elif features.dim() == 3:
        n_prefix = int(getattr(encoder, "num_prefix_tokens", 0))
        prefix, tokens = features[:, :n_prefix], features[:, n_prefix:]
        if pool_size is None:
            return torch.cat([prefix, tokens], dim=1) if keep_prefix_tokens else tokens
        rows, cols = grid_of(encoder, tokens.shape[1])
        grid = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], rows, cols)
    else:
        raise ValueError(f"image encoder returned features of shape {tuple(features.shape)}; expected (B, T, D) or (B, C, H, W)")
    if pool_size is not None:
        pool = F.adaptive_max_pool2d if image_options(encoder)["pool_mode"] == "max" else F.adaptive_avg_pool2d
        grid = pool(grid, pool_size)
    tokens = grid.flatten(2).transpose(1, 2)
    return torch.cat([prefix, tokens], dim=1) if keep_prefix_tokens and prefix is not None else tokens


class VisualProjection(nn.Module):
    """Image width -> d_model: ``Linear + LayerNorm`` (VL-T5) or a 2-layer MLP (``Linear, GELU, Linear``) + LayerNorm."""

    def __init__(self, in_features: int, d_model: int, kind: str = "linear"):
        super().__init__()
        if kind not in PROJECTIONS:
            raise ValueError(f"projection={kind!r} is unknown; choose one of {', '.join(PROJECTIONS)}")
        self.kind = kind
        if kind == "linear":
            self.proj = nn.Linear(in_features, d_model)
        else:
            self.proj = nn.Sequential(nn.Linear(in_features, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(features))
