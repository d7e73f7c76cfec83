"""The one registry of model presets: ``build_vl_model("tiny")``, ``list_presets()``, ``register_preset``.

The word-level presets (``tiny``, ``tiny-bart``, ``t5-base-random``) name their words by a vocabulary name,
``"shapes"``, and a layer above registers the words under that name with :func:`register_vocabulary`
(``import dept_vl.tasks`` registers the synthetic world's); this package never imports the data.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from dept_vl.models.vision import POOL_MODES, PREPROCESSING
from dept_vl.models.vl import VLEncoderDecoder

WORD_LEVEL = "word-level"
NO_TOKENIZER = "none"
SHAPES_VOCABULARY = "shapes"  # the synthetic world's words, registered by dept_vl.tasks
_BUILD = object()  # build_from_spec's default: build the spec's own tokenizer


@dataclass
class VLModelSpec:
    """Everything needed to build a :class:`VLEncoderDecoder` (also what ``save_backbone`` writes).

    The text model is built from ``text_config`` (a config dict with ``model_type``, random weights,
    offline) when given, else loaded with ``AutoModelForSeq2SeqLM.from_pretrained(text_model)`` (a hub id or a
    local folder: T5, Flan-T5, mT5, BART, ...). Without ``image_encoder`` the spec is a text-only model: the
    Hugging Face seq2seq model itself, no image encoder built (see :func:`build_from_spec`).
    """

    name: str = "custom"
    text_model: str | None = field(default=None, metadata={"help": "hub name or path for from_pretrained"})
    text_config: dict[str, Any] | None = field(default=None, metadata={"help": "config dict (model_type + fields): build offline"})
    image_encoder: str | None = field(default=None, metadata={"help": "timm model name, e.g. vit_base_patch16_clip_224.openai; None = text-only"})
    image_encoder_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "extra timm.create_model arguments"})
    image_pretrained: bool = field(default=True, metadata={"help": "download timm's pretrained weights"})
    keep_prefix_tokens: bool = field(default=False, metadata={"help": "keep the class/register tokens"})
    pool_size: int | None = field(default=None, metadata={"help": "pool the patch grid to pool_size x pool_size tokens"})
    pool_mode: str = field(default="avg", metadata={"help": "how pool_size pools: 'avg' or 'max' (VL-Adapter's)"})
    image_preprocessing: str = field(default="timm", metadata={"help": "'timm' (the encoder's data config: resize + centre "
                                                                        "crop) or 'vl-adapter' (Resize((H, W)), no crop)"})
    projection: str = field(default="linear", metadata={"help": "'linear' (Linear + LayerNorm) or 'mlp'"})
    freeze_image_encoder: bool = field(default=True, metadata={"help": "frozen and in eval mode"})
    tokenizer: str | None = field(default=None, metadata={"help": "'word-level', a hub name/path, 'none', or None (= text_model's)"})
    vocabulary: list[str] | str | None = field(default=None, metadata={"help": "words of the word-level tokenizer, or the name of a registered vocabulary"})

    def __post_init__(self) -> None:
        if not self.text_model and not self.text_config:
            raise ValueError(f"model spec {self.name!r} needs text_model (a hub name) or text_config (a config dict)")
        if self.text_config and "model_type" not in self.text_config:
            raise ValueError(f"text_config of model spec {self.name!r} needs a 'model_type' (e.g. 't5' or 'bart')")
        if self.pool_size is not None and self.pool_size < 1:
            raise ValueError(f"pool_size={self.pool_size} must be >= 1 or None")
        if self.pool_mode not in POOL_MODES:
            raise ValueError(f"model spec {self.name!r}: pool_mode={self.pool_mode!r} is unknown; choose one of {', '.join(POOL_MODES)}")
        if self.image_preprocessing not in PREPROCESSING:
            raise ValueError(f"model spec {self.name!r}: image_preprocessing={self.image_preprocessing!r} is unknown; "
                             f"choose one of {', '.join(PREPROCESSING)}")

    @property
    def text_only(self) -> bool:
        """True when the spec names no image encoder: it builds the text model alone."""
        return not self.image_encoder

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VLModelSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model spec keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)


_PRESETS: dict[str, Callable[[], VLModelSpec]] = {}
_VOCABULARIES: dict[str, Sequence[str] | Callable[[], Sequence[str]]] = {}


def register_vocabulary(name: str, words: Sequence[str] | Callable[[], Sequence[str]], *, overwrite: bool = False) -> None:
    """Name a word list for word-level tokenizers (``vocabulary=name`` in a spec): a list or a function returning one.

    Registering the same function again is a no-op (a module reload); another one needs ``overwrite=True``.
    """
    if name in _VOCABULARIES and not overwrite and _VOCABULARIES[name] != words:
        raise ValueError(f"vocabulary {name!r} is already registered; pass overwrite=True to replace it")
    _VOCABULARIES[name] = words


def list_vocabularies() -> list[str]:
    """Names of every registered vocabulary, sorted."""
    return sorted(_VOCABULARIES)


def resolve_vocabulary(spec: VLModelSpec) -> list[str]:
    """The words of a word-level spec: its list, or the registered vocabulary it names.

    Raises:
        ValueError: no vocabulary, or the name of one nobody registered.
    """
    if isinstance(spec.vocabulary, str):
        if spec.vocabulary not in _VOCABULARIES:
            hint = " (import dept_vl.tasks: it registers the synthetic world's words)" if spec.vocabulary == SHAPES_VOCABULARY else ""
            known = ", ".join(list_vocabularies()) or "none"
            raise ValueError(f"model spec {spec.name!r} names vocabulary {spec.vocabulary!r}, which is not registered"
                             f"{hint}; registered: {known}. Pass vocabulary=[...] words instead, or register it with "
                             f"dept_vl.models.presets.register_vocabulary")
        words = _VOCABULARIES[spec.vocabulary]
        return list(words() if callable(words) else words)
    if spec.vocabulary is None:
        raise ValueError(f"model spec {spec.name!r} has a word-level tokenizer but no vocabulary; pass vocabulary=[...] "
                         f"(its words) or the name of a registered vocabulary ({', '.join(list_vocabularies()) or 'none yet'})")
    return list(spec.vocabulary)


def register_preset(name: str, spec: VLModelSpec | Callable[[], VLModelSpec], *, overwrite: bool = False) -> None:
    """Add a preset: a :class:`VLModelSpec` or a function returning one."""
    if name in _PRESETS and not overwrite:
        raise ValueError(f"preset {name!r} is already registered; pass overwrite=True to replace it")
    _PRESETS[name] = spec if callable(spec) and not isinstance(spec, VLModelSpec) else (lambda: spec)  # type: ignore[misc]


def list_presets() -> list[str]:
    """Names of every registered preset, sorted."""
    return sorted(_PRESETS)


def get_preset(name: str) -> VLModelSpec:
    """The spec of a registered preset (a fresh copy)."""
    if name not in _PRESETS:
        raise ValueError(f"unknown model preset {name!r}; registered presets: {', '.join(list_presets())}")
    spec = copy.deepcopy(_PRESETS[name]())
    return dataclasses.replace(spec, name=name)


def resolve_spec(preset: str | None = None, **overrides: Any) -> VLModelSpec:
    """A preset's spec with ``overrides`` applied.

    ``text_config`` is merged into the preset's (same ``model_type``) and ``image_encoder_kwargs`` too
    (same ``image_encoder``); a new text model type or image encoder starts from the given dict alone.
    Other fields are replaced.

    With ``preset=None`` the spec is built from the overrides alone, e.g.
    ``resolve_spec(text_model="t5-small", image_encoder="vit_small_patch16_224")``.
    """
    known = {f.name for f in dataclasses.fields(VLModelSpec)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown model option(s) {unknown}; choose from {sorted(known)}")
    if preset is None:
        return VLModelSpec(**overrides)
    base = get_preset(preset)
    if overrides.get("text_model") and base.text_config and "text_config" not in overrides:
        raise ValueError(f"preset {preset!r} builds its text model from a config (random weights, its own tokenizer), so "
                         f"text_model={overrides['text_model']!r} cannot replace it; name the text model without this preset")
    new_encoder = overrides.get("image_encoder", base.image_encoder) != base.image_encoder
    if new_encoder:  # another timm model: the preset's encoder arguments do not apply to it
        overrides.setdefault("image_encoder_kwargs", {})
    elif isinstance(overrides.get("image_encoder_kwargs"), dict):
        overrides["image_encoder_kwargs"] = {**base.image_encoder_kwargs, **overrides["image_encoder_kwargs"]}
    text = overrides.get("text_config")
    if isinstance(text, dict) and base.text_config and text.get("model_type", base.text_config["model_type"]) == base.text_config["model_type"]:
        overrides["text_config"] = {**base.text_config, **text}
    return dataclasses.replace(base, **overrides)


def build_vl_model(preset: str | None = None, **overrides: Any) -> Any:
    """Build a :class:`VLEncoderDecoder` from a registered preset or explicit names.

    ``preset=None`` means ``"tiny"``, unless the overrides name a text model (``text_model`` or
    ``text_config``): then the spec is made of the overrides alone, and without ``image_encoder`` it is the
    text model alone (a Hugging Face seq2seq model: no image encoder is built).

    Examples: ``build_vl_model("tiny")``, ``build_vl_model("t5-base+vit-b16-clip", pool_size=None)``,
    ``build_vl_model(text_model="t5-small", image_encoder="vit_small_patch16_224.augreg_in21k_ft_in1k")``,
    ``build_vl_model(text_model="google/flan-t5-base")`` (text-only).
    """
    if preset is None and "text_model" not in overrides and "text_config" not in overrides:
        preset = "tiny"
    return build_from_spec(resolve_spec(preset, **overrides))


def build_tokenizer(spec: VLModelSpec) -> Any:
    """The spec's tokenizer: word-level (offline), from the hub, or None."""
    name = spec.tokenizer if spec.tokenizer is not None else spec.text_model
    if name is None or name == NO_TOKENIZER:
        return None
    if name == WORD_LEVEL:
        from dept_vl.models.tokenizer import word_level_tokenizer

        return word_level_tokenizer(resolve_vocabulary(spec))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name)


def build_text_model(spec: VLModelSpec, tokenizer: Any) -> Any:
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    if not spec.text_config:
        return AutoModelForSeq2SeqLM.from_pretrained(spec.text_model)
    values = dict(spec.text_config)
    if spec.tokenizer == WORD_LEVEL and tokenizer is not None:
        values["vocab_size"] = len(tokenizer)
    config_class = type(AutoConfig.for_model(values["model_type"]))
    config = config_class.from_dict({k: v for k, v in values.items() if k not in ("model_type", "transformers_version")})
    if spec.text_model:
        config._name_or_path = spec.text_model
    return AutoModelForSeq2SeqLM.from_config(config)


def build_from_spec(spec: VLModelSpec, tokenizer: Any = _BUILD) -> Any:
    """Instantiate a spec (downloads only what it names on the hub), with random weights unless it names pretrained ones.

    A spec with an image encoder gives a :class:`VLEncoderDecoder`; a text-only spec gives the Hugging Face seq2seq
    model itself (no image encoder is built or downloaded), with ``model.tokenizer`` and ``model.spec`` set.

    Args:
        spec: what to build.
        tokenizer: the tokenizer to use (e.g. the one saved with a backbone; None for none); by default the spec's
            own (:func:`build_tokenizer`).
    """
    from dept_vl.models.vision import create_image_encoder

    if tokenizer is _BUILD:
        tokenizer = build_tokenizer(spec)
    if spec.tokenizer == WORD_LEVEL and (spec.vocabulary is None or isinstance(spec.vocabulary, str)) and tokenizer is not None:
        from dept_vl.models.tokenizer import tokenizer_vocabulary

        spec = dataclasses.replace(spec, vocabulary=tokenizer_vocabulary(tokenizer))  # the words, saved with the backbone
    text_model = build_text_model(spec, tokenizer)
    if spec.text_only:
        text_model.tokenizer, text_model.spec = tokenizer, spec
        return text_model
    image_encoder = create_image_encoder(spec.image_encoder, spec.image_pretrained, preprocessing=spec.image_preprocessing,
                                         pool_mode=spec.pool_mode, **spec.image_encoder_kwargs)
    return VLEncoderDecoder(
        text_model,
        image_encoder,
        projection=spec.projection,
        keep_prefix_tokens=spec.keep_prefix_tokens,
        pool_size=spec.pool_size,
        freeze_image_encoder=spec.freeze_image_encoder,
        tokenizer=tokenizer,
        name_or_path=spec.name,
        spec=spec,
    )


# ---------------------------------------------------------------- the presets
TINY_VIT = dict(
    img_size=48, patch_size=8, embed_dim=64, depth=2, num_heads=2,
    pretrained_cfg_overlay=dict(input_size=(3, 48, 48), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0),
)


def _tiny() -> VLModelSpec:
    """d_model 64, 2+2 T5 layers, a 2-layer ViT with 8-pixel patches on 48x48 images (36 visual tokens)."""
    text = dict(model_type="t5", d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=16,
                pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return VLModelSpec(text_config=text, image_encoder="vit_tiny_patch16_224", image_encoder_kwargs=dict(TINY_VIT),
                       image_pretrained=False, tokenizer=WORD_LEVEL, vocabulary=SHAPES_VOCABULARY)


def _tiny_bart() -> VLModelSpec:
    """As ``tiny`` with a 2+2-layer BART (decoding starts with eos, as BART does)."""
    text = dict(model_type="bart", d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=512,
                pad_token_id=0, eos_token_id=1, bos_token_id=1, decoder_start_token_id=1, forced_eos_token_id=None,
                forced_bos_token_id=None)
    return VLModelSpec(text_config=text, image_encoder="vit_tiny_patch16_224", image_encoder_kwargs=dict(TINY_VIT),
                       image_pretrained=False, tokenizer=WORD_LEVEL, vocabulary=SHAPES_VOCABULARY)


def _t5_base_random() -> VLModelSpec:
    """T5-base's shapes (d_model 768, 12+12 layers, 12 heads, d_ff 3072) and a ViT-S/8 on 48x48 images, both
    with random weights, and the synthetic world's word-level tokenizer: throughput and multi-GPU runs
    at a real model size without a network (the accuracy of random weights means nothing)."""
    text = dict(model_type="t5", d_model=768, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12, d_kv=64,
                pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    vit = dict(TINY_VIT, embed_dim=384, depth=12, num_heads=6)
    return VLModelSpec(text_config=text, image_encoder="vit_small_patch16_224", image_encoder_kwargs=vit,
                       image_pretrained=False, tokenizer=WORD_LEVEL, vocabulary=SHAPES_VOCABULARY)


# Hub-backed presets (need a network the first time): the grid is pooled to 7 x 7 = 49 visual tokens.
HUB_PRESETS = {
    "t5-base+vit-b16-clip": ("t5-base", "vit_base_patch16_clip_224.openai"),
    "t5-small+vit-s16": ("t5-small", "vit_small_patch16_224.augreg_in21k_ft_in1k"),
    "bart-base+vit-b16-clip": ("facebook/bart-base", "vit_base_patch16_clip_224.openai"),
}

# VL-Adapter's image setting (need a network the first time): CLIP RN101's 7 x 7 grid of 2048-wide features, max-pooled
# to 6 x 6 = 36 tokens (its --feature RN101 --n_boxes 36 --downsample), images resized to (224, 224) with no crop.
VL_ADAPTER_PRESETS = {
    "t5-base+rn101-clip": "t5-base",
    "bart-base+rn101-clip": "facebook/bart-base",
}
RN101_CLIP = "resnet101_clip.openai"

register_preset("tiny", _tiny)
register_preset("tiny-bart", _tiny_bart)
register_preset("t5-base-random", _t5_base_random)
for _name, (_text, _image) in HUB_PRESETS.items():
    register_preset(_name, VLModelSpec(text_model=_text, image_encoder=_image, pool_size=7))
for _name, _text in VL_ADAPTER_PRESETS.items():
    register_preset(_name, VLModelSpec(text_model=_text, image_encoder=RN101_CLIP, pool_size=6, pool_mode="max",
                                       image_preprocessing="vl-adapter"))
