"""Bad input fails before anything trains, with the key, the value and what to do; nothing surprising."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dept_vl.cli import main as cli, split_overrides
from dept_vl.config import load_config

SHIPPED = "shipped:backbone-tiny"
TINY = ["dept.num_virtual_tokens=4", "dept.rank=2", "dept.max_length=48", "data.train_size=48", "data.eval_size=12",
        "train.batch_size=8", "train.warmup_steps=1", "eval.batch_size=64", "eval.max_new_tokens=6"]


def test_overrides_work_in_any_position_even_after_a_list_option(capsys):
    rest, overrides = split_overrides(["adapt", "--seeds", "0", "1", "data.eval_size=500", "--source", "a=b", "x.y=2"])
    assert rest == ["adapt", "--seeds", "0", "1", "--source", "a=b"] and overrides == ["data.eval_size=500", "x.y=2"]
    # through the command: the override reaches the config (and fails there, by name), not argparse's int parsing
    assert cli(["adapt", "--task", "shapes_count", "--k", "4", "--seeds", "0", "1", "train.max_step=3"]) == 2
    assert "did you mean 'train.max_steps'" in capsys.readouterr().err


def test_a_missing_optional_package_is_named_before_anything_loads(monkeypatch):
    import importlib.util

    import dept_vl.train.run as run

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pycocoevalcap" else real(name, *a))
    monkeypatch.setattr(run, "make_accelerator", lambda **k: pytest.fail("the run was assembled"))
    config = load_config("shapes_pretrain", ["data.tasks=[shapes_color,shapes_caption]"])
    with pytest.raises(ValueError, match="needs the package pycocoevalcap \\(the caption metrics of shapes_caption\\): pip install pycocoevalcap"):
        run.Run.setup(config, config.data.tasks)


def test_inputs_longer_than_dept_covers_fail_at_assembly(monkeypatch):
    import dept_vl.train.run as run

    monkeypatch.setattr(run, "make_accelerator", lambda **k: pytest.fail("the run was assembled"))
    config = load_config(None, ["data.max_input_length=200", "dept.max_length=32", "data.tasks=[shapes_color]"])
    with pytest.raises(ValueError, match="data.max_input_length=200 exceeds dept.max_length=32"):
        run.Run.setup(config, config.data.tasks)


def test_the_demo_recipes_use_the_shipped_backbone_by_its_portable_name(tmp_path):
    from dept_vl.train.run import backbone_folder

    for recipe in ("shapes_pretrain", "shapes_adapt"):
        assert load_config(recipe).model.backbone == SHIPPED
    assert (backbone_folder(SHIPPED) / "backbone.safetensors").is_file()
    with pytest.raises(FileNotFoundError, match="model.backbone='/nowhere/bb': no folder /nowhere/bb; set model.backbone="):
        backbone_folder("/nowhere/bb")


def test_a_model_whose_every_prediction_is_invalid_is_reported(tmp_path):
    """The random tiny preset knows no label word: the run says so instead of quietly scoring 0."""
    from dept_vl.recipes.evaluate import run_evaluate

    config = load_config(None, TINY + ["model.preset=tiny"])
    with pytest.warns(UserWarning, match="every prediction on shapes_nli is invalid"):
        result = run_evaluate(config, None, "shapes_nli", "dev", size=6)
    assert result["metrics"]["invalid_rate"] == 1.0


def test_evaluate_scores_the_whole_split_unless_a_size_is_asked_for(tmp_path, capsys):
    from dept_vl.recipes.evaluate import run_evaluate
    from dept_vl.tasks import get_task

    config = load_config("shapes_adapt", ["data.eval_size=12", "eval.batch_size=256"])  # a run config's eval_size does not cut it
    whole = run_evaluate(config, None, "shapes_color", "dev", tmp_path / "whole")
    assert whole["examples"] == whole["split_size"] == len(get_task("shapes_color").load("dev"))
    part = run_evaluate(config, None, "shapes_color", "dev", tmp_path / "part", size=7)
    assert (part["examples"], part["split_size"]) == (7, whole["split_size"])
    assert f"scored 7 of {whole['split_size']} examples" in capsys.readouterr().out
    assert len((tmp_path / "part" / "predictions.jsonl").read_text().splitlines()) == 7


def test_evaluate_refuses_an_output_folder_holding_another_run(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"best_score": 0.8}))
    config = load_config("shapes_adapt")
    from dept_vl.recipes.evaluate import run_evaluate

    with pytest.raises(ValueError, match="already holds a run.*--resume.*--overwrite"):
        run_evaluate(config, None, "shapes_color", "dev", tmp_path, size=2)
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"best_score": 0.8}
    run_evaluate(config, None, "shapes_color", "dev", tmp_path, size=2, overwrite=True)
    assert json.loads((tmp_path / "metrics.json").read_text())["examples"] == 2


def test_an_output_folder_that_cannot_be_written_fails_first(tmp_path):
    from dept_vl.train.outdir import claim_output_dir

    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match="cannot be written|is a file"):
        claim_output_dir(tmp_path / "a_file" / "run")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        claim_output_dir(tmp_path / "a_file")


def test_an_output_folder_is_locked_while_a_run_writes_into_it(tmp_path):
    import subprocess
    import sys

    from dept_vl.train.outdir import claim_output_dir

    with claim_output_dir(tmp_path / "run"):
        # another process (flock locks belong to open files: a second process sees it)
        code = ("import sys; from dept_vl.train.outdir import claim_output_dir\n"
                "try:\n    claim_output_dir(sys.argv[1], resume=True)\nexcept ValueError as e:\n    print(e); sys.exit(3)\n")
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[1])
        assert done.returncode == 3 and "in use by another dept-vl run (pid" in done.stdout
    claim_output_dir(tmp_path / "run", resume=True).release()  # released: free again


def test_evaluate_no_score_writes_the_predictions_a_scored_run_writes_and_no_metrics(tmp_path, monkeypatch):
    """`dept-vl evaluate --no-score`: the same predictions as a scored run, an empty metrics record, and no caption
    metrics package asked for (the machine that generates may lack it)."""
    import importlib.util

    from dept_vl.cli import main
    from dept_vl.demo.backbone import SHIPPED
    from dept_vl.dept import DePTConfig, DePTModel
    from dept_vl.models.backbone import load_backbone

    DePTModel(load_backbone(SHIPPED), DePTConfig(num_virtual_tokens=8, rank=4, max_length=96)).save_pretrained(tmp_path / "adapter")
    args = ["evaluate", "--task", "shapes_caption_short", "--split", "dev", "--size", "5", "--config", "shapes_adapt",
            "--adapter", str(tmp_path / "adapter")]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pycocoevalcap" else real(name, *a))
    assert main([*args, "--out", str(tmp_path / "refused")]) == 2  # scoring captions needs the package
    assert main([*args, "--out", str(tmp_path / "unscored"), "--no-score"]) == 0
    monkeypatch.undo()
    assert main([*args, "--out", str(tmp_path / "scored")]) == 0
    unscored, scored = (json.loads((tmp_path / f / "metrics.json").read_text()) for f in ("unscored", "scored"))
    assert unscored["metrics"] == {} and "headline" in scored["metrics"]
    assert (tmp_path / "unscored" / "predictions.jsonl").read_text() == (tmp_path / "scored" / "predictions.jsonl").read_text()
