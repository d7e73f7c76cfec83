"""DePTModel: a frozen Hugging Face encoder-decoder with a soft prompt and a low-rank embedding offset."""

from __future__ import annotations

import difflib
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from dept_vl.adapter import Adapter, base_model_facts, check_base_model, read_adapter, write_adapter
from dept_vl.dept.config import DePTConfig
from dept_vl.dept.wrapper import AdapterWrapper

PARTS = ("prompt", "lowrank", "modules")


def initial_lowrank(config: DePTConfig, d_model: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A (s x r) kaiming-uniform with a=sqrt(5), B (r x d) zeros: A @ B = 0 at step 0, as in the paper."""
    a = torch.empty(config.max_length, config.rank)
    nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
    return a, torch.zeros(config.rank, d_model)


def _given(**inputs: Any) -> dict[str, Any]:
    """The inputs that were passed (not None): the base model sees exactly what the caller gave."""
    return {k: v for k, v in inputs.items() if v is not None}


def initial_prompt(cfg: DePTConfig, embedding: nn.Embedding, tokenizer: Any, generator: torch.Generator) -> torch.Tensor:
    """The m prompt vectors DePT starts from (``cfg.init``: text, vocab or random), float32 on the CPU."""
    m, weight = cfg.num_virtual_tokens, embedding.weight.detach().float().cpu()
    if cfg.init == "random":
        return torch.randn(m, int(weight.shape[1]), generator=generator) * weight.std() + weight.mean()
    if cfg.init == "vocab":
        ids = torch.randint(0, min(cfg.init_vocab_size, weight.shape[0]), (m,), generator=generator)
    else:
        if tokenizer is None:
            raise ValueError("DePTConfig.init='text' needs a tokenizer: DePTModel(base, config, tokenizer=...) or use init='vocab'")
        token_ids = list(tokenizer(cfg.init_text, add_special_tokens=False)["input_ids"])
        if not token_ids:
            raise ValueError(f"DePTConfig.init_text={cfg.init_text!r} tokenises to nothing; give a longer text")
        eos = getattr(tokenizer, "eos_token_id", None)
        if cfg.init_text_eos and eos is not None:
            # the reference code repeats tokenizer(init_text)["input_ids"], which ends with eos (T5)
            token_ids.append(int(eos))
        ids = torch.tensor((token_ids * math.ceil(m / len(token_ids)))[:m])
    return embedding(ids.to(embedding.weight.device)).detach().float().cpu()


class DePTModel(AdapterWrapper):
    """Wraps a frozen encoder-decoder LM (T5, BART, mT5, or the VL model) with DePT.

    The encoder reads ``[prompt (m)] [embed(input_ids) + scale * (A @ B)[:L] (L)]``; row i of ``A @ B`` is
    added to text position i (inputs must be right-padded). The prompt, A and B stay in float32 whatever
    dtype the base runs in.

    Args:
        base_model: a model with ``get_input_embeddings()`` whose forward and ``generate`` accept
            ``inputs_embeds`` and ``attention_mask``.
        config: the DePT hyperparameters.
        tokenizer: needed only for ``config.init == "text"``.

    As transformers and peft models: ``get_base_model()``, ``config`` and ``generation_config`` (the base's),
    ``disable_adapter()``, ``gradient_checkpointing_enable()``; ``state_dict()`` holds the adapter only.
    """

    def __init__(self, base_model: nn.Module, config: DePTConfig, tokenizer: Any = None, *, initialize: bool = True):
        super().__init__()
        self.base_model = base_model
        self.dept_config = config
        base_model.requires_grad_(False)
        embedding = base_model.get_input_embeddings()
        self.d_model = int(embedding.weight.shape[1])
        device = embedding.weight.device
        generator = torch.Generator().manual_seed(config.seed)

        self.prompt: nn.Parameter | None = None
        if config.num_virtual_tokens > 0:
            init = initial_prompt(self.dept_config, embedding, tokenizer, generator) if initialize else None
            if init is None:
                init = torch.zeros(config.num_virtual_tokens, self.d_model)
            self.prompt = nn.Parameter(init.float().to(device))

        self.lowrank_A: nn.Parameter | None = None
        self.lowrank_B: nn.Parameter | None = None
        if config.rank > 0:
            a, b = initial_lowrank(config, self.d_model, generator)
            self.lowrank_A = nn.Parameter(a.to(device))
            self.lowrank_B = nn.Parameter(b.to(device))

        self.trainable_modules: dict[str, nn.Module] = {}
        for name in config.trainable_modules:
            module = self._find_submodule(name)
            module.requires_grad_(True)
            self.trainable_modules[name] = module
        # the base's own weights of the trainable modules, for disable_adapter (kept on the CPU)
        self._base_module_state = {name: {k: t.detach().to("cpu", copy=True) for k, t in m.state_dict().items()}
                                   for name, m in self.trainable_modules.items()}
        self._adapter_enabled = True

    # ------------------------------------------------------------------ set-up
    def _find_submodule(self, name: str) -> nn.Module:
        try:
            return self.base_model.get_submodule(name)
        except AttributeError:
            names = [n for n, _ in self.base_model.named_modules() if n]
            close = difflib.get_close_matches(name, names, n=3)
            hint = f"; did you mean {close}?" if close else ""
            raise ValueError(f"DePTConfig.trainable_modules: the base model has no submodule {name!r}{hint}") from None

    # ---------------------------------------------------------------- forward
    def lowrank_update(self, length: int) -> torch.Tensor:
        """``scale * (A @ B)[:length]`` in float32, shape (length, d_model)."""
        if self.lowrank_A is None:
            raise ValueError("this adapter has rank 0: it has no low-rank update")
        return self.dept_config.scale * (self.lowrank_A[:length] @ self.lowrank_B)

    def prepare_inputs(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's input embeddings and mask: prompt in front, the low-rank offset on the text."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("DePTModel: pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.base_model.get_input_embeddings()(input_ids)
        batch, length, _ = inputs_embeds.shape
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, dtype=torch.long, device=inputs_embeds.device)
        dtype = inputs_embeds.dtype
        if self.lowrank_A is not None:
            limit = self.dept_config.max_length
            if length > limit:
                raise ValueError(
                    f"input length {length} exceeds max_length {limit} of this DePT adapter; "
                    f"truncate inputs to {limit} tokens or use an adapter with a larger max_length"
                )
            inputs_embeds = (inputs_embeds.float() + self.lowrank_update(length)).to(dtype)
        if self.prompt is not None:
            prompt = self.prompt.to(dtype).unsqueeze(0).expand(batch, -1, -1)
            inputs_embeds = torch.cat([prompt, inputs_embeds], dim=1)
            ones = attention_mask.new_ones(batch, self.dept_config.num_virtual_tokens)
            attention_mask = torch.cat([ones, attention_mask], dim=1)
        return inputs_embeds, attention_mask

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run the base model on the DePT-modified input; returns the base model's output object."""
        if not self._adapter_enabled:
            return self.base_model(**_given(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds),
                                   labels=labels, **kwargs)
        embeds, mask = self.prepare_inputs(input_ids, attention_mask, inputs_embeds)
        return self.base_model(inputs_embeds=embeds, attention_mask=mask, labels=labels, **kwargs)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **generation_kwargs: Any,
    ) -> torch.Tensor:
        """The base model's ``generate`` with the prompt on the encoder side; every HF generation option works."""
        if not self._adapter_enabled:
            return self.base_model.generate(**_given(input_ids=input_ids, attention_mask=attention_mask,
                                                     inputs_embeds=inputs_embeds), **generation_kwargs)
        embeds, mask = self.prepare_inputs(input_ids, attention_mask, inputs_embeds)
        return self.base_model.generate(inputs_embeds=embeds, attention_mask=mask, **generation_kwargs)

    # ------------------------------------------------------------- parameters
    def param_groups(self) -> list[dict[str, Any]]:
        """AdamW groups: the prompt at ``lr_prompt``, A and B at ``lr_lowrank``, trainable modules at ``lr_modules``."""
        cfg = self.dept_config
        groups: list[dict[str, Any]] = []
        if self.prompt is not None and self.prompt.requires_grad:
            groups.append({"name": "prompt", "params": [self.prompt], "lr": cfg.lr_prompt, "weight_decay": cfg.weight_decay})
        if self.lowrank_A is not None and self.lowrank_A.requires_grad:
            groups.append({"name": "lowrank", "params": [self.lowrank_A, self.lowrank_B], "lr": cfg.lr_lowrank, "weight_decay": cfg.weight_decay})
        module_params = [p for m in self.trainable_modules.values() for p in m.parameters() if p.requires_grad]
        if module_params:
            groups.append({"name": "modules", "params": module_params, "lr": cfg.lr_modules, "weight_decay": cfg.weight_decay})
        return groups

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """Every parameter that receives gradients, by name."""
        return {name: p for name, p in self.named_parameters() if p.requires_grad}

    def set_trainable(self, trainable: bool) -> None:
        """Freeze (False) or unfreeze (True) the adapter's own parameters and trainable modules."""
        for tensor in self.adapter_state_dict(keep_vars=True).values():
            tensor.requires_grad_(trainable)

    @contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Inside, ``forward`` and ``generate`` are the base model's own: no prompt, no ``A @ B``, and the trainable
        modules hold the base's weights again (the trained ones come back on exit)."""
        trained = {name: {k: t.detach().clone() for k, t in m.state_dict().items()} for name, m in self.trainable_modules.items()}
        self._copy_module_state(self._base_module_state)
        self._adapter_enabled = False
        try:
            yield
        finally:
            self._adapter_enabled = True
            self._copy_module_state(trained)

    def _copy_module_state(self, states: dict[str, dict[str, torch.Tensor]]) -> None:
        with torch.no_grad():
            for name, state in states.items():
                for key, tensor in self.trainable_modules[name].state_dict(keep_vars=True).items():
                    tensor.copy_(state[key])

    # ------------------------------------------------------------ checkpoints
    def adapter_state_names(self) -> list[str]:
        """``prompt``, ``lowrank_A``, ``lowrank_B`` (those that exist) and ``base_model.<module>.<tensor>``."""
        names = [n for n in ("prompt", "lowrank_A", "lowrank_B") if getattr(self, n) is not None]
        return names + [f"base_model.{name}.{key}" for name, m in self.trainable_modules.items() for key in m.state_dict()]

    def adapter_state_dict(self, keep_vars: bool = False) -> dict[str, torch.Tensor]:
        """Only what the adapter owns: ``prompt``, ``lowrank_A``, ``lowrank_B`` and ``modules.<name>.<param>``."""
        state: dict[str, torch.Tensor] = {}
        for name in ("prompt", "lowrank_A", "lowrank_B"):
            tensor = getattr(self, name)
            if tensor is not None:
                state[self.prompt_key if name == "prompt" else name] = tensor if keep_vars else tensor.detach()
        for module_name, module in self.trainable_modules.items():
            for key, tensor in module.state_dict(keep_vars=keep_vars).items():
                state[f"modules.{module_name}.{key}"] = tensor
        return state

    def load_adapter_state(self, state: dict[str, torch.Tensor], parts: Iterable[str] = PARTS) -> list[str]:
        """Copy tensors from an adapter state dict into this model; returns the names loaded.

        ``parts`` selects what to transfer: any of ``prompt``, ``lowrank`` (A and B), ``modules``.
        """
        parts = set(parts)
        unknown = parts - set(PARTS)
        if unknown:
            raise ValueError(f"unknown adapter parts {sorted(unknown)}; choose from {list(PARTS)}")
        own = self.adapter_state_dict(keep_vars=True)
        loaded: list[str] = []
        for name, value in state.items():
            part = "prompt" if name == self.prompt_key else "lowrank" if name.startswith("lowrank_") else "modules"
            if part not in parts:
                continue
            if name not in own:
                raise ValueError(f"adapter tensor {name!r} has no place in this model (its tensors: {sorted(own)}); check rank, num_virtual_tokens and trainable_modules")
            if tuple(own[name].shape) != tuple(value.shape):
                raise ValueError(f"adapter tensor {name!r} has shape {tuple(value.shape)}, this model expects {tuple(own[name].shape)}")
            with torch.no_grad():
                own[name].copy_(value.to(own[name].device, own[name].dtype))
            loaded.append(name)
        return loaded

    method = "dept"  # the name recorded in saved adapters
    prompt_key = "prompt"  # the prompt's name in adapter files

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``, atomically)."""
        return write_adapter(directory, method=self.method, settings=self.dept_config.to_dict(),
                             tensors=self.adapter_state_dict(), base_model=base_model_facts(self.base_model))

    @classmethod
    def from_adapter(cls, base_model: nn.Module, adapter: Adapter, is_trainable: bool = False) -> "DePTModel":
        """Build the model of an :class:`dept_vl.adapter.Adapter` already read from disk onto ``base_model``."""
        if adapter.method != cls.method:
            raise ValueError(f"adapter {adapter.path} was trained with method {adapter.method!r}, not {cls.method!r}; "
                             f"load it with dept_vl.methods.load_adapter_model(base, path)")
        check_base_model(adapter.base_model, base_model, adapter.path)
        model = cls(base_model, DePTConfig.from_dict(adapter.settings), initialize=False)
        model.load_adapter_state(adapter.tensors)
        model.set_trainable(is_trainable)
        if not is_trainable:
            model.eval()
        return model

    @classmethod
    def from_pretrained(cls, base_model: nn.Module, name_or_path: str | Path, is_trainable: bool = False,
                        revision: str | None = None, **hub_options: Any) -> "DePTModel":
        """Load an adapter written by :meth:`save_pretrained` onto ``base_model``: a local folder or a hub repo
        ``user/name`` at ``revision`` (downloaded once into the hub cache; ``HF_HUB_OFFLINE=1`` reads the cache
        only). ``hub_options``: ``cache_dir``, ``token``."""
        from dept_vl.hub import resolve_folder

        return cls.from_adapter(base_model, read_adapter(resolve_folder(name_or_path, revision, **hub_options)), is_trainable)
