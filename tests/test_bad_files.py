"""Files on disk, good and bad: output files readable like open() makes them, `~` in user paths, and
damaged adapter folders that fail with an error naming the damaged file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

from dept_vl import DePTModel
from dept_vl.io import save_tensors_atomic, write_json_atomic, write_text_atomic
from tests.conftest import tiny_bart, tiny_t5
from tests.fixtures_official import write_image, write_tsv, write_vqa_v2
from tests.test_dept_core import make

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards, whatever happens."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


# ------------------------------------------------------------------ item 1: file modes
@posix_only
@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_atomic_writes_honour_the_umask_like_open(tmp_path, umask, mask):
    umask(mask)
    (tmp_path / "plain.txt").write_text("a plain open()")
    write_text_atomic(tmp_path / "report.md", "# report\n")
    write_text_atomic(tmp_path / "summary.csv", "a,b\n1,2\n")
    write_json_atomic(tmp_path / "results.json", {"score": 1.0})
    save_tensors_atomic(tmp_path / "features.safetensors", {"x": torch.zeros(2)})
    make().save_pretrained(tmp_path / "adapter")
    expected = 0o666 & ~mask
    assert mode(tmp_path / "plain.txt") == expected
    written = [tmp_path / name for name in ("report.md", "summary.csv", "results.json", "features.safetensors")]
    written += [tmp_path / "adapter" / "adapter_config.json", tmp_path / "adapter" / "adapter_model.safetensors"]
    for path in written:
        assert mode(path) == expected, f"{path.name}: {oct(mode(path))}, expected {oct(expected)} under umask {oct(mask)}"
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]


@posix_only
def test_atomic_rewrite_keeps_the_mode_of_the_existing_file(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "metrics.json"
    write_json_atomic(target, {"step": 1})
    os.chmod(target, 0o640)  # like open("w") on an existing file, a rewrite keeps its mode
    write_json_atomic(target, {"step": 2})
    assert mode(target) == 0o640 and json.loads(target.read_text()) == {"step": 2}


# ------------------------------------------------------------------ item 2: `~` in user paths
@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """HOME points at a fresh folder and the working directory at another, so a literal ./~ would show."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


def test_atomic_writes_expand_tilde(home):
    write_json_atomic("~/runs/results.json", {"score": 0.5})
    write_text_atomic("~/runs/report.md", "# report\n")
    save_tensors_atomic("~/runs/t.safetensors", {"x": torch.ones(1)})
    assert json.loads((home / "runs" / "results.json").read_text()) == {"score": 0.5}
    assert (home / "runs" / "report.md").is_file() and (home / "runs" / "t.safetensors").is_file()
    assert not Path("~").exists()


def test_feature_cache_expands_tilde(home):
    from PIL import Image

    from dept_vl.models import VisionFeatureCache, build_vl_model

    cache = VisionFeatureCache("~/.cache/dept-vl/features")
    assert cache.directory == home / ".cache" / "dept-vl" / "features"
    torch.manual_seed(0)
    model = build_vl_model("tiny", vocabulary=["what", "red"]).eval()
    cache.get_or_compute(["img-a"], [Image.new("RGB", (40, 40), (200, 10, 10))], model)
    assert list((home / ".cache" / "dept-vl" / "features").glob("*/shard-*.safetensors"))
    assert not Path("~").exists()


def test_data_loaders_expand_tilde(home):
    from dept_vl.tasks import get_task

    write_vqa_v2(home / "vqa", "train2014", [(1, 9, "What color?", ["red"] * 10)])
    (ex,) = get_task("vqa_v2").load("train", data_dir="~/vqa")
    assert ex.image == str(home / "vqa" / "train2014" / "COCO_train2014_000000000009.jpg")
    (ex,) = get_task("vqa_v2").load("train", data_dir="~/vqa", image_dir="~/vqa")
    assert ex.image.startswith(str(home))

    (home / "gqa").mkdir()
    (home / "gqa" / "train_balanced_questions.json").write_text(json.dumps(
        {"7": {"imageId": "n1", "question": "Is it?", "answer": "yes"}}))
    write_image(home / "pics" / "n1.jpg")
    (ex,) = get_task("gqa").load("train", data_dir="~/gqa", image_dir="~/pics")
    assert ex.image == str(home / "pics" / "n1.jpg")

    (home / "coco" / "val2014").mkdir(parents=True)
    (home / "coco" / "dataset_coco.json").write_text(json.dumps({"images": [
        {"filepath": "val2014", "filename": "a.jpg", "cocoid": 3, "split": "test", "sentences": [{"raw": "A bus."}]}]}))
    (ex,) = get_task("coco_captions").load("test", data_dir="~/coco")
    assert ex.image == str(home / "coco" / "val2014" / "a.jpg")
    (ex,) = get_task("coco_captions").load("test", data_dir="~/coco", image_dir="~/coco")
    assert ex.image == str(home / "coco" / "val2014" / "a.jpg")

    write_tsv(home / "glue" / "RTE" / "train.tsv", ["index", "sentence1", "sentence2", "label"],
              [["0", "Dana sleeps.", "Someone sleeps.", "entailment"]])
    (ex,) = get_task("rte").load("train", data_dir="~/glue")
    assert ex.target_text == "entailment"
    assert not Path("~").exists()


# ------------------------------------------------------------------ item 5: damaged adapters
@pytest.fixture
def adapter(tmp_path) -> Path:
    folder = tmp_path / "adapter"
    make().save_pretrained(folder)
    DePTModel.from_pretrained(tiny_t5(), folder)  # valid as saved
    return folder


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "header only"])
def test_damaged_adapter_weights_name_the_file(adapter, damage):
    weights = adapter / "adapter_model.safetensors"
    data = weights.read_bytes()
    header = 8 + int.from_bytes(data[:8], "little")
    weights.write_bytes({"truncated": data[: len(data) - 7], "empty": b"",
                         "garbage": b"\x00\x01not a safetensors file at all" * 9, "header only": data[:header]}[damage])
    with pytest.raises(ValueError, match="not a readable safetensors file") as err:
        DePTModel.from_pretrained(tiny_t5(), adapter)
    assert str(weights) in str(err.value)


@pytest.mark.parametrize("text", ['{"dept_vl": {"format": "dept-vl-adapter", "method": "de', "", "\xff\xfe garbage", "[1, 2]"])
def test_corrupt_adapter_config_names_the_file(adapter, text):
    config = adapter / "adapter_config.json"
    config.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError) as err:
        DePTModel.from_pretrained(tiny_t5(), adapter)
    assert str(config) in str(err.value)


def test_adapter_of_a_bart_base_refuses_a_t5_base(tmp_path):
    bart, t5 = tiny_bart(), tiny_t5()
    # same width and vocabulary: only the text model type tells them apart
    assert bart.get_input_embeddings().weight.shape == t5.get_input_embeddings().weight.shape == (120, 64)
    make(base=bart).save_pretrained(tmp_path / "bart-adapter")
    with pytest.raises(ValueError, match="text_model_type=bart.*this base model has text_model_type=t5") as err:
        DePTModel.from_pretrained(t5, tmp_path / "bart-adapter")
    assert str(tmp_path / "bart-adapter") in str(err.value)
    DePTModel.from_pretrained(tiny_bart(), tmp_path / "bart-adapter")  # its own base still loads it
