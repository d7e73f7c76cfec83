"""VQA v2 (official questions + annotations JSON, COCO images, or a hub copy): ``vqa_v2`` is scored as the official
VQA evaluator scores it; ``vqa_v2_vlt5`` is the same data scored by VL-T5's and VL-Adapter's evaluator (the
prediction is always normalised), to compare with the numbers of those papers (see docs/metrics.md).
``vqa_v2_karpathy`` (and ``_vlt5``) is VQA v2 on the Karpathy split of VL-T5's split files, as VL-Adapter runs it."""

from functools import partial

from dept_vl.data.example import Example
from dept_vl.data.hub_vl import register_hub_task
from dept_vl.data.registry import register_task
from dept_vl.data.task import Task
from dept_vl.data.vl_tasks import VQA_HUB, load_vqa_v2
from dept_vl.data.vqa_karpathy import load_vqa_karpathy
from dept_vl.metrics.vqa import vqa_accuracy


def score_vqa(predictions: list[str], examples: list[Example], rules: str = "official") -> dict[str, float]:
    """Mean VQA accuracy (``rules``: see :func:`dept_vl.metrics.vqa_accuracy`), overall and per answer type."""
    per_type: dict[str, list[float]] = {}
    scores = []
    for pred, ex in zip(predictions, examples):
        s = vqa_accuracy(pred, ex.all_references(), rules=rules)
        scores.append(s)
        per_type.setdefault(ex.meta.get("answer_type") or "all", []).append(s)
    out = {"accuracy": sum(scores) / len(scores)}
    if len(per_type) > 1 or "all" not in per_type:
        out.update({f"accuracy_{t}": sum(v) / len(v) for t, v in sorted(per_type.items())})
    return out


register_task(Task(
    name="vqa_v2", kind="vqa", family="vqa", has_images=True,
    source=f"data_dir: VQA v2 questions/annotations JSON + COCO train2014/, val2014/; or the hub ({VQA_HUB})",
    headline_metric="accuracy", loader=load_vqa_v2, scorer=score_vqa,
    description="open-ended questions on COCO images (10 human answers each)",
))

register_task(Task(
    name="vqa_v2_vlt5", kind="vqa", family="vqa", has_images=True,
    source="data_dir: as vqa_v2",
    headline_metric="accuracy", loader=load_vqa_v2, scorer=partial(score_vqa, rules="vl-t5"),
    description="vqa_v2 scored by VL-T5's / VL-Adapter's evaluator (prediction always normalised)",
))

register_task(Task(
    name="vqa_v2_karpathy", kind="vqa", family="vqa", has_images=True,
    source=f"data_dir: karpathy_{{train,val,test}}.json + VQA v2 annotations + COCO images; or answers/images from {VQA_HUB}",
    headline_metric="accuracy", loader=load_vqa_karpathy, scorer=score_vqa,
    description="VQA v2 on the Karpathy split (VL-T5's split files), scored by the official evaluator",
))

register_task(Task(
    name="vqa_v2_karpathy_vlt5", kind="vqa", family="vqa", has_images=True,
    source="data_dir: as vqa_v2_karpathy",
    headline_metric="accuracy", loader=load_vqa_karpathy, scorer=partial(score_vqa, rules="vl-t5"),
    description="vqa_v2_karpathy scored by VL-T5's / VL-Adapter's evaluator (VL-Adapter's VQA setting)",
))

for _name in ("vqa_v2", "vqa_v2_vlt5", "vqa_v2_karpathy", "vqa_v2_karpathy_vlt5"):
    register_hub_task(_name, VQA_HUB)
