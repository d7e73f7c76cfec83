"""Vision-language data from the Hugging Face hub through ``datasets``, the alternative to the official files.

Every VL loader takes the same options:
    ``source``: ``files`` (the official files under ``data_dir``) or ``hub``; by default ``files`` when ``data_dir``
        is set and ``hub`` when it is not (as GLUE does).
    ``hub_id``: the data set's hub id (each task names a default), or a local folder of the same files.
    ``hub_files``: local data files standing in for the hub copy (parquet, arrow or JSON lines, in the copy's
        schema): a path, a glob, a list, or ``{hub split: path}``; read with ``load_dataset(<format>, data_files=...)``
        through the same code as the hub.
    ``hub_revision``: a branch, tag or commit of the hub copy.

``datasets`` is imported only here and only when a hub source is read; a run that needs it is told so before it
trains (``dept_vl.train.run.required_packages`` consults :data:`HUB_TASKS`). Images stay in the data set (memory-
mapped) until used: each example holds a :class:`HubImage`, decoded on demand by the model's image pipeline.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

HUB_OPTIONS = {"source", "hub_id", "hub_files", "hub_revision"}
SOURCES = ("files", "hub")
HUB_TASKS: dict[str, str] = {}  # task name -> its default hub id (filled by the task definitions)
_FORMATS = {".parquet": "parquet", ".arrow": "arrow", ".json": "json", ".jsonl": "json"}


def register_hub_task(task: str, hub_id: str) -> None:
    """Record that ``task`` reads ``hub_id`` when no ``data_dir`` is given (so a run checks for ``datasets`` first)."""
    HUB_TASKS[task] = hub_id


def wants_hub(task: str, data_dir: str | None, options: dict[str, Any]) -> bool:
    """Whether the loader reads the hub: ``source`` if given, else hub exactly when ``data_dir`` is None."""
    source = options.get("source") or ("files" if data_dir is not None else "hub")
    if source not in SOURCES:
        raise ValueError(f"{task}: source={source!r} is unknown; choose files (official files in data_dir) or hub")
    return source == "hub"


@dataclass(frozen=True)
class HubImage:
    """One image cell of a data set, decoded when the image pipeline asks (``load_pil``), never before."""

    dataset: Any
    index: int
    column: str

    def load_pil(self) -> Any:
        """The image as a PIL image (what ``dept_vl.models.load_image`` turns into RGB)."""
        return to_pil(self.dataset[self.index][self.column], f"row {self.index}, column {self.column!r}")

    def __repr__(self) -> str:
        return f"HubImage(row={self.index}, column={self.column!r})"


def to_pil(value: Any, where: str = "") -> Any:
    """A PIL image from a data set cell: a PIL image, ``{"bytes": ..., "path": ...}`` or raw bytes."""
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    data = value.get("bytes") if isinstance(value, dict) else value
    if isinstance(value, dict) and data is None and value.get("path"):
        return Image.open(value["path"])
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"image cell {where} holds {type(value).__name__}, not an image; is it the column of images?")
    return Image.open(io.BytesIO(data))


def _import_datasets(task: str) -> Any:
    try:
        import datasets
    except ImportError as err:
        raise ImportError(f"{task}: reading the hub needs the datasets package: pip install datasets "
                          "(or set data_dir to the official files, source=files)") from err
    return datasets


def _data_files(files: Any, split: str) -> tuple[str, Any]:
    """(builder, data_files) for local stand-ins of one hub split."""
    if isinstance(files, dict):
        if split not in files:
            raise ValueError(f"hub_files has no entry for the hub split {split!r}; it has {sorted(files)}")
        files = files[split]
    paths = [str(Path(f).expanduser()) for f in ([files] if isinstance(files, (str, Path)) else files)]
    suffixes = {Path(p.replace("*", "x")).suffix for p in paths}
    if len(suffixes) != 1 or next(iter(suffixes)) not in _FORMATS:
        raise ValueError(f"hub_files {paths}: expected files of one format among {', '.join(_FORMATS)}")
    return _FORMATS[suffixes.pop()], paths


def open_split(task: str, options: dict[str, Any], default_id: str, split: str, image_columns: Sequence[str] = (),
               config: str | None = None) -> Any:
    """One split of the hub copy as a ``datasets.Dataset``, image columns left undecoded (decoded by :class:`HubImage`).
    ``config``: the copy's configuration (subset) to read; ``hub_files`` given as a mapping is then keyed by it.

    Raises:
        ValueError: a split the copy lacks, naming the copy and the option to change.
    """
    datasets = _import_datasets(task)
    hub_id = options.get("hub_id") or default_id
    try:
        if options.get("hub_files"):
            builder, files = _data_files(options["hub_files"], config or split)
            data = datasets.load_dataset(builder, data_files=files, split="train")
        else:
            data = datasets.load_dataset(str(Path(hub_id).expanduser()) if Path(hub_id).expanduser().is_dir() else hub_id,
                                         config, split=split, revision=options.get("hub_revision"))
    except ValueError as err:
        if "split" not in str(err).lower():
            raise
        where = f"split {split!r}" + (f" in its configuration {config!r}" if config else "")
        raise ValueError(f"{task}: the hub copy {hub_id} has no {where} ({err}); name another copy with hub_id= "
                         "or local files with hub_files=") from err
    for column in image_columns:
        if column in data.column_names and isinstance(data.features[column], datasets.Image):
            data = data.cast_column(column, datasets.Image(decode=False))
    return data


def need_columns(task: str, data: Any, columns: Sequence[str], hub_id: str) -> None:
    """Raise a ValueError naming the columns a hub copy lacks and the schema the loader reads."""
    missing = [c for c in columns if c not in data.column_names]
    if missing:
        raise ValueError(f"{task}: the hub copy {hub_id} has no column(s) {missing} (it has {data.column_names}); "
                         f"this loader reads {list(columns)}")


def hub_rows(data: Any, skip: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every row as a dict, without the (large) columns in ``skip``."""
    keep = [c for c in data.column_names if c not in skip]
    return data.select_columns(keep).to_list() if keep else [{} for _ in range(len(data))]
