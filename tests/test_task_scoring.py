"""Each task scores with the evaluator its format or name promises (the rules themselves: tests/test_metrics_*)."""

from __future__ import annotations

import pytest

from dept_vl.data.example import Example
from dept_vl.tasks import get_task


def test_glue_reference_format_is_scored_by_the_reference_codes_rules():
    """The DePT reference code gives sklearn the raw strings: an invalid output is one more class."""
    from sklearn.metrics import matthews_corrcoef

    targets, predictions = ["1", "1", "0", "0", "1", "0"], ["1", "maybe", "0", "1", "1", "0"]
    examples = [Example(id=str(i), input_text="cola sentence: x", target_text=t, label=t, meta={"format": "reference"})
                for i, t in enumerate(targets)]
    score = get_task("cola").evaluate(predictions, examples)["matthews_correlation"]
    assert score == pytest.approx(matthews_corrcoef(targets, predictions))  # 0.4523, not the default rules' 0.3333
    assert score == pytest.approx(0.4523, abs=1e-4)


def test_vqa_v2_is_official_and_vqa_v2_vlt5_normalises_the_prediction():
    """Ten answers '2' and the prediction 'two': the official evaluator leaves a unanimous answer set and the
    prediction alone (0 of 10 match), VL-T5's evaluator maps 'two' to '2' (10 of 10)."""
    example = Example(id="q", input_text="vqa: how many?", target_text="2", references=["2"] * 10, meta={"answer_type": "number"})
    assert get_task("vqa_v2").evaluate(["two"], [example])["accuracy"] == 0.0
    assert get_task("vqa_v2_vlt5").evaluate(["two"], [example])["accuracy"] == 1.0


def test_evaluate_records_the_caption_tokenizer_its_scores_used(tmp_path):
    """The synthetic world's captions are scored with the Python PTB port (fixed by its scorer), whatever the machine."""
    import json
    from pathlib import Path

    from dept_vl.config import load_config
    from dept_vl.recipes.evaluate import run_evaluate

    shipped = Path(__file__).resolve().parents[1] / "dept_vl" / "assets" / "backbone-tiny"
    config = load_config("shapes_adapt", [f"model.backbone={shipped}", "data.eval_size=4", "eval.batch_size=4"])
    run_evaluate(config, None, "shapes_caption_short", "dev", tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["caption_tokenizer"] == "ptb-python"
