"""A word-level tokenizer that needs no download (the tiny presets' tokenizer)."""

from __future__ import annotations

from typing import Any, Iterable

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, UNK)  # ids 0, 1, 2, as in T5
# Runs of word characters and single punctuation marks, as dept_vl.data.shapes.split_words splits text.
SPLIT_PATTERN = r"\w+|[^\w\s]"


def _pre_tokenizer() -> Any:
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated")]
    )


def word_level_tokenizer(words: Iterable[str]) -> Any:
    """A lower-casing word-level ``PreTrainedTokenizerFast``: pad 0, eos 1, unk 2, then ``words`` in order.

    Every encoding ends with ``</s>`` (like T5); unknown words map to ``<unk>``. Text is lower-cased
    and split into runs of word characters and single punctuation marks (``"left, ok?"`` -> ``left , ok
    ?``); vocabulary words are split the same way, so any text made of them encodes without ``<unk>``.
    Decoding joins tokens with spaces and removes the space before ``. , ? !``.

    Args:
        words: the vocabulary (duplicates and special tokens are ignored).

    Returns:
        A tokenizer that saves with ``save_pretrained`` and loads back with ``AutoTokenizer``.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, processors
    from transformers import PreTrainedTokenizerFast

    pre = _pre_tokenizer()
    vocab: dict[str, int] = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in words:
        if not isinstance(word, str):
            raise TypeError(f"vocabulary words must be strings, got {word!r} ({type(word).__name__})")
        for piece, _ in pre.pre_tokenize_str(word.lower()):
            vocab.setdefault(piece, len(vocab))
    if len(vocab) == len(SPECIAL_TOKENS):
        raise ValueError("the vocabulary is empty; pass at least one word")
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, vocab[EOS])]
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD, eos_token=EOS, unk_token=UNK, model_max_length=4096
    )


def tokenizer_vocabulary(tokenizer: Any) -> list[str]:
    """The words of a tokenizer made by :func:`word_level_tokenizer` (without special tokens), in id order."""
    vocab = tokenizer.get_vocab()
    return [word for word, _ in sorted(vocab.items(), key=lambda item: item[1]) if word not in SPECIAL_TOKENS]
