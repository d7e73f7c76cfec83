"""VisionFeatureCache: the frozen image encoder's output per image, computed once (in memory, optionally on disk)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import torch

from dept_vl.io import save_tensors_atomic, write_text_atomic

PixelFn = Callable[[list[str]], torch.Tensor]
Images = Union[PixelFn, Sequence[Any]]
KEY_FILE = "feature_key.txt"


class VisionFeatureCache:
    """Features of a frozen image encoder, keyed by image id and ``model.feature_key``.

    The feature key names the encoder, a hash of its weights, the token options (class token,
    pooling) and a hash of the preprocessing, so features of another encoder or preprocessing are
    never returned. With ``directory``, every newly computed batch is also written as one
    safetensors shard under ``directory/<hash of the feature key>/``; a new cache on the same folder
    reads them back. Features are stored on the CPU exactly as computed, so a cached forward gives
    the same logits as computing them on the fly.

    Args:
        directory: where shards are written and read (``~`` is expanded); None keeps the cache in memory only.
    """

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory).expanduser() if directory is not None else None
        self._store: dict[str, dict[str, torch.Tensor]] = {}  # feature key -> image id -> (N, width)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._store.values())

    def clear(self) -> None:
        """Forget everything held in memory (shards on disk stay)."""
        self._store.clear()

    def _folder(self, feature_key: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / hashlib.sha1(feature_key.encode()).hexdigest()[:16]

    def _entries(self, feature_key: str) -> dict[str, torch.Tensor]:
        """The features of one key, loading the key's shards from disk the first time."""
        if feature_key in self._store:
            return self._store[feature_key]
        entries: dict[str, torch.Tensor] = {}
        folder = self._folder(feature_key)
        if folder is not None and folder.is_dir():
            from safetensors.torch import load_file

            stored_key = (folder / KEY_FILE).read_text() if (folder / KEY_FILE).is_file() else None
            if stored_key is not None and stored_key != feature_key:
                raise ValueError(f"feature cache folder {folder} belongs to another encoder ({stored_key!r}); delete it")
            for shard in sorted(folder.glob("shard-*.safetensors")):
                entries.update(load_file(str(shard)))
        self._store[feature_key] = entries
        return entries

    def _write_shard(self, feature_key: str, new: dict[str, torch.Tensor]) -> None:
        folder = self._folder(feature_key)
        if folder is None or not new:
            return
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / KEY_FILE).is_file():
            write_text_atomic(folder / KEY_FILE, feature_key)
        save_tensors_atomic(folder / f"shard-{uuid.uuid4().hex[:12]}.safetensors", new, metadata={"feature_key": feature_key})

    def get_or_compute(self, image_ids: Sequence[str], images: Images, encoder: Any) -> torch.Tensor:
        """Features (B, N, width) for ``image_ids``, computing only the missing ones.

        Args:
            image_ids: one stable id per row (duplicates are computed once).
            images: either a function ``missing_ids -> pixel_values`` (len(missing), C, H, W), or a
                sequence aligned with ``image_ids`` of PIL images, image paths or (C, H, W) tensors
                (transformed with ``encoder.image_transform``; only the missing ones are touched).
            encoder: the :class:`VLEncoderDecoder` (its ``encode_images`` and ``feature_key``).

        Returns:
            The features on the encoder's device, ready for ``model(image_features=...)``.
        """
        if getattr(encoder, "freeze_image_encoder", True) is False:
            raise ValueError("a feature cache needs a frozen image encoder (freeze_image_encoder=True): trained features change every step")
        ids = list(image_ids)
        bad = [i for i in ids if not isinstance(i, str) or not i]
        if bad:
            raise ValueError(f"image ids must be non-empty strings, got {bad[:3]}; rows without an image cannot use the cache")
        if not callable(images) and len(images) != len(ids):
            raise ValueError(f"got {len(images)} images for {len(ids)} image ids; give one image per id")
        feature_key = encoder.feature_key
        entries = self._entries(feature_key)
        missing = list(dict.fromkeys(i for i in ids if i not in entries))
        self.hits += len(ids) - sum(1 for i in ids if i in missing)
        self.misses += len(missing)
        if missing:
            pixel_values = self._pixels(missing, ids, images, encoder)
            with torch.no_grad():
                features = encoder.encode_images(pixel_values).detach().to("cpu")
            new = {image_id: features[row].clone() for row, image_id in enumerate(missing)}
            entries.update(new)
            self._write_shard(feature_key, new)
        return torch.stack([entries[i] for i in ids]).to(encoder.device)

    @staticmethod
    def _pixels(missing: list[str], ids: list[str], images: Images, encoder: Any) -> torch.Tensor:
        if callable(images):
            pixel_values = images(missing)
            if not isinstance(pixel_values, torch.Tensor) or pixel_values.shape[0] != len(missing):
                got = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
                raise ValueError(f"the pixel_values function returned {got} for {len(missing)} missing ids; expected ({len(missing)}, C, H, W)")
            return pixel_values
        first = {image_id: row for row, image_id in reversed(list(enumerate(ids)))}
        rows = [images[first[image_id]] for image_id in missing]
        return torch.stack([row if isinstance(row, torch.Tensor) else encoder.image_transform(row) for row in rows])
