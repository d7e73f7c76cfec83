"""GLUE: sst2, cola, mrpc, qqp, stsb, mnli, qnli, rte (Hugging Face ``nyu-mll/glue`` or the GLUE
release TSVs via ``data_dir``). Formats and split rules: see ``dept_vl.data.text_tasks``."""

from dept_vl.data.registry import register_task
from dept_vl.data.text_tasks import TextTaskSpec, make_text_task
from dept_vl.metrics.glue import GLUE_LABEL_WORDS as WORDS
from dept_vl.task_defs._scorers import glue_headline_metric, make_glue_scorer

HF = "nyu-mll/glue"
NLI = {"entailment": 0, "not_entailment": 1}

for spec in [
    TextTaskSpec("cola", "glue", (("sentence", "sentence"),), tuple(WORDS["cola"]), "cola", "small",
                 HF, "cola", "CoLA",
                 headerless_columns=("source", "label", "original_label", "sentence"),
                 description="grammatical acceptability (Matthews correlation)"),
    TextTaskSpec("sst2", "glue", (("sentence", "sentence"),), tuple(WORDS["sst2"]), "sst2", "large",
                 HF, "sst2", "SST-2", description="sentiment of movie-review sentences"),
    TextTaskSpec("mrpc", "glue", (("sentence1", "sentence1"), ("sentence2", "sentence2")),
                 tuple(WORDS["mrpc"]), "mrpc", "small", HF, "mrpc", "MRPC",
                 local_columns={"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"},
                 description="paraphrase of two news sentences"),
    TextTaskSpec("qqp", "glue", (("question1", "question1"), ("question2", "question2")),
                 tuple(WORDS["qqp"]), "qqp", "large", HF, "qqp", "QQP",
                 local_columns={"label": "is_duplicate"}, skip_short_rows=True, description="duplicate Quora questions"),
    TextTaskSpec("stsb", "glue", (("sentence1", "sentence1"), ("sentence2", "sentence2")), None,
                 "stsb", "small", HF, "stsb", "STS-B", local_columns={"label": "score"},
                 description="semantic similarity 0..5 (Pearson/Spearman)"),
    TextTaskSpec("mnli", "glue", (("premise", "premise"), ("hypothesis", "hypothesis")),
                 tuple(WORDS["mnli"]), "mnli", "mnli", HF, "mnli", "MNLI",
                 local_columns={"premise": "sentence1", "hypothesis": "sentence2", "label": "gold_label"},
                 local_label_map={"entailment": 0, "neutral": 1, "contradiction": 2},
                 description="3-way natural language inference"),
    TextTaskSpec("qnli", "glue", (("question", "question"), ("sentence", "sentence")),
                 tuple(WORDS["qnli"]), "qnli", "large", HF, "qnli", "QNLI", local_label_map=NLI,
                 description="does the sentence answer the question"),
    TextTaskSpec("rte", "glue", (("sentence1", "sentence1"), ("sentence2", "sentence2")),
                 tuple(WORDS["rte"]), "rte", "small", HF, "rte", "RTE", local_label_map=NLI,
                 description="2-way textual entailment"),
]:
    register_task(make_text_task(spec, make_glue_scorer(spec), glue_headline_metric(spec.name)))
