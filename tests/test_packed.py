"""Many adapters in one pass: a packed k-shot sweep gives every run what it gets alone (adapter, dev selection,
test predictions, log), a run that goes NaN leaves the pack without touching the others, and mixed-adapter
generation gives each row what its own adapter gives (shipped backbone, dropout 0, CPU float32)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dept_vl.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "dept_vl" / "assets" / "backbone-tiny"
BASE = [f"model.backbone={SHIPPED}", "data.format=shifted", "dept.num_virtual_tokens=4", "dept.rank=2",
        "dept.max_length=96", "dept.lr_prompt=0.1", "dept.lr_lowrank=0.01", "train.batch_size=4", "train.warmup_steps=1",
        "train.log_every=1", "eval.batch_size=8", "eval.max_new_tokens=8", "data.eval_size=8", "data.train_size=24",
        "train.max_steps=4", "train.eval_every=2", "adapt.k=[2]", "adapt.seeds=[0,1,2]"]
TIMING = ("step_time_ms", "examples_per_s", "train_seconds", "peak_memory_mb", "pack_size")


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """A source adapter per method, pretrained on two source tasks (made once, when a test asks)."""
    from dept_vl.recipes.pretrain import run_pretrain

    made: dict[str, Path] = {}

    class Sources(dict):
        def __missing__(self, method: str) -> Path:
            out = tmp_path_factory.mktemp(f"source-{method}")
            run_pretrain(load_config(None, BASE + [f"output_dir={out}", f"method={method}", "data.tasks=[shapes_color,shapes_nli]",
                                                   "train.save_every=0", "data.feature_cache=false"]), show_progress=False)
            self[method] = out / "adapter"
            return self[method]

    return Sources(made)


def sweep(out: Path, pack: str, *extra: str) -> list[dict]:
    from dept_vl.recipes.adapt import run_adapt

    return run_adapt(load_config(None, BASE + [f"output_dir={out}", f"adapt.pack={pack}", *extra]), show_progress=False)["records"]


def without_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING}


def log_lines(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in path.read_text().splitlines()]


# method, source, task, extra settings, tolerance of the adapters. The image task's questions tokenize to one
# width, so every run's batches are as wide packed as alone and the adapters agree to 1e-6. The text task's
# inputs vary in length: a run's batch is then padded (masked) to the pack's widest, which changes the float
# rounding of the attention's softmax and products over the longer key axis (about 1e-7 relative in the
# gradients, measured), and Adam's normalised steps carry that to about 1e-5 on a prompt trained at lr 0.1
# for 4 steps; 1e-4 still fails on any real difference (a wrong learning rate, a missed or shared clip,
# another run's batch: 1e-2 and more).
CASES = {
    "dept-transfer-images-features": ("dept", True, "shapes_count", ["data.feature_cache=true"], 1e-6),
    "dept-scratch-images-clipped": ("dept", False, "shapes_count", ["data.feature_cache=false", "train.max_grad_norm=0.05"], 1e-6),
    "pt-scratch-text": ("prompt_tuning", False, "shapes_para", [], 1e-4),
    "pt-transfer-text": ("prompt_tuning", True, "shapes_para", [], 1e-4),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_run_of_a_packed_sweep_ends_as_it_does_alone(tmp_path, sources, case):
    method, transfer, task, extra, tolerance = CASES[case]
    settings = [f"method={method}", f"adapt.task={task}", f"adapt.source={sources[method] if transfer else 'none'}", *extra]
    alone, packed = sweep(tmp_path / "alone", "off", *settings), sweep(tmp_path / "packed", "on", *settings)
    assert [r["pack_size"] for r in packed] == [3] * 3 and [r["pack_size"] for r in alone] == [1] * 3
    assert [without_timing(r) for r in packed] == [without_timing(r) for r in alone]  # dev selection, test scores
    assert len({(r["dev_score"], r["best_step"], r["score"]) for r in alone}) > 1  # the runs differ: a mix-up would show
    for run in sorted(p.name for p in (tmp_path / "alone" / "runs").iterdir()):
        a, b = (tmp_path / "alone" / "runs" / run), (tmp_path / "packed" / "runs" / run)
        ta, tb = load_file(a / "adapter" / "adapter_model.safetensors"), load_file(b / "adapter" / "adapter_model.safetensors")
        assert set(ta) == set(tb)
        for name in ta:
            torch.testing.assert_close(tb[name], ta[name], rtol=0, atol=tolerance)
        assert (a / "predictions.jsonl").read_text() == (b / "predictions.jsonl").read_text()
        la, lb = log_lines(a / "log.jsonl"), log_lines(b / "log.jsonl")
        assert [r.get("eval") for r in la] == [r.get("eval") for r in lb] and [r["step"] for r in la] == [r["step"] for r in lb]
        for ra, rb in zip(la, lb):
            if "loss" in ra:
                assert rb["lr"] == ra["lr"] and rb["loss"] == pytest.approx(ra["loss"], abs=tolerance)
    if method == "dept" and not transfer:  # learning happened: B starts at zero
        assert all(load_file(p / "adapter" / "adapter_model.safetensors")["lowrank_B"].abs().sum() > 0
                   for p in (tmp_path / "packed" / "runs").iterdir())


def test_each_run_is_clipped_on_its_own_and_keeps_its_own_learning_rates():
    from accelerate import Accelerator

    from dept_vl.config import TrainConfig
    from dept_vl.dept import DePTConfig, DePTModel
    from dept_vl.train.packed import PackedRun, PackedTraining
    from tests.conftest import tiny_t5

    base = tiny_t5()
    models = [DePTModel(base, DePTConfig(num_virtual_tokens=2, rank=2, max_length=12, seed=s, lr_prompt=lr, lr_lowrank=lr / 10))
              for s, lr in ((0, 0.3), (1, 0.03), (2, 0.003))]
    accelerator = Accelerator(cpu=True)
    training = PackedTraining([PackedRun(m, None) for m in models], TrainConfig(max_grad_norm=0.5, warmup_steps=0, max_steps=10), accelerator)
    clipped = []
    real_clip = accelerator.clip_grad_norm_

    def record(params, max_norm):
        clipped.append({id(p) for p in params})
        return real_clip(params, max_norm)

    accelerator.clip_grad_norm_ = record
    torch.manual_seed(0)
    batch = {"input_ids": torch.randint(3, 100, (2, 7)), "attention_mask": torch.ones(2, 7, dtype=torch.long),
             "labels": torch.randint(3, 100, (2, 3))}
    training.step([0, 2], [batch, batch])  # run 1 sits this step out
    assert clipped == [{id(p) for p in models[i].trainable_parameters().values()} for i in (0, 2)]
    expected = [[0.3 * 0.9, 0.03 * 0.9], [0.03 * 0.9, 0.003 * 0.9], [0.003 * 0.9, 0.0003 * 0.9]]  # one step of 10 taken
    assert [training.learning_rates(i) for i in range(3)] == [pytest.approx(lrs, rel=1e-12) for lrs in expected]
    assert models[1].lowrank_B.abs().sum() == 0 and models[0].lowrank_B.abs().sum() > 0  # the run left out did not move


def test_a_run_that_goes_nan_leaves_the_pack_and_the_others_end_as_alone(tmp_path, monkeypatch):
    from dept_vl.train.loop import NonFiniteLoss
    from dept_vl.train.packed import PackedTraining

    settings = ["adapt.task=shapes_para", "adapt.source=none", "adapt.k=[2]", "adapt.seeds=[0,1,2]"]
    alone = sweep(tmp_path / "alone", "off", *settings)
    original, steps = PackedTraining.step, []

    def poisoned(self, active, tensors):
        steps.append(list(active))
        if len(steps) == 3:  # run 1 (seed 1) breaks during step 3
            with torch.no_grad():
                self.runs[1].model.prompt.fill_(float("nan"))
        return original(self, active, tensors)

    monkeypatch.setattr(PackedTraining, "step", poisoned)
    with pytest.raises(NonFiniteLoss, match=r"1 run\(s\) stopped early .*dept-scratch_k2_seed1: the loss became NaN or infinite before step 3"):
        sweep(tmp_path / "packed", "on", *settings)
    assert steps[3] == [0, 2]  # it left the pack at step 3's log point
    kept = json.loads((tmp_path / "packed" / "results.json").read_text())
    assert [without_timing(r) for r in kept] == [without_timing(r) for r in alone if r["seed"] != 1]
    assert not (tmp_path / "packed" / "runs" / "dept-scratch_k2_seed1" / "result.json").exists()  # --resume redoes it


def tiny_adapters(base, tokenizer=None):
    """Three DePT adapters of different prompt lengths and ranks on one base, with trained-looking values."""
    from dept_vl.dept import DePTConfig, DePTModel

    adapters = {}
    for name, (m, r, seed) in {"a": (3, 2, 1), "b": (5, 0, 2), "c": (0, 4, 3)}.items():
        model = DePTModel(base, DePTConfig(num_virtual_tokens=m, rank=r, max_length=24, seed=seed, init="random")).eval()
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for tensor in model.adapter_state_dict(keep_vars=True).values():
                tensor.add_(torch.randn(tensor.shape, generator=generator))
        adapters[name] = model
    return adapters


@pytest.mark.parametrize("kind", ["text", "vl"])
@pytest.mark.parametrize("beams", [1, 3])
def test_mixed_adapter_generation_gives_each_row_its_own_adapters_output(kind, beams):
    from dept_vl.methods.serving import MultiAdapterModel
    from dept_vl.models.backbone import load_backbone

    backbone = load_backbone(SHIPPED).eval()  # trained: its generations depend on the input (a random model's do not)
    if kind == "text":
        base, images = backbone.text_model, {}
    else:
        base = backbone
        torch.manual_seed(0)
        images = {"pixel_values": torch.randn(6, *base.image_transform.input_size)}
    adapters = tiny_adapters(base)
    multi = MultiAdapterModel(base)
    for name, model in adapters.items():
        multi.add_adapter(name, model)
    torch.manual_seed(5)
    ids = torch.randint(3, 70, (6, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = mask[4, 3:] = 0
    ids = ids.masked_fill(mask == 0, 0)
    rows = ["a", "b", "c", None, "b", "a"]
    options = {"max_new_tokens": 6, "num_beams": beams, "do_sample": False}
    mixed = multi.generate(ids, mask, adapter_ids=rows, **images, **options)
    for i, name in enumerate(rows):
        one = {k: v[i : i + 1] for k, v in images.items()}
        if name is None:
            alone = base.generate(input_ids=ids[i : i + 1], attention_mask=mask[i : i + 1], **one, **options)
        else:
            alone = adapters[name].generate(input_ids=ids[i : i + 1], attention_mask=mask[i : i + 1], **one, **options)
        width = alone.shape[1]
        assert mixed[i, :width].tolist() == alone[0].tolist(), (i, name)
        # after its end a row holds only what generate fills finished rows with (pad, or end tokens in beam search)
        assert set(mixed[i, width:].tolist()) <= {base.generation_config.pad_token_id, base.generation_config.eos_token_id}
    # the adapters differ: a row given another row's adapter would show
    assert len({tuple(mixed[i].tolist()) for i in (0, 1, 2, 3)}) == 4


def test_serving_refuses_what_cannot_share_a_batch(tmp_path):
    from dept_vl.dept import DePTConfig, DePTModel
    from dept_vl.methods.serving import MultiAdapterModel
    from tests.conftest import tiny_t5

    base = tiny_t5()
    multi = MultiAdapterModel(base)
    multi.add_adapter("a", DePTModel(base, DePTConfig(num_virtual_tokens=2, rank=1, max_length=16)))
    with pytest.raises(ValueError, match="already loaded"):
        multi.add_adapter("a", DePTModel(base, DePTConfig(num_virtual_tokens=2, rank=1, max_length=16)))
    with pytest.raises(ValueError, match="another base model object"):
        multi.add_adapter("b", DePTModel(tiny_t5(), DePTConfig(num_virtual_tokens=2, rank=1, max_length=16)))
    with pytest.raises(KeyError, match=r"no adapter named 'z'; loaded: \['a'\]"):
        multi.generate(torch.ones(1, 3, dtype=torch.long), adapter_ids=["z"], max_new_tokens=2)
    with pytest.raises(ValueError, match="adapter_ids has 1 entries for 2 rows"):
        multi.generate(torch.ones(2, 3, dtype=torch.long), adapter_ids=["a"], max_new_tokens=2)
    # a saved folder loads onto the shared base
    DePTModel(base, DePTConfig(num_virtual_tokens=3, rank=2, max_length=16)).save_pretrained(tmp_path / "saved")
    loaded = multi.add_adapter("saved", tmp_path / "saved")
    assert loaded.base_model is base and loaded.prompt.shape == (3, 64)


@pytest.mark.parametrize("beams", [1, 3])
def test_predict_serves_several_adapters_in_one_pass_from_a_requests_file(tmp_path, sources, capsys, beams):
    from dept_vl.cli import main as cli
    from dept_vl.data.shapes import build_examples
    from dept_vl.methods import load_adapter_model
    from dept_vl.models.backbone import load_backbone

    examples = build_examples("shapes_count", "test", "shifted", size=3)
    for i, e in enumerate(examples):
        e.image.save(tmp_path / f"scene{i}.png")
    images = [tmp_path / f"scene{i}.png" for i in range(3)]
    requests = ([{"adapter": "dept", "input": e.input_text, "image": f"scene{i}.png"} for i, e in enumerate(examples)]
                + [{"adapter": str(sources["prompt_tuning"]), "input": e.input_text, "image": f"scene{i}.png"} for i, e in enumerate(examples[:2])]
                + [{"adapter": None, "input": examples[2].input_text, "image": "scene2.png"}, {"adapter": "dept", "input": "a b c"}])
    file = tmp_path / "requests.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in requests))
    out = tmp_path / "predictions.jsonl"
    assert cli(["predict", "--input", str(file), "--out", str(out), "--adapter", f"dept={sources['dept']}",
                f"model.backbone={SHIPPED}", "eval.max_new_tokens=6", f"eval.num_beams={beams}"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["input"] for r in rows] == [r["input"] for r in requests]  # in the requests' order

    # each row as its own adapter gives it alone (a batch of one), through the training pipeline's collator
    from dept_vl.config import load_config
    from dept_vl.train.loader import make_collator
    from dept_vl.data.example import Example

    base = load_backbone(SHIPPED).eval()
    collate = make_collator(base, load_config(None, []).data, 96)
    models = {"dept": load_adapter_model(base, sources["dept"]), str(sources["prompt_tuning"]): load_adapter_model(base, sources["prompt_tuning"])}
    for request, row in zip(requests, rows):
        image = str(tmp_path / request["image"]) if "image" in request else None
        batch = collate([Example("x", request["input"], "", image=image, image_id=image)], with_labels=False)
        model = models.get(request["adapter"], base)
        ids = model.generate(**batch, max_new_tokens=6, num_beams=beams, do_sample=False)
        assert row["prediction"] == base.tokenizer.batch_decode(ids, skip_special_tokens=True)[0].strip(), request
    assert len({r["prediction"] for r in rows}) > 1 and images

    # bad requests are named by file and line
    file.write_text('{"adapter": null, "input": "a"}\n{"adapter": null}\n')
    assert cli(["predict", "--input", str(file), "--out", str(tmp_path / "other.jsonl"), f"model.backbone={SHIPPED}"]) == 2
    assert f"{file}:2: a request needs a string \"input\"" in capsys.readouterr().err


def test_a_learning_rate_search_runs_as_one_pack_and_selects_by_dev_score(tmp_path):
    from dept_vl.report.results import select_by_dev

    search = ["adapt.task=shapes_count", "adapt.source=none", "adapt.k=[2]", "adapt.seeds=[0,1]", "adapt.lr_prompt=[0.01,0.5]",
              "adapt.lr_lowrank=[0.001,0.1]", "data.feature_cache=true"]
    alone, packed = sweep(tmp_path / "alone", "off", *search), sweep(tmp_path / "packed", "on", *search)
    assert [r["pack_size"] for r in packed] == [8] * 8  # 2 seeds x 2 x 2 learning rates, one pack
    assert [without_timing(r) for r in packed] == [without_timing(r) for r in alone]
    assert {(r["lr_prompt"], r["lr_lowrank"]) for r in packed} == {(0.01, 0.001), (0.01, 0.1), (0.5, 0.001), (0.5, 0.1)}
    for r in packed:  # each run trained at its own learning rates (warm-up is 1 step: step 1 runs at the full rate)
        folder = tmp_path / "packed" / "runs" / f"dept-scratch_k2_seed{r['seed']}_lrp{r['lr_prompt']:g}_lrl{r['lr_lowrank']:g}"
        first = json.loads((folder / "log.jsonl").read_text().splitlines()[0])
        assert first["lr"] == [r["lr_prompt"], r["lr_lowrank"]]
    # the choice: the setting with the best mean dev score over seeds, computed here from the records
    selection = json.loads((tmp_path / "packed" / "selection.json").read_text())
    assert selection == select_by_dev(json.loads((tmp_path / "packed" / "results.json").read_text()))
    dev = {}
    for r in packed:
        dev.setdefault((r["lr_prompt"], r["lr_lowrank"]), []).append(r["dev_score"])
    best = max(sorted(dev), key=lambda s: sum(dev[s]) / 2)
    assert (selection[0]["best"]["lr_prompt"], selection[0]["best"]["lr_lowrank"]) == best
    assert selection[0]["mean"] == sum(r["score"] for r in packed if (r["lr_prompt"], r["lr_lowrank"]) == best) / 2
    assert len({s["dev_mean"] for s in selection[0]["settings"]}) > 1  # the settings differ: the choice means something
    summary = (tmp_path / "packed" / "summary.csv").read_text().splitlines()
    assert summary[0] == "task,method,k,lr_prompt,lr_lowrank,metric,mean,std,seeds" and len(summary) == 5


def test_a_killed_packed_sweep_keeps_finished_packs_and_resumes_with_the_rest(tmp_path, monkeypatch):
    import dept_vl.recipes.adapt as adapt

    settings = ["adapt.task=shapes_para", "adapt.source=none", "adapt.k=[2]", "adapt.seeds=[0,1,2]", "adapt.pack_size=2"]
    whole = sweep(tmp_path / "whole", "on", *settings)
    packs, original = [], adapt.fit_packed

    def second_pack_killed(runs, *args, **kwargs):
        packs.append(len(runs))
        if len(packs) == 2:
            raise KeyboardInterrupt
        return original(runs, *args, **kwargs)

    monkeypatch.setattr(adapt, "fit_packed", second_pack_killed)
    with pytest.raises(KeyboardInterrupt, match="2 of 3 runs finished"):
        sweep(tmp_path / "killed", "on", *settings)
    assert packs == [2, 1] and len(json.loads((tmp_path / "killed" / "results.json").read_text())) == 2
    monkeypatch.setattr(adapt, "fit_packed", original)
    result = adapt.run_adapt(load_config(None, BASE + [f"output_dir={tmp_path / 'killed'}", "adapt.pack=on", *settings]),
                             resume=True, show_progress=False)
    assert result["skipped"] == 2  # only the unfinished run trained again (alone: a pack of one is a run alone)
    assert [without_timing(r) for r in result["records"]] == [without_timing(r) for r in whole]


def test_a_shape_search_trades_prompt_tokens_for_rank_at_one_budget_and_packs_different_shapes(tmp_path):
    from dept_vl.adapter import read_adapter
    from dept_vl.report.results import select_by_dev

    search = ["adapt.task=shapes_count", "adapt.source=none", "adapt.k=[2]", "adapt.seeds=[0,1]",
              "adapt.num_virtual_tokens=[2,6]", "data.feature_cache=true"]
    alone, packed = sweep(tmp_path / "alone", "off", *search), sweep(tmp_path / "packed", "on", *search)
    assert [r["pack_size"] for r in packed] == [4] * 4  # two shapes x two seeds in one pack
    assert [without_timing(r) for r in packed] == [without_timing(r) for r in alone]
    # the budget of m=4, r=2 at d=64 (the shipped backbone), s=96: 4*64 + 2*(96+64) = 576 parameters; the largest
    # rank for m=2 is (576 - 128) // 160 = 2 (448 parameters), for m=6 it is (576 - 384) // 160 = 1 (544)
    expected = {2: (2, 448), 6: (1, 544)}
    for r in packed:
        rank, count = expected[r["num_virtual_tokens"]]
        assert r["dept_shape"] == [r["num_virtual_tokens"], rank] and r["trainable_parameters"] == count
        adapter = read_adapter(tmp_path / "packed" / "runs" / f"dept-scratch_k2_seed{r['seed']}_m{r['num_virtual_tokens']}" / "adapter")
        assert sorted(tuple(t.shape) for t in adapter.tensors.values()) == sorted([(r["num_virtual_tokens"], 64), (96, rank), (rank, 64)])
    selection = json.loads((tmp_path / "packed" / "selection.json").read_text())
    assert selection == select_by_dev(json.loads((tmp_path / "packed" / "results.json").read_text()))
    assert [s["num_virtual_tokens"] for s in selection[0]["settings"]] == [2, 6]


@pytest.mark.parametrize("bad, message", [
    (["method=prompt_tuning", "adapt.source=none", "adapt.num_virtual_tokens=[2]"], "no rank to trade"),
    (["adapt.source=somewhere", "adapt.rank=[1]"], "fixes m and r"),
    (["adapt.source=none", "adapt.num_virtual_tokens=[40]"], "num_virtual_tokens=40 leaves no rank"),
])
def test_a_shape_search_that_cannot_keep_the_budget_is_refused_before_training(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        sweep(tmp_path / "out", "on", "adapt.task=shapes_count", *bad)


def test_runs_that_fit_follows_the_rows_of_each_run():
    from dept_vl.train.packed import runs_that_fit

    rows = [4, 16, 32, 32]
    peak = lambda n: 1000 + 10 * sum(rows[:n])  # noqa: E731 - 1000 bytes fixed, 10 bytes a row
    assert runs_that_fit(peak, rows, 1000 + 10 * 52) == 3  # 4 + 16 + 32 rows fit exactly
    assert runs_that_fit(peak, rows, 1000 + 10 * 52 - 1) == 2
    assert runs_that_fit(peak, rows, 10**9) == 4
    assert runs_that_fit(peak, rows, 0) == 1  # a run alone is always tried


def test_a_pack_shrunk_to_what_fits_in_memory_runs_the_rest_in_later_packs(tmp_path, monkeypatch):
    import dept_vl.recipes.adapt as adapt

    asked = []

    def fits_two(models, batches, device):
        asked.append(len(models))
        return 2

    monkeypatch.setattr(adapt, "measures_memory", lambda device: True)
    monkeypatch.setattr(adapt, "memory_pack_size", fits_two)
    settings = ["adapt.task=shapes_count", "adapt.source=none", "data.feature_cache=true"]
    packed = sweep(tmp_path / "packed", "on", *settings)
    assert asked == [3]  # measured once, on the first pack
    assert [r["pack_size"] for r in packed] == [2, 2, 1]
    monkeypatch.undo()
    alone = sweep(tmp_path / "alone", "off", *settings)
    assert [without_timing(r) for r in packed] == [without_timing(r) for r in alone]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_memory_probe_changes_nothing_and_grows_with_the_rows_on_the_gpu():
    """The probe's steps leave no gradient and no drawn random number behind, and a pack's measured peak grows
    with its rows as the fit assumes."""
    from dept_vl.models.backbone import load_backbone
    from dept_vl.recipes.sweep import memory_pack_size
    from dept_vl.train.packed import packed_step_peak

    device = torch.device("cuda")
    base = load_backbone(SHIPPED).text_model.to(device)
    models = [model.to(device) for model in tiny_adapters(base).values()]
    batches = []
    for rows in (4, 8, 8):
        ids = torch.randint(3, 70, (rows, 12), generator=torch.Generator().manual_seed(rows))
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids[:, :4].clone()})
    state = torch.cuda.get_rng_state(device)
    before = [{k: v.detach().clone() for k, v in m.adapter_state_dict().items()} for m in models]
    size = memory_pack_size(models, batches, device)
    assert 1 <= size <= 3
    assert torch.equal(torch.cuda.get_rng_state(device), state)
    assert all(p.grad is None for m in models for p in m.parameters())
    for m, old in zip(models, before):
        assert all(torch.equal(v, old[k]) for k, v in m.adapter_state_dict().items())
    on_device = [{k: v.to(device) for k, v in b.items()} for b in batches]
    assert packed_step_peak(models[:1], on_device[:1], device) < packed_step_peak(models[:3], on_device[:3], device)


def test_patience_ends_each_run_where_it_ends_alone_and_the_pack_goes_on(tmp_path):
    """train.patience: a run whose dev score has not improved for that many evaluations stops (its best adapter
    kept); in a pack it leaves at that evaluation and the other runs train on, each as it does alone."""
    settings = ["adapt.task=shapes_count", "adapt.source=none", "adapt.k=[2,4]", "adapt.seeds=[0,1,2]", "train.max_steps=6",
                "train.eval_every=1", "train.patience=3", "data.feature_cache=true"]
    alone, packed = sweep(tmp_path / "alone", "off", *settings), sweep(tmp_path / "packed", "on", *settings)
    assert [without_timing(r) for r in packed] == [without_timing(r) for r in alone]
    stopped = [r for r in alone if r["stopped_early"]]
    assert stopped and len(stopped) < len(alone)  # some runs stop early, others train on: the pack kept going
    for r in alone:
        # stopped: exactly 3 evaluations (every step) after the best one; else it trained all 6 steps
        assert r["steps"] == (r["best_step"] + 3 if r["stopped_early"] else 6)
        folder = tmp_path / "packed" / "runs" / f"dept-scratch_k{r['k']}_seed{r['seed']}"
        evals = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if "eval" in json.loads(line)]
        assert [e["step"] for e in evals] == list(range(1, r["steps"] + 1))
        if r["stopped_early"]:
            assert max(e["eval"] for e in evals[-3:]) <= r["dev_score"] == max(e["eval"] for e in evals)
