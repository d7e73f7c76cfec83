"""Recipe: which source task transfers best to a target? One source adapter per source task, then each target's
k-shot sweep from every source adapter and from scratch, side by side.

Writes into ``output_dir``: ``sources/<task>/`` (a ``pretrain`` run on that task alone), ``targets/<target>/
<from-source | scratch>/`` (an ``adapt`` sweep: k x seeds, packed where ``adapt.pack`` allows), and
``matrix.json``, ``matrix.csv``, ``matrix.md``, ``plots/transfer_matrix.png``
(:mod:`dept_vl.report.transfer`). A source that is also the target gets no cell: its adapter has seen the
target's training data. ``--resume`` keeps finished sources and finished k-shot runs.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path
from typing import Any, Sequence

from dept_vl.config import RunConfig
from dept_vl.io import write_json_atomic, write_text_atomic
from dept_vl.recipes.adapt import run_adapt
from dept_vl.recipes.pretrain import run_pretrain
from dept_vl.report.results import load_json
from dept_vl.report.transfer import SCRATCH, matrix_markdown, matrix_rows, plot_transfer_matrix
from dept_vl.train.outdir import claim_output_dir, holds_a_run

FIELDS = ["target", "k", "source", "metric", "mean", "std", "seeds", "gain", "gain_over_std"]


def run_transfer_matrix(config: RunConfig, sources: Sequence[str] | None = None, targets: Sequence[str] | None = None,
                        resume: bool = False, overwrite: bool = False, show_progress: bool = True) -> list[dict[str, Any]]:
    """Pretrain on each source task alone, adapt to each target from each source and from scratch; returns the
    matrix rows (also written to ``matrix.json``).

    Args:
        sources: source tasks (default ``data.tasks``); each is pretrained with the run's settings.
        targets: target tasks (default ``[adapt.task]``); each sweeps ``adapt.k`` x ``adapt.seeds``.
    """
    sources = list(sources or config.data.tasks)
    targets = list(targets or [config.adapt.task])
    if not sources or not targets:
        raise ValueError(f"transfer-matrix needs source and target tasks (got sources={sources}, targets={targets}); "
                         f"set data.tasks / --sources and adapt.task / --targets")
    out = Path(config.output_dir).expanduser()
    main = int(os.environ.get("RANK", "0")) == 0
    claim = claim_output_dir(out, resume=resume, overwrite=overwrite, main_process=main)
    try:
        if main:
            config.save(out / "config.yaml")
        adapters = {task: _source(config, out, task, resume, show_progress) for task in sources}
        sweeps: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for target in targets:
            arms = {SCRATCH: "none", **{f"from-{s}": str(a) for s, a in adapters.items() if s != target}}
            for arm, source in arms.items():
                folder = out / "targets" / target / arm
                adapt = dataclasses.replace(config.adapt, task=target, source=source)
                result = run_adapt(dataclasses.replace(config, output_dir=str(folder), adapt=adapt),
                                   resume=resume and holds_a_run(folder), show_progress=show_progress)
                sweeps.setdefault(target, {})[arm.removeprefix("from-")] = result["records"]
        rows = matrix_rows(sweeps)
        if main:
            _write(out, rows)
        return rows
    finally:
        claim.release()


def _source(config: RunConfig, out: Path, task: str, resume: bool, show_progress: bool) -> Path:
    """The source adapter of ``task``: pretrained on it alone (kept when ``resume`` finds it complete)."""
    folder = out / "sources" / task
    if not (resume and load_json(folder / "metrics.json", {}).get("complete")):
        data = dataclasses.replace(config.data, tasks=[task])
        run_pretrain(dataclasses.replace(config, output_dir=str(folder), data=data), resume=resume and holds_a_run(folder),
                     show_progress=show_progress)
    return folder / "adapter"


def _write(out: Path, rows: list[dict[str, Any]]) -> None:
    write_json_atomic(out / "matrix.json", rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "matrix.csv", buffer.getvalue())
    write_text_atomic(out / "matrix.md", matrix_markdown(rows))
    (out / "plots").mkdir(exist_ok=True)
    plot_transfer_matrix(rows, out / "plots" / "transfer_matrix.png")
