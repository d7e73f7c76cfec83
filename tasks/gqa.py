"""GQA, balanced questions (train/val/testdev) with images; exact-match accuracy."""

from dept_vl.data.hub_vl import register_hub_task
from dept_vl.data.registry import register_task
from dept_vl.data.task import Task
from dept_vl.data.vl_tasks import GQA_HUB, load_gqa
from dept_vl.task_defs._scorers import score_exact_match

register_task(Task(
    name="gqa", kind="vqa", family="vqa", has_images=True,
    source=f"data_dir: GQA *_balanced_questions.json + images/; or the hub ({GQA_HUB})",
    headline_metric="accuracy", loader=load_gqa, scorer=score_exact_match,
    description="compositional questions on scene graphs of real images",
))

register_hub_task("gqa", GQA_HUB)
