"""The benchmark's CPU smoke mode writes the documented JSON schema with positive, self-consistent figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ROWS = "reference,dept_fast,pt100_fast,peft_pt100,peft_lora,full_ft"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_train_step", ROOT / "benchmarks" / "train_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    pytest.importorskip("peft")
    bench = load_bench()
    path = tmp_path_factory.mktemp("bench") / "smoke.json"
    returned = bench.main(["--smoke", "--rows", ROWS, "--workloads", "glue,full256", "--no-vl", "--out", str(path)])
    return bench, returned, json.loads(path.read_text())


def test_smoke_writes_the_schema(smoke):
    bench, returned, out = smoke
    assert out["schema"] == bench.SCHEMA and out["summary"] == returned["summary"]
    for key in ("env", "config", "results", "generation", "errors", "skipped", "summary", "checks", "ceiling_tflops", "total_s"):
        assert key in out, key
    assert out["errors"] == [] and out["skipped"] == []
    assert out["config"]["smoke"] and out["config"]["m"] == 60 and out["config"]["r"] == 30 and out["config"]["s"] == 256
    assert {r["variant"] for r in out["results"]} == set(ROWS.split(","))
    assert {"speedup_vs_reference_glue", "speedup_vs_pt100_same_path_glue", "mfu_full256"} <= set(out["summary"]["dept_fast"])


def test_smoke_figures_are_positive_and_consistent(smoke):
    _, _, out = smoke
    batch = out["config"]["batch"]
    for r in out["results"]:
        assert r["step_ms_median"] > 0 and r["examples_per_s"] > 0 and r["tflop_per_s"] > 0, r
        # examples/s is every example over the summed step times: it and the mean step time must agree
        assert r["examples_per_s"] * r["step_ms_mean"] / 1e3 == pytest.approx(batch, rel=1e-6)
        assert 0 < r["real_token_fraction"] <= 1
        assert r["host_syncs"] is None or r["host_syncs"] >= 0
    reference = [r for r in out["results"] if r["variant"] == "reference"]
    assert all(r["widths"] == [256] for r in reference)  # the reference setting pads every input to s
    assert all(w % 64 == 0 or w == 256 for r in out["results"] if r["variant"] == "dept_fast" for w in r["widths"])
    for g in out["generation"]:
        assert g["latency_ms_median"] > 0 and g["new_tokens"] == 4


def test_flop_count_matches_a_hand_count():
    bench = load_bench()
    c = bench.SIZES["base"]
    d, ff, n, vocab = c["d_model"], c["d_ff"], c["num_layers"], c["vocab_size"]
    per_enc_token = n * (4 * d * d + 2 * d * ff) + n * 2 * d * d
    per_dec_token = n * (6 * d * d + 2 * d * ff) + d * vocab
    assert bench.step_flops("base", 100, 10, 2) == 2 * 2 * (100 * per_enc_token + 10 * per_dec_token)
    assert bench.step_flops("base", 100, 10, 3) / bench.step_flops("base", 100, 10, 2) == 1.5
    assert per_enc_token == 12 * (6 * 768 * 768 + 2 * 768 * 3072)  # T5-base: q, k, v, o, cross k, v; FFN in, out


def test_reference_row_is_the_dept_formula():
    """The script's reference computation equals DePTModel with every input padded to s."""
    from dept_vl import DePTConfig, DePTModel
    from tests.conftest import tiny_t5

    bench = load_bench()
    base = tiny_t5()
    ref = bench.ReferenceDePT(base)
    with torch.no_grad():
        ref.B.normal_()
    model = DePTModel(base, DePTConfig(num_virtual_tokens=60, rank=30, max_length=256, init="random"))
    model.load_adapter_state({"prompt": ref.prompt, "lowrank_A": ref.A, "lowrank_B": ref.B})
    ids = torch.randint(2, 120, (2, 256))
    mask = torch.ones_like(ids)
    mask[1, 100:] = 0
    labels = torch.randint(2, 120, (2, 4))
    with torch.no_grad():
        assert torch.allclose(ref(ids, mask, labels).logits, model(input_ids=ids, attention_mask=mask, labels=labels).logits, atol=1e-5)


@pytest.mark.slow
def test_ddp_scaling_smoke_measures_both_arms_and_the_all_reduce(tmp_path):
    """benchmarks/ddp_scaling.py --smoke: two CPU processes (gloo) against one, and the all-reduce probe."""
    spec = importlib.util.spec_from_file_location("bench_ddp", ROOT / "benchmarks" / "ddp_scaling.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = tmp_path / "ddp.json"
    bench.main(["--smoke", "--gpus", "2", "--skip", "evaluate,resume", "--work", str(tmp_path / "work"), "--out", str(path)])
    out = json.loads(path.read_text())
    assert out["schema"] == "dept-vl-ddp/1" and out["config"]["no_multicast"]["NCCL_NVLS_ENABLE"] == "0"
    single, multi = out["scaling"]["single"], out["scaling"]["multi"]
    assert (single["processes"], multi["processes"]) == (1, 2)
    assert single["examples_per_s"] > 0 and multi["examples_per_s"] > 0
    assert out["scaling"]["efficiency"] == pytest.approx(multi["examples_per_s"] / (2 * single["examples_per_s"]))
    # the probe reduces exactly the adapter's gradients: m*d + s*r + r*d of the smoke's DePT
    assert out["allreduce"]["numel"] == multi["trainable_parameters"] == 4 * 64 + 48 * 2 + 2 * 64
    assert out["allreduce"]["processes"] == 2 and out["allreduce"]["median_ms"] > 0 and out["allreduce"]["backend"] == "gloo"
