"""Results tables and plots, used by the demo and the notebooks."""

from dept_vl.report.plots import plot_costs, plot_score_vs_k
from dept_vl.report.results import load_json, load_results, summarize, transfer_gains

__all__ = ["load_json", "load_results", "plot_costs", "plot_score_vs_k", "summarize", "transfer_gains"]
