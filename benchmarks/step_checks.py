"""The attention numerics checks and the VL feature-cache rows of ``train_step.py``."""

from __future__ import annotations

import argparse
import json
import traceback
from typing import Any, Callable

import numpy as np
import torch

from benchmarks.step_parts import (M, R, S, SIZES, DePTConfig, DePTModel, Clock, build_t5, clean, compiling, fastpath,
                                   glue_lengths, log, make_batch, to_device)


def attention_checks(args: argparse.Namespace, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Eager loss and prompt gradient of DePT (dropout off) per attention path and dtype, vs fp32 eager attention.

    Also which SDPA backend PyTorch picks for T5's biased attention (the reason for the biased_sdpa lever).
    """
    device, res = args.device, {}
    try:
        base = build_t5(args.size, torch.float32, "eager", device)
        base.config.dropout_rate = 0.0
        for module in base.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
            elif isinstance(getattr(module, "dropout", None), float):
                module.dropout = 0.0
        model = DePTModel(base, DePTConfig(num_virtual_tokens=M, rank=R, max_length=S, init="vocab"))
        with torch.no_grad():
            model.lowrank_B.normal_(0, 0.02)
        b = to_device(fastpath.pad_to_bucket(batch, args.buckets, max_length=S), device)

        def loss_and_grad() -> tuple[float, torch.Tensor]:
            model.zero_grad(set_to_none=True)
            loss = model(**b).loss
            loss.backward()
            return float(loss), model.prompt.grad.detach().clone()

        if device == "cuda":
            from torch.nn.attention import SDPBackend

            names = {int(value): key for key, value in SDPBackend.__members__.items()}
            B, H, L, D = args.batch, SIZES[args.size]["num_heads"], M + S, SIZES[args.size]["d_kv"]
            q, k, v = (torch.randn(B, H, L, D, device=device, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
            bias = torch.randn(B, H, L, L, device=device, dtype=torch.bfloat16)
            for dropout in (0.0, 0.1):
                choice = torch._fused_sdp_choice(q, k, v, bias, dropout, False, scale=1.0)
                res[f"sdpa_choice_bias_dropout{dropout}"] = names.get(int(choice), str(choice))
            del q, k, v, bias
        ref_loss, ref_grad = loss_and_grad()
        dtypes = [torch.float32] + ([torch.bfloat16] if device == "cuda" else [])
        for dtype in dtypes:
            fastpath.prepare_fast_model(model, dtype)
            for attention in ("eager", "sdpa", "biased_sdpa", "biased_cudnn"):
                name = f"{attention}_{str(dtype).split('.')[-1]}"
                try:
                    fastpath.set_attention(model, attention)
                    loss, grad = loss_and_grad()
                    res[name] = {"loss_rel_diff": abs(loss - ref_loss) / abs(ref_loss),
                                 "prompt_grad_rel_diff": float((grad - ref_grad).norm() / ref_grad.norm())}
                except Exception as err:  # noqa: BLE001
                    res[name] = {"error": repr(err)[:300]}
        del model, base
    except Exception as err:  # noqa: BLE001
        res["error"] = repr(err)[:500]
    log("checks", json.dumps(res))
    return res


# ------------------------------------------------------------------ VL feature cache
def vl_cache(args: argparse.Namespace, out: dict) -> None:
    """DePT on the VL model, text = the T5 size, image = ViT-B/16 (random), 7x7 pooled: pixels vs cached features."""
    device = args.device
    try:
        from dept_vl.models.presets import build_vl_model
    except Exception as err:  # noqa: BLE001
        out["vl"] = {"skipped": f"VL model not importable: {err!r}"}
        print("VL feature-cache section skipped:", err)
        return
    clean(device)
    try:
        text = dict(model_type="t5", **SIZES[args.size], dropout_rate=0.1, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
        from dept_vl.models.presets import TINY_VIT

        image = "vit_tiny_patch16_224" if args.smoke else "vit_base_patch16_224"
        kwargs = dict(TINY_VIT) if args.smoke else {}
        vl = build_vl_model(text_config=text, image_encoder=image, image_encoder_kwargs=kwargs, image_pretrained=False, pool_size=None if args.smoke else 7).to(device)
        model = DePTModel(vl, DePTConfig(num_virtual_tokens=M, rank=R, max_length=S, init="vocab"))
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        fastpath.prepare_fast_model(model, dtype)
        opt = fastpath.make_optimizer(model.param_groups())
        loss_fn = compiling.compile_loss(model, enabled=False)
        size = vl.image_transform.input_size
        rng = np.random.default_rng(1)
        batches = [make_batch(glue_lengths(args.batch, rng), SIZES[args.size]["vocab_size"], rng) for _ in range(args.steps)]
        batches = [to_device(fastpath.pad_to_bucket(b, args.buckets, max_length=S), device) for b in batches]
        pixels = torch.randn(args.batch, *size, device=device)
        with torch.no_grad():
            features = vl.encode_images(pixels)

        def timed(fn: Callable[[], Any], n: int) -> float:
            for _ in range(args.warmup):
                fn()
            clock = Clock(device, n)
            clock.mark(0)
            for i in range(n):
                fn()
                clock.mark(i + 1)
            return float(np.median(clock.intervals_ms()))

        it = iter(range(10**9))
        enc_ms = timed(lambda: torch.no_grad()(vl.encode_images)(pixels), args.steps)
        no_cache = timed(lambda: fastpath.train_step(loss_fn, opt, {**batches[next(it) % len(batches)], "pixel_values": pixels}), args.steps)
        cached = timed(lambda: fastpath.train_step(loss_fn, opt, {**batches[next(it) % len(batches)], "image_features": features}), args.steps)
        saved = no_cache - cached
        out["vl"] = {"image_encoder": image, "visual_tokens": int(features.shape[1]), "encoder_forward_ms": enc_ms,
                     "step_ms_no_cache": no_cache, "step_ms_cached": cached, "saved_ms": saved,
                     "saved_fraction_of_encoder": saved / enc_ms, "path": "eager, base in bf16, DePT m=60 r=30"}
        log(f"VL cache: encoder {enc_ms:.2f} ms, step {no_cache:.2f} -> {cached:.2f} ms, saved {saved / enc_ms:.0%} of the encoder")
    except Exception as err:  # noqa: BLE001
        out["vl"] = {"error": repr(err)[:500], "trace": traceback.format_exc()[-1500:]}
        log(f"VL cache failed: {err!r}")

