"""One run assembly for every recipe: ``Run.setup(config)`` checks the config, then builds the accelerator,
looks the tasks up and loads the frozen base; the run then loads splits, wraps models, collates and trains.

Everything that can be checked without data or weights is checked first, so a bad config fails in
seconds, before anything is loaded or trained.
"""

from __future__ import annotations

import contextlib
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from dept_vl.config import RunConfig
from dept_vl.data.batching import Collator
from dept_vl.data.example import Example
from dept_vl.data.hub_vl import HUB_TASKS
from dept_vl.methods import Method, get_method, load_adapter_model
from dept_vl.tasks import Task, get_task
from dept_vl.train import loader
from dept_vl.train.distributed import make_accelerator
from dept_vl.train.hooks import BestAdapter
from dept_vl.train.loop import LoopResult, train_loop
from dept_vl.train.precision import apply_launcher_precision
from dept_vl.train.predict import predict
from dept_vl.train.tracking import report_to

DEFAULT_MAX_INPUT_LENGTH = 256  # inputs are cut here when neither the method nor data.max_input_length sets a limit
# train.gradient_checkpointing: torch's non-reentrant form (the reentrant one carries gradients only through
# positional inputs that require them, which a frozen base's layers need not have)
CHECKPOINTING = {"use_reentrant": False}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


SHIPPED_PREFIX = "shipped:"  # model.backbone=shipped:<name> is a backbone folder in dept_vl/assets (portable in saved configs)
ASSETS = Path(__file__).resolve().parents[1] / "assets"


def backbone_folder(value: str) -> Path:
    """The folder ``model.backbone`` names: ``shipped:<name>`` (dept_vl/assets/<name>) or a path (``~`` expanded).

    Raises:
        FileNotFoundError: no such folder, naming it and the setting to change.
    """
    folder = ASSETS / value.removeprefix(SHIPPED_PREFIX) if value.startswith(SHIPPED_PREFIX) else Path(value).expanduser()
    if not folder.is_dir():
        shipped = ", ".join(SHIPPED_PREFIX + p.name for p in sorted(ASSETS.iterdir()) if p.is_dir())
        raise FileNotFoundError(f"model.backbone={value!r}: no folder {folder}; set model.backbone=<a saved backbone folder> "
                                f"or one of the shipped ones ({shipped})")
    return folder


def required_packages(tasks: dict[str, Task], config: RunConfig, scored: Sequence[str] | None = None) -> dict[str, str]:
    """Optional packages the run will need, by package: what needs it (checked before anything trains).
    ``scored``: the tasks the run scores (None: all); a caption task that is only trained on needs no caption metrics."""
    needs = {}
    for name, task in tasks.items():
        if task.kind == "caption" and (scored is None or name in scored):
            needs.setdefault("pycocoevalcap", f"the caption metrics of {name}")
        source = config.data.task_options.get(name, {}).get("source")
        if source == "hub" or (source is None and config.data.data_dir is None and (task.family in ("glue", "superglue") or name in HUB_TASKS)):
            needs.setdefault("datasets", f"loading {name} from the Hugging Face hub (or set data.data_dir to the release files)")
    return needs


def check_run(config: RunConfig, method: Method, tasks: dict[str, Task], scored: Sequence[str] | None = None) -> None:
    """The checks that need the registries (methods, tasks) or the machine; the config's own values are checked
    when it loads. Fails before any data or weight is loaded."""
    import importlib.util

    method.check(config)
    for name, options in config.data.task_options.items():  # a misspelt task name would be ignored: refuse it
        get_task(name)
        if not isinstance(options, dict):
            raise ValueError(f"data.task_options.{name}={options!r}: must be a mapping of option names to values")
    missing = {pkg: why for pkg, why in required_packages(tasks, config, scored).items() if importlib.util.find_spec(pkg) is None}
    if missing:
        raise ValueError("this run needs " + "; ".join(f"the package {pkg} ({why})" for pkg, why in missing.items())
                         + f": pip install {' '.join(missing)}")
    if config.model.backbone:
        backbone_folder(config.model.backbone)
    fmt = config.data.format
    if tasks and fmt != "default" and not any(fmt in t.formats for t in tasks.values()):  # no tasks (predict): no formats
        formats = "; ".join(f"{n}: {', '.join(t.formats)}" for n, t in tasks.items())
        raise ValueError(f"data.format={fmt!r} is not a format of any task of this run ({formats}); "
                         f"choose one of them or 'default'")


@dataclass
class Run:
    """The parts of one run. Build it with :meth:`setup`."""

    config: RunConfig
    method: Method
    accelerator: Any
    tasks: dict[str, Task]
    base: nn.Module
    _base_wrapped: bool = False

    @classmethod
    def setup(cls, config: RunConfig, task_names: Sequence[str], *, method: str | None = None,
              base: nn.Module | None = None, scored: Sequence[str] | None = None) -> "Run":
        """Check ``config``, then make the accelerator, look up ``task_names`` and load the base model.

        Args:
            method: the method to run (default ``config.method``; ``evaluate`` passes the adapter's).
            base: a base model built by the caller (default: ``model.backbone`` or ``model.preset``).
            scored: the tasks of ``task_names`` the run scores (default: all; see :func:`dev_task_names`).
        """
        chosen = get_method(method or config.method)
        tasks = {name: get_task(name) for name in task_names}
        check_run(config, chosen, tasks, scored)
        config = apply_launcher_precision(config, chosen)  # accelerate launch --mixed_precision: respected or refused
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
        accelerator = make_accelerator(mixed_precision=chosen.mixed_precision(config, device_type),
                                       find_unused_parameters=chosen.may_skip_parameters(config),
                                       report_to=report_to(config.train.report_to), project_dir=config.output_dir)
        run = cls(config, chosen, accelerator, tasks, base.to(accelerator.device) if base is not None else nn.Module())
        if base is None:
            run.base = run.load_base()
        return run

    # ------------------------------------------------------------------ data
    def load(self, task: str, split: str, size: int | None = None) -> list[Example]:
        """One split of a task in the run's format (a task without that format uses its default), cut to
        ``size`` examples (a fixed random subset)."""
        spec, data = self.tasks[task], self.config.data
        fmt = data.format if data.format in spec.formats else "default"
        options = {"size": size} if (size is not None and spec.family == "shapes") else {}  # generated: only as many as asked
        examples = spec.load(split, data_dir=data.data_dir, fmt=fmt, **options, **data.task_options.get(task, {}))
        if size is not None and len(examples) > size:
            examples = random.Random(f"{spec.name}/{split}").sample(examples, size)
        return examples

    def load_splits(self, split: str, size: int | None) -> dict[str, list[Example]]:
        return {name: self.load(name, split, size) for name in self.tasks}

    def collator(self, example_sets: Sequence[Sequence[Example]] = (), config: RunConfig | None = None) -> Collator:
        """The run's collator (inputs cut at :meth:`input_length`); with ``data.feature_cache``, the frozen image
        features of the images of ``example_sets`` (only those) are computed where ``data.feature_dir`` lacks them
        (the run's processes share the work, decoding with ``train.num_workers`` workers) and batches carry
        them, looked up by image id, instead of pixels."""
        features = None
        image_tasks = [t for t in self.tasks.values() if t.has_images]
        if self.config.data.feature_cache and image_tasks:
            data, acc = self.config.data, self.accelerator
            folder = loader.feature_folder(data, generated_only=all(t.family == "shapes" for t in image_tasks))
            features = loader.image_features(self.base, example_sets, data, directory=folder, num_workers=self.config.train.num_workers,
                                             batch_size=self.config.eval.batch_size, rank=acc.process_index,
                                             world=acc.num_processes, show_progress=acc.is_main_process and folder is not None)
        return loader.make_collator(self.base, self.config.data, self.input_length(config), features)

    def input_length(self, config: RunConfig | None = None) -> int:
        """Where inputs are cut: ``data.max_input_length``, else the method's limit (DePT's s), else 256."""
        config = config or self.config
        return config.data.max_input_length or self.method.input_limit(config) or DEFAULT_MAX_INPUT_LENGTH

    # ----------------------------------------------------------------- models
    def load_base(self) -> nn.Module:
        """The frozen backbone: a saved backbone folder (``model.backbone``), a preset built by name, or any hub
        model (``model.text_model``, with ``model.image_encoder`` or text-only: then no image encoder is built).

        Seeded first, so that a preset with random weights (offline tests) is the same model in every
        process and in every recipe of a run (pretrain, adapt, evaluate)."""
        from dept_vl.models import build_vl_model
        from dept_vl.models.backbone import load_backbone

        cfg = self.config.model
        with_images = [name for name, task in self.tasks.items() if task.has_images]
        if cfg.text_only and with_images:  # before anything is downloaded
            raise ValueError(f"the task(s) {', '.join(with_images)} read images, but "
                             f"model.text_model={cfg.text_model!r} without a preset is a text-only model: set "
                             "model.image_encoder=<a timm name>, or a VL preset (model.preset=...)")
        seed_everything(self.config.train.seed)
        if cfg.backbone:
            model = load_backbone(backbone_folder(cfg.backbone))
        else:
            preset, overrides = cfg.build_args()
            model = build_vl_model(preset, **overrides)
        device = self.accelerator.device
        return model.to(device=device, dtype=self.method.base_dtype(self.config, device))

    def new_model(self, seed: int | None = None, config: RunConfig | None = None) -> nn.Module:
        """A fresh trainable model of the run's method. Methods that train base weights get a fresh base."""
        if self.method.changes_base:
            if self._base_wrapped:  # the last model changed this base: start from a fresh one
                self.base = self.load_base()
            self._base_wrapped = True
        if seed is not None:
            seed_everything(seed)
        model = self.method.build(config or self.config, self.base, seed)
        if (config or self.config).train.gradient_checkpointing:
            model.activation_checkpointing_enable(CHECKPOINTING)
        return model

    def load_adapter(self, adapter: str | Path) -> nn.Module:
        return load_adapter_model(self.base, adapter)

    # ------------------------------------------------------------ train, test
    def fit(self, model: nn.Module, batches: Sequence[loader.Batch], best: BestAdapter | None = None,
            config: RunConfig | None = None, **loop_options: Any) -> LoopResult:
        """Train ``model`` with the run's (or ``config``'s) train settings through the one training loop."""
        config = config or self.config
        return train_loop(model, batches, config.train, self.accelerator, best=best, max_length=self.input_length(config),
                          **loop_options)

    def predict(self, model: nn.Module, task: str, examples: Sequence[Example], collate: Collator) -> list[str]:
        """Generated text for every example, in order (sharded over processes, gathered)."""
        return predict(model, examples, collate, self.base.tokenizer, self.config.eval, self.accelerator,
                       generation_length(self.tasks[task], self.config))

    def score(self, model: nn.Module, task: str, examples: Sequence[Example], collate: Collator) -> tuple[dict[str, float], list[str]]:
        """The task's metrics of ``model`` on ``examples`` (with ``headline``), and the predictions. A model that keeps
        parameters per task (MPT's factors) predicts inside its ``task_scope(task)``."""
        scope = getattr(model, "task_scope", None)
        with scope(task) if scope is not None else contextlib.nullcontext():
            predictions = self.predict(model, task, examples, collate)
        metrics = self.tasks[task].evaluate(predictions, list(examples))
        if metrics.get("invalid_rate") == 1.0:
            warnings.warn(f"every prediction on {task} is invalid (none is a label word): the model has not learned the "
                          f"output format; is model.backbone set? (model.backbone={self.config.model.backbone!r}, "
                          f"preset {self.config.model.preset!r}; a preset's random weights know nothing)", stacklevel=2)
        return metrics, predictions

    def evaluate(self, model: nn.Module, splits: dict[str, Sequence[Example]], collate: Collator) -> dict[str, Any]:
        """Every task's metrics on its split (``{task: {...}}``), plus ``mean_headline``."""
        results: dict[str, Any] = {name: self.score(model, name, examples, collate)[0] for name, examples in splits.items()}
        results["mean_headline"] = sum(r["headline"] for r in results.values()) / max(1, len(splits))
        return results


def dev_task_names(config: RunConfig) -> list[str]:
    """The source tasks a pretraining run scores on the dev split: ``data.dev_tasks``, or every task of ``data.tasks``.

    Raises:
        ValueError: ``data.dev_tasks`` names a task that is not in ``data.tasks``.
    """
    if not config.data.dev_tasks:
        return list(config.data.tasks)
    strangers = [t for t in config.data.dev_tasks if t not in config.data.tasks]
    if strangers:
        raise ValueError(f"data.dev_tasks={config.data.dev_tasks} names {strangers}, not in data.tasks={config.data.tasks}; "
                         "the dev tasks are some of the trained tasks")
    return list(dict.fromkeys(config.data.dev_tasks))


def generation_length(task: Task, config: RunConfig) -> int:
    """New tokens to generate: captions get the target length, answers and labels ``eval.max_new_tokens``."""
    if task.kind in ("caption", "generation"):
        return max(config.eval.max_new_tokens, config.data.max_target_length)
    return config.eval.max_new_tokens


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.trainable_parameters().values())
