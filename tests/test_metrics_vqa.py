"""VQA accuracy: a hand-checked table against the official evaluator's rules, plus a transcription of it.

Every expected value below was worked out by hand from the official code's rules (the comment on
each row says why). ``_official_vqa_eval`` / ``_vl_t5_vqa_eval`` are transcriptions of the scoring
loops of the official evaluator and of VL-T5's, and every row is also checked against them.
"""

import re

import pytest

from dept_vl.metrics import VQA_RULES, exact_match, normalize_vqa_answer, vqa_accuracy


def mix(answer: str, n: int, other: str = "zzz") -> list[str]:
    """Ten human answers: ``n`` copies of ``answer``, the rest ``other`` (so not unanimous when 0 < n < 10)."""
    return [answer] * n + [other] * (10 - n)


def ten(answer: str) -> list[str]:
    return [answer] * 10


# One match among 10 answers: 9 leave-one-out subsets keep it -> 9 * (1/3) / 10 = 0.3;
# 2 -> (8 * 2/3 + 2 * 1/3) / 10 = 0.6; 3 -> (7 * 1 + 3 * 2/3) / 10 = 0.9; 4 or more -> 1.0.
PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
         ",", "?", "!"]
OFFICIAL_ROWS = [
    # --- leave-one-out formula, 0 to 10 matches (answers differ unless n is 10) ---
    *[("dog", mix("dog", n), v) for n, v in
      [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (5, 1.0), (9, 1.0), (10, 1.0)]],
    # --- fewer than 10 answers: mean over len(answers) subsets ---
    ("dog", ["dog"], 0.0),                      # the only subset is empty: 0 matches
    ("dog", ["dog", "cat"], 1 / 6),             # leave dog: 0; leave cat: 1/3 -> (0 + 1/3) / 2
    ("dog", ["dog"] * 3, 2 / 3),                # unanimous: each subset has 2 matches -> 2/3
    ("dog", ["dog"] * 4, 1.0),                  # each subset keeps 3 matches
    ("dog", ["dog", "dog", "cat", "cat", "cat"], 8 / 15),  # (2 * 1/3 + 3 * 2/3) / 5
    ("cat", ["dog"] * 3, 0.0),                  # no match
    # --- numbers as words (only when answers differ) ---
    ("two", mix("2", 3), 0.9),                  # "two" -> "2"
    ("2", mix("two", 3), 0.9),                  # the answers are normalised too
    ("Two", mix("2", 3), 0.9),                  # lowercased before the number map
    ("ten", mix("10", 3), 0.9),                 # the map stops at ten
    ("eleven", mix("11", 3), 0.0),              # ... so "eleven" stays a word
    ("none", mix("0", 3), 0.9),                 # "none" -> "0"
    ("zero", mix("0", 3), 0.9),                 # "zero" -> "0"
    ("two dogs", mix("2 dogs", 3), 0.9),        # word by word
    # --- articles a/an/the dropped, whole words only ---
    ("a dog", mix("dog", 3), 0.9),
    ("the red car", mix("red car", 3), 0.9),
    ("an apple", mix("apple", 3), 0.9),
    ("dog the", mix("dog", 3), 0.9),            # anywhere in the answer
    ("another dog", mix("dog", 3), 0.0),        # "another" is not an article
    # --- punctuation: every character of the official list ---
    # inside a word (no space next to it) it becomes a space: "x;y" -> "x y"
    *[(f"x{p}y", mix("x y", 3), 0.9) for p in PUNCT],
    # when the same character also touches a space somewhere, it is deleted everywhere: "xy" (then split)
    *[(f"x{p}y {p}", mix("xy", 3), 0.9) for p in PUNCT],
    ("x:y", mix("x y", 3), 0.0),                # ":" is not in the list: kept
    ("x'y", mix("x'y", 3), 0.9),                # nor "'"
    ("x*y&z", mix("x*y&z", 3), 0.9),            # nor "*" or "&"
    ("ice-cream", mix("icecream", 3), 0.0),     # inside a word: a space, not deleted
    ("ice-cream -", mix("icecream", 3), 0.9),   # " -" occurs: every "-" deleted
    ("yes!", mix("yes", 3), 0.9),               # "yes " after the replacement, then split
    # --- digit commas: one "1,000" anywhere deletes all punctuation of the text ---
    ("1,000", mix("1000", 3), 0.9),
    ("1,000", mix("1 000", 3), 0.0),
    ("1,000-2,000", mix("10002000", 3), 0.9),   # the "-" is deleted too, not spaced
    ("red,blue", mix("red blue", 3), 0.9),      # no digit comma: "," inside a word -> space
    # --- periods: deleted unless a digit follows; at most 32 per answer ---
    ("dog.", mix("dog", 3), 0.9),
    ("3.5", mix("3.5", 3), 0.9),                # kept before a digit
    ("35", mix("3.5", 3), 0.0),
    (".5", mix("5", 3), 0.0),                   # ".5" keeps its period
    ("5.", mix("5", 3), 0.9),
    ("3.5.", mix("3.5", 3), 0.9),               # only the last period goes
    ("u.s.", mix("us", 3), 0.9),
    ("x" + "." * 32, mix("x", 3), 0.9),         # 32 periods all go ...
    ("x" + "." * 33, mix("x", 3), 0.0),         # ... the 33rd stays: re.UNICODE (32) is sub()'s count
    # --- contractions (after lowercasing, so the "Im"/"Ive" keys never match) ---
    ("dont", mix("don't", 3), 0.9),
    ("don't", mix("dont", 3), 0.9),
    ("whats", mix("what's", 3), 0.9),
    ("Im", mix("I'm", 3), 0.0),                 # "im" vs "i'm": "Im" is not reachable
    ("somebody'd", mix("somebodyd", 3), 0.9),   # the table maps "somebody'd" -> "somebodyd"
    ("isnt", mix("is not", 3), 0.0),
    # --- whitespace: newline/tab -> space, strip, before the unanimity test ---
    ("  yes\n", mix("yes", 3), 0.9),
    ("yes\tplease", mix("yes please", 3), 0.9),
    ("yes   please", mix("yes please", 3), 0.9),  # split/join when normalised
    ("yes\n", ten("yes"), 1.0),                 # stripped even when unanimous
    ("yes  please", ten("yes please"), 0.0),    # unanimous: no split/join
    ("yes", ten("yes "), 1.0),                  # answers stripped too
    ("Yes", ["yes", "yes "] * 5, 0.0),          # unanimous after stripping: compared raw
    # --- unanimous answers: no normalisation at all, case-sensitive ---
    ("Red", ten("red"), 0.0),
    ("red", ten("red"), 1.0),
    ("Yes", ten("yes"), 0.0),
    ("YES", ten("yes"), 0.0),
    ("yes", ten("Yes"), 0.0),
    ("no", ten("No"), 0.0),
    ("two", ten("2"), 0.0),
    ("yes.", ten("yes"), 0.0),
    ("a dog", ten("dog"), 0.0),
    ("Red", mix("red", 9, "blue"), 1.0),        # not unanimous: lowercased, 9 matches
    ("two", mix("2", 9, "3"), 1.0),
]

VL_T5_ROWS = [
    ("two", ten("2"), 1.0),                     # the prediction is always normalised
    ("Red", ten("red"), 1.0),                   # ... and lowercased
    ("red", ten("Red"), 0.0),                   # the answers are not
    ("2", mix("two", 3), 0.0),                  # differing answers only get processPunctuation
    ("dog!", mix("dog", 3), 0.9),
    ("a dog", mix("a dog", 3), 0.0),            # the answers keep their article
    ("yes", ten("yes\n"), 0.0),                 # the answers are not stripped
    ("1,000", mix("1,000", 3), 0.9),            # both sides lose the digit comma -> "1000"
    ("1,000", ten("1,000"), 0.0),               # prediction "1000", unanimous answers kept raw
    ("yes", mix("yes", 3), 0.9),
]
CASELESS_ROWS = [
    ("Red", ten("red"), 1.0),                   # the old default: lowercased comparison
    ("two", ten("2"), 0.0),                     # still no normalisation when unanimous
    ("Two", mix("2", 3), 0.9),
]


@pytest.mark.parametrize("prediction, answers, expected", OFFICIAL_ROWS)
def test_official_table(prediction, answers, expected):
    assert _official_vqa_eval(prediction, answers) == pytest.approx(expected)  # the table is right
    assert vqa_accuracy(prediction, answers) == pytest.approx(expected)
    assert vqa_accuracy(prediction, answers, rules="official") == pytest.approx(expected)


@pytest.mark.parametrize("prediction, answers, expected", VL_T5_ROWS)
def test_vl_t5_table(prediction, answers, expected):
    assert _vl_t5_vqa_eval(prediction, answers) == pytest.approx(expected)
    assert vqa_accuracy(prediction, answers, rules="vl-t5") == pytest.approx(expected)


@pytest.mark.parametrize("prediction, answers, expected", CASELESS_ROWS)
def test_caseless_rules(prediction, answers, expected):
    assert vqa_accuracy(prediction, answers, rules="caseless") == pytest.approx(expected)


def test_table_is_large_enough():
    assert len(OFFICIAL_ROWS) >= 60 and set(VQA_RULES) == {"official", "vl-t5", "caseless"}


def test_bad_rules_and_empty_answers_raise():
    with pytest.raises(ValueError, match=r"rules='vqa2'.*'official', 'vl-t5', 'caseless'"):
        vqa_accuracy("yes", ["yes"], rules="vqa2")
    with pytest.raises(ValueError, match="at least one"):
        vqa_accuracy("yes", [])


def test_normalize_and_exact_match():
    assert normalize_vqa_answer("The Two dogs!") == "2 dogs"
    assert exact_match("Two.", "2") == 1.0
    assert exact_match("a red circle", "red circle") == 1.0
    assert exact_match("red square", "red circle") == 0.0


# ---------------------------------------------------------------------------------------------
# Transcription of the official evaluator: GT-Vision-Lab/VQA,
# PythonEvaluationTools/vqaEvaluation/vqaEval.py (commit a013f00), VQAEval.__init__ tables,
# processPunctuation, processDigitArticle and the per-question loop of evaluate(), with one
# question whose answers carry distinct answer_ids as in VQA v2. Python 2 -> 3 syntax only.
# ---------------------------------------------------------------------------------------------
OFFICIAL_CONTRACTIONS = {
    'aint': "ain't", 'arent': "aren't", 'cant': "can't", 'couldve': "could've", 'couldnt':
    "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've", 'didnt': "didn't",
    'doesnt': "doesn't", 'dont': "don't", 'hadnt': "hadn't", "hadnt've": "hadn't've", "hadn'tve":
    "hadn't've", 'hasnt': "hasn't", 'havent': "haven't", 'hed': "he'd", "hed've": "he'd've",
    "he'dve": "he'd've", 'hes': "he's", 'howd': "how'd", 'howll': "how'll", 'hows': "how's",
    "Id've": "I'd've", "I'dve": "I'd've", 'Im': "I'm", 'Ive': "I've", 'isnt': "isn't", 'itd':
    "it'd", "itd've": "it'd've", "it'dve": "it'd've", 'itll': "it'll", "let's": "let's", 'maam':
    "ma'am", 'mightnt': "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    'mightve': "might've", 'mustnt': "mustn't", 'mustve': "must've", 'neednt': "needn't", 'notve':
    "not've", 'oclock': "o'clock", 'oughtnt': "oughtn't", "ow's'at": "'ow's'at", "'ows'at":
    "'ow's'at", "'ow'sat": "'ow's'at", 'shant': "shan't", "shed've": "she'd've", "she'dve":
    "she'd've", "she's": "she's", 'shouldve': "should've", 'shouldnt': "shouldn't", "shouldnt've":
    "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": 'somebodyd', "somebodyd've":
    "somebody'd've", "somebody'dve": "somebody'd've", 'somebodyll': "somebody'll", 'somebodys':
    "somebody's", 'someoned': "someone'd", "someoned've": "someone'd've", "someone'dve":
    "someone'd've", 'someonell': "someone'll", 'someones': "someone's", 'somethingd': "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", 'somethingll':
    "something'll", 'thats': "that's", 'thered': "there'd", "thered've": "there'd've", "there'dve":
    "there'd've", 'therere': "there're", 'theres': "there's", 'theyd': "they'd", "theyd've":
    "they'd've", "they'dve": "they'd've", 'theyll': "they'll", 'theyre': "they're", 'theyve':
    "they've", 'twas': "'twas", 'wasnt': "wasn't", "wed've": "we'd've", "we'dve": "we'd've", 'weve':
    "we've", 'werent': "weren't", 'whatll': "what'll", 'whatre': "what're", 'whats': "what's",
    'whatve': "what've", 'whens': "when's", 'whered': "where'd", 'wheres': "where's", 'whereve':
    "where've", 'whod': "who'd", "whod've": "who'd've", "who'dve": "who'd've", 'wholl': "who'll",
    'whos': "who's", 'whove': "who've", 'whyll': "why'll", 'whyre': "why're", 'whys': "why's",
    'wont': "won't", 'wouldve': "would've", 'wouldnt': "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", 'yall': "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", 'youd':
    "you'd", "youd've": "you'd've", "you'dve": "you'd've", 'youll': "you'll", 'youre': "you're",
    'youve': "you've",
}
OFFICIAL_MANUAL_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                       "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
OFFICIAL_ARTICLES = ["a", "an", "the"]
OFFICIAL_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
OFFICIAL_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")


def _process_punctuation(inText):
    outText = inText
    for p in PUNCT:
        if (p + " " in inText or " " + p in inText) or (re.search(OFFICIAL_COMMA_STRIP, inText) != None):  # noqa: E711
            outText = outText.replace(p, "")
        else:
            outText = outText.replace(p, " ")
    outText = OFFICIAL_PERIOD_STRIP.sub("", outText, re.UNICODE)  # sic: re.UNICODE is the count
    return outText


def _process_digit_article(inText):
    outText = []
    tempText = inText.lower().split()
    for word in tempText:
        word = dict(OFFICIAL_MANUAL_MAP).setdefault(word, word)
        if word not in OFFICIAL_ARTICLES:
            outText.append(word)
    for wordId, word in enumerate(outText):
        if word in OFFICIAL_CONTRACTIONS:
            outText[wordId] = OFFICIAL_CONTRACTIONS[word]
    return " ".join(outText)


def _official_vqa_eval(resAns, answers):
    gts = {"answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(answers)]}
    for ansDic in gts["answers"]:
        ansDic["answer"] = ansDic["answer"].replace("\n", " ")
        ansDic["answer"] = ansDic["answer"].replace("\t", " ")
        ansDic["answer"] = ansDic["answer"].strip()
    resAns = resAns.replace("\n", " ")
    resAns = resAns.replace("\t", " ")
    resAns = resAns.strip()
    gtAcc = []
    gtAnswers = [ans["answer"] for ans in gts["answers"]]
    if len(set(gtAnswers)) > 1:
        for ansDic in gts["answers"]:
            ansDic["answer"] = _process_punctuation(ansDic["answer"])
            ansDic["answer"] = _process_digit_article(ansDic["answer"])
        resAns = _process_punctuation(resAns)
        resAns = _process_digit_article(resAns)
    for gtAnsDatum in gts["answers"]:
        otherGTAns = [item for item in gts["answers"] if item != gtAnsDatum]
        matchingAns = [item for item in otherGTAns if item["answer"] == resAns]
        acc = min(1, float(len(matchingAns)) / 3)
        gtAcc.append(acc)
    return float(sum(gtAcc)) / len(gtAcc)


# Transcription of VL-T5's evaluator: j-min/VL-T5, VL-T5/src/vqa_data.py, VQAEvaluator.evaluate_raw
# (same tables and helpers as the official code; copied unchanged by ylsung/VL_adapter).
def _vl_t5_vqa_eval(resAns, answers):
    gts = {"answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(answers)]}
    resAns = resAns.replace("\n", " ")
    resAns = resAns.replace("\t", " ")
    resAns = resAns.strip()
    resAns = _process_punctuation(resAns)
    resAns = _process_digit_article(resAns)
    gtAcc = []
    gtAnswers = [ans["answer"] for ans in gts["answers"]]
    if len(set(gtAnswers)) > 1:
        for ansDic in gts["answers"]:
            ansDic["answer"] = _process_punctuation(ansDic["answer"])
    for gtAnsDatum in gts["answers"]:
        otherGTAns = [item for item in gts["answers"] if item != gtAnsDatum]
        matchingAns = [item for item in otherGTAns if item["answer"] == resAns]
        acc = min(1, float(len(matchingAns)) / 3)
        gtAcc.append(acc)
    return float(sum(gtAcc)) / len(gtAcc)
