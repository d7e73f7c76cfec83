"""The one record every task produces and every model input is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

ImageSource = Union["PIL.Image.Image", str, Path, None]  # noqa: F821


@dataclass
class Example:
    """One example of a task, already turned into text.

    Attributes:
        id: unique within the task and split (stable across runs: used for predictions files and caches).
        input_text: what the encoder reads (after the DePT prompt).
        target_text: what the decoder should generate (training target).
        image: a PIL image, a path to an image file, or None for text-only examples; for an example with
            several images (NLVR2's pair), a tuple or list of them: the model reads image 1's visual
            tokens, then image 2's, after the text.
        image_id: a stable key for the image (stored features are looked up by it, so one id must always
            mean the same picture); None when there is no image; for several images, a tuple or list of
            ids of the same length, one per image, in the same order.
        label: the value k-shot sampling balances on (a class label), or None for generation tasks.
        references: every acceptable answer for scoring (VQA's 10 answers, a caption's references);
            empty means [target_text].
        meta: anything else a metric breakdown needs (e.g. VQA question type).
    """

    id: str
    input_text: str
    target_text: str
    image: Any = None
    image_id: str | tuple[str, ...] | list[str] | None = None
    label: str | None = None
    references: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def has_image(self) -> bool:
        return self.image is not None

    def all_references(self) -> list[str]:
        return list(self.references) if self.references else [self.target_text]
