"""VLEncoderDecoder: a text encoder-decoder (T5, BART) whose encoder also reads projected image patches."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from dept_vl.models.vision import ImageTransform, VisualProjection, patch_tokens, stack_with_mask


@dataclass
class VLConfig:
    """What wrappers (DePTModel, peft) read from ``model.config``; the text facts mirror the text model's config."""

    d_model: int
    vocab_size: int
    num_visual_tokens: int
    image_width: int
    text_model_type: str
    image_encoder: str
    pad_token_id: int | None = None
    eos_token_id: int | None = None
    decoder_start_token_id: int | None = None
    tie_word_embeddings: bool = False
    name_or_path: str = ""
    is_encoder_decoder: bool = True
    use_return_dict: bool = True
    model_type: str = "dept-vl"

    @property
    def _name_or_path(self) -> str:
        return self.name_or_path

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "_name_or_path": self.name_or_path}

    def get_text_config(self, *args: Any, **kwargs: Any) -> "VLConfig":
        return self


class VLEncoderDecoder(nn.Module):
    """VL-T5-style model: the encoder reads ``[text (L)] [visual tokens (N)]``, the decoder writes the answer.

    Wrapped by :class:`dept_vl.DePTModel`, the text part is ``[prompt (m)] [text + A@B (L)]``, so the
    encoder sees m + L + N positions and the low-rank offset never touches visual tokens. An example with
    I images (NLVR2's pair) reads ``[text (L)] [image 1 (N)] ... [image I (N)]``: pixel_values
    (B, I, C, H, W), or image_features (B, I * N, width), each image's tokens after the previous one's.

    Args:
        text_model: a Hugging Face seq2seq LM (``AutoModelForSeq2SeqLM``: T5, BART, ...).
        image_encoder: a headless timm model (``num_classes=0``) with ``forward_features``.
        projection: ``"linear"`` (Linear + LayerNorm) or ``"mlp"`` (2-layer MLP + LayerNorm).
        keep_prefix_tokens: keep the encoder's class/register tokens (dropped by default).
        pool_size: average-pool the patch grid to ``pool_size x pool_size`` tokens (None: all patches).
        freeze_image_encoder: freeze the image encoder and keep it in eval mode (the default).
        tokenizer: the text tokenizer, exposed as ``model.tokenizer``.
        name_or_path: the preset or checkpoint name, exposed as ``model.config.name_or_path``.
        spec: the preset spec the model was built from (what :func:`dept_vl.models.backbone.save_backbone` saves).
    """

    def __init__(
        self,
        text_model: nn.Module,
        image_encoder: nn.Module,
        *,
        projection: str = "linear",
        keep_prefix_tokens: bool = False,
        pool_size: int | None = None,
        freeze_image_encoder: bool = True,
        tokenizer: Any = None,
        name_or_path: str = "",
        spec: Any = None,
    ):
        super().__init__()
        if pool_size is not None and pool_size < 1:
            raise ValueError(f"pool_size={pool_size} must be >= 1 (or None for every patch token)")
        self.text_model = text_model
        self.image_encoder = image_encoder
        self.keep_prefix_tokens = keep_prefix_tokens
        self.pool_size = pool_size
        self.freeze_image_encoder = freeze_image_encoder
        self.tokenizer = tokenizer
        self.spec = spec
        self.image_transform = ImageTransform(image_encoder)
        text_config = text_model.config
        d_model = int(text_model.get_input_embeddings().weight.shape[1])
        width = int(getattr(image_encoder, "num_features"))
        self.visual_projection = VisualProjection(width, d_model, projection)
        if freeze_image_encoder:
            image_encoder.requires_grad_(False)
            image_encoder.eval()
        self.config = VLConfig(
            d_model=d_model,
            vocab_size=int(text_config.vocab_size),
            num_visual_tokens=self._count_visual_tokens(),
            image_width=width,
            text_model_type=str(getattr(text_config, "model_type", "")),
            image_encoder=self._encoder_name(),
            pad_token_id=text_config.pad_token_id,
            eos_token_id=text_config.eos_token_id,
            decoder_start_token_id=getattr(text_config, "decoder_start_token_id", None),
            tie_word_embeddings=bool(getattr(text_config, "tie_word_embeddings", False)),
            name_or_path=name_or_path or str(getattr(text_config, "_name_or_path", "") or ""),
        )
        self._weights_fingerprint: tuple[tuple, str] | None = None

    # ------------------------------------------------------------------ facts
    def _encoder_name(self) -> str:
        cfg = getattr(self.image_encoder, "pretrained_cfg", None) or {}
        name = cfg.get("architecture") or type(self.image_encoder).__name__
        return f"{name}.{cfg['tag']}" if cfg.get("tag") else str(name)

    def _count_visual_tokens(self) -> int:
        enc = self.image_encoder
        patches = getattr(getattr(enc, "patch_embed", None), "num_patches", None)
        if patches is not None and not getattr(enc, "dynamic_img_size", False):
            grid = self.pool_size**2 if self.pool_size else int(patches)
            return grid + (int(getattr(enc, "num_prefix_tokens", 0)) if self.keep_prefix_tokens else 0)
        with torch.no_grad():  # other encoders: one dummy image tells
            dummy = torch.zeros(1, *self.image_transform.input_size)
            return int(patch_tokens(enc, dummy, self.keep_prefix_tokens, self.pool_size).shape[1])

    @property
    def device(self) -> torch.device:
        return self.visual_projection.norm.weight.device

    @property
    def num_visual_tokens(self) -> int:
        return self.config.num_visual_tokens

    @property
    def feature_key(self) -> str:
        """Identifies the frozen features: encoder name and weights, token options, preprocessing (cache key)."""
        state = sorted(self.image_encoder.state_dict().items())
        # Hashing every weight is slow for big encoders: redo it only when a tensor was replaced or written to.
        signature = tuple((t.data_ptr(), t._version, str(t.dtype)) for _, t in state)
        if self._weights_fingerprint is None or self._weights_fingerprint[0] != signature:
            digest = hashlib.sha1()
            for name, tensor in state:
                digest.update(name.encode())
                digest.update(tensor.detach().float().cpu().numpy().tobytes())
            self._weights_fingerprint = (signature, digest.hexdigest()[:12])
        return (
            f"{self.config.image_encoder}|weights={self._weights_fingerprint[1]}|prefix={self.keep_prefix_tokens}"
            f"|pool={self.pool_size}|pre={self.image_transform.fingerprint()}"
        )

    def get_input_embeddings(self) -> nn.Module:
        return self.text_model.get_input_embeddings()

    def get_encoder(self) -> nn.Module:
        return self.text_model.get_encoder()

    @property
    def generation_config(self) -> Any:
        """The text model's ``GenerationConfig`` (``generate`` runs the text model's)."""
        return self.text_model.generation_config

    @generation_config.setter
    def generation_config(self, value: Any) -> None:
        self.text_model.generation_config = value

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        """Recompute the text model's activations in the backward pass (the frozen image encoder keeps none)."""
        text = self.text_model
        enable = getattr(text, "activation_checkpointing_enable", None) or text.gradient_checkpointing_enable  # < 5.25
        enable(activation_checkpointing_kwargs)

    gradient_checkpointing_enable = activation_checkpointing_enable

    def activation_checkpointing_disable(self) -> None:
        text = self.text_model
        (getattr(text, "activation_checkpointing_disable", None) or text.gradient_checkpointing_disable)()

    gradient_checkpointing_disable = activation_checkpointing_disable

    @property
    def is_gradient_checkpointing(self) -> bool:
        text = self.text_model
        return bool(text.is_activation_checkpointing if hasattr(text, "is_activation_checkpointing") else text.is_gradient_checkpointing)

    is_activation_checkpointing = is_gradient_checkpointing

    def train(self, mode: bool = True) -> "VLEncoderDecoder":
        super().train(mode)
        if self.freeze_image_encoder:
            self.image_encoder.eval()  # frozen: no dropout, fixed normalisation statistics
        return self

    # ----------------------------------------------------------------- images
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Features (B, N, image_width) of the image encoder, before the projection (what the cache stores).

        Pixel values (B, I, C, H, W) of I images per example give (B, I * N, image_width): image 1's N
        tokens, then image 2's, and so on.
        """
        expected = self.image_transform.input_size
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() not in (4, 5) or tuple(pixel_values.shape[-3:]) != expected:
            got = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
            raise ValueError(
                f"pixel_values has shape {got}; expected (batch, {', '.join(map(str, expected))}), or (batch, images, "
                f"{', '.join(map(str, expected))}) for several images per example, as made by model.image_transform "
                "(timm's data config of this image encoder)"
            )
        if pixel_values.dim() == 5:  # several images per example: encode them all, then each row's tokens in a row
            batch, count = pixel_values.shape[:2]
            features = self.encode_images(pixel_values.flatten(0, 1))
            return features.reshape(batch, count * features.shape[1], features.shape[2])
        param = next(self.image_encoder.parameters())
        pixel_values = pixel_values.to(param.device, param.dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_image_encoder):
            return patch_tokens(self.image_encoder, pixel_values, self.keep_prefix_tokens, self.pool_size)

    def visual_tokens(
        self,
        batch_size: int,
        pixel_values: Any = None,
        image_features: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Projected visual tokens (B, I * N, d_model) and their mask, or None for a text-only batch (I images per row).

        Rows whose ``image_mask`` is False get a zero attention mask over their visual tokens, so they
        are text-only rows (their outputs match the text-only model up to float rounding).
        """
        if pixel_values is not None and image_features is not None:
            raise ValueError("pass pixel_values or image_features (cached encoder output), not both")
        if pixel_values is not None and not isinstance(pixel_values, torch.Tensor):
            pixel_values, image_mask = stack_with_mask(pixel_values, image_mask)
        if pixel_values is None and image_features is None:
            if image_mask is not None and bool(image_mask.any()):
                raise ValueError("image_mask marks rows with images, but neither pixel_values nor image_features was given")
            return None
        if image_mask is not None:
            image_mask = image_mask.to(torch.bool).to(self.device)
            if tuple(image_mask.shape) != (batch_size,):
                raise ValueError(f"image_mask has shape {tuple(image_mask.shape)}; expected ({batch_size},), one flag per row")
            if not bool(image_mask.any()):
                return None  # no row has an image: exactly the text-only model
        if image_features is None:
            features = self.encode_images(pixel_values)
        else:
            features = image_features
            tokens, width = self.num_visual_tokens, self.config.image_width
            if features.dim() != 3 or features.shape[2] != width or features.shape[1] == 0 or features.shape[1] % tokens:
                raise ValueError(
                    f"image_features has shape {tuple(features.shape)}; expected (batch, {tokens}, {width}) as returned "
                    f"by model.encode_images, or (batch, images * {tokens}, {width}) for several images per example "
                    "(check the cache was filled by this image encoder)"
                )
        if features.shape[0] != batch_size:
            source = "image_features" if image_features is not None else "pixel_values"
            raise ValueError(f"{source} holds {features.shape[0]} images but the text batch has {batch_size} rows; give one image per row")
        weight = self.visual_projection.norm.weight
        tokens = self.visual_projection(features.to(weight.device, weight.dtype))
        mask = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)
        if image_mask is not None:
            tokens = tokens * image_mask[:, None, None].to(tokens.dtype)
            mask = mask * image_mask[:, None].long()
        return tokens, mask

    # -------------------------------------------------------------- the model
    def build_encoder_inputs(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        pixel_values: Any = None,
        image_features: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's input ``[text (L)] [visual (N)]`` (B, L + N, d_model) and its mask (B, L + N).

        With I images per example: ``[text (L)] [image 1 (N)] ... [image I (N)]``, (B, L + I * N, d_model).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds for the text")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        batch, length = inputs_embeds.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, dtype=torch.long, device=inputs_embeds.device)
        elif tuple(attention_mask.shape) != (batch, length):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}; expected ({batch}, {length}) like the text")
        visual = self.visual_tokens(batch, pixel_values, image_features, image_mask)
        if visual is None:
            return inputs_embeds, attention_mask
        tokens, mask = visual
        embeds = torch.cat([inputs_embeds, tokens.to(inputs_embeds.device, inputs_embeds.dtype)], dim=1)
        return embeds, torch.cat([attention_mask, mask.to(attention_mask.device, attention_mask.dtype)], dim=1)

    def encode(self, embeds: torch.Tensor, mask: torch.Tensor, **kwargs: Any) -> Any:
        """Run the text model's encoder on ready input embeddings; returns a ``BaseModelOutput``."""
        return self.text_model.get_encoder()(inputs_embeds=embeds, attention_mask=mask, return_dict=True, **kwargs)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: Any = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: Any = None,
        return_dict: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Encode ``[text] [image]`` and run the seq2seq model; returns its ``Seq2SeqLMOutput`` (loss with labels).

        ``image_features`` (output of :meth:`encode_images`, e.g. from a feature cache) replaces
        ``pixel_values``; with neither, the batch is text-only. Other keywords go to the text model.
        """
        if encoder_outputs is None:
            embeds, attention_mask = self.build_encoder_inputs(
                input_ids, attention_mask, inputs_embeds, pixel_values, image_features, image_mask
            )
            extra = {k: kwargs[k] for k in ("output_attentions", "output_hidden_states") if k in kwargs}
            encoder_outputs = self.encode(embeds, attention_mask, **extra)
        return self.text_model(
            encoder_outputs=encoder_outputs,
            attention_mask=attention_mask,
            labels=labels,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            return_dict=return_dict,
            **kwargs,
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        **generation_kwargs: Any,
    ) -> torch.Tensor:
        """Encode once, then ``text_model.generate(encoder_outputs=...)``; every HF generation option passes through."""
        embeds, mask = self.build_encoder_inputs(input_ids, attention_mask, inputs_embeds, pixel_values, image_features, image_mask)
        encoder_outputs = self.encode(embeds, mask)
        return self.text_model.generate(encoder_outputs=encoder_outputs, attention_mask=mask, **generation_kwargs)
