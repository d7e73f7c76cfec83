"""NLVR2: true or false of a sentence about two images (official JSON lines + images, or a hub copy); accuracy."""

from dept_vl.data.hub_vl import register_hub_task
from dept_vl.data.nlvr2 import HUB, LABELS, load_nlvr2
from dept_vl.data.registry import register_task
from dept_vl.data.task import Task
from dept_vl.task_defs._scorers import score_exact_match

register_task(Task(
    name="nlvr2", kind="classification", family="vqa", has_images=True,
    source=f"data_dir: NLVR2 train.json/dev.json/test1.json + images/; or the hub ({HUB})",
    headline_metric="accuracy", loader=load_nlvr2, scorer=score_exact_match,
    label_words=list(LABELS), balance_field="label",
    description="is the sentence true of the image pair? two images per example",
))
register_hub_task("nlvr2", HUB)
