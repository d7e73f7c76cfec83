"""The `dept-vl` command. Each subcommand lives with the code it runs; this file only parses arguments."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int | None]]] = {}


def command(name: str, help: str):
    """Register ``configure(parser)`` and ``run(args)`` functions for one subcommand."""

    def wrap(configure):
        def register(run):
            COMMANDS[name] = (help, configure, run)
            return run

        return register

    return wrap


# ---------------------------------------------------------------- import-official
def _configure_import(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", help="folder with adapter_config.json and adapter_model.bin (a released DePT checkpoint)")
    p.add_argument("--out", required=True, help="folder to write the dept-vl adapter into")


@command("import-official", "convert a checkpoint released with the DePT paper to a dept-vl adapter")(_configure_import)
def _run_import(args: argparse.Namespace) -> int:
    from dept_vl.dept.convert import convert_official

    out = convert_official(args.directory, args.out)
    print(f"wrote {out}")
    return 0


# ---------------------------------------------------------------------- budget
def _configure_budget(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt-tokens", type=int, default=100, help="the prompt tuning budget to match (tokens)")
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--top", type=int, default=10)


@command("budget", "list (m, r) pairs with the parameter budget of prompt tuning")(_configure_budget)
def _run_budget(args: argparse.Namespace) -> int:
    from dept_vl.dept.budget import budget

    total = args.prompt_tokens * args.d_model
    print(f"{'m':>5} {'r':>5} {'params':>10}  (budget {total:,d})")
    for m, r in budget(args.prompt_tokens, args.d_model, args.max_length)[: args.top]:
        print(f"{m:>5} {r:>5} {m * args.d_model + r * (args.max_length + args.d_model):>10,d}")
    return 0


# ----------------------------------------------------------------------- tasks
def _configure_tasks(p: argparse.ArgumentParser) -> None:
    pass


@command("tasks", "list every task with its data source and metric")(_configure_tasks)
def _run_tasks(args: argparse.Namespace) -> int:
    from dept_vl.data.registry import format_task_table

    print(format_task_table())
    return 0


def _load_recipe_commands() -> None:
    """Subcommands defined next to their recipes register themselves on import."""
    import importlib

    for module in ("dept_vl.train.cli", "dept_vl.demo.cli"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name is None or not error.name.startswith(module.rsplit(".", 1)[0]):
                raise


def build_parser() -> argparse.ArgumentParser:
    _load_recipe_commands()
    parser = argparse.ArgumentParser(prog="dept-vl", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, configure, _) in COMMANDS.items():
        configure(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(COMMANDS[args.command][2](args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"dept-vl {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dept-vl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    from dept_vl.cli import main as _main  # one registry: the one the subcommand modules import

    sys.exit(_main())
