"""Adapters on the Hugging Face Hub: a folder named by a local path or a hub id (downloaded once, cached, offline
mode honoured), and uploads of an adapter folder with its model card."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from dept_vl.adapter import CONFIG_FILE, LEGACY_CONFIG_FILE, LEGACY_WEIGHTS_FILE, WEIGHTS_FILE, read_adapter
from dept_vl.model_card import CARD_FILE, RUN_CONFIG_FILE, model_card, run_facts

ADAPTER_FILES = (CONFIG_FILE, WEIGHTS_FILE, LEGACY_CONFIG_FILE, LEGACY_WEIGHTS_FILE, RUN_CONFIG_FILE, CARD_FILE)
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # user/name (a local folder is tried first)


def offline() -> bool:
    """Whether the hub may not be contacted: ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``), read now."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.HF_HUB_OFFLINE or env.strip().upper() in ("1", "ON", "YES", "TRUE")


def resolve_folder(name_or_path: str | Path, revision: str | None = None, *, files: Sequence[str] = ADAPTER_FILES,
                   cache_dir: str | Path | None = None, token: str | bool | None = None) -> Path:
    """The local folder of ``name_or_path``: an existing folder as it is, else a hub repo ``user/name`` at
    ``revision`` (branch, tag or commit; default ``main``), downloaded into the hub cache (``HF_HUB_CACHE``,
    ``HF_HOME``) with only ``files``. With ``HF_HUB_OFFLINE=1`` only the cache is read.

    Raises:
        FileNotFoundError: neither a folder nor a repo found (online or in the cache), naming both tries.
        ValueError: ``revision`` given for a local folder.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if revision is not None:
            raise ValueError(f"revision={revision!r} applies to hub ids, but {name_or_path} is a local folder; drop revision")
        return path
    name = str(name_or_path)
    if not REPO_ID.match(name):
        raise FileNotFoundError(f"{name}: no such folder, and not a hub id of the form user/name")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    local_only = offline()
    try:
        folder = snapshot_download(name, revision=revision, allow_patterns=list(files), cache_dir=cache_dir, token=token,
                                   local_files_only=local_only)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        where = ("in the hub cache (HF_HUB_OFFLINE is set: nothing is downloaded; unset it or download the adapter "
                 "first)") if local_only else "on the hub or in the hub cache"
        raise FileNotFoundError(f"{name}: no such folder, and no repo {name} at revision {revision or 'main'} {where} "
                                f"({type(error).__name__}: {error})") from None
    return Path(folder)


def push_folder(folder: str | Path, repo_id: str, *, tasks: Sequence[str] | None = None, metrics: dict[str, Any] | None = None,
                command: str | None = None, private: bool | None = None, token: str | bool | None = None,
                revision: str | None = None, commit_message: str | None = None) -> Any:
    """Upload an adapter folder to the hub repo ``repo_id`` (created if needed) with a model card (``README.md``).

    The card names the method and its settings, the base model, the task(s), the metrics and the command that
    trained the adapter. What is not given is read from the run folder around ``folder`` (``run_config.yaml``
    beside the adapter, ``config.yaml``, ``metrics.json`` or ``result.json`` one level up; see
    :func:`dept_vl.model_card.run_facts`); the run's config is uploaded too, as ``run_config.yaml``.

    Returns:
        what ``HfApi.upload_folder`` returns (the commit's information).
    """
    from huggingface_hub import HfApi

    folder = Path(folder).expanduser()
    adapter = read_adapter(folder)
    facts = run_facts(folder, adapter)
    facts.update({k: v for k, v in {"tasks": tasks, "metrics": metrics, "command": command}.items() if v is not None})
    with tempfile.TemporaryDirectory(prefix="dept-vl-upload-") as staging:
        stage = Path(staging)
        for name in (CONFIG_FILE, WEIGHTS_FILE, LEGACY_CONFIG_FILE, LEGACY_WEIGHTS_FILE):
            if (folder / name).is_file():
                shutil.copy2(folder / name, stage / name)
        if facts.get("config_file"):
            shutil.copy2(facts["config_file"], stage / RUN_CONFIG_FILE)
        (stage / CARD_FILE).write_text(model_card(adapter, repo_id, tasks=facts.get("tasks"), metrics=facts.get("metrics"),
                                                  command=facts.get("command"), note=facts.get("note")), encoding="utf-8")
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=str(stage), revision=revision,
                                 commit_message=commit_message or f"Upload {adapter.method} adapter (dept-vl)")
