"""The Python PTB tokenizer against outputs of pycocoevalcap's Java PTBTokenizer, committed as data.

tests/data/metrics/ptb_java.json holds, for each input of ptb_inputs.txt, the raw Java tokens
(stanford-corenlp-3.4.1 ``PTBTokenizer -preserveLines -lowerCase``) and pycocoevalcap's
``PTBTokenizer().tokenize`` result (tokens minus its punctuation list), each input tokenised alone,
plus the result of tokenising the whole list as one pycocoevalcap call. Regenerate (needs java) with
``.venv/bin/python tests/test_metrics_ptb.py``.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dept_vl.metrics import ptb_tokenize, ptb_tokenize_java, ptb_tokenize_lines
from dept_vl.metrics.ptb import ptb_raw_tokens

DATA = Path(__file__).parent / "data" / "metrics"
_PATH = DATA / "ptb_java.json"
TABLE = json.loads(_PATH.read_text(encoding="utf-8")) if _PATH.exists() else {"cases": [], "document": []}
CASES = TABLE["cases"]
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs java")


def test_table_covers_enough_inputs():
    assert len(CASES) >= 40
    joined = " ".join(c["input"] for c in CASES)
    for probe in ["(", "[", "{", "$5", "50%", "#1", "100+", "salt&pepper", "\u2014", "\u2026", "\u201c",
                  "cannot", "gonna", "'tis", "st.", "mr.", "u.s.", "p.m.", "e.g.", "etc.", "'90s",
                  "'n'", "5'10\""]:
        assert probe in joined, probe


@pytest.mark.parametrize("case", CASES, ids=[c["input"][:40] for c in CASES])
def test_python_tokenizer_equals_java(case):
    assert " ".join(ptb_raw_tokens(case["input"])) == case["java_raw"]
    assert ptb_tokenize(case["input"]) == case["pycocoevalcap"]


def test_python_tokenizer_equals_java_on_one_document():
    # Some lexer rules look past a line end ("the letter I." before "The dog"): same result.
    assert ptb_tokenize_lines([c["input"] for c in CASES]) == TABLE["document"]


def test_other_line_breaks_are_spaces():
    assert ptb_tokenize_lines(["a dog\r\nrunning", "a\u2028cat", ""]) == ["a dog running", "a cat", ""]


@needs_java
def test_java_runner_equals_the_committed_table():
    alone, doc = ptb_tokenize_java([[CASES[0]["input"]], [c["input"] for c in CASES]])
    assert alone == [CASES[0]["pycocoevalcap"]]
    assert doc == TABLE["document"]
    assert ptb_tokenize_java([["a dog\r\nrunning", "a\u2028cat", ""], []]) == [
        ["a dog running", "a cat", ""], []]


def _read_inputs(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.strip() and not line.startswith("#"):
            line = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), line)
            out.append(line.replace("\\t", "\t"))
    return out


def _regenerate() -> None:
    """Rebuild ptb_java.json from ptb_inputs.txt with pycocoevalcap's own tokenizer (needs java)."""
    from pycocoevalcap.tokenizer import ptbtokenizer as P

    jar = os.path.join(os.path.dirname(P.__file__), P.STANFORD_CORENLP_3_4_1_JAR)
    inputs = _read_inputs(DATA / "ptb_inputs.txt")
    tok = P.PTBTokenizer()
    cases = []
    for s in inputs:
        with tempfile.TemporaryDirectory() as d:
            Path(d, "in.txt").write_text(s, encoding="utf-8")
            raw = subprocess.run(["java", "-cp", jar, "edu.stanford.nlp.process.PTBTokenizer",
                                  "-preserveLines", "-lowerCase", "in.txt"], cwd=d, check=True,
                                 capture_output=True).stdout.decode("utf-8")
        cases.append({"input": s, "java_raw": raw.split("\n")[0],
                      "pycocoevalcap": tok.tokenize({0: [{"caption": s}]})[0][0]})
    doc = tok.tokenize({i: [{"caption": s}] for i, s in enumerate(inputs)})
    table = {"source": "pycocoevalcap PTBTokenizer (stanford-corenlp-3.4.1.jar, -preserveLines -lowerCase)",
             "regenerate": ".venv/bin/python tests/test_metrics_ptb.py",
             "cases": cases, "document": [doc[i][0] for i in range(len(inputs))]}
    (DATA / "ptb_java.json").write_text(json.dumps(table, ensure_ascii=False, indent=1) + "\n",
                                        encoding="utf-8")
    print(f"wrote {len(cases)} cases", file=sys.stderr)


if __name__ == "__main__":
    _regenerate()
