"""The PiNI generator shipped in checkpoints/pini/ for the embedded model, so every tab
shows learned noise before anyone has trained anything. Loaded once, shared read-only;
a session that trains or loads its own generator uses that one instead."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, List, Optional, Tuple

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "pini"
_LOCK = threading.Lock()
_LOADED: dict = {}


def shipped_folder() -> Optional[Path]:
    if not SHIPPED_DIR.is_dir():
        return None
    found = sorted(p for p in SHIPPED_DIR.iterdir() if (p / "pini_config.json").exists())
    return found[0] if found else None


def shipped_task() -> Optional[str]:
    """The toy task the shipped generator was trained on (the Train tab opens on it)."""
    folder = shipped_folder()
    if folder is None:
        return None
    from pini_core.checkpoint import read_config

    return read_config(folder).get("data", {}).get("dataset")


def shipped_generator(backbone) -> Optional[Tuple[Any, str, List[Any]]]:
    """(model, label, held-out test images) for the embedded backbone, or None."""
    folder = shipped_folder()
    if folder is None or backbone is None:
        return None
    key = (str(folder), id(backbone))
    with _LOCK:
        if key not in _LOADED:
            from pini_core.checkpoint import load_pini, read_config
            from pini_core.data.registry import get_dataset

            data = read_config(folder).get("data", {})
            model = load_pini(folder, backbone)
            test = get_dataset(data["dataset"], seed=data.get("seed", 1)).test if data.get("dataset") else []
            label = f"shipped generator (checkpoints/pini/{folder.name}, trained on {data.get('dataset', '?')})"
            _LOADED.clear()
            _LOADED[key] = (model, label, list(test))
        return _LOADED[key]
