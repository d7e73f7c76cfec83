"""GQA, balanced questions (train/val/testdev) with images; exact-match accuracy."""

from dept_vl.data.registry import register_task
from dept_vl.data.task import Task
from dept_vl.data.vl_tasks import load_gqa
from dept_vl.task_defs._scorers import score_exact_match

register_task(Task(
    name="gqa", kind="vqa", family="vqa", has_images=True,
    source="data_dir: GQA *_balanced_questions.json + images/",
    headline_metric="accuracy", loader=load_gqa, scorer=score_exact_match,
    description="compositional questions on scene graphs of real images",
))
