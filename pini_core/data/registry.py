"""A registry of named datasets, so the engine, the benchmarks and the app load
toy tasks, CoOp-layout folders and ImageFolder trees the same way."""
from __future__ import annotations

from typing import Dict

# The table and the types live in data.base; re-exported here for callers.
from pini_core.data.base import _DESCRIPTIONS, _REGISTRY, Datum, DatasetSplits, ImageSource, register_dataset
from pini_core.errors import UnknownNameError

__all__ = ["Datum", "DatasetSplits", "ImageSource", "register_dataset", "list_datasets", "get_dataset"]


def _import_builtin_loaders() -> None:
    # Importing these modules registers their datasets.
    import importlib

    for mod in ("pini_core.data.imagefolder", "pini_core.data.coop", "pini_core.world.tasks"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a module not written yet must not break the others
            if e.name != mod:
                raise


def list_datasets() -> Dict[str, str]:
    _import_builtin_loaders()
    return dict(sorted(_DESCRIPTIONS.items()))


def get_dataset(name: str, root: str | None = None, **kwargs) -> DatasetSplits:
    """Load a registered dataset by name."""
    _import_builtin_loaders()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise UnknownNameError(f"unknown dataset {name!r}; known datasets: {known}. "
                       "For your own images use an ImageFolder tree: get_dataset('imagefolder', root=PATH).")
    return _REGISTRY[name](root=root, **kwargs)
