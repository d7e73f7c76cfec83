"""The model card (``README.md``) uploaded with an adapter, and the facts of the run that trained it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from dept_vl.adapter import Adapter

CARD_FILE = "README.md"
RUN_CONFIG_FILE = "run_config.yaml"  # the resolved config of the run, beside the adapter
METHOD_NAMES = {"dept": "DePT (Decomposed Prompt Tuning, Shi & Lipani, ICLR 2024)", "prompt_tuning": "prompt tuning",
                "lora": "LoRA", "full": "full fine-tuning"}
HUB_ID_OF_BASE = r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$"


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_facts(folder: Path, adapter: Adapter) -> dict[str, Any]:
    """What the card can say about the run that wrote ``folder``: ``tasks``, ``metrics``, ``command``, ``note`` and
    ``config_file`` (the run's resolved config), from the files dept-vl writes.

    - ``dept-vl pretrain``: ``<out>/adapter/run_config.yaml`` and ``<out>/metrics.json``;
    - ``dept-vl adapt``: ``<out>/runs/<run>/{config.yaml,result.json}`` around ``<run>/adapter``;
    - ``dept-vl import-official``: the record's ``imported_from`` (the release's own reported metrics).
    """
    facts: dict[str, Any] = {}
    parent = folder.parent
    result, summary = _read_json(parent / "result.json"), _read_json(parent / "metrics.json")
    config_file = folder / RUN_CONFIG_FILE
    if not config_file.is_file() and (result or summary) and (parent / "config.yaml").is_file():
        config_file = parent / "config.yaml"
    config = _read_yaml(config_file) if config_file.is_file() else {}
    if config:
        facts["config_file"] = config_file
    if result:  # one k-shot run of dept-vl adapt
        facts["tasks"] = [result.get("task")]
        facts["metrics"] = {f"test {result.get('metric', 'score')}": result.get("score"), "k": result.get("k"),
                            "seed": result.get("seed"), "dev headline (selected)": result.get("dev_score")}
        facts["command"] = f"dept-vl adapt --config {RUN_CONFIG_FILE} --k {result.get('k')} --seeds {result.get('seed')}"
    elif config:
        facts["tasks"] = list((config.get("data") or {}).get("tasks") or [])
        if summary:
            facts["metrics"] = {"dev mean headline (best)": summary.get("best_score"), "best step": summary.get("best_step"),
                                "steps": summary.get("steps")}
        facts["command"] = f"dept-vl pretrain --config {RUN_CONFIG_FILE}"
    imported = adapter.extra.get("imported_from")
    if isinstance(imported, dict):
        facts["note"] = ("Converted from a checkpoint released with the DePT paper "
                         f"({imported.get('peft_type')}, {imported.get('task_type')}); the metrics are the release's own.")
        facts["metrics"] = dict(imported.get("reported_metrics") or {})
        facts["command"] = f"dept-vl import-official <released checkpoint folder> --out {folder.name}"
        if imported.get("task"):
            facts["tasks"] = [imported["task"]]
    return {k: v for k, v in facts.items() if v}


def _settings_line(adapter: Adapter) -> str:
    s = adapter.settings
    if adapter.method in ("dept", "prompt_tuning"):
        text = f"m={s.get('num_virtual_tokens')} prompt tokens, rank r={s.get('rank')}, max_length s={s.get('max_length')}"
        if s.get("trainable_modules"):
            text += f", trained modules {', '.join(s['trainable_modules'])}"
        return text
    return ", ".join(f"{k}={v}" for k, v in s.items())


def model_card(adapter: Adapter, repo_id: str, *, tasks: Sequence[str] | None = None, metrics: dict[str, Any] | None = None,
               command: str | None = None, note: str | None = None) -> str:
    """The ``README.md`` of an adapter repo: front matter (library, base model, tags), what the adapter is, its
    results, how it was trained and how to load it."""
    import re

    base = str(adapter.base_model.get("name_or_path") or "")
    front = ["---", "library_name: dept-vl", f"tags: [dept-vl, {adapter.method.replace('_', '-')}, peft]"]
    if base and re.match(HUB_ID_OF_BASE, base):
        front.append(f"base_model: {base}")
    front.append("---")
    method = METHOD_NAMES.get(adapter.method, adapter.method)
    lines = [*front, "", f"# {repo_id.split('/')[-1]}", "",
             f"A {method} adapter trained with dept-vl.", "",
             f"- **Method**: `{adapter.method}` ({_settings_line(adapter)})",
             f"- **Base model**: `{base or 'unnamed'}` (d_model {adapter.base_model.get('d_model')}, "
             f"{adapter.base_model.get('text_model_type') or adapter.base_model.get('model_type')})",
             f"- **Task**: {', '.join(f'`{t}`' for t in tasks) if tasks else 'not recorded'}"]
    if note:
        lines += ["", note]
    lines += ["", "## Results", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items() if v is not None]
    else:
        lines.append("Not recorded.")
    lines += ["", "## Training", "", "```bash", command or "not recorded", "```"]
    lines += ["", "## Use", "", "```python", "from dept_vl.methods import load_adapter_model", "",
              f"model = load_adapter_model(base, \"{repo_id}\")  # base: the model named above, loaded as in training",
              "```", ""]
    return "\n".join(lines)
