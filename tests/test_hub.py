"""Adapters on the hub, with nothing reaching the network: hub ids are read from a folder laid out as the hub
cache with HF_HUB_OFFLINE=1, and uploads go to a recorder in place of HfApi's calls."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch

from dept_vl.config import RunConfig
from dept_vl.dept import DePTConfig, DePTModel, convert_official, from_official
from dept_vl.methods import get_method, load_adapter_model
from tests.conftest import tiny_t5

SHA_MAIN, SHA_V2 = "a" * 40, "b" * 40


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to reach the network: {args[1:] or kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty hub cache under tmp_path, offline; huggingface_hub read its settings at import, so they are set too."""
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def cache_repo(cache: Path, repo_id: str, sha: str, source: Path, ref: str | None = "main") -> None:
    """Put ``source``'s files into the cache as snapshot ``sha`` of ``repo_id`` (and point ``refs/<ref>`` at it)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True)
    for path in source.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
    if ref:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(sha)


def trained(seed: int) -> DePTModel:
    model = DePTModel(tiny_t5(), DePTConfig(num_virtual_tokens=4, rank=2, max_length=16, seed=seed))
    with torch.no_grad():
        model.lowrank_B.normal_(generator=torch.Generator().manual_seed(seed))
    return model.eval()


def logits(model, seed: int = 0) -> torch.Tensor:
    ids = torch.randint(3, 100, (2, 6), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(input_ids=ids, labels=ids[:, :2].clone()).logits


def test_hub_ids_load_from_the_cache_at_their_revision_offline(tmp_path, hub_cache):
    first, second = trained(1), trained(2)
    first.save_pretrained(tmp_path / "first")
    second.save_pretrained(tmp_path / "second")
    cache_repo(hub_cache, "user/dept-tiny", SHA_MAIN, tmp_path / "first")
    cache_repo(hub_cache, "user/dept-tiny", SHA_V2, tmp_path / "second", ref="v2")
    assert torch.equal(logits(DePTModel.from_pretrained(tiny_t5(), "user/dept-tiny")), logits(first))
    assert torch.equal(logits(DePTModel.from_pretrained(tiny_t5(), "user/dept-tiny", revision="v2")), logits(second))
    assert torch.equal(logits(DePTModel.from_pretrained(tiny_t5(), "user/dept-tiny", revision=SHA_V2)), logits(second))
    assert torch.equal(logits(load_adapter_model(tiny_t5(), "user/dept-tiny")), logits(first))  # every method's loader


def test_a_hub_id_missing_from_the_cache_offline_says_so(hub_cache):
    with pytest.raises(FileNotFoundError, match="no repo user/absent at revision main in the hub cache .HF_HUB_OFFLINE is set"):
        DePTModel.from_pretrained(tiny_t5(), "user/absent")
    with pytest.raises(FileNotFoundError, match="not/a/repo: no such folder, and not a hub id"):
        DePTModel.from_pretrained(tiny_t5(), "not/a/repo")
    with pytest.raises(ValueError, match="revision='v2' applies to hub ids"):
        DePTModel.from_pretrained(tiny_t5(), Path(__file__).parent, revision="v2")


def fake_release(folder: Path) -> torch.Tensor:
    """A released-format DePT checkpoint (the paper's PROMPT_TUNING_LORA) for a 64-wide model, with its results file."""
    folder.mkdir(parents=True)
    config = {"peft_type": "PROMPT_TUNING_LORA", "task_type": "SEQ_2_SEQ_LM", "num_virtual_tokens": 4, "r": 2,
              "max_length": 16, "lora_alpha": 8, "token_dim": 64, "prompt_tuning_init": "RANDOM",
              "base_model_name_or_path": "t5-base"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    gen = torch.Generator().manual_seed(5)
    tensors = {"prompt_embeddings": torch.randn(4, 64, generator=gen),
               "prompt_encoder.lora_embedding_A": torch.randn(16, 2, generator=gen),
               "prompt_encoder.lora_embedding_B": torch.randn(2, 64, generator=gen)}
    torch.save(tensors, folder / "adapter_model.bin")
    (folder / "test_results.json").write_text(json.dumps({"test_matthews_correlation": 63.79, "test_runtime": 5.9}))
    return tensors["prompt_embeddings"]


def test_released_checkpoints_load_and_convert_from_a_hub_id(tmp_path, hub_cache):
    prompt = fake_release(tmp_path / "release")
    cache_repo(hub_cache, "paper/dept-cola", SHA_MAIN, tmp_path / "release")
    assert torch.equal(from_official(tiny_t5(), "paper/dept-cola").prompt.detach(), prompt)
    out = convert_official("paper/dept-cola", tmp_path / "converted")
    record = json.loads((out / "adapter_config.json").read_text())["dept_vl"]
    assert record["imported_from"]["reported_metrics"] == {"test_matthews_correlation": 63.79}  # runtime left out
    assert torch.equal(logits(DePTModel.from_pretrained(tiny_t5(), out)), logits(from_official(tiny_t5(), tmp_path / "release")))


class Recorder:
    """Stands in for HfApi.create_repo and HfApi.upload_folder; keeps what would be sent."""

    def __init__(self, monkeypatch):
        from huggingface_hub import HfApi

        self.repos: list[tuple[str, dict]] = []
        self.uploads: list[dict] = []
        monkeypatch.setattr(HfApi, "create_repo", lambda api, repo_id, **kw: self.repos.append((repo_id, kw)))
        monkeypatch.setattr(HfApi, "upload_folder", lambda api, **kw: self.upload(**kw))

    def upload(self, *, repo_id, folder_path, **kw):
        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        self.uploads.append({"repo_id": repo_id, "files": files, **kw})
        return f"https://hub.invalid/{repo_id}/commit/0"

    def card(self) -> str:
        return self.uploads[-1]["files"]["README.md"].decode()


def test_push_to_hub_sends_the_adapter_and_a_model_card(tmp_path, monkeypatch):
    recorder = Recorder(monkeypatch)
    model = trained(3)
    model.get_base_model().config._name_or_path = "google-t5/t5-small"
    model.push_to_hub("user/dept-tiny", tasks=["shapes_count"], metrics={"accuracy": 0.5813},
                      command="dept-vl pretrain --config shapes_pretrain", private=True)
    assert recorder.repos == [("user/dept-tiny", {"private": True, "exist_ok": True})]
    files = recorder.uploads[0]["files"]
    assert set(files) == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    card = recorder.card()
    for expected in ("base_model: google-t5/t5-small", "library_name: dept-vl", "**Method**: `dept` (m=4 prompt tokens, rank r=2",
                     "**Task**: `shapes_count`", "| accuracy | 0.5813 |", "dept-vl pretrain --config shapes_pretrain",
                     'load_adapter_model(base, "user/dept-tiny")'):
        assert expected in card, expected
    for name in ("adapter_config.json", "adapter_model.safetensors"):  # what is sent loads back to the same model
        (tmp_path / name).write_bytes(files[name])
    assert torch.equal(logits(DePTModel.from_pretrained(tiny_t5(), tmp_path)), logits(model))


def test_push_to_hub_of_a_run_folder_reads_its_task_metrics_and_command(tmp_path, monkeypatch):
    from dept_vl.cli import main

    recorder = Recorder(monkeypatch)
    run = RunConfig(method="lora")
    run.data.tasks = ["shapes_color", "shapes_exist"]
    adapter = tmp_path / "run" / "adapter"
    get_method("lora").build(run, tiny_t5()).save_pretrained(adapter)
    run.save(adapter / "run_config.yaml")
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"best_score": 0.75, "best_step": 200, "steps": 300}))
    assert main(["push-to-hub", str(adapter), "--repo-id", "user/lora-run"]) == 0
    upload = recorder.uploads[0]
    assert set(upload["files"]) == {"adapter_config.json", "adapter_model.safetensors", "run_config.yaml", "README.md"}
    card = recorder.card()
    for expected in ("`lora`", "**Task**: `shapes_color`, `shapes_exist`", "| dev mean headline (best) | 0.7500 |",
                     "| best step | 200 |", "dept-vl pretrain --config run_config.yaml"):
        assert expected in card, expected


def test_import_official_output_is_pushed_with_the_release_metrics(tmp_path, monkeypatch):
    from dept_vl.cli import main

    recorder = Recorder(monkeypatch)
    fake_release(tmp_path / "release")
    assert main(["import-official", str(tmp_path / "release"), "--out", str(tmp_path / "cola")]) == 0
    assert main(["push-to-hub", str(tmp_path / "cola"), "--repo-id", "user/dept-cola"]) == 0
    card = recorder.card()
    for expected in ("base_model: t5-base", "Converted from a checkpoint released with the DePT paper",
                     "| test_matthews_correlation | 63.7900 |", "dept-vl import-official <released checkpoint folder> --out cola"):
        assert expected in card, expected
    assert str(tmp_path) not in card  # no path of this machine goes to the hub
