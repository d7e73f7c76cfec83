"""COCO captions on the Karpathy split (dataset_coco.json + COCO images, or a hub copy); CIDEr-D headline."""

from dept_vl.data.hub_vl import register_hub_task
from dept_vl.data.registry import register_task
from dept_vl.data.task import Task
from dept_vl.data.vl_tasks import COCO_HUB, load_coco_captions
from dept_vl.task_defs._scorers import score_captions

register_task(Task(
    name="coco_captions", kind="caption", family="caption", has_images=True,
    source=f"data_dir: Karpathy dataset_coco.json + COCO train2014/, val2014/; or the hub ({COCO_HUB})",
    headline_metric="cider", scale="CIDEr-D ~0..10", loader=load_coco_captions, scorer=score_captions,
    description="image captioning, 5 references per image",
))
register_hub_task("coco_captions", COCO_HUB)
