"""Results tables and plots, used by the demo and the notebooks.

``results`` / ``plots``: score tables, transfer gains, score-vs-k plots; ``efficiency``: cost per method from a
run and from the benchmark's JSON; ``examples``: predictions next to their images, metric breakdowns;
``official``: inspection of checkpoints released with the DePT paper; ``tables``: Markdown tables.
"""

from dept_vl.report.efficiency import (
    benchmark_environment,
    benchmark_table,
    cost_table,
    demo_costs,
    demo_length_costs,
    find_benchmark,
    length_sweep,
    load_benchmark,
    plot_benchmark,
    plot_length_vs_cost,
)
from dept_vl.report.examples import (
    attach_examples,
    breakdown,
    examples_table,
    list_runs,
    method_breakdown,
    pick_run,
    plot_examples_grid,
    question_type,
    run_tasks,
)
from dept_vl.report.plots import plot_costs, plot_gains, plot_score_vs_k, plot_source_curves, show_figure
from dept_vl.report.results import (
    gains_by_k,
    load_full_results,
    load_json,
    load_results,
    resolve_path,
    score_table,
    source_curves,
    source_stages,
    summarize,
    transfer_gains,
)
from dept_vl.report.tables import markdown_table

__all__ = [
    "attach_examples", "benchmark_environment", "benchmark_table", "breakdown", "cost_table", "demo_costs",
    "demo_length_costs", "examples_table", "find_benchmark", "gains_by_k", "length_sweep", "list_runs",
    "load_benchmark", "load_full_results", "load_json", "load_results", "markdown_table", "method_breakdown",
    "pick_run", "plot_benchmark", "plot_costs", "plot_examples_grid", "plot_gains", "plot_length_vs_cost",
    "plot_score_vs_k", "plot_source_curves", "question_type", "resolve_path", "run_tasks", "score_table", "show_figure",
    "source_curves", "source_stages", "summarize", "transfer_gains",
]
