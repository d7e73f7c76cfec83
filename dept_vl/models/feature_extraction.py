"""Filling a :class:`FeatureStore`: images decoded in parallel workers, encoded in batches, written shard by shard;
processes of one run split the images between them, and each then waits for the others' shards."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from dept_vl.models.feature_store import FeatureStore


class DecodedImages(torch.utils.data.Dataset):
    """Pixel values (C, H, W) of image sources: PIL images, file paths (opened here) or ready tensors."""

    def __init__(self, sources: Sequence[Any], transform: Any):
        self.sources, self.transform = list(sources), transform

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> torch.Tensor:
        source = self.sources[index]
        return source if isinstance(source, torch.Tensor) else self.transform(source)


def decode_batches(sources: Sequence[Any], transform: Any, batch_size: int, num_workers: int = 0) -> Any:
    """Batches (b, C, H, W) of ``sources`` in order, decoded and transformed by ``num_workers`` worker processes
    (0: in this process)."""
    return torch.utils.data.DataLoader(DecodedImages(sources, transform), batch_size=batch_size, shuffle=False,
                                       num_workers=num_workers, pin_memory=torch.cuda.is_available())


def share(image_ids: Sequence[str], rank: int, world: int) -> list[str]:
    """This process's part of ``image_ids``: the i-th distinct id, in sorted order, belongs to process ``i % world``."""
    if not 0 <= rank < world:
        raise ValueError(f"rank={rank} is not a process of a world of {world}")
    return sorted(set(image_ids))[rank::world]


@dataclass
class Extraction:
    """What one process did: images asked for, its share, those it encoded now, and where the time went."""

    wanted: int
    share: int
    encoded: int
    decode_s: float = 0.0  # waiting for decoded batches (the workers' decoding that encoding did not hide)
    encode_s: float = 0.0  # the image encoder, on this process's device
    write_s: float = 0.0  # shards written
    wait_s: float = 0.0  # waiting for other processes' shares

    @property
    def seconds(self) -> float:
        return self.decode_s + self.encode_s + self.write_s

    @property
    def images_per_s(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0


def extract_features(store: FeatureStore, model: Any, images: Mapping[str, Any], *, rank: int = 0, world: int = 1,
                     num_workers: int = 0, batch_size: int = 64, show_progress: bool = False,
                     stall_timeout: float = 600.0) -> Extraction:
    """Store the features of every image of ``images`` (image id -> source) that ``store`` lacks.

    With a store on disk and ``world`` > 1, this process encodes only its :func:`share` and then waits until
    the other processes' shards hold the rest (all processes call this with the same ``images``). A killed
    extraction keeps its finished shards: run again, it encodes only what is missing.

    Args:
        model: the :class:`VLEncoderDecoder` (``encode_images``, ``image_transform``, ``feature_key``), frozen.
        num_workers: decoding worker processes (0: decode here).
        batch_size: images per encoder call.
        stall_timeout: seconds without a new shard before waiting for other processes gives up.

    Raises:
        ValueError: the image encoder trains, or the store belongs to another feature key.
        TimeoutError: other processes' shares stopped arriving.
    """
    if getattr(model, "freeze_image_encoder", True) is False:
        raise ValueError("stored features need a frozen image encoder (freeze_image_encoder=True): trained features "
                         "change every step; set data.feature_cache=false")
    if store.feature_key != model.feature_key:
        raise ValueError(f"this feature store holds {store.feature_key!r}, the model computes {model.feature_key!r}; "
                         "open the store with model.feature_key")
    ids = sorted(images)
    mine = ids if (store.folder is None or world == 1) else share(ids, rank, world)
    todo = store.missing(mine)
    result = Extraction(wanted=len(ids), share=len(mine), encoded=len(todo))
    if todo:
        _encode(store, model, images, todo, result, num_workers, batch_size, show_progress)
    if len(mine) < len(ids):
        result.wait_s = _wait_for_others(store, ids, stall_timeout)
    return result


def _encode(store: FeatureStore, model: Any, images: Mapping[str, Any], todo: list[str], result: Extraction,
            num_workers: int, batch_size: int, show_progress: bool) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), unit="img", desc="image features", disable=not show_progress, dynamic_ncols=True)
    pending_ids: list[str] = []
    pending: list[torch.Tensor] = []
    done = 0

    def write(count: int) -> None:
        nonlocal pending
        start = time.perf_counter()
        rows = torch.cat(pending) if len(pending) > 1 else pending[0]
        store.add(pending_ids[:count], rows[:count])
        del pending_ids[:count]
        pending = [rows[count:]] if count < rows.shape[0] else []
        result.write_s += time.perf_counter() - start

    try:
        batches = iter(decode_batches([images[i] for i in todo], model.image_transform, batch_size, num_workers))
        while True:
            start = time.perf_counter()
            pixels = next(batches, None)
            result.decode_s += time.perf_counter() - start
            if pixels is None:
                break
            start = time.perf_counter()
            with torch.no_grad():
                features = model.encode_images(pixels).to("cpu")
            result.encode_s += time.perf_counter() - start
            pending_ids.extend(todo[done : done + features.shape[0]])
            pending.append(features)
            done += features.shape[0]
            while len(pending_ids) >= store.shard_size:
                write(store.shard_size)
            bar.update(features.shape[0])
            if result.encode_s > 0:
                bar.set_postfix(encode=f"{done / result.encode_s:.0f} img/s", refresh=False)
        if pending_ids:
            write(len(pending_ids))
    finally:
        bar.close()


def _wait_for_others(store: FeatureStore, ids: list[str], stall_timeout: float) -> float:
    start = last_news = time.monotonic()
    left = store.missing(ids)
    while left:
        time.sleep(0.2)
        if store.refresh():
            last_news = time.monotonic()
        left = store.missing(ids)
        if left and time.monotonic() - last_news > stall_timeout:
            raise TimeoutError(f"{len(left)} of {len(ids)} images (other processes' shares, e.g. {left[0]!r}) are still "
                               f"missing from {store.folder} after {stall_timeout:.0f} s without a new shard; did another "
                               "process of this run stop? Run again: finished shards are kept")
    return time.monotonic() - start
