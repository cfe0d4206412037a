"""What every dataset loader returns (`DatasetSplits`) and the table loaders register in.

The lowest layer of the data package: dataset modules (ImageFolder, CoOp layouts, the toy
world's tasks) import this to register themselves; `pini_core.data.registry` imports them
to look names up. Neither side imports the other, so there is no import cycle.
"""
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
