"""The config system checks every value when a config is loaded, with the dotted key, the value and what is allowed."""

from __future__ import annotations

import dataclasses
import re

import pytest

from dept_vl.config import (AdaptConfig, DataConfig, EvalConfig, FullConfig, LoRAConfig, ModelConfig, RunConfig, TrainConfig,
                            list_recipes, load_config, recipe_path)
from dept_vl.dept.config import DePTConfig

SECTIONS = [ModelConfig, LoRAConfig, FullConfig, DataConfig, TrainConfig, EvalConfig, AdaptConfig, RunConfig, DePTConfig]


def fails(overrides: list[str], *parts: str) -> str:
    """load_config(None, overrides) raises ValueError whose message contains every part; returns the message."""
    with pytest.raises(ValueError) as info:
        load_config(None, overrides)
    message = str(info.value)
    for part in parts:
        assert part in message, (part, message)
    return message


CHOICES = {
    "model.dtype": ["auto", "float32", "bfloat16", "float16"],
    "data.mixing": ["proportional", "temperature"],
    "train.mixed_precision": ["auto", "no", "bf16", "fp16"],
    "train.compile": ["auto", "on", "off"],
    "train.attention": ["auto", "keep", "eager", "sdpa", "biased_sdpa", "biased_cudnn"],
    "train.gradient_sync": ["auto", "ddp", "allreduce"],
    "eval.split": ["train", "dev", "test"],
}


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_choice_fields_reject_unknown_values_and_take_every_choice(key):
    message = fails([f"{key}=maybe"], f"{key}='maybe'", "unknown")
    assert all(choice in message for choice in CHOICES[key])
    section, name = key.split(".")
    for choice in CHOICES[key]:
        assert getattr(getattr(load_config(None, [f"{key}={choice}"]), section), name) == choice


def test_transfer_is_a_subset_of_the_adapter_parts():
    assert load_config(None, ["adapt.transfer=prompt,lowrank"]).adapt.transfer == ["prompt", "lowrank"]
    assert load_config(None, ["adapt.transfer=[modules]"]).adapt.transfer == ["modules"]
    fails(["adapt.transfer=[prompt, lora]"], "adapt.transfer=", "'lora'", "prompt, lowrank, modules")


INT_FIELDS = ["train.max_steps", "train.batch_size", "train.grad_accum", "train.warmup_steps", "train.log_every",
              "train.eval_every", "train.save_every", "train.stop_at", "train.num_workers", "train.seed",
              "eval.batch_size", "eval.max_new_tokens", "eval.num_beams", "data.mixing_cap", "data.max_target_length",
              "data.train_size", "data.eval_size", "data.max_input_length", "adapt.dev_k", "lora.r",
              "dept.rank", "dept.num_virtual_tokens", "dept.seed"]


@pytest.mark.parametrize("key", INT_FIELDS)
@pytest.mark.parametrize("text", ["abc", "1.5", "true"])
def test_int_fields_reject_words_fractions_and_booleans(key, text):
    shown = {"abc": "'abc'", "1.5": "1.5", "true": "True"}[text]
    fails([f"{key}={text}"], f"{key}={shown}", "integer")


def test_batch_size_word_fails_at_load_with_the_allowed_range():
    assert fails(["train.batch_size=abc"]) == "train.batch_size='abc': must be an integer >= 1"


@pytest.mark.parametrize("override", ["train.batch_size=0", "train.log_every=0", "train.eval_every=0", "train.grad_accum=0",
                                      "train.warmup_steps=-1", "train.max_steps=0", "train.save_every=-1", "train.stop_at=-1",
                                      "train.num_workers=-1", "train.max_grad_norm=-0.5", "eval.batch_size=0",
                                      "eval.max_new_tokens=0", "eval.num_beams=0", "data.train_size=0", "data.eval_size=0",
                                      "data.mixing_cap=0", "data.temperature=0", "data.max_input_length=0",
                                      "data.max_target_length=0", "lora.r=0", "lora.alpha=0", "lora.dropout=1",
                                      "lora.dropout=-0.1", "lora.lr=0", "lora.weight_decay=-1", "full.lr=-0.1",
                                      "full.weight_decay=-1", "adapt.dev_k=0", "dept.lr_prompt=0"])
def test_values_out_of_range_fail(override):
    key, value = override.split("=")
    fails([override], f"{key}=", value.lstrip("-"), "must be")


@pytest.mark.parametrize("override", ["adapt.k=[]", "adapt.k=[4, 0]", "adapt.seeds=[]", "adapt.k=[4, x]", "adapt.seeds=[1.5]",
                                      "lora.target_modules=[]"])
def test_lists_are_checked_item_by_item(override):
    fails([override], override.split("=")[0] + "=", "list")


def test_ranges_at_their_edges_pass():
    cfg = load_config(None, ["train.warmup_steps=0", "train.save_every=0", "train.stop_at=0", "train.max_grad_norm=0",
                             "lora.dropout=0.5", "adapt.k=4", "adapt.seeds=7"])
    assert (cfg.train.warmup_steps, cfg.train.save_every, cfg.lora.dropout, cfg.adapt.k, cfg.adapt.seeds) == (0, 0, 0.5, [4], [7])


@pytest.mark.parametrize("key", ["data.train_size", "data.eval_size", "data.max_input_length", "data.data_dir", "adapt.dev_k",
                                 "adapt.source", "model.backbone"])
@pytest.mark.parametrize("text", ["null", "None", "~"])
def test_optional_fields_take_null(key, text):
    section, name = key.split(".")
    assert getattr(getattr(load_config(None, [f"{key}={text}"]), section), name) is None


def test_optional_fields_reject_what_is_not_null_or_the_type():
    fails(["data.eval_size=all"], "data.eval_size='all'", "integer >= 1 or null")


def test_bool_fields_take_only_true_and_false():
    assert load_config(None, ["data.feature_cache=false"]).data.feature_cache is False
    fails(["data.feature_cache=off"], "data.feature_cache='off'", "true or false")
    fails(["adapt.save_adapters=1"], "adapt.save_adapters=1", "true or false")


@pytest.mark.parametrize("override", ["method=", "data.format=", "model.preset=", "adapt.task="])
def test_names_may_not_be_empty(override):
    fails([override], override + "''", "non-empty")


def test_method_and_format_are_free_names_here():
    """The method registry and the tasks' formats are checked by the run assembly, a higher layer."""
    cfg = load_config(None, ["method=my_method", "data.format=my_format"])
    assert (cfg.method, cfg.data.format) == ("my_method", "my_format")


@pytest.mark.parametrize("text", ["2024-01-01", "0123", "1e3", "out #1", "run: 1", "null", "true", "[a, b]", " spaced "])
def test_string_overrides_stay_the_exact_text(text):
    assert load_config(None, [f"output_dir={text}"]).output_dir == text


def test_string_fields_in_a_recipe_stay_strings(tmp_path):
    (tmp_path / "r.yaml").write_text("output_dir: 2024-01-01\nadapt:\n  source: 123\n  task: 1.5\ndata:\n  tasks: [a, 7]\n")
    cfg = load_config(tmp_path / "r.yaml")
    assert (cfg.output_dir, cfg.adapt.source, cfg.adapt.task, cfg.data.tasks) == ("2024-01-01", "123", "1.5", ["a", "7"])


def test_strings_that_yaml_reads_as_booleans_are_not_quietly_turned_into_words(tmp_path):
    (tmp_path / "r.yaml").write_text("train:\n  compile: true\n")
    with pytest.raises(ValueError, match=re.escape("train.compile=True: must be one of auto, on or off")):
        load_config(tmp_path / "r.yaml")


def test_dept_messages_name_the_dept_section():
    fails(["dept.rank=-1"], "dept.rank=-1")
    fails(["dept.init=words"], "dept.init='words'", "text, vocab, random")
    fails(["dept.num_virtual_tokens=0", "dept.rank=0"], "dept.", "trains nothing")
    fails(["dept.lr_prompt=fast"], "dept.lr_prompt='fast'", "number")
    fails(["dept.trainable_modules=[true]"], "dept.trainable_modules=[True]", "list of strings")


def test_dept_string_overrides_stay_the_exact_text():
    cfg = load_config(None, ["dept.init=text", "dept.init_text=Answer: yes #1"])
    assert cfg.dept.init_text == "Answer: yes #1"


def test_unknown_keys_suggest_the_closest():
    fails(["train.max_step=3"], "unknown config key 'train.max_step'", "did you mean 'train.max_steps'")
    fails(["dept.rnak=3"], "did you mean 'dept.rank'")


def test_sections_check_their_values_when_made_directly():
    with pytest.raises(ValueError, match=re.escape("train.compile='yes' is unknown; choose auto, on or off")):
        TrainConfig(compile="yes")
    with pytest.raises(ValueError, match="eval.num_beams=0"):
        EvalConfig(num_beams=0)
    with pytest.raises(ValueError, match="model"):
        RunConfig(model={"preset": "tiny"})


def test_a_malformed_recipe_names_its_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  max_steps: [1\n")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load_config(path)


def test_a_recipe_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- train.max_steps=3\n- train.batch_size=4\n")
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*mapping.*list"):
        load_config(path)


def test_a_saved_config_reads_back_equal(tmp_path):
    cfg = load_config("vqa_coco_pretrain", ["output_dir=1e3", "adapt.source=0123", "model.backbone=2024-01-01",
                                            "train.compile=off", "train.mixed_precision=no", "dept.init=text",
                                            "dept.init_text=yes", "adapt.k=[2, 8]", "data.tasks=on,off"])
    cfg.save(tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg and again.to_dict() == cfg.to_dict()
    default = RunConfig()
    default.save(tmp_path / "default.yaml")
    assert load_config(tmp_path / "default.yaml") == default == load_config()


@pytest.mark.parametrize("name", list_recipes())
def test_every_recipe_loads(name):
    assert recipe_path(name).suffix == ".yaml"
    assert isinstance(load_config(name), RunConfig)


def test_recipes_are_found_by_name_and_path(tmp_path):
    assert {"shapes_pretrain", "shapes_adapt"} <= set(list_recipes())
    assert recipe_path("shapes_pretrain.yaml") == recipe_path("shapes_pretrain")
    with pytest.raises(FileNotFoundError, match="shapes_pretrain"):
        recipe_path("no_such_recipe")


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.__name__)
def test_every_field_has_help_text(cls):
    for f in dataclasses.fields(cls):
        assert isinstance(f.metadata.get("help"), str) and f.metadata["help"].strip(), f"{cls.__name__}.{f.name} has no help text"
