"""VisionFeatureCache: the frozen image encoder's output per image, computed once (in memory, optionally on disk)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence, Union

import torch

from dept_vl.models.feature_store import FeatureStore

PixelFn = Callable[[list[str]], torch.Tensor]
Images = Union[PixelFn, Sequence[Any]]


def computed_dtype(encoder: Any) -> torch.dtype:
    """The dtype the model's image encoder computes features in (what ``data.feature_dtype=auto`` stores)."""
    param = next(iter(encoder.image_encoder.parameters()), None)
    return param.dtype if param is not None else torch.float32


class VisionFeatureCache:
    """Features of a frozen image encoder, keyed by image id and ``model.feature_key``.

    The feature key names the encoder, a hash of its weights, the token options (class token,
    pooling) and a hash of the preprocessing, so features of another encoder or preprocessing are
    never returned. With ``directory``, every newly computed batch is also written as one shard of a
    :class:`~dept_vl.models.feature_store.FeatureStore` under ``directory``; a new cache on the same folder
    reads them back (memory-mapped). Features are kept in the dtype the encoder computes them in, exactly
    as computed, so a cached forward gives the same logits as computing them on the fly.

    Args:
        directory: the stores' root folder (``~`` is expanded); None keeps the cache in memory only.
    """

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory).expanduser() if directory is not None else None
        self._stores: dict[tuple[str, torch.dtype], FeatureStore] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return sum(len(store) for store in self._stores.values())

    def clear(self) -> None:
        """Forget everything held in memory (shards on disk stay)."""
        self._stores.clear()

    def store(self, encoder: Any) -> FeatureStore:
        """The store of ``encoder``'s feature key (opened, and its shards indexed, the first time)."""
        key = (encoder.feature_key, computed_dtype(encoder))
        if key not in self._stores:
            self._stores[key] = FeatureStore(self.directory, key[0], key[1])
        return self._stores[key]

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
        store = self.store(encoder)
        missing = store.missing(ids)
        self.hits += len(ids) - sum(1 for i in ids if i in missing)
        self.misses += len(missing)
        if missing:
            pixel_values = self._pixels(missing, ids, images, encoder)
            with torch.no_grad():
                store.add(missing, encoder.encode_images(pixel_values).detach())
        return store.stack(ids).to(encoder.device)

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
