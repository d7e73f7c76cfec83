"""NLVR2: is a sentence true of a pair of images? Two images per example.

Official files (``data_dir``, or ``data_dir/data``): ``train.json``, ``dev.json``, ``test1.json``, JSON lines with
``identifier`` (``<split>-<set>-<pair>-<sentence>``), ``sentence``, ``label`` (``"True"``/``"False"``) and, for train,
``directory``. The images of ``dev-850-0-0`` are ``dev-850-0-img0.png`` (left) and ``dev-850-0-img1.png`` (right): the
identifier without its last ``-<sentence>`` part; they live in ``image_dir`` (default ``data_dir/images``) under
``train/<directory>/``, ``dev/`` and ``test1/`` as the release lays them out (or directly in ``image_dir``).
train = train.json, dev = dev.json, test = test1.json (VL-T5's and VL-Adapter's valid and test).

Each example's ``image`` is the tuple (left, right) and ``image_id`` the tuple of their ids; the model reads the
two images' visual tokens one after the other. Input ``"nlvr: <sentence>"`` (VL-Adapter's task prompt), target
``true`` or ``false`` (VL-T5's answer words), ``label`` the same word (k-shot sampling balances it).

From the hub (``source=hub``, ``hub_id``): rows with ``identifier``, ``sentence``, ``label`` (a bool, ``"True"``/
``"False"`` or 1/0) and the images as ``left_image``/``right_image`` columns, an ``images`` column of two, or none
(then from ``image_dir`` by identifier, as for the files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dept_vl.data import hub_vl
from dept_vl.data.example import Example
from dept_vl.data.vl_tasks import check_options, find_file, image_dir_option, require_dir

TASK = "nlvr2"
FILES = {"train": "train.json", "dev": "dev.json", "test": "test1.json"}
FOLDERS = {"train": "train", "dev": "dev", "test": "test1"}
HUB = "HuggingFaceM4/NLVR2"  # its card: identifier, sentence, label (true/false), left_url, right_url
HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
WHAT = "the NLVR2 files train.json, dev.json, test1.json (JSON lines) and their images"
LABELS = ("true", "false")
_TRUE = {True, 1, "true", "True", "TRUE", "1"}
_FALSE = {False, 0, "false", "False", "FALSE", "0"}


def label_word(value: Any, where: str) -> str:
    """``true`` or ``false`` from the label of a file or hub row; anything else is a ValueError naming ``where``."""
    if value in _TRUE:
        return "true"
    if value in _FALSE:
        return "false"
    raise ValueError(f"{TASK}: {where} has label {value!r}; expected True or False")


def image_names(identifier: str) -> tuple[str, str]:
    """The two image file names of an identifier: ``dev-850-0-0`` -> (``dev-850-0-img0.png``, ``dev-850-0-img1.png``)."""
    stem, sep, _ = str(identifier).rpartition("-")
    if not sep or not stem:
        raise ValueError(f"{TASK}: identifier {identifier!r} is not <split>-<set>-<pair>-<sentence>")
    return f"{stem}-img0.png", f"{stem}-img1.png"


def make_example(split: str, identifier: str, sentence: str, label: Any, image: tuple[Any, Any]) -> Example:
    """One NLVR2 example, the same from the files and from a hub copy."""
    word = label_word(label, f"example {identifier}")
    left, right = image_names(identifier)
    return Example(id=f"{TASK}-{split}-{identifier}", input_text=f"nlvr: {sentence.strip()}", target_text=word,
                   image=image, image_id=(f"nlvr2-{left[:-4]}", f"nlvr2-{right[:-4]}"), label=word, references=[word])


def _image_paths(root: Path, split: str, identifier: str, directory: Any) -> tuple[str, str]:
    folder = root / FOLDERS[split]
    base = folder / str(directory) if directory not in (None, "") and (folder / str(directory)).is_dir() else folder
    base = base if base.is_dir() else root
    left, right = image_names(identifier)
    return str(base / left), str(base / right)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{TASK}: {path} line {number} is not JSON ({err}); is it the official file?") from None
            for name in ("identifier", "sentence", "label"):
                if name not in row:
                    raise ValueError(f"{TASK}: {path} line {number} has no {name!r} field; is it the official file?")
            rows.append(row)
    if not rows:
        raise ValueError(f"{TASK}: {path} holds no examples")
    return rows


def load_nlvr2(split: str, data_dir: str | None, fmt: str, **options: Any) -> list[Example]:
    """NLVR2 from the official files or a hub copy (see the module's docstring)."""
    check_options(TASK, options, {"image_dir", "limit"} | hub_vl.HUB_OPTIONS)
    if hub_vl.wants_hub(TASK, data_dir, options):
        out = _from_hub(split, data_dir, options)
    else:
        root = require_dir(TASK, data_dir, WHAT)
        path = find_file(TASK, [root, root / "data"], FILES[split], WHAT)
        images = image_dir_option(options, root / "images")
        if not images.is_dir():
            raise ValueError(f"{TASK}: expected the images in {images}; pass image_dir= the folder that holds "
                             f"{FOLDERS[split]}/ (or the .png files)")
        out = [make_example(split, r["identifier"], r["sentence"], r["label"],
                            _image_paths(images, split, r["identifier"], r.get("directory")))
               for r in _read_jsonl(path)]
        if not Path(out[0].image[0]).is_file():
            raise ValueError(f"{TASK}: image {out[0].image[0]} of {out[0].id} does not exist; pass image_dir= the folder "
                             f"that holds {FOLDERS[split]}/")
    return out[: options["limit"]] if options.get("limit") else out


def _from_hub(split: str, data_dir: str | None, options: dict[str, Any]) -> list[Example]:
    hub_id = options.get("hub_id") or HUB
    columns = ["left_image", "right_image", "images"]
    data = hub_vl.open_split(TASK, options, HUB, HUB_SPLITS[split], columns)
    hub_vl.need_columns(TASK, data, ("identifier", "sentence", "label"), hub_id)
    pair = ("left_image", "right_image") if {"left_image", "right_image"} <= set(data.column_names) else None
    folder = options.get("image_dir") or (Path(data_dir).expanduser() / "images" if data_dir else None)
    if pair is None and "images" not in data.column_names and folder is None:
        raise ValueError(f"{TASK}: the hub copy {hub_id} has no image columns (left_image/right_image or images); pass "
                         "image_dir= the folder of the NLVR2 images")
    out = []
    for i, row in enumerate(hub_vl.hub_rows(data, skip=columns)):
        if pair is not None:
            image: tuple[Any, Any] = (hub_vl.HubImage(data, i, pair[0]), hub_vl.HubImage(data, i, pair[1]))
        elif "images" in data.column_names:
            image = (_ListImage(data, i, 0), _ListImage(data, i, 1))
        else:
            image = _image_paths(Path(folder).expanduser(), split, row["identifier"], row.get("directory"))
        out.append(make_example(split, row["identifier"], row["sentence"], row["label"], image))
    return out


class _ListImage(hub_vl.HubImage):
    """Item ``position`` of a row's ``images`` list."""

    def __init__(self, dataset: Any, index: int, position: int):
        super().__init__(dataset, index, "images")
        object.__setattr__(self, "position", position)

    def load_pil(self) -> Any:
        return hub_vl.to_pil(self.dataset[self.index]["images"][self.position], f"row {self.index}, images[{self.position}]")
