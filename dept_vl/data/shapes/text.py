"""The synthetic world's language: descriptions, questions, hypotheses and sentence pairs.

Every generator returns the plain-format input and its answer; answers are computed from the
scene, so they are right by construction (tests re-derive them from ``describe(scene)``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from dept_vl.data.shapes.scene import (
    CELL_NAMES, COLORS, SHAPES, SIZES, Scene, ShapeObject, distance, edit_scene,
)

CAPTION_INPUT = "caption: describe the picture in detail."
CAPTION_SHORT_INPUT = "caption: describe the picture in brief."
RELATIONS: dict[str, Callable[[ShapeObject, ShapeObject], bool]] = {
    # "x is <relation> y": strictly further left/right/up/down, whatever the other coordinate.
    "left of": lambda x, y: x.col < y.col,
    "right of": lambda x, y: x.col > y.col,
    "above": lambda x, y: x.row < y.row,
    "below": lambda x, y: x.row > y.row,
}
NLI_WORDS = ["entailment", "contradiction"]
PARA_WORDS = ["not_equivalent", "equivalent"]
ACCEPT_WORDS = ["unacceptable", "acceptable"]
HEADER_TYPES = ("color", "exist", "count", "spatial", "caption", "caption_short")
HEADER_LENGTH = 8  # words, punctuation included: every header template has exactly this many


def plural(shape: str) -> str:
    return shape + "s"


def object_phrase(o: ShapeObject) -> str:
    """``"a large red circle at the top left"``."""
    return f"a {o.size} {o.color} {o.shape} at the {CELL_NAMES[o.cell]}"


def join_phrases(phrases: list[str]) -> str:
    """``"p1."``, ``"p1 and p2."``, ``"p1, p2 and p3."``."""
    if len(phrases) == 1:
        return phrases[0] + "."
    return ", ".join(phrases[:-1]) + " and " + phrases[-1] + "."


def describe(scene: Scene, order: list[int] | None = None) -> str:
    """The detailed caption: every object with size, colour, shape and cell, in reading order
    (or in ``order``, a permutation of object indices)."""
    objects = [scene.objects[i] for i in order] if order is not None else list(scene.objects)
    return join_phrases([object_phrase(o) for o in objects])


def describe_short(scene: Scene) -> str:
    """The brief caption: colour and shape only, in reading order (``"a red circle and a blue square."``)."""
    return join_phrases([f"a {o.color} {o.shape}" for o in scene.objects])


def question(text: str) -> str:
    return f"question: {text}?"


def _shuffled_order(scene: Scene, rng: random.Random) -> list[int]:
    order = list(range(len(scene.objects)))
    rng.shuffle(order)
    return order


# ------------------------------------------------------------------ visual questions
def color_question(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    """``what color is the [size] <shape>?`` about an object the words identify uniquely."""
    options = []
    for o in scene.objects:
        same_shape = [p for p in scene.objects if p.shape == o.shape]
        if len(same_shape) == 1:
            options.append((o.shape, o.color))
        elif sum(p.size == o.size for p in same_shape) == 1:
            options.append((f"{o.size} {o.shape}", o.color))
    if not options:
        return None
    ref, answer = rng.choice(options)
    return question(f"what color is the {ref}"), answer


def exist_question(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """``is there a <color> <shape>?``: yes half of the time; no-answers prefer near misses."""
    if rng.random() < 0.5:
        o = rng.choice(scene.objects)
        return question(f"is there a {o.color} {o.shape}"), "yes"
    absent = [(c, s) for c in COLORS for s in SHAPES if scene.find(c, s) is None]
    near = [(c, s) for c, s in absent if any(o.color == c or o.shape == s for o in scene.objects)]
    color, shape = rng.choice(near or absent)
    return question(f"is there a {color} {shape}"), "no"


def count_question(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """``how many <objects|red objects|circles|large objects> are there?``; the answer (a digit)
    is drawn first, uniformly over what this scene can ask, to flatten the answer distribution."""
    candidates: dict[str, list[str]] = {}

    def add(subject: str, n: int) -> None:
        candidates.setdefault(str(n), []).append(question(f"how many {subject} are there"))

    add("objects", len(scene.objects))
    for c in COLORS:
        add(f"{c} objects", sum(o.color == c for o in scene.objects))
    for s in SHAPES:
        add(plural(s), sum(o.shape == s for o in scene.objects))
    for z in SIZES:
        add(f"{z} objects", sum(o.size == z for o in scene.objects))
    answer = rng.choice(sorted(candidates))
    return rng.choice(candidates[answer]), answer


def spatial_question(scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    """``what is <left of|right of|above|below> the <color> <shape>?`` when exactly one object
    is in that direction; the answer is its ``<color> <shape>``."""
    options = []
    for ref in scene.objects:
        for rel, holds in RELATIONS.items():
            hits = [o for o in scene.objects if o is not ref and holds(o, ref)]
            if len(hits) == 1:
                options.append((question(f"what is {rel} the {ref.name}"), hits[0].name))
    return rng.choice(options) if options else None


def question_type(question_text: str) -> str:
    """The group of a visual question, for per-type breakdowns: ``how many: <all|colour|size|shape>`` (what
    ``how many ... are there?`` counts), ``what is <left of|right of|above|below>``, else its first two words
    (``what color``, ``is there``, as VQA v2's question types)."""
    text = question_text.removeprefix("question:").strip().rstrip("?").strip()
    count = re.match(r"how many (.+) are there$", text)
    if count:
        words = count[1].split()
        if words == ["objects"]:
            return "how many: all"
        if words[-1] == "objects" and words[0] in COLORS:
            return "how many: colour"
        if words[-1] == "objects" and words[0] in SIZES:
            return "how many: size"
        return "how many: shape"
    spatial = re.match(r"what is (left of|right of|above|below) the ", text)
    if spatial:
        return f"what is {spatial[1]}"
    return " ".join(text.split()[:2])


# ------------------------------------------------------------------ text-only tasks
def nli_example(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """Premise: the detailed caption. Hypothesis: about existence, a cell, a relation or the
    number of objects; the caption lists everything, so each hypothesis is entailed or contradicted."""
    entailed = rng.random() < 0.5
    objects = scene.objects
    kinds = ["exist", "cell", "count"] + (["relation"] if len(objects) > 1 else [])
    while True:
        kind = rng.choice(kinds)
        if kind == "exist":
            pool = ([(o.color, o.shape) for o in objects] if entailed else
                    [(c, s) for c in COLORS for s in SHAPES if scene.find(c, s) is None])
            color, shape = rng.choice(pool)
            hyp = f"there is a {color} {shape}."
        elif kind == "cell":
            o = rng.choice(objects)
            cell = o.cell if entailed else rng.choice([c for c in CELL_NAMES if c != o.cell])
            hyp = f"the {o.name} is at the {CELL_NAMES[cell]}."
        elif kind == "count":
            n = len(objects) if entailed else rng.choice([k for k in range(1, 5) if k != len(objects)])
            hyp = f"the number of objects is {n}."
        else:
            pairs = [(a, b, r) for a in objects for b in objects if a is not b for r, holds in RELATIONS.items()
                     if holds(a, b) == entailed]
            if not pairs:
                continue
            a, b, rel = rng.choice(pairs)
            hyp = f"the {a.name} is {rel} the {b.name}."
        label = NLI_WORDS[0] if entailed else NLI_WORDS[1]
        return f"nli premise: {describe(scene)} hypothesis: {hyp}", label


def para_example(scene: Scene, rng: random.Random) -> tuple[str, str, Scene]:
    """Two detailed captions, the second in shuffled object order: of the same scene
    (``equivalent``) or of a scene one edit away (``not_equivalent``)."""
    other = scene if rng.random() < 0.5 else edit_scene(scene, rng, rng.choice([1, 1, 3]))
    label = PARA_WORDS[1] if distance(scene, other) == 0 else PARA_WORDS[0]
    text = f"paraphrase sentence1: {describe(scene)} sentence2: {describe(other, _shuffled_order(other, rng))}"
    return text, label, other


def sim_example(scene: Scene, rng: random.Random) -> tuple[str, str, Scene]:
    """Two detailed captions (second shuffled); target ``max(0, 5 - distance)`` as a digit."""
    other = edit_scene(scene, rng, rng.randint(0, 5))
    score = max(0, 5 - distance(scene, other))
    text = f"similarity sentence1: {describe(scene)} sentence2: {describe(other, _shuffled_order(other, rng))}"
    return text, str(score), other


_PHRASE = "a ({}) ({}) ({}) at the ({})".format(
    "|".join(SIZES), "|".join(COLORS), "|".join(SHAPES), "|".join(CELL_NAMES.values()))
_SENTENCE = re.compile(rf"^{_PHRASE}(?:(?:, {_PHRASE})* and {_PHRASE})?\.$")


def is_well_formed(sentence: str) -> bool:
    """Whether a sentence follows the detailed-caption grammar."""
    return _SENTENCE.match(sentence) is not None


def _scramble(phrase_words: list[str], rng: random.Random) -> list[str]:
    words = list(phrase_words)
    how = rng.choice(["swap", "swap", "drop", "move"])
    if how == "swap":
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    elif how == "drop":
        del words[rng.randrange(len(words))]
    else:
        w = words.pop(rng.randrange(len(words)))
        words.insert(rng.randrange(len(words) + 1), w)
    return words


def accept_example(scene: Scene, rng: random.Random) -> tuple[str, str]:
    """A detailed caption (objects in shuffled order), well formed (``acceptable``) or with one
    object phrase scrambled: two words swapped, one dropped or one moved (``unacceptable``)."""
    order = _shuffled_order(scene, rng)
    phrases = [object_phrase(scene.objects[i]) for i in order]
    if rng.random() < 0.5:
        return f"acceptability sentence: {join_phrases(phrases)}", ACCEPT_WORDS[1]
    while True:
        k = rng.randrange(len(phrases))
        broken = list(phrases)
        broken[k] = " ".join(_scramble(phrases[k].split(), rng))
        sentence = join_phrases(broken)
        if not is_well_formed(sentence):
            return f"acceptability sentence: {sentence}", ACCEPT_WORDS[0]


# ------------------------------------------------------------------ the shifted format's header
def make_header(rng: random.Random, exclude: str | None = None,
                types: tuple[str, ...] = HEADER_TYPES) -> tuple[str, str]:
    """A conflicting instruction of exactly :data:`HEADER_LENGTH` words with random content,
    of a type other than ``exclude`` (the task's own). Returns (header, type)."""
    allowed = [t for t in types if t != exclude]
    if not allowed:
        raise ValueError(f"no header type left: types {types} minus the task's own {exclude!r}")
    kind = rng.choice(allowed)
    shape, color = rng.choice(SHAPES), rng.choice(list(COLORS))
    header = {
        "color": lambda: question(f"what color is the {shape}"),
        "exist": lambda: question(f"is there a {color} {shape}"),
        "count": lambda: question(f"how many {plural(shape)} are there"),
        "spatial": lambda: question(f"what is {rng.choice(['above', 'below'])} the {shape}"),
        "caption": lambda: CAPTION_INPUT,
        "caption_short": lambda: CAPTION_SHORT_INPUT,
    }[kind]()
    return header, kind
