"""The fast training path keeps eager numerics: buckets, bf16 base, attention paths, compiled steps, fused AdamW."""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.nn.functional as F

from dept_vl import DePTConfig, DePTModel
from dept_vl.train import compiling, fastpath
from tests.conftest import tiny_t5

gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def dept(seed: int = 0, rank: int = 4, m: int = 6, dropout: float = 0.0) -> DePTModel:
    base = tiny_t5(seed=seed)
    for module in base.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = dropout
    model = DePTModel(base, DePTConfig(num_virtual_tokens=m, rank=rank, max_length=32, init="random", seed=seed))
    with torch.no_grad():
        if model.lowrank_B is not None:
            model.lowrank_B.normal_(0, 0.1, generator=torch.Generator().manual_seed(seed))
    return model.train()


def batch(width: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 120, (3, width), generator=g)
    mask = torch.ones_like(ids)
    ids[1, width - 3:], mask[1, width - 3:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.randint(2, 120, (3, 4), generator=g)}


# ------------------------------------------------------------------ buckets
def test_bucket_length_multiples_lists_and_cap():
    assert [fastpath.bucket_length(n, 64) for n in (1, 64, 65, 200)] == [64, 64, 128, 256]
    assert fastpath.bucket_length(200, 64, max_length=230) == 230
    assert fastpath.bucket_length(33, [32, 48, 128]) == 48
    with pytest.raises(ValueError, match="exceeds max_length 256"):
        fastpath.bucket_length(300, 64, max_length=256)
    with pytest.raises(ValueError, match="largest bucket 128"):
        fastpath.bucket_length(129, [64, 128])
    with pytest.raises(ValueError, match="buckets=0"):
        fastpath.bucket_length(5, 0)


def test_pad_to_bucket_pads_right_with_the_right_values():
    b = batch(10)
    out = fastpath.pad_to_bucket(b, 16)
    assert out["input_ids"].shape == (3, 16) and out["attention_mask"].shape == (3, 16)
    assert torch.equal(out["input_ids"][:, :10], b["input_ids"]) and out["input_ids"][:, 10:].eq(0).all()
    assert out["attention_mask"][:, 10:].eq(0).all() and out["labels"] is b["labels"]
    labels = fastpath.pad_to_bucket(b, 8, keys=("labels",))["labels"]
    assert labels.shape == (3, 8) and labels[:, 4:].eq(-100).all()
    with pytest.raises(ValueError, match="pad them together"):
        fastpath.pad_to_bucket({"input_ids": b["input_ids"], "attention_mask": b["attention_mask"][:, :5]}, 16)


def test_bucket_padding_leaves_the_dept_loss_unchanged():
    model, b = dept().eval(), batch(10)
    with torch.no_grad():
        base_loss = model(**b).loss
        for width in (16, 32):
            assert torch.allclose(model(**fastpath.pad_to_bucket(b, [width])).loss, base_loss, atol=1e-6)


# ------------------------------------------------------------------ model preparation and attention
def test_prepare_fast_model_casts_only_the_frozen_base():
    model = fastpath.prepare_fast_model(dept(), torch.bfloat16)
    for name, p in model.named_parameters():
        assert p.dtype == (torch.float32 if p.requires_grad else torch.bfloat16), name
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"prompt", "lowrank_A", "lowrank_B"}
    loss = model(**batch()).loss
    loss.backward()
    assert model.prompt.grad.dtype == torch.float32 and model.lowrank_B.grad.dtype == torch.float32
    with pytest.raises(ValueError, match="dtype=torch.int8"):
        fastpath.prepare_fast_model(dept(), torch.int8)


def test_bf16_base_matches_fp32_within_bf16_tolerance():
    ref_model, b = dept(), batch()
    ref = ref_model(**b).loss
    fast = fastpath.prepare_fast_model(copy.deepcopy(ref_model), torch.bfloat16)(**b).loss
    assert abs(fast.item() - ref.item()) / ref.item() < 2e-2


@pytest.mark.parametrize("attention", ["eager", "sdpa", "biased_sdpa"])
def test_attention_paths_agree_on_loss_and_gradients(attention):
    ref_model, b = dept(), batch()
    ref_loss = ref_model(**b).loss
    ref_loss.backward()
    model = copy.deepcopy(ref_model)
    model.zero_grad(set_to_none=True)
    fastpath.set_attention(model, attention)
    loss = model(**b).loss
    loss.backward()
    assert torch.allclose(loss, ref_loss, rtol=1e-5)
    assert torch.allclose(model.prompt.grad, ref_model.prompt.grad, rtol=1e-4, atol=1e-7)
    assert torch.allclose(model.lowrank_B.grad, ref_model.lowrank_B.grad, rtol=1e-4, atol=1e-7)
    assert model.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=3).shape[0] == 3


@pytest.mark.parametrize("kind", ["text", "text-unpadded", "vl"])
def test_the_biased_kernels_never_read_a_tensor_on_the_host(kind, monkeypatch):
    """An eager step that reads a tensor on the host waits there for the GPU (transformers' masks check whether they
    can be left out: twice a forward). With the biased kernels the forward and backward read nothing, and the loss
    is plain SDPA's, padded batch or not."""
    if kind == "vl":
        import dept_vl.tasks  # noqa: F401 - the tiny preset's words
        from dept_vl.models import build_vl_model

        torch.manual_seed(0)
        model = DePTModel(build_vl_model("tiny"), DePTConfig(num_virtual_tokens=3, rank=2, max_length=32)).train()
        vocab = model.base_model.get_input_embeddings().num_embeddings
        b = {**{k: v % vocab for k, v in batch().items()}, "pixel_values": torch.randn(3, 3, 48, 48)}
    else:
        model, b = dept(), batch()
        if kind == "text-unpadded":
            b["attention_mask"] = torch.ones_like(b["attention_mask"])
    plain = copy.deepcopy(model)
    fastpath.set_attention(plain, "sdpa")
    fastpath.set_attention(model, "biased_sdpa")
    reads = []
    for name in ("__bool__", "item", "tolist"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda t, *a, _real=real, _name=name, **k: (reads.append(_name), _real(t, *a, **k))[1])
    torch.manual_seed(1)  # the same dropout masks in both
    loss = model(**b, use_cache=False).loss
    loss.backward()
    monkeypatch.undo()
    assert reads == []
    torch.manual_seed(1)
    torch.testing.assert_close(loss, plain(**b, use_cache=False).loss, rtol=1e-5, atol=1e-6)


def test_set_attention_rejects_unknown_names():
    with pytest.raises(ValueError, match="attention='flash'"):
        fastpath.set_attention(dept(), "flash")


@pytest.mark.parametrize("key_length", [13, 16, 77])
def test_aligned_attention_inputs_pad_keys_without_changing_attention(key_length):
    torch.manual_seed(key_length)
    q, k, v = torch.randn(2, 3, 9, 8), torch.randn(2, 3, key_length, 8), torch.randn(2, 3, key_length, 8)
    position_bias = torch.randn(key_length, 9, 3).permute(2, 1, 0).unsqueeze(0)  # heads innermost, as T5 makes it
    mask = torch.zeros(2, 1, 1, key_length)
    mask[1, ..., -3:] = torch.finfo(torch.float32).min
    bias = position_bias + mask
    k2, v2, b2 = fastpath.aligned_attention_inputs(q, k, v, bias)
    assert k2.shape[2] % 16 == 0 and b2.is_contiguous() and all(s % 16 == 0 for s in b2.stride()[:-1])
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
    assert torch.allclose(F.scaled_dot_product_attention(q, k2, v2, attn_mask=b2, scale=1.0), expected, atol=1e-5)


def test_auto_attention_picks_the_biased_kernel_only_for_t5_on_cuda():
    from transformers import BartConfig, BartForConditionalGeneration

    t5 = dept()
    assert fastpath.resolve_attention("auto", t5, "cuda") == "biased_sdpa"
    assert fastpath.resolve_attention("auto", t5, "cpu") == "keep"
    bart = BartForConditionalGeneration(BartConfig(vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1,
                                                   encoder_attention_heads=2, decoder_attention_heads=2,
                                                   encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=32))
    assert fastpath.resolve_attention("auto", bart, "cuda") == "keep"
    full = tiny_t5()  # full fine-tuning trains the position bias: that gradient path stays on the model's own attention
    assert fastpath.resolve_attention("auto", full, "cuda") == "keep"
    assert fastpath.resolve_attention("sdpa", t5, "cuda") == "sdpa"
    with pytest.raises(ValueError, match="attention='flash'"):
        fastpath.resolve_attention("flash", t5, "cuda")


def test_attention_dropout_switch_is_opt_in():
    def attention_modules(model):
        return [m for m in model.modules() if type(m).__name__ == "T5Attention"]

    base = tiny_t5()
    for m in attention_modules(base):
        m.dropout = 0.1
    kept = fastpath.prepare_fast_model(copy.deepcopy(base), torch.float32)
    assert all(m.dropout == 0.1 for m in attention_modules(kept))
    off = fastpath.prepare_fast_model(base, torch.float32, attention_dropout=False)
    assert attention_modules(off) and all(m.dropout == 0.0 for m in attention_modules(off))
    assert isinstance(off.encoder.dropout, torch.nn.Dropout)  # residual dropout untouched


# ------------------------------------------------------------------ optimizer and steps
def test_make_optimizer_keeps_group_lr_and_weight_decay():
    model = dept()
    opt = fastpath.make_optimizer(model.param_groups())
    assert [g["lr"] for g in opt.param_groups] == [0.3, 1e-4]
    assert all(g["weight_decay"] == 1e-5 for g in opt.param_groups)
    assert opt.defaults["fused"] is False  # CPU parameters: the fused kernel is picked on CUDA only
    with pytest.raises(ValueError, match="no parameters"):
        fastpath.make_optimizer([])


def run_steps(model: DePTModel, loss_fn, widths=(10, 16, 10)) -> list[float]:
    opt = fastpath.make_optimizer(model.param_groups(), fused=False)
    losses = []
    for step, width in enumerate(widths):
        loss = fastpath.train_step(loss_fn, opt, fastpath.pad_to_bucket(batch(10, seed=step), [width]))
        losses.append(loss.item())
    return losses


def test_compiled_steps_match_eager_steps_across_buckets():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    eager_model, compiled_model = dept(), dept()
    eager = run_steps(eager_model, compiling.compile_loss(eager_model, enabled=False))
    compiled = run_steps(compiled_model, compiling.compile_loss(compiled_model, backend="aot_eager"))
    assert compiled == pytest.approx(eager, rel=1e-5)
    for name in ("prompt", "lowrank_A", "lowrank_B"):
        assert torch.allclose(getattr(compiled_model, name), getattr(eager_model, name), atol=1e-6), name
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1  # widths 10 and 16: one dynamic graph
    assert not torch._dynamo.utils.counters["graph_break"]


def test_training_loss_traces_to_one_graph_without_a_decoder_cache():
    """The loss the fast path compiles: no decoder cache (its config deep-copy breaks graphs on torch 2.11), one graph."""
    model, b = dept(), batch(12)
    seen = {}
    original = model.base_model.forward

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    model.base_model.forward = spy
    loss = fastpath.training_loss(model)(**b)
    assert seen["use_cache"] is False
    torch.testing.assert_close(loss, model(**b, use_cache=False).loss)
    del model.base_model.forward
    torch._dynamo.reset()
    explained = torch._dynamo.explain(fastpath.training_loss(model))(**b)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_compile_loss_rejects_unknown_modes():
    with pytest.raises(ValueError, match="mode='fast'"):
        compiling.compile_loss(dept(), mode="fast")


# ------------------------------------------------------------------ GPU
@gpu
@needs_cuda
@pytest.mark.parametrize("attention", ["biased_sdpa", "biased_cudnn"])
def test_gpu_fast_path_matches_eager_bf16_and_never_syncs(attention):
    """Six steps from the same start: eager bf16 vs compiled (CUDA graphs, fused biased attention); the last three under sync errors."""
    torch._dynamo.reset()
    ref, fast = dept().cuda(), dept().cuda()
    fastpath.prepare_fast_model(ref, torch.bfloat16)
    fastpath.prepare_fast_model(fast, torch.bfloat16, attention=attention)
    ref_fn = compiling.compile_loss(ref, enabled=False)
    fast_fn = compiling.compile_loss(fast, mode="reduce-overhead")
    ref_opt, fast_opt = fastpath.make_optimizer(ref.param_groups()), fastpath.make_optimizer(fast.param_groups())
    assert fast_opt.defaults["fused"] is True
    batches = [{k: v.cuda() for k, v in fastpath.pad_to_bucket(batch(10, seed=i), [16]).items()} for i in range(6)]
    ref_losses = [fastpath.train_step(ref_fn, ref_opt, b) for b in batches]
    fast_losses = [fastpath.train_step(fast_fn, fast_opt, b) for b in batches[:3]]  # compile, record, replay
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fast_losses += [fastpath.train_step(fast_fn, fast_opt, b) for b in batches[3:]]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.allclose(torch.stack(fast_losses), torch.stack(ref_losses), rtol=2e-2)
    # weights are not compared element-wise: Adam turns bf16 noise in near-zero gradients into +-lr steps
    start = dept().prompt.cuda()
    assert not torch.equal(fast.prompt, start)


@gpu
@needs_cuda
def test_gpu_biased_sdpa_matches_eager_attention_in_bf16():
    """The fused attention path in bf16 is as close to the fp32 reference as eager attention in bf16 is."""
    ref, b = dept().cuda(), {k: v.cuda() for k, v in batch(27).items()}  # 27: not a multiple of 16
    ref_loss = ref(**b).loss
    ref_loss.backward()
    errors = {}
    for attention in ("keep", "biased_sdpa", "biased_cudnn"):
        model = copy.deepcopy(ref)
        model.zero_grad(set_to_none=True)
        fastpath.prepare_fast_model(model, torch.bfloat16, attention=attention)
        loss = model(**b).loss
        loss.backward()
        assert abs(loss.item() - ref_loss.item()) / ref_loss.item() < 2e-2
        errors[attention] = ((model.prompt.grad - ref.prompt.grad).norm() / ref.prompt.grad.norm()).item()
    assert errors["biased_sdpa"] < 1.5 * errors["keep"] + 1e-3, errors
    assert errors["biased_cudnn"] < 1.5 * errors["keep"] + 1e-3, errors


@gpu
@needs_cuda
def test_gpu_biased_sdpa_generates_as_plain_sdpa():
    """Generation (eval mode; decoder cache: one query, growing keys) with the biased setting: SDPA's sequences and scores."""
    model = dept().cuda().eval()
    b = {k: v.cuda() for k, v in batch(27).items() if k != "labels"}
    scores = {}
    for attention in ("sdpa", "biased_sdpa"):
        fastpath.set_attention(model, attention)
        with torch.no_grad():
            out = model.generate(**b, max_new_tokens=6, do_sample=False, output_scores=True, return_dict_in_generate=True)
        scores[attention] = (out.sequences, torch.stack(out.scores))
    assert torch.equal(scores["sdpa"][0], scores["biased_sdpa"][0])
    torch.testing.assert_close(scores["biased_sdpa"][1], scores["sdpa"][1], rtol=1e-4, atol=1e-4)


def test_one_compilation_serves_every_width_batch_size_and_visual_token_count():
    """Every dimension that varies during a run is dynamic from the first call: text widths (buckets), label widths,
    a smaller last batch, the visual tokens of one image and of two (NLVR2); none recompiles."""
    import dept_vl.tasks  # noqa: F401 - the tiny preset's words
    from dept_vl.models import build_vl_model

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    torch.manual_seed(0)
    base = build_vl_model("tiny")
    model = DePTModel(base, DePTConfig(num_virtual_tokens=3, rank=2, max_length=64)).eval()  # no dropout: comparable
    loss_fn = compiling.compile_loss(model, backend="aot_eager")
    _, tokens, width = base.encode_images(torch.randn(1, *base.image_transform.input_size)).shape
    for rows, length, target, images in [(8, 16, 4, 1), (8, 32, 4, 1), (5, 16, 6, 1), (8, 48, 4, 2), (3, 32, 8, 2)]:
        batch = {"input_ids": torch.randint(3, 60, (rows, length)), "attention_mask": torch.ones(rows, length, dtype=torch.long),
                 "labels": torch.randint(3, 60, (rows, target)), "image_features": torch.randn(rows, images * tokens, width)}
        loss = loss_fn(**batch)
        torch.testing.assert_close(loss, model(**batch, use_cache=False).loss)
        loss.backward()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1  # before: 3 (a smaller batch, two images)


def test_the_compilers_caches_live_in_dept_vls_cache_folder_unless_the_user_chose_one(tmp_path, monkeypatch):
    """A second run of the same shapes finds the compiled kernels of the first (the folder persists across runs)."""
    monkeypatch.setenv("DEPT_VL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    compiling.compile_loss(dept(), backend="inductor")  # compiles lazily: nothing runs here
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cache" / "compile" / "inductor")
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "cache" / "compile" / "triton")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "theirs"))
    assert compiling.use_compile_cache() == tmp_path / "theirs"
    # importing torch._dynamo writes torch's default folder there: that is nobody's choice
    import torch._inductor.runtime.cache_dir_utils as inductor_cache

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", inductor_cache.default_cache_dir())
    assert compiling.use_compile_cache() == tmp_path / "cache" / "compile" / "inductor"
    assert inductor_cache.cache_dir() == str(tmp_path / "cache" / "compile" / "inductor")  # where inductor writes
