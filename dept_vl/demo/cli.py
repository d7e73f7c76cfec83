"""`dept-vl demo`."""

from __future__ import annotations

import argparse

from dept_vl.cli import command


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="run folder (report.md, results.json, plots/)")
    p.add_argument("--fast", action="store_true", help="a smoke version: every stage at tiny sizes (seconds)")
    p.add_argument("--full", action="store_true", help="every target task of the synthetic world")
    p.add_argument("--rebuild-backbone", action="store_true", help="retrain the frozen backbone into the cache instead of using the shipped one")


@command("demo", "run the offline demo: source pretraining, k-shot transfer, report")(_configure)
def _run(args: argparse.Namespace) -> int:
    from dept_vl.demo.run import DemoSettings, run_demo

    settings = DemoSettings.fast(args.out) if args.fast else DemoSettings(out=args.out)
    settings.rebuild_backbone = args.rebuild_backbone
    run_demo(settings, full=args.full)
    return 0
