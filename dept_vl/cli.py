"""The `dept-vl` command: parses arguments and calls the recipes. Nothing imports this module."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Callable

Handler = Callable[[argparse.Namespace], int]


OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*=")  # key=value, anywhere on the command line
ONE_VALUE_OPTIONS = {"--config", "--task", "--source", "--adapter", "--out", "--split", "--size"}


def _overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a YAML recipe: a file or a name from configs/ (e.g. shapes_pretrain)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=200 dept.rank=8 (any position)")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in the output folder (refused otherwise)")


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the other arguments, the key=value overrides): overrides may come anywhere, also after a list option
    such as ``--seeds 0 1``, except as the value of a one-value option (``--source a=b`` stays a path)."""
    rest, overrides = [], []
    for i, token in enumerate(argv):
        if OVERRIDE.match(token) and not (i and argv[i - 1] in ONE_VALUE_OPTIONS):
            overrides.append(token)
        else:
            rest.append(token)
    return rest, overrides


def _load(args: argparse.Namespace, extra: list[str] | None = None, default_config: str | None = None):
    from dept_vl.config import load_config

    return load_config(args.config or default_config, list(args.overrides) + list(extra or []))


# ------------------------------------------------------------------ training
def _pretrain(args: argparse.Namespace) -> int:
    from dept_vl.recipes.pretrain import run_pretrain

    run_pretrain(_load(args), resume=args.resume, overwrite=args.overwrite)
    return 0


def _adapt(args: argparse.Namespace) -> int:
    from dept_vl.recipes.adapt import run_adapt

    extra = []
    for key in ("task", "source", "k", "seeds", "transfer"):
        value = getattr(args, key)
        if value is not None:
            extra.append(f"adapt.{key}={'[' + ','.join(map(str, value)) + ']' if isinstance(value, list) else value}")
    result = run_adapt(_load(args, extra), resume=args.resume, overwrite=args.overwrite)
    for row in result["summary"]:
        print(f"{row['task']:>20} k={row['k']:<3} {row['method']:<14} {row['metric']} {row['mean']:.4f} ± {row['std']:.4f}")
    for row in result.get("selection", []):  # a learning-rate search: the setting chosen by k-shot dev score
        chosen = " ".join(f"{k}={v:g}" for k, v in row["best"].items())
        print(f"{row['task']:>20} k={row['k']:<3} {row['method']:<14} best by dev ({row['dev_mean']:.4f}): {chosen}; "
              f"test {row['mean']:.4f} ± {row['std']:.4f}")
    print(f"results: {Path(result['output_dir']) / 'results.json'}")
    return 0


def _transfer_matrix(args: argparse.Namespace) -> int:
    from dept_vl.recipes.transfer_matrix import run_transfer_matrix

    extra = [f"adapt.{key}=[{','.join(map(str, getattr(args, key)))}]" for key in ("k", "seeds") if getattr(args, key)]
    rows = run_transfer_matrix(_load(args, extra), args.sources, args.targets, resume=args.resume, overwrite=args.overwrite)
    for row in rows:
        gain = f"  gain {row['gain']:+.4f} ({row['gain_over_std']:+.1f} std)" if row.get("gain") is not None else ""
        print(f"{row['target']:>20} k={row['k']:<3} {row['source']:<20} {row['metric']} {row['mean']:.4f} ± {row['std']:.4f}{gain}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from dept_vl.recipes.evaluate import run_evaluate

    saved = Path(args.adapter) / "run_config.yaml"  # the config the adapter was trained with, when it has one
    run_evaluate(_load(args, default_config=str(saved) if saved.is_file() else None), args.adapter, args.task, args.split,
                 args.out, size=args.size, overwrite=args.overwrite, score=not args.no_score)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from dept_vl.recipes.predict import run_predict

    adapters = {}
    for item in args.adapter or []:
        name, sep, where = item.partition("=")
        if not sep or not name or not where:
            raise ValueError(f"--adapter {item!r}: give name=folder (or name=user/repo)")
        adapters[name] = where
    default = None
    for where in adapters.values():  # the backbone an adapter was trained with, when its folder records it
        saved = Path(where) / "run_config.yaml"
        if saved.is_file():
            default = str(saved)
            break
    run_predict(_load(args, default_config=default), args.input, args.out, adapters, overwrite=args.overwrite)
    return 0


# ------------------------------------------------------------------ the rest
def _demo(args: argparse.Namespace) -> int:
    from dept_vl.demo.run import DemoSettings, run_demo

    settings = DemoSettings.fast(args.out) if args.fast else DemoSettings(out=args.out)
    settings.rebuild_backbone, settings.overwrite = args.rebuild_backbone, args.overwrite
    run_demo(settings, full=args.full, methods=args.methods)
    return 0


def _import_official(args: argparse.Namespace) -> int:
    from dept_vl.dept.official import convert_official

    print(f"wrote {convert_official(args.directory, args.out)}")
    return 0


def _push_to_hub(args: argparse.Namespace) -> int:
    from dept_vl.hub import push_folder

    info = push_folder(args.folder, args.repo_id, tasks=args.task, command=args.training_command,
                       private=True if args.private else None, revision=args.revision)
    print(f"pushed {args.folder} to {args.repo_id} ({getattr(info, 'commit_url', info)})")
    return 0


def _budget(args: argparse.Namespace) -> int:
    from dept_vl.dept.budget import budget

    total = args.prompt_tokens * args.d_model
    if args.methods:
        from dept_vl.methods.budget import method_budget

        print(f"budget {total:,d}: prompt tuning with {args.prompt_tokens} tokens (d={args.d_model}, s={args.max_length})")
        print(f"{'method':<14} {'params':>10}  settings")
        for row in method_budget(args.prompt_tokens, args.d_model, args.max_length, mpt_tasks=args.mpt_tasks):
            print(f"{row.method:<14} {row.parameters:>10,d}  {row.settings}" + (f"  ({row.note})" if row.note else ""))
        return 0
    print(f"{'m':>5} {'r':>5} {'params':>10}  (budget {total:,d})")
    for m, r in budget(args.prompt_tokens, args.d_model, args.max_length)[: args.top]:
        print(f"{m:>5} {r:>5} {m * args.d_model + r * (args.max_length + args.d_model):>10,d}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    from dept_vl.tasks import format_task_table

    print(format_task_table())
    return 0


def _methods(args: argparse.Namespace) -> int:
    from dept_vl.methods import get_method, list_methods

    for name in list_methods():
        method = get_method(name)
        print(f"{name:<14} results as {method.results_label(True)} / {method.results_label(False)}; "
              f"{(type(method).__doc__ or '').strip().splitlines()[0]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dept-vl", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = add("pretrain", "train an adapter on a mixture of source tasks", _pretrain)
    _overrides(p)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output_dir")

    p = add("adapt", "k-shot adaptation on a target task, for several k and seeds", _adapt)
    _overrides(p)
    p.add_argument("--task", help="target task (adapt.task)")
    p.add_argument("--source", help="source adapter folder, or 'none' to train from scratch (adapt.source)")
    p.add_argument("--k", nargs="+", type=int, help="shots: per class for classification, in total otherwise")
    p.add_argument("--seeds", nargs="+", type=int)
    p.add_argument("--transfer", nargs="+", choices=["prompt", "lowrank", "modules"], help="which source parts to transfer")
    p.add_argument("--resume", action="store_true", help="continue the sweep in output_dir: finished runs are kept and skipped")

    p = add("transfer-matrix", "which source task transfers best: a source adapter per source task, each target's "
            "k-shot sweep from each and from scratch", _transfer_matrix)
    _overrides(p)
    p.add_argument("--sources", nargs="+", help="source tasks, each pretrained alone (default: data.tasks)")
    p.add_argument("--targets", nargs="+", help="target tasks (default: adapt.task)")
    p.add_argument("--k", nargs="+", type=int, help="shots (adapt.k)")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds (adapt.seeds)")
    p.add_argument("--resume", action="store_true", help="keep finished sources and k-shot runs, run the rest")

    p = add("evaluate", "evaluate an adapter on a task split and write its predictions", _evaluate)
    _overrides(p)
    p.add_argument("--adapter", required=True, help="adapter folder (its method is read from it)")
    p.add_argument("--task", required=True)
    p.add_argument("--split", default="test", choices=["train", "dev", "test"])
    p.add_argument("--out", required=True, help="folder for predictions.jsonl and metrics.json")
    p.add_argument("--size", type=int, help="score this many examples (a fixed random subset); default: the whole split")
    p.add_argument("--no-score", action="store_true", help="write the predictions only (metrics.json empty), to score them "
                   "elsewhere, e.g. captions where pycocoevalcap is not installed")

    p = add("predict", "serve many adapters at once: a JSONL of {adapter, input, image} requests in, predictions out", _predict)
    _overrides(p)
    p.add_argument("--input", required=True, help="JSONL requests: {\"adapter\": name, folder or null, \"input\": text, \"image\": file}")
    p.add_argument("--out", required=True, help="JSONL file of the requests with their \"prediction\"")
    p.add_argument("--adapter", action="append", metavar="NAME=FOLDER", help="name an adapter folder or hub id (repeatable)")

    p = add("demo", "run the offline demo: source pretraining, k-shot transfer, report", _demo)
    p.add_argument("--out", default="runs/demo", help="run folder (report.md, results.json, plots/)")
    p.add_argument("--fast", action="store_true", help="a smoke version: every stage at tiny sizes (seconds)")
    p.add_argument("--full", action="store_true", help="every target task of the synthetic world")
    p.add_argument("--methods", action="store_true", help="then ADePT, ULPT, MPT and ATTEMPT at the same budget, seeds and "
                   "targets, side by side with the three arms (methods.md)")
    p.add_argument("--rebuild-backbone", action="store_true", help="retrain the frozen backbone into the cache instead of using the shipped one")
    p.add_argument("--overwrite", action="store_true", help="replace the demo run already in --out (refused otherwise)")

    p = add("import-official", "convert a checkpoint released with the DePT paper to a dept-vl adapter", _import_official)
    p.add_argument("directory", help="folder with adapter_config.json and adapter_model.bin (a released DePT checkpoint)")
    p.add_argument("--out", required=True, help="folder to write the dept-vl adapter into")

    p = add("push-to-hub", "upload an adapter folder to the Hugging Face Hub with a model card", _push_to_hub)
    p.add_argument("folder", help="adapter folder (pretrain's adapter/, an adapt run's adapter/, import-official's --out)")
    p.add_argument("--repo-id", required=True, help="hub repo user/name (created if needed)")
    p.add_argument("--task", nargs="+", help="task(s) for the card (default: read from the run folder)")
    p.add_argument("--training-command", help="the command that trained it, for the card (default: from the run folder)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", help="an existing branch to upload to (default: main)")

    p = add("budget", "list (m, r) pairs with the parameter budget of prompt tuning (--methods: every method's settings)", _budget)
    p.add_argument("--prompt-tokens", type=int, default=100, help="the prompt tuning budget to match (tokens)")
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--methods", action="store_true", help="every method's settings within the budget (DePT, ADePT, ULPT, "
                   "ATTEMPT, MPT), each with its exact trainable count")
    p.add_argument("--mpt-tasks", type=int, default=1, help="with --methods: the tasks whose factors MPT trains (1: a target)")

    add("tasks", "list every task with its data source and metric", _tasks)
    add("methods", "list every registered training method", _methods)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    rest, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(rest)
    if overrides:
        if not hasattr(args, "overrides"):
            parser.error(f"{args.command} takes no key=value overrides (got {overrides[0]!r})")
        args.overrides = list(args.overrides) + overrides
    from dept_vl.train.hooks import Terminated, signals_as_interrupts

    try:
        with signals_as_interrupts():  # SIGTERM and SIGHUP (a scheduler's notice) end a command as Ctrl-C does
            return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"dept-vl {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        why = interrupt.args[0] if isinstance(interrupt, Terminated) else "interrupted"
        print(f"dept-vl {args.command}: {why}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
