"""FeatureStore: a frozen image encoder's features by image id, in memory-mapped shards on disk (or in memory).

Layout: ``<directory>/<hash of the feature key>-<dtype>/`` holds ``feature_key.txt`` and shards
``shard-<hash of their ids>.safetensors``, each one tensor ``features`` (n, N, width) with its image ids in
the header's metadata. Shards are written atomically and never changed, so any number of runs and processes
on the machine read and add to one folder at once; a reader memory-maps them and copies out only the rows it
looks up, so its memory does not grow with the number of images stored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from dept_vl.io import save_tensors_atomic, write_text_atomic

KEY_FILE = "feature_key.txt"
SHARD_GLOB = "shard-*.safetensors"
SHARD_SIZE = 1024  # images per shard: what a killed extraction loses at most, per process
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)


def default_feature_dir() -> Path:
    """The machine's shared feature folder: ``features/`` in dept-vl's cache folder (:func:`dept_vl.io.cache_dir`)."""
    from dept_vl.io import cache_dir

    return cache_dir("features")


def resolve_dtype(name: str, computed: torch.dtype) -> torch.dtype:
    """The stored dtype: ``auto`` keeps ``computed`` (the encoder's own, so nothing is rounded), else the named one.

    Raises:
        ValueError: an unknown name, naming it and the choices.
    """
    if name == "auto":
        return computed
    if name not in DTYPES:
        raise ValueError(f"data.feature_dtype={name!r} is unknown; choose {', '.join(DTYPE_CHOICES)}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class FeatureStore(Mapping[str, torch.Tensor]):
    """Features (N, width) of one feature key by image id; a read-only mapping plus :meth:`add`.

    Args:
        directory: the root folder shared by every encoder (``~`` expanded); None keeps features in memory.
        feature_key: ``model.feature_key`` (encoder, weights, token options, preprocessing).
        dtype: the stored dtype; rows are cast to it when added and returned in it.
        shard_size: rows per shard written by :func:`~dept_vl.models.feature_extraction.extract_features`.

    Raises:
        ValueError: ``directory`` is one encoder's folder rather than the root, or the folder holds another key.
    """

    def __init__(self, directory: str | Path | None, feature_key: str, dtype: torch.dtype = torch.float32,
                 *, shard_size: int = SHARD_SIZE):
        if dtype not in DTYPES.values():
            raise ValueError(f"feature dtype {dtype} is not supported; choose {', '.join(DTYPES)}")
        if shard_size < 1:
            raise ValueError(f"shard_size={shard_size}: must be >= 1")
        self.feature_key, self.dtype, self.shard_size = feature_key, dtype, shard_size
        self.root = Path(directory).expanduser() if directory is not None else None
        self.folder: Path | None = None
        self._memory: dict[str, torch.Tensor] = {}
        self._index: dict[str, tuple[int, int]] = {}  # image id -> (shard number, row)
        self._shards: list[Path] = []
        self._seen: set[str] = set()
        self._handles: dict[int, Any] = {}
        self._row_shape: tuple[int, ...] | None = None
        if self.root is not None:
            self.folder = self.root / f"{hashlib.sha1(feature_key.encode()).hexdigest()[:16]}-{dtype_name(dtype)}"
            self._check_folders()
            self.refresh()

    # ------------------------------------------------------------------ checks
    def _check_folders(self) -> None:
        assert self.root is not None and self.folder is not None
        if (self.root / KEY_FILE).is_file():
            other = (self.root / KEY_FILE).read_text()
            raise ValueError(f"data.feature_dir={str(self.root)!r} is the feature folder of one encoder ({other!r}), not the "
                             f"shared root; set data.feature_dir={str(self.root.parent)!r}")
        key_file = self.folder / KEY_FILE
        if key_file.is_file() and key_file.read_text() != self.feature_key:
            raise ValueError(f"feature folder {self.folder} belongs to another encoder ({key_file.read_text()!r}, not "
                             f"{self.feature_key!r}); delete the folder, or set data.feature_dir to another folder")

    def _check_rows(self, shape: Sequence[int], where: str) -> None:
        shape = tuple(int(s) for s in shape)
        if self._row_shape is None:
            self._row_shape = shape
        elif shape != self._row_shape:
            raise ValueError(f"{where} holds features of shape {shape}, the store's others {self._row_shape}: it was not "
                             f"written for feature key {self.feature_key!r}; delete {self.folder or 'the store'}")

    # ------------------------------------------------------------------ reading
    def refresh(self) -> int:
        """Index shards written since the last look (by any process); returns how many images were new."""
        if self.folder is None or not self.folder.is_dir():
            return 0
        from safetensors import safe_open

        before = len(self._index)
        for path in sorted(self.folder.glob(SHARD_GLOB)):
            if path.name in self._seen:
                continue
            with safe_open(str(path), framework="pt") as shard:
                meta = shard.metadata() or {}
                if meta.get("feature_key") != self.feature_key:
                    raise ValueError(f"feature shard {path} was written for {meta.get('feature_key')!r}, not "
                                     f"{self.feature_key!r}; delete it")
                ids = json.loads(meta["ids"])
                self._check_rows(shard.get_slice("features").get_shape()[1:], str(path))
            self._seen.add(path.name)
            self._shards.append(path)
            number = len(self._shards) - 1
            for row, image_id in enumerate(ids):
                self._index.setdefault(image_id, (number, row))
        return len(self._index) - before

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._memory or image_id in self._index

    def __len__(self) -> int:
        return len(self._memory) + len(self._index)

    def __iter__(self) -> Iterator[str]:
        yield from self._memory
        yield from self._index

    def _row(self, image_id: str) -> torch.Tensor:
        if image_id in self._memory:
            return self._memory[image_id]
        if image_id not in self._index:
            raise KeyError(image_id)
        number, row = self._index[image_id]
        handle = self._handles.get(number)
        if handle is None:  # memory-mapped: a lookup copies out its own row only
            from safetensors import safe_open

            handle = self._handles[number] = safe_open(str(self._shards[number]), framework="pt").get_slice("features")
        return handle[row]  # a view of the mapped file (private to this process): copy before writing to it

    def __getitem__(self, image_id: str) -> torch.Tensor:
        """One image's features (N, width), a copy of its own."""
        return self._row(image_id).clone()

    def stack(self, image_ids: Sequence[str]) -> torch.Tensor:
        """Features (len(image_ids), N, width) in the store's dtype, on the CPU (one copy of the rows)."""
        return torch.stack([self._row(i) for i in image_ids])

    def missing(self, image_ids: Sequence[str]) -> list[str]:
        """The ids of ``image_ids`` not stored yet (in order, once each)."""
        return [i for i in dict.fromkeys(image_ids) if i not in self]

    @property
    def open_shards(self) -> int:
        """How many shards lookups have memory-mapped so far."""
        return len(self._handles)

    # ------------------------------------------------------------------ writing
    def add(self, image_ids: Sequence[str], features: torch.Tensor) -> None:
        """Store ``features`` (len(image_ids), N, width), cast to the store's dtype; on disk as one new shard."""
        ids = list(image_ids)
        if features.dim() != 3 or features.shape[0] != len(ids):
            raise ValueError(f"features of shape {tuple(features.shape)} for {len(ids)} image ids; expected ({len(ids)}, N, width)")
        if len(set(ids)) != len(ids) or not all(isinstance(i, str) and i for i in ids):
            raise ValueError("image ids of one shard must be distinct non-empty strings")
        self._check_rows(features.shape[1:], "the added batch")
        rows = features.detach().to("cpu", self.dtype)
        if self.folder is None:
            self._memory.update((image_id, rows[n].clone()) for n, image_id in enumerate(ids))
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.folder / KEY_FILE).is_file():
            write_text_atomic(self.folder / KEY_FILE, self.feature_key)
        name = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:20]
        save_tensors_atomic(self.folder / f"shard-{name}.safetensors", {"features": rows},
                            metadata={"feature_key": self.feature_key, "ids": json.dumps(ids)})
        self.refresh()

    def __repr__(self) -> str:
        where = str(self.folder) if self.folder is not None else "memory"
        return f"FeatureStore({len(self)} images, {dtype_name(self.dtype)}, {where})"
