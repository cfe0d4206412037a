"""Which parts of the engine (`pini_core`) are present, checked without importing them.

The app is built while the engine is still growing: a tab whose engine part is missing
says so plainly instead of showing made-up outputs. `missing()` is cheap (it looks for
module files, importing nothing heavy) so the page is still served fast.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Dict, List, Tuple

from pini_core.errors import PiniError

# part -> (module, attribute, what it gives the app)
PARTS: Dict[str, Tuple[str, str, str]] = {
    "backbone": ("pini_core.backbone", "load_backbone", "CLIP backbones"),
    "model": ("pini_core.model", "PiNIModel", "the PiNI model"),
    "trainer": ("pini_core.trainer", "fit", "the trainer"),
    "checkpoint": ("pini_core.checkpoint", "load_pini", "checkpoints"),
    "maps": ("pini_core.analysis.maps", "noise_maps", "noise maps"),
    "decode": ("pini_core.analysis.decode", "decode_prompt_noise", "prompt decoding (Table 8)"),
    "meter": ("pini_core.analysis.meter", "pi_noise_meter", "the pi-noise meter"),
    "toy": ("pini_core.world.tasks", "load_task", "the toy tasks"),
    "mung": ("pini_core.mung.visualize", "explain", "MuNG visualisations"),
}


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing(*parts: str) -> List[str]:
    """Names (human words) of the listed engine parts whose module is not there yet."""
    out = []
    for p in parts:
        module, _, words = PARTS[p]
        if not _module_exists(module):
            out.append(words)
    return out


def get(part: str):
    """Import and return an engine attribute; EngineMissing with a plain message if absent."""
    module, attr, words = PARTS[part]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (e.name == module or module.startswith(e.name + ".")):
            raise EngineMissing(f"{words} ({module}) is not part of this installation yet.") from e
        raise
    if not hasattr(mod, attr):
        raise EngineMissing(f"{words} ({module}.{attr}) is not part of this installation yet.")
    return getattr(mod, attr)


class EngineMissing(PiniError, RuntimeError):
    """An engine part the app needs is not there (yet)."""


def notice(*parts: str) -> str:
    """Markdown line for a tab whose engine parts are missing ('' when all are present)."""
    gone = missing(*parts)
    if not gone:
        return ""
    return ("**Not available yet:** this tab needs " + ", ".join(gone) +
            ", which this installation of `pini_core` does not have yet. Nothing here is simulated; "
            "the tab will work once that part is installed.")
