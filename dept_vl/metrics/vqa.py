"""VQA accuracy: the official VQA v2 evaluator by default, VL-T5's variant on request.

Sources (both read for this port):

- ``"official"``: GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py,
  ``VQAEval.evaluate``. Answers and prediction lose newlines/tabs (to spaces) and outer whitespace;
  only when the human answers are not all identical are they and the prediction normalised
  (``processPunctuation`` then ``processDigitArticle``); the comparison is exact (so with unanimous
  answers it is case-sensitive). Score: the mean over the leave-one-out subsets of the answers of
  ``min(1, matches / 3)``.
- ``"vl-t5"``: j-min/VL-T5, VL-T5/src/vqa_data.py, ``VQAEvaluator.evaluate_raw`` (copied unchanged
  by ylsung/VL_adapter, VL-T5/src/vqa_data.py): the prediction is always cleaned and normalised
  (punctuation, digits, articles); the answers are not cleaned, and only get ``processPunctuation``
  when they are not all identical; exact comparison.
- ``"caseless"``: this package's rule before ``rules=`` existed: the official logic with a
  lowercased final comparison.

Like the official code under Python 2, ``\\d`` in the period and comma patterns means ASCII digits,
and ``periodStrip.sub`` removes at most 32 periods (the official code passes ``re.UNICODE``, 32, as
``sub``'s count).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

VQA_RULES = ("official", "vl-t5", "caseless")
# Data tables as in the official evaluator (identical in VL-T5's copy).
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've",
    "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've",
    "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
    "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd", "thered've": "there'd've",
    "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
    "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've",
    "youll": "you'll", "youre": "you're", "youve": "you've",
}
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
          ",", "?", "!"]
# The official pattern (its "(?!<=\d)" is a lookahead, so: a period not followed by a digit).
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)", re.ASCII)
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)", re.ASCII)
# The official code passes re.UNICODE (32) as sub()'s *count* argument: at most 32 periods go.
_OFFICIAL_PERIOD_COUNT = 32


def _process_punctuation(text: str) -> str:
    out = text
    has_digit_comma = _COMMA_STRIP.search(text) is not None
    for p in _PUNCT:
        # Punctuation next to a space (or any "1,000"-style comma in the text) is deleted;
        # punctuation inside a word becomes a space ("black/white" -> "black white").
        if (p + " " in text or " " + p in text) or has_digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_OFFICIAL_PERIOD_COUNT)


def _process_digit_article(text: str) -> str:
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in _ARTICLES]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words)


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_vqa_answer(text: str) -> str:
    """The official normalisation of one answer (punctuation, then digits/articles/contractions)."""
    return _process_digit_article(_process_punctuation(_clean(text)))


def vqa_accuracy(prediction: str, answers: Sequence[str], *, rules: str = "official") -> float:
    """VQA accuracy of one prediction against the human answers of one question, in 0..1.

    The mean over the leave-one-out subsets of ``answers`` (each answer left out once, as the
    official code does with its distinct answer records) of ``min(1, matches / 3)``.

    Args:
        prediction: the generated answer.
        answers: the human answers (10 in VQA v2; any number >= 1).
        rules: ``"official"`` (vqaEval.py), ``"vl-t5"`` (VL-T5 / VL-Adapter's evaluator) or
            ``"caseless"`` (official with a case-insensitive comparison); see the module docstring.

    Raises:
        ValueError: when ``answers`` is empty or ``rules`` is unknown.
    """
    if rules not in VQA_RULES:
        raise ValueError(f"rules={rules!r} is not one of {', '.join(map(repr, VQA_RULES))}")
    if not answers:
        raise ValueError("vqa_accuracy needs at least one human answer; got an empty list")
    pred = _clean(prediction)
    if rules == "vl-t5":
        pred = _process_digit_article(_process_punctuation(pred))
        gts = list(answers)
        if len(set(gts)) > 1:
            gts = [_process_punctuation(a) for a in gts]
    else:
        gts = [_clean(a) for a in answers]
        if len(set(gts)) > 1:
            gts = [normalize_vqa_answer(a) for a in gts]
            pred = normalize_vqa_answer(pred)
        if rules == "caseless":
            pred, gts = pred.lower(), [g.lower() for g in gts]
    matches = [g == pred for g in gts]
    total = sum(matches)
    # Leaving out answer i removes one match when answer i itself matched.
    scores = [min(1.0, (total - int(m)) / 3.0) for m in matches]
    return sum(scores) / len(scores)


def exact_match(prediction: str, answer: str) -> float:
    """1.0 when the prediction equals the answer after the VQA normalisation, else 0.0 (GQA, shapes)."""
    return float(normalize_vqa_answer(prediction) == normalize_vqa_answer(answer))
