"""Caption metrics: pycocoevalcap's scorers after the official PTB tokenisation.

COCOEvalCap (pycocoevalcap/eval.py) tokenises references and predictions with ``PTBTokenizer``
(stanford-corenlp-3.4.1's ``PTBTokenizer -preserveLines -lowerCase`` in Java, then its
``PUNCTUATIONS`` dropped), and scores the result with ``Bleu(4)``, ``Cider()`` (CIDEr-D:
n-grams 1..4, idf from the evaluated references, clipped counts, Gaussian length penalty
sigma = 6, x10, so scores are around 0..10; it needs more than one image to be non-zero),
``Meteor()`` and ``Spice()``. :func:`caption_scores` does the same. With ``java`` on PATH it runs
that jar with the same command and filter (one JVM per call; see :func:`ptb_tokenize_java`);
without it, :mod:`dept_vl.metrics.ptb`, a Python port of the jar's lexer, with a one-time warning.
:func:`caption_tokenizer_name` says which one is used.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Hashable, Mapping, Sequence

from dept_vl.metrics.ptb import LINE_BREAKS, ptb_tokenize_lines

TOKENIZERS = ("auto", "java", "python")
_JAVA_CLASS = "edu.stanford.nlp.process.PTBTokenizer"
_warned_fallback = False


def ptb_tokenize(text: str) -> str:
    """One caption tokenised like pycocoevalcap (PTB tokens, lowercased, punctuation dropped), in Python.

    Returns the tokens joined by single spaces (the form pycocoevalcap's scorers expect).
    """
    return ptb_tokenize_lines([text])[0]


def _jar_path() -> str | None:
    try:
        from pycocoevalcap.tokenizer import ptbtokenizer
    except ImportError:  # pragma: no cover - pycocoevalcap is a dependency
        return None
    path = os.path.join(os.path.dirname(os.path.abspath(ptbtokenizer.__file__)),
                        ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR)
    return path if os.path.exists(path) else None


def _java_available() -> bool:
    return shutil.which("java") is not None


def _resolve(tokenizer: str) -> str:
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer={tokenizer!r} is not one of {', '.join(map(repr, TOKENIZERS))}")
    java_ok = _java_available() and _jar_path() is not None
    if tokenizer == "java" and not java_ok:
        raise RuntimeError("tokenizer='java' needs java on PATH and pycocoevalcap's "
                           "stanford-corenlp-3.4.1.jar; use tokenizer='python' or 'auto'")
    if tokenizer == "auto":
        return "java" if java_ok else "python"
    return tokenizer


def caption_tokenizer_name(tokenizer: str = "auto") -> str:
    """``"ptb-java"`` or ``"ptb-python"``: the tokenizer :func:`caption_scores` uses here.

    ``ptb-java`` is pycocoevalcap's own (stanford-corenlp-3.4.1 PTBTokenizer), so scores are the
    official ones; ``ptb-python`` is the port in :mod:`dept_vl.metrics.ptb`.
    """
    return f"ptb-{_resolve(tokenizer)}"


def ptb_tokenize_java(documents: Sequence[Sequence[str]]) -> list[list[str]]:
    """Tokenise lists of captions with pycocoevalcap's Java PTBTokenizer, in one JVM.

    Each inner list is tokenised as one ``PTBTokenizer.tokenize`` call of pycocoevalcap would
    (captions joined by newlines into one file, ``-preserveLines -lowerCase``, then its
    ``PUNCTUATIONS`` dropped). Differences from that class, for robustness only: the files go to a
    private temporary folder (not the package folder), all documents run in one JVM
    (``-ioFileList``, one tokenizer per file), other line separators (``\\r``, U+2028, ...) become
    spaces like ``\\n`` (pycocoevalcap would shift every later caption), and the line count is checked.

    Raises:
        RuntimeError: when java or the jar is missing, or the Java run fails.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

    jar = _jar_path()
    if jar is None or not _java_available():
        raise RuntimeError("the Java PTB tokenizer needs java on PATH and pycocoevalcap's jar")
    out: list[list[str]] = [[] for _ in documents]
    todo = [i for i, doc in enumerate(documents) if len(doc) > 0]
    if not todo:
        return out
    with tempfile.TemporaryDirectory(prefix="dept_vl_ptb_") as tmp:
        listing = []
        for i in todo:
            text = "\n".join(LINE_BREAKS.sub(" ", c.replace("\n", " ")) for c in documents[i])
            with open(os.path.join(tmp, f"in{i}.txt"), "w", encoding="utf-8") as f:
                f.write(text)
            listing.append(f"in{i}.txt out{i}.txt")
        with open(os.path.join(tmp, "files.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(listing) + "\n")
        cmd = ["java", "-cp", jar, _JAVA_CLASS, "-preserveLines", "-lowerCase", "-ioFileList", "files.txt"]
        run = subprocess.run(cmd, cwd=tmp, capture_output=True)
        if run.returncode != 0:
            raise RuntimeError(f"the Java PTB tokenizer failed ({run.returncode}): "
                               f"{run.stderr.decode('utf-8', 'replace')[-500:]}")
        for i in todo:
            with open(os.path.join(tmp, f"out{i}.txt"), encoding="utf-8", newline="\n") as f:
                lines = f.read().split("\n")
            if len(lines) != len(documents[i]):
                raise RuntimeError(f"the Java PTB tokenizer returned {len(lines)} lines for "
                                   f"{len(documents[i])} captions")
            out[i] = [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS)
                      for line in lines]
    return out


def tokenize_captions(
    captions: Mapping[Hashable, Sequence[str]], tokenizer: str = "auto"
) -> dict[Hashable, list[str]]:
    """``{id: [caption, ...]}`` tokenised as ``PTBTokenizer().tokenize`` would (one document, dict order)."""
    return _tokenize_documents([captions], tokenizer)[0]


def _tokenize_documents(
    docs: Sequence[Mapping[Hashable, Sequence[str]]], tokenizer: str
) -> list[dict[Hashable, list[str]]]:
    global _warned_fallback
    kind = _resolve(tokenizer)
    flat = [[c for caps in doc.values() for c in caps] for doc in docs]
    if kind == "java":
        tokenized = ptb_tokenize_java(flat)
    else:
        if tokenizer == "auto" and not _warned_fallback:
            _warned_fallback = True
            warnings.warn("java not found: caption metrics use dept_vl.metrics.ptb, the Python port of "
                          "pycocoevalcap's PTB tokenizer (caption_tokenizer_name() == 'ptb-python'), "
                          "not the official Java one", RuntimeWarning, stacklevel=3)
        tokenized = [ptb_tokenize_lines(lines) for lines in flat]
    out = []
    for doc, lines in zip(docs, tokenized):
        it = iter(lines)
        out.append({k: [next(it) for _ in caps] for k, caps in doc.items()})
    return out


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
    *,
    tokenizer: str = "auto",
) -> dict[str, float]:
    """Corpus-level caption metrics, as COCOEvalCap computes them.

    Args:
        predictions: one generated caption per image id.
        references: the reference captions per image id (same ids as ``predictions``).
        meteor: add ``meteor``; ``None`` means "when ``java`` is on PATH".
        spice: add ``spice`` (needs ``java`` and SPICE's CoreNLP jar already downloaded).
        tokenizer: ``"auto"`` (Java when available, else Python with a one-time warning),
            ``"java"`` or ``"python"``; :func:`caption_tokenizer_name` names the choice.

    Returns:
        ``bleu1`` .. ``bleu4`` (0..1) and ``cider`` (CIDEr-D, pycocoevalcap's scale), plus
        ``meteor``/``spice`` when computed; all floats.

    Raises:
        ValueError: when the id sets differ, a reference list is empty, nothing is given, or
            ``tokenizer`` is unknown.
    """
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
    except ImportError as err:
        raise ImportError("caption metrics need pycocoevalcap: pip install pycocoevalcap "
                          "(a regular dependency of dept-vl)") from err

    _resolve(tokenizer)
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
    ids = list(predictions)  # COCOEvalCap orders both by the result's image ids
    gts, res = _tokenize_documents([{i: list(references[i]) for i in ids},
                                    {i: [predictions[i]] for i in ids}], tokenizer)
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
