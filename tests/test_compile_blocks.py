"""Regional compilation (train.compile_scope=blocks): each transformer block compiled once and its code reused by
every layer, for every width and batch size, computing what the eager model computes; blocks in eval mode
(generation) stay eager. CPU, with a counting backend in place of inductor."""

from __future__ import annotations

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from dept_vl.dept import DePTConfig, DePTModel
from dept_vl.train.compiling import compile_loss, repeated_blocks
from dept_vl.train.fastpath import training_loss
from tests.conftest import tiny_bart


def t5(layers: int) -> T5ForConditionalGeneration:
    torch.manual_seed(0)
    config = T5Config(vocab_size=120, d_model=32, d_ff=64, num_layers=layers, num_decoder_layers=layers, num_heads=4,
                      d_kv=8, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return T5ForConditionalGeneration(config)


def batch(rows: int, width: int, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 100, (rows, width), generator=gen)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(3, 100, (rows, 3), generator=gen)}


def dept(base: torch.nn.Module) -> DePTModel:
    return DePTModel(base, DePTConfig(num_virtual_tokens=3, rank=2, max_length=64, init="random", seed=0)).train()


@pytest.fixture(autouse=True)
def fresh_compiler():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_repeated_blocks_are_the_layers_in_order():
    model = t5(3)
    assert repeated_blocks(model) == [*model.encoder.block, *model.decoder.block]
    bart = tiny_bart()
    assert repeated_blocks(bart) == [*bart.model.encoder.layers, *bart.model.decoder.layers]


def graphs_compiled(layers: int, widths: list[int]) -> tuple[int, list[torch.Tensor], list[torch.Tensor]]:
    """Compile a DePT model's blocks with a counting backend and train-forward/backward one batch per width; the
    graphs compiled, the losses, and the adapter's gradients of the last batch (and the same, eager)."""
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()
    compiled_model, eager_model = dept(t5(layers)), dept(t5(layers))
    loss_fn = compile_loss(compiled_model, backend=counter, scope="blocks")
    eager_fn = training_loss(eager_model)
    losses, eager_losses = [], []
    for i, width in enumerate(widths):
        b = batch(2 + i, width, i)
        losses.append(loss_fn(**b))
        eager_losses.append(eager_fn(**b))
    losses[-1].backward()
    eager_losses[-1].backward()
    grads = [p.grad for p in compiled_model.parameters() if p.requires_grad]
    eager_grads = [p.grad for p in eager_model.parameters() if p.requires_grad]
    for got, want in zip(losses + grads, eager_losses + eager_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    return counter.frame_count, losses, grads


def test_blocks_compile_once_for_every_layer_width_and_batch_size_and_compute_the_eager_loss():
    two, _, _ = graphs_compiled(2, [7, 19, 12])
    four, _, _ = graphs_compiled(4, [7, 19, 12, 33])
    assert two > 0
    # the graphs do not grow with the layers (the code is reused) nor with new widths and batch sizes (dynamic)
    assert four == two


def test_blocks_in_eval_mode_run_eager():
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()
    model = dept(t5(2))
    compile_loss(model, backend=counter, scope="blocks")
    model.eval()
    b = batch(2, 9, 0)
    with torch.no_grad():
        model.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=3, num_beams=2)
    assert counter.frame_count == 0
    model.train()
    training_loss(model)(**b)
    assert counter.frame_count > 0


def test_a_model_without_repeated_blocks_is_refused():
    with pytest.raises(ValueError, match="compile_scope=model"):
        compile_loss(torch.nn.Linear(3, 3), backend="eager", scope="blocks")


def test_the_loop_compiles_blocks_when_asked(monkeypatch):
    from accelerate import Accelerator

    from dept_vl.config import TrainConfig
    from dept_vl.train import compiling
    from dept_vl.train.loader import Batch
    from dept_vl.train.loop import train_loop

    compiled: list[int] = []
    monkeypatch.setattr(compiling, "compile_blocks", lambda model, **kw: compiled.append(len(repeated_blocks(model))))
    model = dept(t5(2))
    cfg = TrainConfig(max_steps=1, warmup_steps=0, log_every=1, eval_every=10**6, save_every=0, compile="on",
                      compile_scope="blocks")
    train_loop(model, [Batch("t", batch(2, 7, 0))], cfg, Accelerator(cpu=True), show_progress=False)
    assert compiled == [4]  # the model's 2 encoder and 2 decoder blocks, once


def test_each_block_variant_is_handed_to_the_compiler_once():
    """A T5's four block variants reach the compiler once each: its Python floats (dropout rate, norm epsilon) are
    constants, not symbols that make dynamo restart its analysis and trace those graphs again (six compiler calls
    then, and a warm start's tracing doubled)."""
    from torch._dynamo.backends.debugging import aot_eager

    from dept_vl.train.compiling import compile_blocks
    from tests.conftest import tiny_t5

    calls: list[int] = []

    def counting(graph, example_inputs, **options):  # aot_eager: the pass that restarts on symbolic floats runs there
        calls.append(1)
        return aot_eager(graph, example_inputs, **options)

    model = tiny_t5().train()
    with torch._dynamo.config.patch(specialize_float=False):  # torch's default; compile_blocks changes it
        assert compile_blocks(model, backend=counting) == 4
        ids = torch.randint(3, 100, (4, 9), generator=torch.Generator().manual_seed(0))
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
    assert len(calls) == 4
