"""Dataset names: the many spellings people and folder names use -> one canonical key.

Used by the data layer, the recipes (ImageNet has its own schedule) and the benchmark's
paper tables, so it lives below all of them.
"""
from __future__ import annotations

from typing import Optional

# Spellings people (and folder names) use -> canonical key. Keys are compared after
# lower-casing and dropping '-', '_' and spaces.
_ALIASES = {
    "imagenet": "imagenet", "net": "imagenet",
    "caltech101": "caltech101", "caltech": "caltech101",
    "oxfordpets": "oxford_pets", "pets": "oxford_pets",
    "stanfordcars": "stanford_cars", "cars": "stanford_cars",
    "oxfordflowers": "oxford_flowers", "flowers102": "oxford_flowers", "flowers": "oxford_flowers",
    "food101": "food101", "food": "food101",
    "fgvcaircraft": "fgvc_aircraft", "aircraft": "fgvc_aircraft", "fgvc": "fgvc_aircraft",
    "sun397": "sun397", "sun": "sun397",
    "dtd": "dtd", "describabletextures": "dtd",
    "eurosat": "eurosat", "sat": "eurosat",
    "ucf101": "ucf101", "ucf": "ucf101",
    "imagenetv2": "imagenetv2",
    "imagenetsketch": "imagenet_sketch",
    "imageneta": "imagenet_a", "imagenetadversarial": "imagenet_a",
    "imagenetr": "imagenet_r", "imagenetrendition": "imagenet_r",
}


def canonical_dataset(name: str) -> Optional[str]:
    """The paper's key for a dataset name ('Caltech-101', 'caltech101' -> 'caltech101'),
    or None for datasets the paper does not report (toy tasks, your own folders)."""
    key = name.lower().replace("-", "").replace("_", "").replace(" ", "")
    return _ALIASES.get(key)
