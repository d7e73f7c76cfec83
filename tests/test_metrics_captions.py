"""Caption metrics: tokenizer choice, and BLEU/CIDEr-D against pycocoevalcap's own pipeline called directly."""

import shutil
import warnings

import pytest

from dept_vl.metrics import caption_scores, caption_tokenizer_name, ptb_tokenize
from dept_vl.metrics import captions as captions_module

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs java")


@pytest.mark.parametrize("raw, tokens", [
    ("A man riding a horse.", "a man riding a horse"),
    ("Two dogs, playing in the snow!", "two dogs playing in the snow"),
    ("Is it a cat? Yes: a cat; black.", "is it a cat yes a cat black"),
    ("The dog's toy", "the dog 's toy"),                # clitics split, "'s" kept (not in the list)
    ("They don't know", "they do n't know"),
    ("A \"big\" cat (black) {x}", "a big cat -lrb- black -rrb- -lcb- x -rcb-"),  # brackets kept, as Java
    ("``quoted'' text", "quoted text"),
    ("Wait... what -- now - ok", "wait what now ok"),   # ... -- - removed
    ("a black-and-white photo of 3.5 pies", "a black-and-white photo of 3.5 pies"),
    ("1,000 people at 10:30", "1,000 people at 10:30"),
    ("the dogs' bowls", "the dogs bowls"),
])
def test_ptb_tokenize(raw, tokens):
    assert ptb_tokenize(raw) == tokens


PREDS = {1: "A man riding a horse.", 2: "Two dogs play in the snow!", 3: "a red bus"}
REFS = {
    1: ["A man rides a horse.", "A person riding a brown horse"],
    2: ["Two dogs playing in the snow.", "Dogs play in snow"],
    3: ["A red bus on the street.", "A double-decker bus, red."],
}


def test_scores_match_pycocoevalcap_on_pretokenised_input():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    # Tokenised by hand, the way the Java PTB tokenizer + punctuation removal would.
    res = {1: ["a man riding a horse"], 2: ["two dogs play in the snow"], 3: ["a red bus"]}
    gts = {1: ["a man rides a horse", "a person riding a brown horse"],
           2: ["two dogs playing in the snow", "dogs play in snow"],
           3: ["a red bus on the street", "a double-decker bus red"]}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    ours = caption_scores(PREDS, REFS, meteor=False, tokenizer="python")
    assert ours["bleu4"] == pytest.approx(bleu[3])
    assert ours["bleu1"] == pytest.approx(bleu[0])
    assert ours["cider"] == pytest.approx(cider)
    assert set(ours) == {"bleu1", "bleu2", "bleu3", "bleu4", "cider"}


def test_cider_is_on_pycocoevalcap_scale_not_x100():
    caps = {i: c for i, c in enumerate(["a red circle at the top", "two blue squares side by side",
                                        "one green triangle below a star"])}
    scores = caption_scores(caps, {i: [c] for i, c in caps.items()}, meteor=False)
    assert scores["cider"] == pytest.approx(10.0)  # perfect CIDEr-D: 10, not 100 or 1
    assert scores["bleu4"] == pytest.approx(1.0, abs=1e-6)
    wrong = caption_scores({i: "nothing here" for i in caps}, {i: [c] for i, c in caps.items()},
                           meteor=False)
    assert wrong["cider"] == pytest.approx(0.0)


def test_mismatched_ids_raise():
    with pytest.raises(ValueError, match="same ids"):
        caption_scores({1: "a"}, {2: ["a"]}, meteor=False)
    with pytest.raises(ValueError, match="no reference"):
        caption_scores({1: "a"}, {1: []}, meteor=False)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs java")
def test_meteor_when_java_is_present():
    scores = caption_scores(PREDS, REFS, meteor=True)
    assert 0.0 < scores["meteor"] <= 1.0


# Captions with the tokens where a naive tokenizer and the Java one disagree.
HARD_PREDS = {1: "A man (in red) sells $5 hot-dogs at 5 p.m.", 2: "I cannot see the U.S. flag—it’s gone…",
              3: "A 5'10\" man in the '90s, rock 'n' roll", 4: "salt&pepper on a [plate], 50% off, #1 e.g. etc."}
HARD_REFS = {1: ["A man in red selling hot dogs for $5.", "Mr. Smith sells food (hot dogs) at 5 p.m."],
             2: ["The U.S. flag is gone.", "“I can not see it” said St. John"],
             3: ["A tall man listens to '90s rock 'n' roll", "a 5'10\" guy gonna dance"],
             4: ["A plate with salt & pepper {spices}", "50% off the #1 dish, etc."]}


@needs_java
def test_java_scores_equal_pycocoevalcap_pipeline():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()  # COCOEvalCap.evaluate: tokenize gts, then res, then score
    gts = tok.tokenize({i: [{"caption": c} for c in HARD_REFS[i]] for i in HARD_PREDS})
    res = tok.tokenize({i: [{"caption": HARD_PREDS[i]}] for i in HARD_PREDS})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    ours = caption_scores(HARD_PREDS, HARD_REFS, meteor=False, tokenizer="java")
    assert [ours[f"bleu{n}"] for n in range(1, 5)] == bleu
    assert ours["cider"] == cider
    # The Python port gives the same numbers on these captions.
    assert caption_scores(HARD_PREDS, HARD_REFS, meteor=False, tokenizer="python") == ours


def test_tokenizer_name_and_choice(monkeypatch):
    assert caption_tokenizer_name("python") == "ptb-python"
    expected = "ptb-java" if shutil.which("java") else "ptb-python"
    assert caption_tokenizer_name() == expected
    with pytest.raises(ValueError, match="tokenizer='jvm' is not one of 'auto', 'java', 'python'"):
        caption_scores(PREDS, REFS, meteor=False, tokenizer="jvm")
    monkeypatch.setattr(captions_module, "_java_available", lambda: False)
    assert caption_tokenizer_name() == "ptb-python"
    with pytest.raises(RuntimeError, match="tokenizer='java' needs java"):
        caption_scores(PREDS, REFS, meteor=False, tokenizer="java")


def test_python_fallback_warns_once(monkeypatch):
    monkeypatch.setattr(captions_module, "_java_available", lambda: False)
    monkeypatch.setattr(captions_module, "_warned_fallback", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = caption_scores(PREDS, REFS)
        caption_scores(PREDS, REFS)
        caption_scores(PREDS, REFS, tokenizer="python")  # asked for explicitly: no warning
    messages = [str(w.message) for w in caught if "ptb-python" in str(w.message)]
    assert len(messages) == 1 and "dept_vl.metrics.ptb" in messages[0]
    assert all(isinstance(v, float) for v in first.values()) and "meteor" not in first
