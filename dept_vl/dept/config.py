"""DePTConfig: the hyperparameters of one DePT adapter."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

INIT_CHOICES = ("text", "vocab", "random")


@dataclass
class DePTConfig:
    """Decomposed Prompt Tuning: a soft prompt of m tokens plus a low-rank offset A @ B on the text embeddings.

    The trainable parameter count is ``m*d + s*r + r*d``; :func:`dept_vl.budget` lists (m, r) pairs that
    match the budget of vanilla prompt tuning with a given number of tokens.
    """

    num_virtual_tokens: int = field(default=60, metadata={"help": "m: soft prompt length (0 = low-rank offset only)"})
    rank: int = field(default=30, metadata={"help": "r: rank of A @ B (0 = vanilla prompt tuning)"})
    max_length: int = field(default=256, metadata={"help": "s: longest text input (rows of A)"})
    alpha: float = field(default=8.0, metadata={"help": "the offset is scaled by alpha / sqrt(r)"})
    init: str = field(default="vocab", metadata={"help": "prompt init: 'text', 'vocab' (random vocabulary tokens) or 'random'"})
    init_text: str | None = field(default=None, metadata={"help": "text whose token embeddings initialise the prompt (init='text')"})
    init_text_eos: bool = field(default=True, metadata={"help": "keep the tokenizer's end-of-sequence token in the repeated init text, "
                                                                "as the reference code does (init='text'); false drops it"})
    init_vocab_size: int = field(default=5000, metadata={"help": "init='vocab' samples token ids below this (frequent tokens)"})
    lr_prompt: float = field(default=0.3, metadata={"help": "learning rate of the soft prompt"})
    lr_lowrank: float = field(default=1e-4, metadata={"help": "learning rate of A and B"})
    weight_decay: float = field(default=1e-5, metadata={"help": "AdamW weight decay, applied to every DePT group"})
    trainable_modules: list[str] = field(default_factory=list, metadata={"help": "base submodules trained and saved with the adapter"})
    lr_modules: float = field(default=1e-4, metadata={"help": "learning rate of trainable_modules"})
    seed: int = field(default=0, metadata={"help": "seed of the parameter initialisation"})

    def __post_init__(self) -> None:
        def need(cond: bool, name: str, msg: str) -> None:
            if not cond:
                raise ValueError(f"DePTConfig.{name}={getattr(self, name)!r}: {msg}")

        for name in ("num_virtual_tokens", "rank", "max_length", "init_vocab_size"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool), name, "must be an integer")
            need(value >= 0, name, "must be >= 0")
        need(self.max_length >= 1, "max_length", "must be >= 1 (the longest text input)")
        need(self.init_vocab_size >= 1, "init_vocab_size", "must be >= 1")
        if self.num_virtual_tokens == 0 and self.rank == 0:
            raise ValueError(
                "DePTConfig.num_virtual_tokens=0 with rank=0 trains nothing; set num_virtual_tokens > 0 "
                "(prompt tuning) or rank > 0 (low-rank offset)"
            )
        need(isinstance(self.alpha, (int, float)) and not isinstance(self.alpha, bool) and self.alpha > 0, "alpha", "must be a number > 0")
        need(self.init in INIT_CHOICES, "init", f"unknown init; choose one of {', '.join(INIT_CHOICES)}")
        if self.init == "text":
            need(bool(self.init_text), "init_text", "init='text' needs a non-empty init_text")
        need(isinstance(self.init_text_eos, bool), "init_text_eos", "must be true or false")
        for name in ("lr_prompt", "lr_lowrank", "lr_modules", "weight_decay", "alpha"):
            value = getattr(self, name)
            need(isinstance(value, (int, float)) and not isinstance(value, bool), name, "must be a number (e.g. 1e-4)")
        for name in ("lr_prompt", "lr_lowrank", "lr_modules"):
            need(getattr(self, name) > 0, name, "learning rates must be > 0")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        if isinstance(self.trainable_modules, str):
            self.trainable_modules = [self.trainable_modules]
        self.trainable_modules = list(self.trainable_modules)

    @property
    def scale(self) -> float:
        """Multiplier of A @ B: alpha / sqrt(r) (0 when r = 0)."""
        return self.alpha / self.rank**0.5 if self.rank > 0 else 0.0

    def num_parameters(self, d_model: int) -> int:
        """Trainable DePT parameters for a model width d (trainable_modules not counted)."""
        return self.num_virtual_tokens * d_model + self.rank * (self.max_length + d_model)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DePTConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DePTConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)
