"""The demo's frozen backbone: the tiny VL model, fully trained (multi-task) on every synthetic skill, then frozen.

Ships as ``dept_vl/assets/backbone-tiny`` (made by ``python -m dept_vl.demo.backbone``); ``dept-vl demo
--rebuild-backbone`` retrains it into the cache folder (``~/.cache/dept-vl`` or ``$DEPT_VL_CACHE``),
keyed by its settings and the package version.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "backbone-tiny"


@dataclass
class BackboneSettings:
    preset: str = "tiny"
    steps: int = 4000
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 200
    train_size: int = 6000  # examples per task (plain format)
    eval_size: int = 300
    seed: int = 0
    dropout: float = 0.0


def cache_root() -> Path:
    from dept_vl.io import cache_dir

    return cache_dir()


def cache_key(settings: BackboneSettings) -> str:
    from dept_vl.version import __version__

    blob = json.dumps({"settings": dataclasses.asdict(settings), "version": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def backbone_tasks() -> list[str]:
    """Every task of the synthetic world: the backbone must already have every skill the adapters need."""
    from dept_vl.tasks import get_task, list_tasks

    return [n for n in list_tasks() if get_task(n).family == "shapes"]


def train_backbone(out: str | Path, settings: BackboneSettings = BackboneSettings(), show_progress: bool = True) -> dict[str, Any]:
    """Full multi-task training of the tiny VL model on the plain form of every shapes task; saves it frozen."""
    from dept_vl.config import DataConfig, EvalConfig, FullConfig, RunConfig, TrainConfig
    from dept_vl.models.backbone import save_backbone
    from dept_vl.models.presets import build_from_spec, get_preset
    from dept_vl.recipes.backbone import train_backbone as train
    from dept_vl.train.run import seed_everything

    start = time.perf_counter()
    seed_everything(settings.seed)
    spec = get_preset(settings.preset)
    text = dict(spec.text_config or {})
    text["dropout_rate" if text.get("model_type") == "t5" else "dropout"] = settings.dropout
    spec = dataclasses.replace(spec, text_config=text, freeze_image_encoder=False)
    model = build_from_spec(spec)
    config = RunConfig(
        method="full", full=FullConfig(lr=settings.lr),
        data=DataConfig(format="plain", feature_cache=False, train_size=settings.train_size, eval_size=settings.eval_size,
                        max_input_length=128, max_target_length=48),
        train=TrainConfig(max_steps=settings.steps, batch_size=settings.batch_size, warmup_steps=settings.warmup_steps,
                          seed=settings.seed, log_every=100, eval_every=10**9, save_every=0),
        eval=EvalConfig(batch_size=256, max_new_tokens=48),
    )
    names = backbone_tasks()
    metrics = train(model, config, names, show_progress)
    model.requires_grad_(False)
    model.freeze_image_encoder = True
    model.spec = dataclasses.replace(model.spec, freeze_image_encoder=True)
    extra = {
        "made_by": "python -m dept_vl.demo.backbone " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in dataclasses.asdict(settings).items()),
        "settings": dataclasses.asdict(settings), "tasks": names, "dev_headline_plain": metrics,
        "seconds": time.perf_counter() - start, "device": str(next(model.parameters()).device),
    }
    save_backbone(model.to("cpu").float(), out, extra=extra)
    return extra


def resolve_backbone(rebuild: bool = False, settings: BackboneSettings = BackboneSettings()) -> Path:
    """The shipped backbone, or (with ``rebuild``, or when it is missing) one trained into the cache."""
    if not rebuild and (SHIPPED / "backbone.safetensors").is_file():
        return SHIPPED
    target = cache_root() / "backbones" / cache_key(settings)
    if not (target / "backbone.safetensors").is_file():
        print(f"training the demo backbone into {target} (full multi-task training on every synthetic skill)")
        train_backbone(target, settings)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="train the demo's tiny backbone")
    parser.add_argument("--out", default=str(SHIPPED))
    for f in dataclasses.fields(BackboneSettings):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    args = parser.parse_args(argv)
    settings = BackboneSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(BackboneSettings)})
    result = train_backbone(args.out, settings)
    print(json.dumps(result["dev_headline_plain"], indent=2))
    print(f"{result['seconds']:.0f} s on {result['device']}; wrote {args.out}")


if __name__ == "__main__":
    main()
