"""The launcher's mixed precision (``accelerate launch --mixed_precision``, ``ACCELERATE_MIXED_PRECISION``) against
dept-vl's own precision rules: a frozen base runs in ``model.dtype`` (bfloat16 on GPU) with the adapter's
parameters in float32, and a trained base autocasts (``train.mixed_precision``)."""

from __future__ import annotations

import dataclasses
import os

from dept_vl.config import RunConfig
from dept_vl.methods import Method

LAUNCHER_ENV = "ACCELERATE_MIXED_PRECISION"


def launcher_precision() -> str | None:
    """What the launcher asked for: ``bf16``, ``fp16``, ``fp8``, or None (unset, or ``no``, which ``accelerate
    launch`` passes when nothing was asked, so it cannot mean "force float32")."""
    asked = os.environ.get(LAUNCHER_ENV, "").strip().lower()
    return None if asked in ("", "no") else asked


def apply_launcher_precision(config: RunConfig, method: Method) -> RunConfig:
    """``config`` with the launcher's mixed precision applied, or a clear error where dept-vl does otherwise.

    - ``bf16`` with a frozen base: the base runs in bfloat16 (``model.dtype=bfloat16``), the adapter in float32,
      no autocast (what dept-vl does on a GPU anyway); with a trained base: autocast in bf16.
    - ``fp16`` with a trained base: autocast in fp16 with loss scaling; with a frozen base: refused.
    - ``fp8``: refused. A config value that says otherwise (``model.dtype``, ``train.mixed_precision``) is refused.

    Raises:
        ValueError: naming the launcher's value, the config's, and what to do.
    """
    asked = launcher_precision()
    if asked is None:
        return config
    source = f"{LAUNCHER_ENV}={asked} (accelerate launch --mixed_precision {asked})"
    if asked not in ("bf16", "fp16"):
        raise ValueError(f"{source}: dept-vl supports bf16 (or no mixed precision); launch with --mixed_precision bf16 or no")
    if method.frozen_base:
        if asked == "fp16":
            raise ValueError(f"{source}: method {method.name!r} does not autocast its frozen base; dept-vl runs the frozen "
                             f"base in model.dtype (bfloat16 on GPU) with the adapter's parameters in float32. Launch with "
                             f"--mixed_precision bf16 or no, or set model.dtype=float16 to run the base in float16")
        if config.model.dtype not in ("auto", "bfloat16"):
            raise ValueError(f"{source} contradicts model.dtype={config.model.dtype}: method {method.name!r} runs its frozen "
                             f"base in model.dtype; drop one of the two")
        return dataclasses.replace(config, model=dataclasses.replace(config.model, dtype="bfloat16"))
    if config.train.mixed_precision not in ("auto", asked):
        raise ValueError(f"{source} contradicts train.mixed_precision={config.train.mixed_precision}; drop one of the two")
    return dataclasses.replace(config, train=dataclasses.replace(config.train, mixed_precision=asked))
