"""VQA v2 (official questions + annotations JSON, COCO images); official VQA accuracy."""

from dept_vl.data.registry import register_task
from dept_vl.data.task import Task
from dept_vl.data.vl_tasks import load_vqa_v2, score_vqa

register_task(Task(
    name="vqa_v2", kind="vqa", family="vqa", has_images=True,
    source="data_dir: VQA v2 questions/annotations JSON + COCO train2014/, val2014/",
    headline_metric="accuracy", loader=load_vqa_v2, scorer=score_vqa,
    description="open-ended questions on COCO images (10 human answers each)",
))
