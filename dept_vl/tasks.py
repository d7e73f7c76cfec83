"""Public entry point for tasks: ``dept_vl.tasks.get_task("cola").load("train")``."""

from dept_vl.data.kshot import kshot_split, sample_k_shot
from dept_vl.data.registry import (
    format_task_table,
    get_task,
    list_tasks,
    register_task,
    task_table,
)
from dept_vl.data.task import Task

__all__ = [
    "Task",
    "format_task_table",
    "get_task",
    "kshot_split",
    "list_tasks",
    "register_task",
    "sample_k_shot",
    "task_table",
]
