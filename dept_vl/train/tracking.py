"""Experiment tracking (``train.report_to``) through accelerate's trackers: TensorBoard into ``<run>/tensorboard``,
Weights & Biases (``WANDB_MODE=offline`` works offline)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
WANDB_PROJECT = "dept-vl"


def report_to(choice: str) -> list[str]:
    """The trackers of ``train.report_to``: ``auto`` is TensorBoard when the tensorboard package is installed.

    Raises:
        ValueError: a tracker whose package is not installed, with the pip command.
    """
    if choice == "none":
        return []
    if choice == "auto":
        return ["tensorboard"] if importlib.util.find_spec("tensorboard") is not None else []
    package = TRACKER_PACKAGES[choice]
    if importlib.util.find_spec(package) is None:
        raise ValueError(f"train.report_to={choice} needs the package {package}: pip install {package} "
                         f"(or set train.report_to=none)")
    return [choice]


def open_trackers(accelerator: Any, folder: Path) -> list[tuple[Any, bool]]:
    """This run's trackers, from the accelerator's ``log_with`` (set from ``train.report_to``): ``(tracker, owned)``
    pairs; trackers built here (owned) write under ``folder`` and are finished by the caller, tracker objects
    given to the accelerator are used as they are."""
    from accelerate.tracking import GeneralTracker, TensorBoardTracker, WandBTracker

    trackers: list[tuple[Any, bool]] = []
    for entry in getattr(accelerator, "log_with", None) or []:
        if isinstance(entry, GeneralTracker):
            trackers.append((entry, False))
            continue
        name = str(getattr(entry, "value", entry)).lower()
        if name == "tensorboard":
            tracker = TensorBoardTracker("tensorboard", folder)
        elif name == "wandb":
            tracker = WandBTracker(WANDB_PROJECT, name=folder.name, dir=str(folder))
        else:
            continue
        if hasattr(tracker, "start"):  # accelerate >= 1.2 starts trackers separately
            tracker.start()
        trackers.append((tracker, True))
    return trackers
