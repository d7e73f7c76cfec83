"""The synthetic world's tasks: how each is generated and posed (plain or shifted); their scorers are in
``tasks/shapes.py``.

Formats:
    ``plain``: the task's own input (``question: how many circles are there?``), what the demo's
        backbone is pretrained on for every task.
    ``shifted`` (the default): the same input behind a conflicting header of exactly 8 words with
        random content that asks for another task (``question: is there a red square?``,
        ``caption: describe the picture in brief.``...). Example i of ``shifted`` is the header plus
        example i of ``plain``; targets and label words are unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from dept_vl.data.example import Example
from dept_vl.data.shapes import text
from dept_vl.data.shapes.render import render
from dept_vl.data.shapes.scene import Scene, random_scene, scene_split

DEFAULT_SIZES = {"train": 4000, "dev": 500, "test": 1000}
FORMATS = ("shifted", "plain")
OPTIONS = {"num_examples", "size", "seed", "image_size", "header_types"}
# A generator returns (plain input, target, second scene or None), or None to skip the scene.
Generator = Callable[[Scene, random.Random], "tuple[str, str, Scene | None] | None"]


def _visual(fn: Callable[[Scene, random.Random], tuple[str, str] | None]) -> Generator:
    def gen(scene: Scene, rng: random.Random) -> tuple[str, str, None] | None:
        out = fn(scene, rng)
        return None if out is None else (out[0], out[1], None)
    return gen


@dataclass(frozen=True)
class ShapesSpec:
    """One synthetic task: its generator and what kind of task it is (its ``kind`` decides its scorer)."""

    name: str
    role: str  # "source" or "target"
    kind: str
    generate: Generator
    header_type: str | None  # the header type this task's own input has (excluded from its headers)
    has_images: bool
    label_words: tuple[str, ...] | None = None
    description: str = ""


def _caption(scene: Scene, rng: random.Random) -> tuple[str, str, None]:
    return text.CAPTION_INPUT, text.describe(scene), None


def _caption_short(scene: Scene, rng: random.Random) -> tuple[str, str, None]:
    return text.CAPTION_SHORT_INPUT, text.describe_short(scene), None


def _nli(scene: Scene, rng: random.Random) -> tuple[str, str, None]:
    return (*text.nli_example(scene, rng), None)


def _accept(scene: Scene, rng: random.Random) -> tuple[str, str, None]:
    return (*text.accept_example(scene, rng), None)


SPECS: dict[str, ShapesSpec] = {s.name: s for s in [
    ShapesSpec("shapes_caption", "source", "caption", _caption, "caption", True,
               description="detailed caption: size, colour, shape and cell of every object"),
    ShapesSpec("shapes_color", "source", "vqa", _visual(text.color_question), "color", True,
               description="what color is the <shape>?"),
    ShapesSpec("shapes_exist", "source", "vqa", _visual(text.exist_question), "exist", True,
               description="is there a <color> <shape>? (yes/no)"),
    ShapesSpec("shapes_nli", "source", "classification", _nli, None, False, tuple(text.NLI_WORDS),
               description="text-only NLI: caption premise, entailed or contradicted hypothesis"),
    ShapesSpec("shapes_count", "target", "vqa", _visual(text.count_question), "count", True,
               description="how many <objects/red objects/circles/large objects> are there? (0-4)"),
    ShapesSpec("shapes_spatial", "target", "vqa", _visual(text.spatial_question), "spatial", True,
               description="what is left of/right of/above/below the <color> <shape>?"),
    ShapesSpec("shapes_caption_short", "target", "caption", _caption_short, "caption_short", True,
               description="brief caption: colour and shape of every object"),
    ShapesSpec("shapes_para", "target", "classification", text.para_example, None, False,
               tuple(text.PARA_WORDS), description="MRPC-like: do two captions describe the same scene?"),
    ShapesSpec("shapes_accept", "target", "classification", _accept, None, False,
               tuple(text.ACCEPT_WORDS), description="CoLA-like: is the caption well formed?"),
    ShapesSpec("shapes_sim", "target", "regression", text.sim_example, None, False,
               description="STS-B-like: similarity 0-5 of two captions' scenes"),
]}


def source_tasks() -> list[str]:
    """Names of the synthetic source tasks (trained together in the source stage)."""
    return [n for n, s in SPECS.items() if s.role == "source"]


def target_tasks() -> list[str]:
    """Names of the synthetic target tasks (k-shot transfer)."""
    return [n for n, s in SPECS.items() if s.role == "target"]


def _seed(*parts: Any) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16], 16)


@lru_cache(maxsize=32)
def _build_plain(name: str, split: str, n: int, seed: int, image_size: int,
                 header_types: tuple[str, ...]) -> tuple[tuple[Example, str, str], ...]:
    """Plain examples with the header each would get in the shifted format. Headers come from
    their own random stream, so the plain examples do not depend on the header settings, and the
    first n examples of a larger request are the same as those of a request for n."""
    spec = SPECS[name]
    rng = random.Random(_seed(name, split, seed))
    header_rng = random.Random(_seed(name, split, seed, "header"))
    out: list[tuple[Example, str, str]] = []
    while len(out) < n:
        scene = random_scene(rng, image_size)
        if scene_split(scene) != split:
            continue
        made = spec.generate(scene, rng)
        if made is None:
            continue
        plain, target, other = made
        header, header_kind = text.make_header(header_rng, spec.header_type, header_types)
        meta: dict[str, Any] = {"scene": text.describe(scene), "format": "plain"}
        if spec.kind == "vqa":  # the group of the question, for per-type breakdowns (dept_vl.report)
            meta["question_type"] = text.question_type(plain)
        if other is not None:
            meta["scene_b"] = text.describe(other)
        example = Example(
            id=f"{name}-{split}-{len(out)}",
            input_text=plain,
            target_text=target,
            image=render(scene) if spec.has_images else None,
            image_id=f"shapes{image_size}-{scene.key}" if spec.has_images else None,
            label=target if spec.kind == "classification" else None,
            references=[target],
            meta=meta,
        )
        out.append((example, header, header_kind))
    return tuple(out)


def _shifted(example: Example, header: str, header_kind: str) -> Example:
    meta = {**example.meta, "format": "shifted", "header": header, "header_type": header_kind}
    return dataclasses.replace(example, input_text=f"{header} {example.input_text}",
                               references=list(example.references), meta=meta)


def build_examples(name: str, split: str, fmt: str = "shifted", **options: Any) -> list[Example]:
    """Generate one split of a synthetic task (deterministic; cached in memory).

    The returned examples are fresh records, but their images are shared with the cache (and
    between the two formats): treat them as read-only.

    Options:
        num_examples: how many (default train 4000, dev 500, test 1000); ``size`` is an alias.
        seed: world seed (default 0); splits always use disjoint scenes, whatever the seed.
        image_size: pixels (default 48).
        header_types: header types the shifted format draws from (default all of
            ``text.HEADER_TYPES``); the task's own type is always excluded.

    Raises:
        ValueError: unknown task, split, format or option.
    """
    if name not in SPECS:
        raise ValueError(f"unknown synthetic task {name!r}; known: {sorted(SPECS)}")
    if split not in DEFAULT_SIZES:
        raise ValueError(f"unknown split {split!r}; use one of {sorted(DEFAULT_SIZES)}")
    if fmt not in FORMATS:
        raise ValueError(f"{name}: unknown format {fmt!r}; use one of {FORMATS}")
    unknown = set(options) - OPTIONS
    if unknown:
        raise ValueError(f"{name}: unknown options {sorted(unknown)}; known: {sorted(OPTIONS)}")
    if "size" in options and options.get("num_examples", options["size"]) != options["size"]:
        raise ValueError(f"{name}: num_examples and its alias size disagree "
                         f"({options['num_examples']} vs {options['size']}); pass one")
    asked = options.get("num_examples", options.get("size"))
    n = DEFAULT_SIZES[split] if asked is None else int(asked)
    if n < 1:
        raise ValueError(f"{name}: num_examples must be at least 1, got {n}")
    types = options.get("header_types") or text.HEADER_TYPES
    types = tuple(types.split(",")) if isinstance(types, str) else tuple(types)
    bad = [t for t in types if t not in text.HEADER_TYPES]
    if bad:
        raise ValueError(f"{name}: unknown header types {bad}; choose from {text.HEADER_TYPES}")
    built = _build_plain(name, split, n, int(options.get("seed", 0)), int(options.get("image_size", 48)), types)
    if fmt == "plain":
        return [dataclasses.replace(ex, references=list(ex.references), meta=dict(ex.meta)) for ex, _, _ in built]
    return [_shifted(*item) for item in built]
