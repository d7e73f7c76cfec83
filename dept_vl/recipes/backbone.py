"""Recipe: full multi-task training of a whole VL model (every text weight, the projection and the image
encoder), as the demo's frozen backbone is made."""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from dept_vl.config import RunConfig
from dept_vl.methods.full import FullFineTuneModel
from dept_vl.train.loader import TrainBatches, mixture_plan
from dept_vl.train.run import Run


def train_backbone(model: nn.Module, config: RunConfig, tasks: Sequence[str], show_progress: bool = True) -> dict[str, Any]:
    """Train ``model`` in place on ``tasks`` (``config.full`` for the learning rate, ``config.train`` for the
    schedule); returns each task's dev headline afterwards."""
    run = Run.setup(config, tasks, method="full", base=model)
    train = run.load_splits("train", config.data.train_size)
    dev = run.load_splits("dev", config.data.eval_size)
    trainable = FullFineTuneModel(model, config.full, train_image_encoder=True)
    collate = run.collator()
    # the image encoder trains: batches carry pixels, preprocessed once
    collate.pixels = {e.image_id: model.image_transform(e.image) for s in train.values() for e in s if e.has_image}
    plan, _ = mixture_plan(train, config.data, config.train)
    run.fit(trainable, TrainBatches(plan, train, collate), show_progress=show_progress)
    model.eval()
    return {name: run.score(model, name, examples, collate)[0]["headline"] for name, examples in dev.items()}
