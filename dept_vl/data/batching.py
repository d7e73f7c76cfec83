"""From examples to tensors: collation with dynamic padding, length-grouped batch plans, mixture sampling."""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from dept_vl.data.example import Example


@dataclass
class Collator:
    """Tokenise a list of examples into one batch, padded to its own longest input (dynamic padding).

    Images come either as ``pixel_values`` (through ``image_transform``) or, when ``image_features`` maps
    image ids to stored encoder outputs (a dict, or a feature store read lazily by id), as ``image_features``.
    A batch must be all-image or all-text. Examples with I images (``Example.image`` a tuple) give
    ``pixel_values`` (B, I, C, H, W) or ``image_features`` (B, I * N, width): image 1's tokens, then image 2's.
    """

    tokenizer: Any
    max_input_length: int
    max_target_length: int = 32
    image_transform: Callable[[Any], torch.Tensor] | None = None
    image_features: Mapping[str, torch.Tensor] | None = None
    load_image: Callable[[Any], Any] | None = None
    pixels: dict[str, torch.Tensor] | None = None  # preprocessed images by id (when the encoder trains)
    truncated: int = field(default=0, init=False)  # inputs cut to max_input_length so far

    def __call__(self, examples: Sequence[Example], with_labels: bool = True) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            [e.input_text for e in examples], padding="longest", truncation=True,
            max_length=self.max_input_length, return_tensors="pt",
        )
        self._check_truncation(examples, enc["attention_mask"])
        batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        if with_labels:
            dec = self.tokenizer(
                [e.target_text for e in examples], padding="longest", truncation=True,
                max_length=self.max_target_length, return_tensors="pt",
            )
            labels = dec["input_ids"].masked_fill(dec["attention_mask"] == 0, -100)
            batch["labels"] = labels
        with_image = [e.has_image for e in examples]
        if any(with_image):
            if not all(with_image):
                ids = [e.id for e in examples if not e.has_image][:3]
                raise ValueError(f"a batch mixes examples with and without images (e.g. {ids}); group them by task")
            batch.update(self.images(examples))
        return batch

    def _check_truncation(self, examples: Sequence[Example], mask: torch.Tensor) -> None:
        """Warn (once per collator) when inputs are longer than ``max_input_length``: their ends are lost."""
        full = [i for i, n in enumerate(mask.sum(1).tolist()) if n >= self.max_input_length]
        if not full:
            return
        lengths = [len(self.tokenizer(examples[i].input_text)["input_ids"]) for i in full]
        cut = [(examples[i].id, n) for i, n in zip(full, lengths) if n > self.max_input_length]
        if cut and not self.truncated:
            warnings.warn(
                f"inputs longer than max_input_length={self.max_input_length} tokens are cut (e.g. {cut[0][0]!r}: "
                f"{cut[0][1]} tokens): their ends are lost. Raise dept.max_length (the longest text DePT's A @ B "
                f"covers) or data.max_input_length", stacklevel=2)
        self.truncated += len(cut)

    def images(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        rows = [image_ids(e) for e in examples]
        counts = sorted({len(row) for row in rows})
        if len(counts) > 1:
            raise ValueError(f"a batch mixes examples with {' and '.join(map(str, counts))} images (e.g. {examples[0].id!r}); "
                             "batch examples of one task together")
        flat = [i for row in rows for i in row]
        features = self.image_features
        if features is not None and all(i is not None and i in features for i in flat):
            stack = getattr(features, "stack", None)
            stacked = stack(flat) if stack is not None else torch.stack([features[i] for i in flat])
            return {"image_features": stacked.reshape(len(rows), -1, stacked.shape[-1])}  # each row: its images' tokens in turn
        if self.pixels is not None and all(i in self.pixels for i in flat):
            return {"pixel_values": self._rows([self.pixels[i] for i in flat], counts[0])}
        if self.image_transform is None:
            raise ValueError("examples have images but the collator has no image_transform (use the model's)")
        load = self.load_image or (lambda image: image)
        return {"pixel_values": self._rows([self.image_transform(load(s)) for e in examples for s in image_sources(e)], counts[0])}

    @staticmethod
    def _rows(pixels: list[torch.Tensor], count: int) -> torch.Tensor:
        """(B, C, H, W) for one image per example, (B, I, C, H, W) for I."""
        stacked = torch.stack(pixels)
        return stacked if count == 1 else stacked.reshape(-1, count, *stacked.shape[1:])


def image_sources(example: Example) -> tuple[Any, ...]:
    """The example's images as a tuple: one for a single image, I for a multi-image example (empty: none)."""
    if example.image is None:
        return ()
    return tuple(example.image) if isinstance(example.image, (tuple, list)) else (example.image,)


def image_ids(example: Example) -> tuple[Any, ...]:
    """The example's image ids, aligned with :func:`image_sources`.

    Raises:
        ValueError: a multi-image example whose ``image_id`` is not a tuple or list of the same length.
    """
    sources = image_sources(example)
    if not isinstance(example.image, (tuple, list)):
        return (example.image_id,) if sources else ()
    ids = example.image_id
    if not isinstance(ids, (tuple, list)) or len(ids) != len(sources):
        raise ValueError(f"example {example.id!r} has {len(sources)} images but image_id={ids!r}; give a tuple of "
                         f"{len(sources)} ids, one per image")
    if not sources:
        raise ValueError(f"example {example.id!r} has an empty image tuple; use image=None for a text-only example")
    return tuple(ids)


def mixture_rates(sizes: dict[str, int], mixing: str = "proportional", cap: int = 10000, temperature: float = 2.0) -> dict[str, float]:
    """Sampling rate of each task: examples-proportional with a cap, or temperature-scaled (T5's mixing)."""
    if not sizes:
        raise ValueError("a mixture needs at least one task")
    if mixing == "proportional":
        weights = {name: min(n, cap) for name, n in sizes.items()}
    elif mixing == "temperature":
        weights = {name: min(n, cap) ** (1.0 / temperature) for name, n in sizes.items()}
    else:
        raise ValueError(f"data.mixing={mixing!r} is unknown; choose 'proportional' or 'temperature'")
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items()}


def plan_batches(
    pools: dict[str, Sequence[int]],
    rates: dict[str, float],
    num_batches: int,
    batch_size: int,
    seed: int,
    length_grouping: bool = True,
) -> list[list[tuple[str, int]]]:
    """The whole run's batches, decided up front from the seed: a list of ``(task, example index)`` lists.

    Each task's pool (its examples' input lengths) is read in shuffled epochs; each example's task is
    drawn by ``rates``; batches are length-grouped. Resuming at step n means starting at batch n, so a
    resumed run sees exactly the data of an uninterrupted one. Batches never mix tasks with and without
    images: each batch is drawn from one task chosen by ``rates`` when ``pools`` mixes them.
    """
    rng = random.Random(seed)
    names = sorted(pools)
    empty = [n for n in names if len(pools[n]) == 0]
    if empty:
        raise ValueError(f"task(s) {empty} have no training examples")
    streams = {n: _epochs(len(pools[n]), rng) for n in names}
    weights = [rates[n] for n in names]
    batches: list[list[tuple[str, int]]] = []
    group = 32
    while len(batches) < num_batches:
        window: dict[str, list[int]] = {n: [] for n in names}
        for _ in range(group):
            task = rng.choices(names, weights)[0]
            window[task] += [next(streams[task]) for _ in range(batch_size)]
        chunk: list[list[tuple[str, int]]] = []
        for task, indices in window.items():
            if length_grouping:
                indices = sorted(indices, key=lambda i: pools[task][i])
            chunk += [[(task, i) for i in indices[j : j + batch_size]] for j in range(0, len(indices), batch_size)]
        rng.shuffle(chunk)
        batches += chunk
    return batches[:num_batches]


def _epochs(n: int, rng: random.Random):
    while True:
        order = list(range(n))
        rng.shuffle(order)
        yield from order
