"""The PiNI generators shipped in checkpoints/pini/ for the embedded model, so every tab
shows learned noise before anyone has trained anything. Loaded once, shared read-only;
a session that trains or loads its own generator uses that one instead.

Two kinds are shipped (tests/test_shipped_pini.py checks there is exactly one of each):
- the *default* (feature-level noise, the paper's defaults; folder named after its task):
  every tab uses it until the session trains or loads its own;
- a *raw-image* generator (CNN noise on the pixels) for the same task: the Noise tab opens
  on it, so the paper's Figure 4 (noisy image, per-pixel μ and σ) is there at once.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, List, Optional, Tuple

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "pini"
_LOCK = threading.Lock()
_LOADED: dict = {}


def _folders() -> List[Tuple[Path, str]]:
    """(folder, visual location) of every shipped generator, sorted by name."""
    if not SHIPPED_DIR.is_dir():
        return []
    out = []
    for p in sorted(SHIPPED_DIR.iterdir()):
        cfg = p / "pini_config.json"
        if cfg.is_file():
            try:
                loc = json.loads(cfg.read_text()).get("noise", {}).get("visual_location", "")
            except (OSError, ValueError):
                continue
            out.append((p, loc))
    return out


def shipped_folder() -> Optional[Path]:
    """The default shipped generator (not raw-image noise): the one every tab opens on."""
    found = [p for p, loc in _folders() if loc != "image"]
    return found[0] if found else None


def shipped_image_folder() -> Optional[Path]:
    """The shipped raw-image generator (the Noise tab's Figure 4), or None."""
    found = [p for p, loc in _folders() if loc == "image"]
    return found[0] if found else None


def shipped_task() -> Optional[str]:
    """The toy task the shipped generator was trained on (the Train tab opens on it)."""
    folder = shipped_folder()
    if folder is None:
        return None
    from pini_core.checkpoint import read_config

    return read_config(folder).get("data", {}).get("dataset")


_TEST: dict = {}


def _test_split(task: Optional[str], seed: int, get_dataset) -> List[Any]:
    """The task's held-out test images. For a toy task only the test split is rendered (the very
    images `get_dataset(task, seed=seed).test` holds; the other splits and domains are not needed
    here and would take seconds at start-up)."""
    if not task:
        return []
    if (task, seed) not in _TEST:
        from pini_core.world import tasks as toy

        if task in toy.TASK_DOMAINS:
            _TEST[(task, seed)] = toy.render_split(toy.TASK_DOMAINS[task], toy.TEST_PER_CLASS, seed, f"{task}:test")
        else:
            _TEST[(task, seed)] = list(get_dataset(task, seed=seed).test)
    return _TEST[(task, seed)]


def _load(folder: Optional[Path], backbone) -> Optional[Tuple[Any, str, List[Any]]]:
    if folder is None or backbone is None:
        return None
    key = (str(folder), id(backbone))
    with _LOCK:
        if key not in _LOADED:
            from pini_core.checkpoint import load_pini, read_config
            from pini_core.data.registry import get_dataset

            data = read_config(folder).get("data", {})
            model = load_pini(folder, backbone)
            model._app_shipped = True  # shared by all sessions: results on it may be cached
            model._app_provenance = read_config(folder)  # task, recipe, epochs, accuracy for the panel
            test = _test_split(data.get("dataset"), int(data.get("seed", 1)), get_dataset)
            kind = "raw-image " if model.noise_cfg.visual_location == "image" else ""
            label = f"shipped {kind}generator (checkpoints/pini/{folder.name}, trained on {data.get('dataset', '?')})"
            for k in [k for k in _LOADED if k[1] != id(backbone)]:  # another backbone object: drop
                del _LOADED[k]
            _LOADED[key] = (model, label, list(test))
        return _LOADED[key]


def shipped_generator(backbone) -> Optional[Tuple[Any, str, List[Any]]]:
    """(model, label, held-out test images) of the default generator, or None."""
    return _load(shipped_folder(), backbone)


def shipped_image_generator(backbone) -> Optional[Tuple[Any, str, List[Any]]]:
    """(model, label, held-out test images) of the raw-image generator, or None (also when it does
    not fit the loaded backbone, e.g. the embedded CLIP was re-trained after it: the Noise tab then
    shows the default generator and the server log says why)."""
    from pini_core.errors import PiniError

    try:
        return _load(shipped_image_folder(), backbone)
    except PiniError as e:
        import logging

        logging.getLogger("pini.app").warning("the shipped raw-image generator is not used: %s", e)
        return None


def is_shipped(model) -> bool:
    return bool(getattr(model, "_app_shipped", False))
