"""The closed vocabulary of the synthetic world (for a word-level tokenizer with no unknown words)."""

from __future__ import annotations

import re

from dept_vl.data.shapes import text
from dept_vl.data.shapes.scene import CELL_NAMES, COLORS, SHAPES, SIZES

_WORD = re.compile(r"\w+|[^\w\s]")

# Every fixed string the generators write (instructions, templates, field names).
_TEMPLATES = [
    text.CAPTION_INPUT, text.CAPTION_SHORT_INPUT,
    "question: what color is the ? is there a how many objects are there what is",
    "nli premise: hypothesis: there is a the number of objects is at the",
    "paraphrase sentence1: sentence2: similarity sentence1: acceptability sentence:",
    "a , and .", "yes no",
    *text.RELATIONS, *text.NLI_WORDS, *text.PARA_WORDS, *text.ACCEPT_WORDS,
]


def split_words(text_: str) -> list[str]:
    """Lowercase words with punctuation split off: ``"left, ok?"`` -> ``["left", ",", "ok", "?"]``."""
    return _WORD.findall(text_.lower())


def vocabulary() -> list[str]:
    """Every word any synthetic task can emit in inputs or targets, in any format, sorted."""
    words: set[str] = set()
    for t in _TEMPLATES:
        words.update(split_words(t))
    words.update(COLORS)
    words.update(SIZES)
    words.update(SHAPES)
    words.update(text.plural(s) for s in SHAPES)
    for name in CELL_NAMES.values():
        words.update(split_words(name))
    words.update(str(d) for d in range(10))
    return sorted(words)
