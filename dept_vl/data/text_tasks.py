"""GLUE and SuperGLUE tasks as text-to-text: loading (Hugging Face datasets or the official files),
the reference code's split rule, and the two input formats.

Formats:
    ``default``: ``"<task> <field>: <text> <field>: <text>"`` -> a label word (``acceptable``...);
        STS-B targets are numbers rounded to 0.2 (``"3.8"``).
    ``reference``: the DePT/ATTEMPT reference code's format, so imported checkpoints are evaluated
        the way they were trained: the reference task name as prefix (``cola``, ``superglue-boolq``)
        and the label index as target; STS-B targets rounded to one decimal as its code does.

Splits (option ``split_rule``): ``"reference"`` (the default) is the reference code's rule with
seed 42: small sets (CoLA, RTE, MRPC, STS-B, BoolQ, CB) split their validation set in two halves
(dev, test); large sets (SST-2, QQP, QNLI) hold out 1,000 training examples as dev and use the
validation set as test; MNLI uses validation_mismatched as dev and validation_matched as test.
``"official"`` maps train/dev/test to the released train/validation/test (test labels are hidden:
targets empty, label None).

Local files (``data_dir``, ``~`` expanded) are checked as they are read: a train or validation file
without its label column, a file with no examples and a row with fewer fields than the header are
ValueErrors naming the file (and the line).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dept_vl.data.example import Example
from dept_vl.data.task import Scorer, Task

REFERENCE_SEED = 42
LARGE_DEV_SIZE = 1000
_OPTIONS = {"split_rule", "split_seed", "hf_path", "hf_config", "limit"}


@dataclass(frozen=True)
class TextTaskSpec:
    """How one GLUE/SuperGLUE task is read and written as text.

    ``fields`` pairs each input field name with its Hugging Face column; ``local_columns`` maps
    those columns (and ``label``) to the columns of the official release files; ``label_words``
    is None for regression (STS-B).
    """

    name: str
    benchmark: str  # "glue" or "superglue"
    fields: tuple[tuple[str, str], ...]
    label_words: tuple[str, ...] | None
    reference_prefix: str
    size: str  # "small", "large" or "mnli": which reference split rule applies
    hf_path: str
    hf_config: str
    local_dir: str  # folder name in the official release (CoLA, BoolQ...)
    local_columns: dict[str, str] = field(default_factory=dict)
    local_label_map: dict[str, int] = field(default_factory=dict)
    skip_short_rows: bool = False  # QQP's release has a few rows cut short: skip them with one warning
    headerless_columns: tuple[str, ...] = ()  # CoLA's train/dev files have no header row
    description: str = ""


def _source_split_names(spec: TextTaskSpec) -> dict[str, str]:
    if spec.size == "mnli":
        return {"train": "train", "validation": "validation_matched",
                "validation_mismatched": "validation_mismatched", "test": "test_matched"}
    return {"train": "train", "validation": "validation", "test": "test"}


def _local_file(spec: TextTaskSpec, source_split: str) -> str:
    if spec.benchmark == "superglue":
        return {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl"}[source_split]
    return {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv",
            "validation_matched": "dev_matched.tsv", "validation_mismatched": "dev_mismatched.tsv",
            "test_matched": "test_matched.tsv"}[source_split]


def _find_local(spec: TextTaskSpec, data_dir: str | Path, source_split: str) -> Path:
    name = _local_file(spec, source_split)
    root = Path(data_dir).expanduser()
    for folder in (root, root / spec.local_dir):
        if (folder / name).is_file():
            return folder / name
    raise ValueError(f"{spec.name}: no {name} in {root} or {root / spec.local_dir}; "
                     f"data_dir must hold the official {spec.benchmark.upper()} release files "
                     f"(e.g. {spec.local_dir}/{name})")


def _convert_label(spec: TextTaskSpec, raw: Any) -> int | float | None:
    if raw is None or raw == "" or raw == -1:
        return None
    if spec.label_words is None:
        return float(raw)
    if isinstance(raw, bool):
        return int(raw)
    key = str(raw).strip()
    if key in spec.local_label_map:
        return spec.local_label_map[key]
    try:
        return int(key)
    except ValueError:
        raise ValueError(f"{spec.name}: unexpected label {raw!r}; expected one of "
                         f"{sorted(spec.local_label_map) or 'label indices'}") from None


def _no_examples(spec: TextTaskSpec, path: Path) -> ValueError:
    return ValueError(f"{spec.name}: {path} has no examples; the file is empty or cut short, download the "
                      f"official {spec.benchmark.upper()} release again")


def _read_tsv(spec: TextTaskSpec, path: Path, labelled: bool = True) -> list[dict[str, Any]]:
    """Rows of a GLUE TSV file (tabs only: quotes are text, as in the release). ``labelled``: a train or
    validation file, which must have the label column (the release's test files have none)."""
    with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: MRPC's files start with a byte-order mark
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = [(reader.line_num, row) for row in reader if row]  # (line number, fields); blank lines skipped
    wanted = {col: spec.local_columns.get(col, col) for _, col in spec.fields}
    if rows and all(name in rows[0][1] for name in wanted.values()):
        header, body = rows[0][1], rows[1:]
    elif spec.headerless_columns:
        header, body = list(spec.headerless_columns), rows
    elif not rows:
        raise _no_examples(spec, path)
    else:
        raise ValueError(f"{path}: expected a header row with columns {sorted(wanted.values())}")
    label_col = spec.local_columns.get("label", "label")
    if labelled and label_col not in header:
        raise ValueError(f"{spec.name}: {path} has no label column {label_col!r} (its columns: {header}); "
                         f"a train or validation file of the {spec.benchmark.upper()} release has one")
    if not body:
        raise _no_examples(spec, path)
    out, skipped = [], []
    for i, (line, row) in enumerate(body):
        if len(row) < len(header):
            if spec.skip_short_rows:
                skipped.append(line)
                continue
            raise ValueError(f"{spec.name}: {path}, line {line}: {len(row)} fields, the header has {len(header)} "
                             f"({', '.join(header)}); the row is cut short or has a missing tab, fix or remove it")
        record = dict(zip(header, row))
        item = {col: record.get(tsv_col, "") for col, tsv_col in wanted.items()}
        item["label"] = _convert_label(spec, record.get(label_col))
        item["idx"] = i
        out.append(item)
    if skipped:
        import warnings

        warnings.warn(f"{spec.name}: skipped {len(skipped)} rows of {path} with fewer fields than its header "
                      f"(first at line {skipped[0]}), as the GLUE release's {spec.local_dir} has such rows", stacklevel=2)
    return out


def _read_jsonl(spec: TextTaskSpec, path: Path, labelled: bool = True) -> list[dict[str, Any]]:
    """Records of a SuperGLUE JSONL file; ``labelled``: a train or validation file, whose records need ``label``."""
    out = []
    with open(path, encoding="utf-8-sig") as f:
        lines = [(number, line) for number, line in enumerate(f, start=1) if line.strip()]
    for i, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{spec.name}: {path}, line {number}: not valid JSON ({error}); "
                             "the file is damaged, download it again") from None
        if not isinstance(record, dict):
            raise ValueError(f"{spec.name}: {path}, line {number}: expected a JSON object, got {type(record).__name__}")
        needed = [col for _, col in spec.fields] + (["label"] if labelled else [])
        missing = [col for col in needed if col not in record]
        if missing:
            raise ValueError(f"{spec.name}: {path}, line {number}: no {missing[0]!r} field (its fields: "
                             f"{sorted(record)}); is it the official {spec.benchmark.upper()} release file?")
        item = {col: record[col] for _, col in spec.fields}
        item["label"] = _convert_label(spec, record.get("label"))
        item["idx"] = record.get("idx", i)
        out.append(item)
    if not out:
        raise _no_examples(spec, path)
    return out


def _read_hf(spec: TextTaskSpec, source_split: str, hf_path: str, hf_config: str) -> list[dict[str, Any]]:
    try:
        import datasets  # lazy: optional at run time, and it may reach the network
    except ImportError as err:
        raise ImportError(f"{spec.name}: loading from the Hugging Face hub needs the datasets package "
                          f"(pip install datasets), or pass data_dir= with the official files") from err

    data = datasets.load_dataset(hf_path, hf_config, split=source_split)
    out = []
    for i, record in enumerate(data):
        item = {col: record[col] for _, col in spec.fields}
        item["label"] = _convert_label(spec, record.get("label"))
        item["idx"] = record.get("idx", i)
        out.append(item)
    return out


def _permutation(n: int, seed: int) -> list[int]:
    import torch  # the reference code shuffles with torch.randperm; reproduce it exactly

    generator = torch.Generator()
    generator.manual_seed(seed)
    return torch.randperm(n, generator=generator).tolist()


def _rows_for_split(spec: TextTaskSpec, split: str, read: Callable[[str], list[dict]],
                    rule: str, seed: int) -> list[dict[str, Any]]:
    names = _source_split_names(spec)
    if rule == "official":
        return read(names[{"train": "train", "dev": "validation", "test": "test"}[split]])
    if spec.size == "mnli":
        return read(names[{"train": "train", "dev": "validation_mismatched", "test": "validation"}[split]])
    if spec.size == "small":
        if split == "train":
            return read(names["train"])
        rows = read(names["validation"])
        order = _permutation(len(rows), seed)
        half = len(rows) // 2
        return [rows[i] for i in (order[:half] if split == "dev" else order[half:])]
    if split == "test":
        return read(names["validation"])
    rows = read(names["train"])
    order = _permutation(len(rows), seed)
    return [rows[i] for i in (order[:LARGE_DEV_SIZE] if split == "dev" else order[LARGE_DEV_SIZE:])]


def _target(spec: TextTaskSpec, label: int | float | None, fmt: str) -> str:
    import numpy as np

    if label is None:
        return ""
    if spec.label_words is None:  # STS-B
        if fmt == "reference":
            return str(float(np.round(label, decimals=1)))  # the reference code's round_stsb_target
        return f"{math.floor(float(label) * 5 + 0.5) / 5:.1f}"  # nearest 0.2, halves up
    return str(label) if fmt == "reference" else spec.label_words[int(label)]


def _to_example(spec: TextTaskSpec, row: dict[str, Any], split: str, fmt: str) -> Example:
    prefix = spec.reference_prefix if fmt == "reference" else spec.name
    text = " ".join(f"{name}: {str(row[col]).strip()}" for name, col in spec.fields)
    target = _target(spec, row["label"], fmt)
    is_class = spec.label_words is not None and row["label"] is not None
    return Example(
        id=f"{spec.name}-{split}-{row['idx']}",
        input_text=f"{prefix} {text}",
        target_text=target,
        label=target if is_class else None,
        references=[target] if target else [],
        meta={"format": fmt, "label_value": row["label"]},
    )


def make_text_task(spec: TextTaskSpec, scorer: Scorer, headline_metric: str) -> Task:
    """Build the registry's :class:`Task` for one GLUE/SuperGLUE spec, scored by ``scorer`` (the task
    definitions pass it in: scoring lives with them, in ``tasks/``) with ``headline_metric`` as headline."""

    def loader(split: str, data_dir: str | None, fmt: str, **options: Any) -> list[Example]:
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ValueError(f"{spec.name}: unknown options {sorted(unknown)}; known: {sorted(_OPTIONS)}")
        rule = options.get("split_rule", "reference")
        if rule not in ("reference", "official"):
            raise ValueError(f"{spec.name}: split_rule must be 'reference' or 'official', got {rule!r}")
        if data_dir is not None:
            reader = _read_jsonl if spec.benchmark == "superglue" else _read_tsv

            def read(source_split: str) -> list[dict]:
                labelled = not source_split.startswith("test")  # the release's test files have no labels
                return reader(spec, _find_local(spec, data_dir, source_split), labelled)
        else:
            def read(source_split: str) -> list[dict]:
                return _read_hf(spec, source_split, options.get("hf_path", spec.hf_path),
                                options.get("hf_config", spec.hf_config))
        rows = _rows_for_split(spec, split, read, rule, int(options.get("split_seed", REFERENCE_SEED)))
        if options.get("limit") is not None:
            rows = rows[: int(options["limit"])]
        return [_to_example(spec, row, split, fmt) for row in rows]

    scale = "-1..1" if spec.name in ("cola", "stsb") else "0..1"
    kind = "regression" if spec.label_words is None else "classification"
    return Task(
        name=spec.name, kind=kind, family=spec.benchmark,
        source=f"HF {spec.hf_path}/{spec.hf_config} or data_dir with {spec.local_dir}/",
        headline_metric=headline_metric, scale=scale, loader=loader, scorer=scorer,
        label_words=list(spec.label_words) if spec.label_words else None,
        balance_field="label" if spec.label_words else None,
        has_images=False, formats=("default", "reference"), description=spec.description,
    )
