"""The training subcommands: pretrain, adapt, evaluate."""

from __future__ import annotations

import argparse
from pathlib import Path

from dept_vl.cli import command


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a YAML recipe (see configs/)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=200 dept.rank=8")


def _config(args: argparse.Namespace, extra: list[str] | None = None):
    from dept_vl.config import load_config

    return load_config(args.config, list(args.overrides) + list(extra or []))


def _configure_pretrain(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output_dir")


@command("pretrain", "train a DePT adapter on a mixture of source tasks")(_configure_pretrain)
def _run_pretrain(args: argparse.Namespace) -> int:
    from dept_vl.train.pretrain import run_pretrain

    run_pretrain(_config(args), resume=args.resume)
    return 0


def _configure_adapt(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--task", help="target task (adapt.task)")
    p.add_argument("--source", help="source adapter folder, or 'none' to train from scratch (adapt.source)")
    p.add_argument("--k", nargs="+", type=int, help="shots: per class for classification, in total otherwise")
    p.add_argument("--seeds", nargs="+", type=int)
    p.add_argument("--transfer", nargs="+", choices=["prompt", "lowrank", "modules"], help="which source parts to transfer")


@command("adapt", "k-shot adaptation on a target task, for several k and seeds")(_configure_adapt)
def _run_adapt(args: argparse.Namespace) -> int:
    from dept_vl.train.adapt import run_adapt

    extra = []
    for key, value in (("task", args.task), ("source", args.source), ("k", args.k), ("seeds", args.seeds), ("transfer", args.transfer)):
        if value is not None:
            extra.append(f"adapt.{key}={value if not isinstance(value, list) else '[' + ','.join(map(str, value)) + ']'}")
    result = run_adapt(_config(args, extra))
    for row in result["summary"]:
        print(f"{row['task']:>20} k={row['k']:<3} {row['method']:<14} {row['metric']} {row['mean']:.4f} ± {row['std']:.4f}")
    print(f"results: {Path(result['output_dir']) / 'results.json'}")
    return 0


def _configure_evaluate(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--adapter", required=True, help="adapter folder")
    p.add_argument("--task", required=True)
    p.add_argument("--split", default="test", choices=["train", "dev", "test"])
    p.add_argument("--out", required=True, help="folder for predictions.jsonl and metrics.json")


@command("evaluate", "evaluate an adapter on a task split and write its predictions")(_configure_evaluate)
def _run_evaluate(args: argparse.Namespace) -> int:
    from dept_vl.train.evaluate import run_evaluate

    config_file = args.config or (str(Path(args.adapter) / "run_config.yaml") if (Path(args.adapter) / "run_config.yaml").is_file() else None)
    from dept_vl.config import load_config

    run_evaluate(load_config(config_file, args.overrides), args.adapter, args.task, args.split, args.out)
    return 0
