"""eval.cache=static: generation with a preallocated decoder cache gives the tokens the dynamic cache gives, greedy
and with beams, on T5 (the shipped VL backbone: with and without images, through the evaluation's own predict and
predict_packed) and BART (text), one adapter and a pack of adapters (CPU: no CUDA graphs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from dept_vl.config import EvalConfig, load_config

SHIPPED = Path(__file__).resolve().parents[1] / "dept_vl" / "assets" / "backbone-tiny"


def random_adapters(base, count: int = 2, max_length: int = 96):
    """DePT adapters with random prompts and offsets (generations that differ from the base's and each other's)."""
    from dept_vl.dept import DePTConfig, DePTModel

    models = []
    for seed in range(count):
        model = DePTModel(base, DePTConfig(num_virtual_tokens=3 + seed, rank=2, max_length=max_length, seed=seed, init="random"))
        generator = torch.Generator().manual_seed(10 + seed)
        with torch.no_grad():
            for tensor in model.adapter_state_dict(keep_vars=True).values():
                tensor.add_(0.5 * torch.randn(tensor.shape, generator=generator))
        models.append(model.eval())
    return models


@pytest.fixture(scope="module")
def t5_run():
    import dept_vl.tasks  # noqa: F401
    from dept_vl.train.run import Run

    config = load_config(None, [f"model.backbone={SHIPPED}", "data.format=shifted", "data.feature_cache=false",
                                "dept.max_length=96", "eval.batch_size=5", "eval.max_new_tokens=6"])
    run = Run.setup(config, ["shapes_count", "shapes_para"])
    examples = {task: run.load(task, "dev", 7) for task in ("shapes_count", "shapes_para")}
    return run, examples, random_adapters(run.base)


@pytest.fixture
def static_caches(monkeypatch) -> list[int]:
    """Counts the static caches generate builds."""
    import transformers

    built: list[int] = []
    original = transformers.StaticCache.__init__

    def counted(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(transformers.StaticCache, "__init__", counted)
    return built


@pytest.mark.parametrize("beams", [1, 3])
@pytest.mark.parametrize("task", ["shapes_count", "shapes_para"])  # with images, text only
def test_t5_a_static_cache_predicts_what_the_dynamic_cache_predicts(t5_run, beams, task, static_caches):
    from dept_vl.train.predict import predict, predict_packed

    run, examples, models = t5_run
    collate = run.collator([examples[task]])
    dynamic = dataclasses.replace(run.config.eval, num_beams=beams, cache="dynamic")
    static = dataclasses.replace(dynamic, cache="static")
    alone = []
    for model in models:
        alone.append(predict(model, examples[task], collate, run.base.tokenizer, dynamic))
        assert not static_caches
        assert predict(model, examples[task], collate, run.base.tokenizer, static) == alone[-1]
        assert static_caches  # the static cache was used
        static_caches.clear()
    assert predict_packed(models, [examples[task]] * 2, collate, run.base.tokenizer, static) == alone
    assert static_caches
    assert alone[0] != alone[1]  # the adapters change the output: a cache that ignored the prompt would show


@pytest.mark.parametrize("beams", [1, 3])
def test_bart_a_static_cache_generates_what_the_dynamic_cache_generates(beams, static_caches):
    from transformers import BartConfig, BartForConditionalGeneration

    from dept_vl.config import EvalConfig
    from dept_vl.dept.multi import packed_generate
    from dept_vl.train.predict import generation_options

    config = BartConfig(vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_bos_token_id=None,
                        forced_eos_token_id=None, init_std=0.5)  # large weights: outputs that depend on the input
    torch.manual_seed(0)
    models = random_adapters(BartForConditionalGeneration(config).eval(), max_length=24)
    ids = torch.randint(3, 100, (4, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    options = {c: {**generation_options(EvalConfig(num_beams=beams, max_new_tokens=6, cache=c)), "min_new_tokens": 6}
               for c in ("dynamic", "static")}
    alone = []
    for model in models:
        alone.append(model.generate(input_ids=ids, attention_mask=mask, **options["dynamic"]))
        assert torch.equal(model.generate(input_ids=ids, attention_mask=mask, **options["static"]), alone[-1])
    packed = packed_generate([(m, {"input_ids": ids, "attention_mask": mask}) for m in models], **options["static"])
    assert all(torch.equal(p, a) for p, a in zip(packed, alone)) and static_caches
    rows = [tuple(r) for m in alone for r in m.tolist()]  # decoding that depends on the input and on its own history
    assert len(set(rows)) > 2 and any(len(set(r[1:])) > 1 for r in rows)


def test_eval_cache_is_checked():
    with pytest.raises(ValueError, match="eval.cache=.offloaded."):
        load_config(None, ["eval.cache=offloaded"])


def test_the_static_cache_decoder_compiles_as_one_graph_and_generates_the_same_tokens(t5_run):
    """What transformers does on a GPU with eval.cache=static (compiling greedy decoding's step; it leaves beam
    search eager), forced on the CPU with the plain backend and fullgraph: DePT's and the VL model's decoding step has
    no graph break, and the compiled step generates the eager tokens, with and without images."""
    beams = 1
    import torch._dynamo.utils
    from transformers import CompileConfig

    from dept_vl.train.predict import generation_options

    compile_config = CompileConfig(fullgraph=True, backend="eager", mode=None)
    if not hasattr(compile_config, "_compile_all_devices"):
        pytest.skip("this transformers compiles generation on accelerators only")
    compile_config._compile_all_devices = True
    run, examples, models = t5_run
    eager = dataclasses.replace(run.config.eval, num_beams=beams, cache="dynamic")
    static = dataclasses.replace(eager, cache="static")
    stats = torch._dynamo.utils.counters["stats"]
    for task in ("shapes_count", "shapes_para"):
        batch = run.collator([examples[task]])(examples[task], with_labels=False)
        for model in models:
            expected = model.generate(**batch, **generation_options(eager))
            torch._dynamo.reset()
            graphs = stats["unique_graphs"]
            got = model.generate(**batch, **generation_options(static), compile_config=compile_config)
            assert stats["unique_graphs"] > graphs  # the step was compiled (fullgraph: a graph break would raise)
            assert torch.equal(got, expected)
    torch._dynamo.reset()


@pytest.mark.parametrize("beams", [2, 3])
def test_compiled_decoding_predicts_what_eager_decoding_predicts(t5_run, beams, monkeypatch):
    """eval.cache=compiled with beam search: the decoding steps after the first compiled (here with a counting
    backend: no code generation on a CPU), the static cache reordered in place, through predict and predict_packed,
    with and without images: the eager predictions; afterwards the model runs eager again (training never meets
    the compiled decoder)."""
    from dept_vl.train import decoding
    from dept_vl.train import predict as predicting

    calls: list[int] = []

    def counting(graph, example_inputs):  # runs the traced graph as it is, counting its calls
        def run(*args):
            calls.append(1)
            return graph.forward(*args)

        return run

    reorders: list[bool] = []
    in_place = decoding.reorder_decoder_cache

    def spying(cache, beam_idx):  # beam search's reorder, each step: in place on the filled static cache
        reorders.append(decoding.filled_static_cache(cache))
        in_place(cache, beam_idx)

    monkeypatch.setattr(decoding, "DECODING_COMPILE", {"backend": counting})
    monkeypatch.setattr(decoding, "reorder_decoder_cache", spying)
    torch._dynamo.reset()
    run, examples, models = t5_run
    for task in ("shapes_count", "shapes_para"):
        collate = run.collator([examples[task]])
        eager = dataclasses.replace(run.config.eval, num_beams=beams, cache="dynamic")
        compiled = dataclasses.replace(eager, cache="compiled")
        alone = [predicting.predict(m, examples[task], collate, run.base.tokenizer, eager) for m in models]
        before, reordered = len(calls), len(reorders)
        assert [predicting.predict(m, examples[task], collate, run.base.tokenizer, compiled) for m in models] == alone
        assert len(calls) > before  # the decoding ran compiled
        assert reorders[reordered:] and all(reorders[reordered:])  # in place, on the filled static cache
        assert predicting.predict_packed(models, [examples[task]] * 2, collate, run.base.tokenizer, compiled) == alone
    assert decoding.decoding_model(models[0]) is run.base.text_model
    assert run.base.text_model._compiled_call_impl is None
    torch._dynamo.reset()


def test_greedy_compiled_decoding_is_left_to_transformers(t5_run):
    """Greedy decoding with eval.cache=compiled keeps transformers' own compiled static-cache step (it runs it on a
    GPU; measured 5.28x eager there): no compile is switched off and nothing of ours wraps the model."""
    from dept_vl.train import decoding
    from dept_vl.train import predict as predicting

    run, _, models = t5_run
    greedy = EvalConfig(num_beams=1, cache="compiled")
    options = predicting.generation_options(greedy)
    assert options["cache_implementation"] == "static" and "disable_compile" not in options
    assert predicting.generation_options(EvalConfig(num_beams=3, cache="compiled"))["disable_compile"] is True
    with decoding.beam_decoding(models[0], greedy):
        assert run.base.text_model._compiled_call_impl is None


def test_beam_reorder_in_place_keeps_the_static_cache_addresses_and_transformers_values():
    """reorder_decoder_cache against transformers' own reorder of a copy: the same decoder keys and values, in the same
    tensors (addresses kept, what a compiled step needs), and a cross-attention cache left alone, which equals the
    reordered one because beams move only within an example whose beams share its encoder states."""
    import copy

    from transformers import T5Config
    from transformers.cache_utils import EncoderDecoderCache, StaticCache

    from dept_vl.train.decoding import filled_static_cache, reorder_decoder_cache

    config = T5Config(d_model=8, d_kv=4, num_heads=2, num_layers=2, num_decoder_layers=2, vocab_size=16)
    examples, beams, heads, head_dim = 2, 3, 2, 4
    rows = examples * beams
    cache = EncoderDecoderCache(StaticCache(config=config, max_cache_len=5), StaticCache(config=config, max_cache_len=7))
    assert not filled_static_cache(cache)
    generator = torch.Generator().manual_seed(0)
    for layer in range(2):
        keys, values = (torch.randn(rows, heads, 2, head_dim, generator=generator) for _ in range(2))
        cache.self_attention_cache.update(keys, values, layer)
        encoder = torch.randn(examples, heads, 7, head_dim, generator=generator).repeat_interleave(beams, dim=0)
        cache.cross_attention_cache.update(encoder, encoder + 1, layer)
    assert filled_static_cache(cache)
    expected = copy.deepcopy(cache)
    beam_idx = torch.tensor([2, 2, 0, 4, 3, 3])  # within each example's three beams
    expected.reorder_cache(beam_idx)
    pointers = [(layer.keys.data_ptr(), layer.values.data_ptr()) for layer in cache.self_attention_cache.layers]
    cross = [layer.keys.clone() for layer in cache.cross_attention_cache.layers]
    self_before = cache.self_attention_cache.layers[0].keys.clone()
    reorder_decoder_cache(cache, beam_idx)
    for got, want, (keys_at, values_at) in zip(cache.self_attention_cache.layers, expected.self_attention_cache.layers, pointers):
        assert torch.equal(got.keys, want.keys) and torch.equal(got.values, want.values)
        assert (got.keys.data_ptr(), got.values.data_ptr()) == (keys_at, values_at)
    for got, want, before in zip(cache.cross_attention_cache.layers, expected.cross_attention_cache.layers, cross):
        assert torch.equal(got.keys, before) and torch.equal(got.keys, want.keys)
    assert not torch.equal(cache.self_attention_cache.layers[0].keys, self_before)  # the reorder moved rows


def bart_adapters():
    """Two DePT adapters on a tiny random BART with large weights (outputs that depend on the input)."""
    from transformers import BartConfig, BartForConditionalGeneration

    config = BartConfig(vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_bos_token_id=None,
                        forced_eos_token_id=None, init_std=0.5)
    torch.manual_seed(0)
    return random_adapters(BartForConditionalGeneration(config).eval(), max_length=24)


@pytest.mark.parametrize("cache", ["dynamic", "static", "compiled"])
def test_beam_decoding_generates_what_transformers_beam_search_generates(t5_run, cache, monkeypatch):
    """Beam search inside beam_decoding (the decoder's cache reordered without the cross-attention cache, in place
    when static; with eval.cache=compiled the steps after the first compiled, here by dynamo with the eager backend)
    against transformers' own beam search on the same inputs: the same sequences, for T5 with and without images and
    for BART; and the lean reorder did run after every step."""
    from dept_vl.train import decoding
    from dept_vl.train.predict import generation_options

    monkeypatch.setattr(decoding, "DECODING_COMPILE", {"backend": "eager"})
    torch._dynamo.reset()
    reorders: list[int] = []
    lean = decoding.reorder_decoder_cache
    monkeypatch.setattr(decoding, "reorder_decoder_cache", lambda c, idx: reorders.append(1) or lean(c, idx))
    run, examples, models = t5_run
    cfg = EvalConfig(num_beams=3, max_new_tokens=6, cache=cache)
    options = {**generation_options(cfg), "min_new_tokens": 6}
    inputs = [(m, run.collator([examples[t]])(examples[t], with_labels=False)) for t in examples for m in models]
    ids = torch.randint(3, 100, (4, 7), generator=torch.Generator().manual_seed(1))
    inputs += [(m, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}) for m in bart_adapters()]
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    for model, batch in inputs:
        with torch.no_grad():
            expected = model.generate(**batch, **options)
            before = len(reorders)
            with decoding.beam_decoding(model, cfg):
                got = model.generate(**batch, **options)
        assert torch.equal(got, expected)
        assert len(reorders) - before == 6  # after every step, from the first: the lean reorder was bound in time
        assert len({tuple(row) for row in expected[:, 1:].tolist()}) > 1  # outputs that depend on the input
    assert (counters["stats"]["unique_graphs"] > graphs) == (cache == "compiled")  # the steps ran compiled
    torch._dynamo.reset()


def test_beam_decoding_without_a_transformers_model():
    """A model holding no transformers model keeps its own generate under beam search; eval.cache=compiled, which
    has nothing to compile then, says so and names the way out."""
    from dept_vl.train.decoding import beam_decoding

    model = torch.nn.Linear(2, 2)
    with beam_decoding(model, EvalConfig(num_beams=3, cache="dynamic")):
        assert model._compiled_call_impl is None
    with pytest.raises(ValueError, match="eval.cache=compiled: Linear holds no transformers model to compile; use eval.cache=static"):
        with beam_decoding(model, EvalConfig(num_beams=3, cache="compiled")):
            pass


def test_beam_search_runs_its_first_step_once_an_example(t5_run):
    """At the first step every beam of an example has the same input, so the default (dynamic) cache's first step
    runs on one row an example and is repeated for the beams: the decoder sees examples x 1 rows once, then
    examples x beams rows at every later step, and the sequences are transformers' own (the tests above)."""
    from dept_vl.train import decoding

    run, examples, models = t5_run
    cfg = EvalConfig(num_beams=3, max_new_tokens=5)
    batch = run.collator([examples["shapes_count"]])(examples["shapes_count"], with_labels=False)
    rows: list[int] = []
    hook = run.base.text_model.get_decoder().register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(int(kwargs["input_ids"].shape[0])), with_kwargs=True)
    try:
        with torch.no_grad(), decoding.beam_decoding(models[0], cfg):
            out = models[0].generate(**batch, num_beams=3, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    finally:
        hook.remove()
    examples_count = len(examples["shapes_count"])
    assert rows == [examples_count] + [examples_count * 3] * 4 and out.shape[0] == examples_count
