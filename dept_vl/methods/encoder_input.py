"""The body shared by methods that rebuild only the encoder's input of a frozen base (ADePT, ULPT, ATTEMPT, MPT).

A model here names its tensors (trained parameters and stored frozen buffers) and the transfer part each belongs
to (``prompt``, ``lowrank``: what ``adapt.transfer`` selects), builds the encoder input in
:meth:`EncoderInputModel.prepare_inputs`, and inherits the rest: ``forward``/``generate`` on the base,
``disable_adapter``, AdamW groups, the adapter state, ``save_pretrained`` and ``from_adapter``. Its shapes and
learning rates come from the ``dept`` section (each method's docstring says which field means what), its own
settings from its section of the run config; the adapter records both (``settings = {"dept": ..., "<method>": ...}``).
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator

import torch
from torch import nn

from dept_vl.adapter import Adapter, base_model_facts, check_base_model, write_adapter
from dept_vl.config import RunConfig
from dept_vl.dept.config import DePTConfig
from dept_vl.dept.model import initial_prompt
from dept_vl.dept.wrapper import AdapterWrapper
from dept_vl.methods.registry import Method

PARTS = ("prompt", "lowrank", "modules")
SHAPE_FIELDS = ("num_virtual_tokens", "rank", "max_length", "alpha", "init", "init_text", "init_text_eos", "init_vocab_size")


def _given(**inputs: Any) -> dict[str, Any]:
    return {k: v for k, v in inputs.items() if v is not None}


class EncoderInputModel(AdapterWrapper):
    """A frozen encoder-decoder whose encoder reads what :meth:`prepare_inputs` builds from the text embeddings.

    Subclasses set ``method``, ``tensor_parts`` (tensor name -> transfer part), ``settings_class`` (their config
    section, or None) and ``group_parts`` (AdamW group -> ``dept`` learning-rate field), and create their tensors in
    ``__init__`` (float32, on the base's device; ``initialize=False`` may leave them empty: they are loaded next).
    """

    method: ClassVar[str] = ""
    tensor_parts: ClassVar[dict[str, str]] = {}
    settings_class: ClassVar[type | None] = None
    group_parts: ClassVar[dict[str, str]] = {"prompt": "lr_prompt", "lowrank": "lr_lowrank"}

    def __init__(self, base_model: nn.Module, config: DePTConfig, settings: Any = None):
        super().__init__()
        self.base_model = base_model
        self.dept_config = config
        self.settings = settings
        base_model.requires_grad_(False)
        embedding = base_model.get_input_embeddings()
        self.d_model = int(embedding.weight.shape[1])
        self.device_ = embedding.weight.device
        self.generator = torch.Generator().manual_seed(config.seed)
        self._adapter_enabled = True

    # ------------------------------------------------------------------ set-up
    def initial_prompt(self, tokenizer: Any) -> torch.Tensor:
        """m prompt vectors initialised as DePT's prompt is (``dept.init``: text, vocab or random), float32 on the CPU."""
        return initial_prompt(self.dept_config, self.base_model.get_input_embeddings(), tokenizer, self.generator)

    def parameter(self, value: torch.Tensor) -> nn.Parameter:
        return nn.Parameter(value.float().to(self.device_))

    # ---------------------------------------------------------------- forward
    def text_embeddings(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                        inputs_embeds: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The base's embeddings of the text and its mask (ones where none is given)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError(f"{type(self).__name__}: pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.base_model.get_input_embeddings()(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        return inputs_embeds, attention_mask

    @staticmethod
    def prepend(prompt: torch.Tensor, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[prompt (m)] [text (L)]`` with m leading ones in the mask; ``prompt`` is (m, d) or per row (B, m, d)."""
        if prompt.dim() == 2:
            prompt = prompt.unsqueeze(0).expand(embeds.shape[0], -1, -1)
        ones = mask.new_ones(embeds.shape[0], prompt.shape[1])
        return torch.cat([prompt.to(embeds.dtype), embeds], dim=1), torch.cat([ones, mask], dim=1)

    def prepare_inputs(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                       inputs_embeds: torch.Tensor | None = None, **route: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's input embeddings and mask."""
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None, **kwargs: Any) -> Any:
        """Run the base model on the method's encoder input; returns the base model's output object."""
        route = {k: kwargs.pop(k) for k in self.route_keys() if k in kwargs}
        if not self._adapter_enabled:
            return self.base_model(**_given(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds),
                                   labels=labels, **kwargs)
        embeds, mask = self.prepare_inputs(input_ids, attention_mask, inputs_embeds, **route)
        return self.base_model(inputs_embeds=embeds, attention_mask=mask, labels=labels, **kwargs)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 inputs_embeds: torch.Tensor | None = None, **generation_kwargs: Any) -> torch.Tensor:
        """The base model's ``generate`` on the method's encoder input; every HF generation option works."""
        route = {k: generation_kwargs.pop(k) for k in self.route_keys() if k in generation_kwargs}
        if not self._adapter_enabled:
            return self.base_model.generate(**_given(input_ids=input_ids, attention_mask=attention_mask,
                                                     inputs_embeds=inputs_embeds), **generation_kwargs)
        embeds, mask = self.prepare_inputs(input_ids, attention_mask, inputs_embeds, **route)
        return self.base_model.generate(inputs_embeds=embeds, attention_mask=mask, **generation_kwargs)

    def route_keys(self) -> tuple[str, ...]:
        """Batch keys that :meth:`prepare_inputs` reads besides the text (MPT's ``task_ids``)."""
        return ()

    @contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Inside, ``forward`` and ``generate`` are the frozen base's own."""
        self._adapter_enabled = False
        try:
            yield
        finally:
            self._adapter_enabled = True

    # ------------------------------------------------------------- parameters
    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {name: p for name, p in self.named_parameters() if p.requires_grad}

    def param_groups(self) -> list[dict[str, Any]]:
        """AdamW groups, one per transfer part, at the ``dept`` learning rate of ``group_parts``; weight decay
        ``dept.weight_decay``."""
        groups = []
        for part, rate in self.group_parts.items():
            params = [p for name, p in self.named_parameters() if p.requires_grad and self.tensor_parts.get(name) == part]
            if params:
                groups.append({"name": part, "params": params, "lr": getattr(self.dept_config, rate),
                               "weight_decay": self.dept_config.weight_decay})
        return groups

    def set_trainable(self, trainable: bool) -> None:
        """Freeze (False) or unfreeze (True) the method's parameters (its stored buffers never train)."""
        for name, p in self.named_parameters():
            if name in self.tensor_parts:
                p.requires_grad_(trainable)

    # ------------------------------------------------------------ checkpoints
    def adapter_state_names(self) -> list[str]:
        return [name for name in self.tensor_parts if getattr(self, name, None) is not None]

    def adapter_state_dict(self, keep_vars: bool = False) -> dict[str, torch.Tensor]:
        """Every tensor the adapter owns, trained or stored (ULPT's projection, ATTEMPT's source prompts)."""
        return {name: getattr(self, name) if keep_vars else getattr(self, name).detach() for name in self.adapter_state_names()}

    def transfer_value(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """A source tensor as this model takes it (MPT averages the source's task factors); the value by default."""
        return value

    def load_adapter_state(self, state: dict[str, torch.Tensor], parts: Iterable[str] = PARTS) -> list[str]:
        """Copy the tensors of ``parts`` (``prompt``, ``lowrank``) from an adapter state dict; returns the names loaded."""
        parts = set(parts)
        unknown = parts - set(PARTS)
        if unknown:
            raise ValueError(f"unknown adapter parts {sorted(unknown)}; choose from {list(PARTS)}")
        own = self.adapter_state_dict(keep_vars=True)
        loaded = []
        for name, value in state.items():
            if name not in own:
                raise ValueError(f"adapter tensor {name!r} has no place in this {self.method} model (its tensors: {sorted(own)})")
            if self.tensor_parts[name] not in parts:
                continue
            value = self.transfer_value(name, value)
            if tuple(own[name].shape) != tuple(value.shape):
                raise ValueError(f"adapter tensor {name!r} has shape {tuple(value.shape)}, this {self.method} model expects "
                                 f"{tuple(own[name].shape)}; build it with the adapter's settings")
            with torch.no_grad():
                own[name].copy_(value.to(own[name].device, own[name].dtype))
            loaded.append(name)
        return loaded

    def adapter_settings(self) -> dict[str, Any]:
        settings = {"dept": self.dept_config.to_dict()}
        if self.settings is not None:
            settings[self.method] = dataclasses.asdict(self.settings)
        return settings

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``, atomically)."""
        return write_adapter(directory, method=self.method, settings=self.adapter_settings(), tensors=self.adapter_state_dict(),
                             base_model=base_model_facts(self.base_model))

    @classmethod
    def settings_of(cls, adapter: Adapter) -> tuple[DePTConfig, Any]:
        dept = DePTConfig.from_dict(adapter.settings["dept"])
        extra = adapter.settings.get(cls.method)
        return dept, (cls.settings_class(**extra) if cls.settings_class is not None and extra is not None else None)

    @classmethod
    def from_adapter(cls, base_model: nn.Module, adapter: Adapter, is_trainable: bool = False) -> "EncoderInputModel":
        """The model of a saved adapter on ``base_model`` (frozen for inference unless ``is_trainable``)."""
        if adapter.method != cls.method:
            raise ValueError(f"adapter {adapter.path} was trained with method {adapter.method!r}, not {cls.method!r}; "
                             f"load it with dept_vl.methods.load_adapter_model(base, path)")
        check_base_model(adapter.base_model, base_model, adapter.path)
        dept, settings = cls.settings_of(adapter)
        model = cls(base_model, dept, settings, initialize=False, stored=adapter.tensors)
        model.load_adapter_state(adapter.tensors)
        model.set_trainable(is_trainable)
        return model if is_trainable else model.eval()


class EncoderInputMethod(Method):
    """A method whose model is an :class:`EncoderInputModel` built from ``config.dept`` and ``config.<name>``."""

    model_class: ClassVar[type[EncoderInputModel]]
    section: ClassVar[str | None] = None  # the method's own config section, if any
    transfer_parts = ("prompt", "lowrank")

    def settings(self, config: RunConfig) -> Any:
        return getattr(config, self.section) if self.section else None

    def build(self, config: RunConfig, base: nn.Module, seed: int | None = None) -> EncoderInputModel:
        dept = config.dept if seed is None else dataclasses.replace(config.dept, seed=seed)
        return self.model_class(base, dept, self.settings(config), tokenizer=getattr(base, "tokenizer", None))

    def from_adapter(self, base: nn.Module, adapter: Adapter) -> EncoderInputModel:
        return self.model_class.from_adapter(base, adapter)

    def check(self, config: RunConfig) -> None:
        if config.dept.trainable_modules:
            raise ValueError(f"dept.trainable_modules={config.dept.trainable_modules} is DePT's; method {self.name!r} trains "
                             f"no base module: set dept.trainable_modules=[] or use method=dept")

    def for_adapter(self, config: RunConfig, adapter: Adapter) -> RunConfig:
        """The adapter's shapes (``dept`` shape fields and the method's section) replace the run's; its learning rates do not."""
        saved = adapter.settings.get("dept", {})
        new = dataclasses.replace(config, dept=dataclasses.replace(config.dept, **{f: saved[f] for f in SHAPE_FIELDS if f in saved}))
        if self.section and self.section in adapter.settings:
            new = dataclasses.replace(new, **{self.section: type(self.settings(config))(**adapter.settings[self.section])})
        return new

    def with_source(self, config: RunConfig, source: Adapter) -> RunConfig:
        if source.method != self.name:
            raise ValueError(f"adapt.source={source.path} is a {source.method!r} adapter but method={self.name!r}; "
                             f"start a {self.name} run from a {self.name} adapter (or set method={source.method})")
        return self.for_adapter(config, source)
