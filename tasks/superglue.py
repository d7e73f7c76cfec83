"""SuperGLUE: boolq, cb (Hugging Face ``aps/super_glue`` or the release JSONL files via ``data_dir``)."""

from dept_vl.data.registry import register_task
from dept_vl.data.text_tasks import TextTaskSpec, make_text_task
from dept_vl.metrics.glue import GLUE_LABEL_WORDS as WORDS
from dept_vl.task_defs._scorers import glue_headline_metric, make_glue_scorer

HF = "aps/super_glue"

for spec in [
    TextTaskSpec("boolq", "superglue", (("question", "question"), ("passage", "passage")), tuple(WORDS["boolq"]),
                 "superglue-boolq", "small", HF, "boolq", "BoolQ",
                 local_label_map={"false": 0, "true": 1, "False": 0, "True": 1},
                 description="yes/no questions about a passage"),
    TextTaskSpec("cb", "superglue", (("premise", "premise"), ("hypothesis", "hypothesis")), tuple(WORDS["cb"]),
                 "superglue-cb", "small", HF, "cb", "CB",
                 local_label_map={"entailment": 0, "contradiction": 1, "neutral": 2},
                 description="3-way entailment with embedded clauses (accuracy and macro F1)"),
]:
    register_task(make_text_task(spec, make_glue_scorer(spec), glue_headline_metric(spec.name)))
