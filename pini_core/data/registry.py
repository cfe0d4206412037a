"""A registry of named datasets, so the engine, the benchmarks and the app load
toy tasks, CoOp-layout folders and ImageFolder trees the same way."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple, Union

from PIL import Image

# One example: (image source, integer label). The source is a file path or an
# in-memory PIL image (procedural toy tasks render theirs).
ImageSource = Union[str, Image.Image]
Datum = Tuple[ImageSource, int]


@dataclass
class DatasetSplits:
    """What every dataset loader returns."""

    name: str
    classnames: List[str]
    template: str  # e.g. "a photo of a {}." (paper Table 6)
    train: List[Datum]
    val: List[Datum]
    test: List[Datum]
    # Extra test sets for domain generalisation (paper Table 3): name -> data.
    # Targets must share the source's class list.
    targets: Dict[str, List[Datum]] = field(default_factory=dict)
    meta: Dict[str, object] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)


_REGISTRY: Dict[str, Callable[..., DatasetSplits]] = {}
_DESCRIPTIONS: Dict[str, str] = {}


def register_dataset(name: str, description: str = "") -> Callable:
    """Decorator: `@register_dataset("toy-colourcast")` on a loader
    `fn(root=None, seed=1, **kwargs) -> DatasetSplits`."""

    def deco(fn: Callable[..., DatasetSplits]) -> Callable[..., DatasetSplits]:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"dataset name {name!r} is already registered")
        _REGISTRY[name] = fn
        _DESCRIPTIONS[name] = description or (fn.__doc__ or "").strip().split("\n")[0]
        return fn

    return deco


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
        raise KeyError(f"unknown dataset {name!r}; known datasets: {known}. "
                       "For your own images use an ImageFolder tree: get_dataset('imagefolder', root=PATH).")
    return _REGISTRY[name](root=root, **kwargs)
