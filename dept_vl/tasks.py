"""Public entry point for tasks: ``dept_vl.tasks.get_task("cola").load("train")``.

Importing it also names the synthetic world's words as the vocabulary ``"shapes"`` of the word-level model
presets (``build_vl_model("tiny")``): the world (``dept_vl.data``) and the presets (``dept_vl.models``) sit in
one layer and know nothing of each other, so the binding is made here, above both.
"""

from dept_vl.data.kshot import kshot_split, sample_k_shot
from dept_vl.data.registry import (
    format_task_table,
    get_task,
    list_tasks,
    register_task,
    task_table,
)
from dept_vl.data.shapes.vocab import vocabulary as _shapes_vocabulary
from dept_vl.data.task import Task
from dept_vl.models.presets import SHAPES_VOCABULARY, register_vocabulary

register_vocabulary(SHAPES_VOCABULARY, _shapes_vocabulary)

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
