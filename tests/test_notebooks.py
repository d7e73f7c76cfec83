"""Every notebook runs top to bottom, headless, against a `--fast` demo run made here (once per session),
and is committed without outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = {"kshot_transfer.ipynb", "efficiency.ipynb", "vl_examples.ipynb", "official_checkpoints.ipynb"}


@pytest.fixture(scope="session")
def demo_run(fast_demo_run) -> Path:
    """The session's one `dept-vl demo --fast` run (conftest), shared with the demo tests."""
    return fast_demo_run


def tiny_benchmark() -> dict:
    """A benchmark JSON of `benchmarks/train_step.py`'s schema with one row per compared method."""
    config = {"size": "tiny", "model": {"d_model": 64, "d_ff": 128, "num_layers": 2, "num_heads": 4, "d_kv": 16, "vocab_size": 512},
              "batch": 4, "m": 60, "r": 30, "s": 256, "pt_tokens": 100, "lora_r": 8, "smoke": True}
    rows = []
    for i, variant in enumerate(["reference", "dept_fast", "pt100_fast", "peft_lora", "full_ft"]):
        for workload, ms in [("glue", 10.0 + i), ("full256", 20.0 + i), ("len32", 5.0 + i), ("len64", 7.0 + i)]:
            rows.append({"variant": variant, "workload": workload, "step_ms_median": ms, "step_ms_mean": ms,
                         "examples_per_s": 4 / ms * 1e3, "mfu": None})
    return {"schema": "dept-vl-bench/1", "env": {"torch": "x", "transformers": "y", "device": "cpu"}, "config": config,
            "results": rows, "generation": [], "errors": [], "skipped": [], "summary": {}}


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("notebook_inputs")
    (folder / "bench.json").write_text(json.dumps(tiny_benchmark()))
    # a random stand-in for t5-base's embedding matrix: exercises the nearest-token code path offline
    np.save(folder / "embedding.npy", np.random.default_rng(0).standard_normal((32128, 768)).astype(np.float16))
    (folder / "empty").mkdir()
    return {"bench": folder / "bench.json", "embedding": folder / "embedding.npy", "empty": folder / "empty"}


def execute(path: Path, env: dict[str, str], monkeypatch) -> nbformat.NotebookNode:
    for key, value in {"MPLBACKEND": "Agg", **env}.items():
        monkeypatch.setenv(key, value)
    book = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(book, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    return book


def text_of(book: nbformat.NotebookNode) -> str:
    parts = []
    for cell in book.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts += [str(v) for k, v in output.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(parts)


def test_every_notebook_is_here_and_committed_without_outputs():
    assert {p.name for p in NOTEBOOKS} == EXPECTED
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
        code = [c for c in book.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"
        assert "resolve_path(os.environ.get(" in code[0].source, f"{path.name}: the first cell must set the paths"
        assert "/work/" not in path.read_text() and "/tmp/" not in path.read_text(), f"{path.name} names a local path"


@pytest.mark.slow
def test_kshot_transfer(demo_run, monkeypatch):
    out = text_of(execute(ROOT / "notebooks" / "kshot_transfer.ipynb", {"DEPT_VL_RUN": str(demo_run)}, monkeypatch))
    assert "shapes_count" in out and "dept-transfer" in out and "relative_gain" in out and "source_dept" in out


@pytest.mark.slow
@pytest.mark.parametrize("with_bench", [True, False], ids=["benchmark", "no-benchmark"])
def test_efficiency(demo_run, inputs, monkeypatch, with_bench):
    bench = inputs["bench"] if with_bench else inputs["empty"]
    out = text_of(execute(ROOT / "notebooks" / "efficiency.ipynb",
                          {"DEPT_VL_RUN": str(demo_run), "DEPT_VL_BENCH": str(bench)}, monkeypatch))
    assert "pt-transfer" in out and "input_words" in out
    if with_bench:
        assert "LoRA" in out and "full fine-tuning" in out and "input_length" in out
    else:
        assert "no benchmark JSON" in out


@pytest.mark.slow
def test_vl_examples(demo_run, monkeypatch):
    out = text_of(execute(ROOT / "notebooks" / "vl_examples.ipynb", {"DEPT_VL_RUN": str(demo_run)}, monkeypatch))
    assert "how many:" in out and "(all)" in out and "header_type" in out and "shapes_para" in out


@pytest.mark.slow
def test_official_checkpoints(inputs, monkeypatch, shared_dir):
    checkpoint = shared_dir / "assets" / "official-dept" / "cola"
    if not checkpoint.is_dir():
        pytest.skip("the released checkpoint is not beside this checkout")
    out = text_of(execute(ROOT / "notebooks" / "official_checkpoints.ipynb",
                          {"DEPT_VL_OFFICIAL": str(checkpoint), "DEPT_VL_TOKENIZER": str(shared_dir / "assets" / "t5-tokenizer"),
                           "DEPT_VL_EMBEDDINGS": str(inputs["embedding"])}, monkeypatch))
    assert "76,800" in out and "prompt imported exactly: True" in out and "nearest tokens (cosine)" in out and "▁Class" in out


@pytest.mark.slow
def test_official_checkpoints_without_the_release(inputs, monkeypatch):
    out = text_of(execute(ROOT / "notebooks" / "official_checkpoints.ipynb",
                          {"DEPT_VL_OFFICIAL": str(inputs["empty"] / "absent")}, monkeypatch))
    assert "no released checkpoint" in out


def test_every_notebook_has_a_rendered_page_showing_its_current_code():
    """docs/notebooks/<name>.md (tools/render_notebooks.py) shows each notebook's outputs on a code host; its code
    blocks must be the notebook's code cells as they are now, and every figure it shows must be there."""
    import re

    pages = ROOT / "docs" / "notebooks"
    for notebook in NOTEBOOKS:
        page = pages / f"{notebook.stem}.md"
        assert page.is_file(), f"no rendered page for {notebook.name}: run python tools/render_notebooks.py runs/demo"
        text = page.read_text()
        shown = [block.strip() for block in re.findall(r"```python\n(.*?)```", text, flags=re.S)]
        current = ["".join(c.source).strip() for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]
        assert shown == current, f"{page.name} was rendered from older code of {notebook.name}; render it again"
        figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
        assert figures and all((pages / f).is_file() for f in figures), page.name
        assert not re.search(r"/(?:tmp|home|root|work)/", text), f"{page.name} shows a path of the machine that rendered it"
