"""Recipe: serve many adapters at once. Reads a JSONL of requests ``{"adapter", "input", "image"}`` and writes
one prediction per request, every adapter in the same batches (one pass of the frozen base per batch).

``adapter`` is a name given with ``adapters`` (``name -> folder or hub id``), a folder or hub id itself, or null
(the bare backbone); ``image`` is an image file (relative to the requests file) or absent. DePT and
prompt-tuning adapters only: their changes are at the input, so rows with different adapters share a batch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dept_vl.config import RunConfig
from dept_vl.data.example import Example
from dept_vl.io import write_text_atomic
from dept_vl.methods.serving import MultiAdapterModel
from dept_vl.train.decoding import beam_decoding
from dept_vl.train.loader import make_collator
from dept_vl.train.run import DEFAULT_MAX_INPUT_LENGTH, Run
from dept_vl.train.predict import generation_options

REQUEST_KEYS = {"adapter", "input", "image", "id"}


def read_requests(path: str | Path) -> list[dict[str, Any]]:
    """The requests of a JSONL file, checked: each line an object with a string ``input``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"requests file {path} does not exist; give a JSONL file of {{\"adapter\", \"input\", \"image\"}} lines")
    requests = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError as error:
            raise ValueError(f"{path}:{number}: not JSON ({error.msg}); each line is one request object") from None
        if not isinstance(request, dict) or not isinstance(request.get("input"), str):
            raise ValueError(f"{path}:{number}: a request needs a string \"input\" (got {line[:80]!r})")
        unknown = set(request) - REQUEST_KEYS
        if unknown:
            raise ValueError(f"{path}:{number}: unknown field(s) {sorted(unknown)}; a request has {sorted(REQUEST_KEYS)}")
        image = request.get("image")
        if image is not None:
            request["image"] = str((path.parent / Path(image).expanduser()) if not Path(image).expanduser().is_absolute() else Path(image).expanduser())
        requests.append(request)
    if not requests:
        raise ValueError(f"requests file {path} holds no request")
    return requests


def run_predict(config: RunConfig, requests_file: str | Path, out: str | Path, adapters: dict[str, str] | None = None,
                overwrite: bool = False) -> list[dict[str, Any]]:
    """Predictions for every request of ``requests_file``, written to the JSONL file ``out`` (request fields plus
    ``prediction``, in the requests' order); returns them. ``config``: the backbone and ``eval.*`` settings."""
    out = Path(out).expanduser()
    requests = read_requests(requests_file)
    if out.exists() and not overwrite:
        raise ValueError(f"{out} exists; pass --overwrite to replace it or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(out.parent, os.W_OK):
        raise ValueError(f"--out {out}: the folder {out.parent} cannot be written; choose a folder you can write to")
    return _predict(config, requests, out, dict(adapters or {}))


def _predict(config: RunConfig, requests: list[dict[str, Any]], out: Path, names: dict[str, str]) -> list[dict[str, Any]]:
    run = Run.setup(config, [])
    multi = MultiAdapterModel(run.base)
    registered: dict[str, str] = {}  # request key -> the adapter's name in ``multi`` (no dots allowed there)
    for request in requests:
        key = request.get("adapter")
        if key is not None and key not in registered:
            registered[key] = f"{len(registered)}-{key.replace('.', '_')}"
            multi.add_adapter(registered[key], names.get(key, key))
    limits = [a.dept_config.max_length for a in multi.adapters.values() if a.lowrank_A is not None]
    collate = make_collator(run.base, config.data, min(limits + [config.data.max_input_length or DEFAULT_MAX_INPUT_LENGTH]))
    examples = [Example(id=str(r.get("id", i)), input_text=r["input"], target_text="", image=r.get("image"),
                        image_id=r.get("image")) for i, r in enumerate(requests)]
    # batches of one kind (with or without an image), sorted by length: little padding
    order = sorted(range(len(examples)), key=lambda i: (examples[i].has_image, len(examples[i].input_text)))
    predictions: dict[int, str] = {}
    batch_size, device = config.eval.batch_size, run.accelerator.device
    multi.eval()
    start = 0
    with beam_decoding(multi, config.eval):  # what evaluation's beam search does (eval.cache=compiled too)
        while start < len(order):
            kind = examples[order[start]].has_image
            indices = [i for i in order[start : start + batch_size] if examples[i].has_image == kind]
            start += len(indices)
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in indices], with_labels=False).items()}
            ids = [registered.get(requests[i].get("adapter")) for i in indices]
            output = multi.generate(**batch, adapter_ids=ids, **generation_options(config.eval))
            for i, text in zip(indices, run.base.tokenizer.batch_decode(output, skip_special_tokens=True)):
                predictions[i] = text.strip()
    rows = [{**r, "prediction": predictions[i]} for i, r in enumerate(requests)]
    if run.accelerator.is_main_process:
        write_text_atomic(out, "".join(json.dumps(row) + "\n" for row in rows))
        run.accelerator.print(f"{len(rows)} predictions from {len(multi.adapters)} adapter(s) -> {out}")
    return rows
