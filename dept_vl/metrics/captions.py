"""Caption metrics through pycocoevalcap's own scorers, with a pure-Python PTB-style tokeniser.

pycocoevalcap's ``PTBTokenizer`` runs Stanford CoreNLP in Java; many users lack Java, so
:func:`ptb_tokenize` reproduces what matters for the scores: lowercase, PTB-style splitting of
clitics ("dog's" -> "dog 's", "don't" -> "do n't"), and removal of the tokens that
pycocoevalcap drops after tokenising (``'' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;``,
i.e. quotes, round and curly brackets, and those punctuation marks). Known differences from the
Java tokenizer: square brackets are dropped (Java keeps them as ``-lsb-``/``-rsb-``), and a few
symbols Java splits off (``$ % &``) stay attached to their word.

BLEU-4 and CIDEr-D come from ``pycocoevalcap.bleu.bleu.Bleu`` and ``pycocoevalcap.cider.cider.Cider``.
The installed ``Cider`` class is CIDEr-D as in coco-caption: n-grams 1..4, idf from the reference
captions of the evaluated set, clipped hypothesis counts (``min(hyp, ref)``), a Gaussian length
penalty with sigma = 6, averaged over references and multiplied by 10 (so scores are around 0..10,
not x100). Because idf comes from the evaluated set, CIDEr needs more than one image to be non-zero.
METEOR (bundled jar) runs when ``java`` is on PATH; SPICE only when asked and its CoreNLP jar is
already present (pycocoevalcap would otherwise download it).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
from collections.abc import Hashable, Mapping, Sequence

_CLITIC = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_DROP_CHARS = re.compile(r"[()\[\]{}\"?!;]")
_COMMA_COLON = re.compile(r"(?<!\d)[,:]|[,:](?!\d)")  # keep "1,000" and "10:30"
_DASHES = re.compile(r"(?:^|(?<=\s))-+(?=\s|$)|--+|\.\.\.+")
_EDGE = ".'`-"


def ptb_tokenize(text: str) -> str:
    """Lowercase and tokenise a caption like pycocoevalcap's PTB tokenizer + punctuation removal.

    Returns the tokens joined by single spaces (the form pycocoevalcap's scorers expect).
    """
    text = text.lower().replace("``", " ").replace("''", " ")
    text = _DROP_CHARS.sub(" ", text)
    text = _COMMA_COLON.sub(" ", text)
    text = _DASHES.sub(" ", text)
    tokens: list[str] = []
    for raw in text.split():
        word = raw.strip(_EDGE)  # trailing periods, quotes, stray hyphens
        if not word:
            continue
        match = _CLITIC.match(word)
        if match:
            tokens.extend(match.groups())
        else:
            tokens.append(word)
    return " ".join(tokens)


def _java_available() -> bool:
    return shutil.which("java") is not None


def _spice_models_present() -> bool:
    try:
        from pycocoevalcap.spice import get_stanford_models as gsm
    except ImportError:  # pragma: no cover - depends on the pycocoevalcap build
        return False
    return os.path.exists(os.path.join(gsm.SPICEDIR, gsm.SPICELIB, f"{gsm.JAR}.jar"))


def caption_scores(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    meteor: bool | None = None,
    spice: bool = False,
) -> dict[str, float]:
    """Corpus-level caption metrics.

    Args:
        predictions: one generated caption per image id.
        references: the reference captions per image id (same ids as ``predictions``).
        meteor: add ``meteor``; ``None`` means "when ``java`` is on PATH".
        spice: add ``spice`` (needs ``java`` and SPICE's CoreNLP jar already downloaded).

    Returns:
        ``bleu1`` .. ``bleu4`` (0..1) and ``cider`` (CIDEr-D, pycocoevalcap's scale), plus
        ``meteor``/``spice`` when computed.

    Raises:
        ValueError: when the id sets differ, a reference list is empty, or nothing is given.
    """
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
    except ImportError as err:
        raise ImportError("caption metrics need pycocoevalcap: pip install pycocoevalcap "
                          "(a regular dependency of dept-vl)") from err

    if set(predictions) != set(references):
        missing = sorted(map(str, set(references) - set(predictions)))[:5]
        extra = sorted(map(str, set(predictions) - set(references)))[:5]
        raise ValueError(f"predictions and references must have the same ids; "
                         f"missing predictions for {missing}, no references for {extra}")
    if not predictions:
        raise ValueError("caption_scores needs at least one prediction")
    empty = [k for k, refs in references.items() if len(refs) == 0]
    if empty:
        raise ValueError(f"image ids {empty[:5]} have no reference caption")
    ids = list(predictions)
    res = {i: [ptb_tokenize(predictions[i])] for i in ids}
    gts = {i: [ptb_tokenize(r) for r in references[i]] for i in ids}
    with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its length ratios
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    scores = {f"bleu{n + 1}": float(b) for n, b in enumerate(bleu)}
    scores["cider"] = float(cider)
    if meteor is None:
        meteor = _java_available()
    if meteor:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()  # starts a JVM; its __del__ stops it
        scores["meteor"] = float(scorer.compute_score(gts, res)[0])
        del scorer
    if spice:
        if not (_java_available() and _spice_models_present()):
            raise ValueError("spice=True needs java on PATH and SPICE's Stanford CoreNLP jar in "
                             "pycocoevalcap/spice/lib (run pycocoevalcap's get_stanford_models once)")
        from pycocoevalcap.spice.spice import Spice

        scores["spice"] = float(Spice().compute_score(gts, res)[0])
    return scores
