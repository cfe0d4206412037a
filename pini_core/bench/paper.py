"""The PiNI paper's own numbers (Tables 2, 3, 4, 7) as data, and the names used to
match a measured setting against them.

A measured number is shown next to the paper's only when the setting is the same:
same method, same dataset (or, for Table 2, the same set of 11 datasets), same
backbone label (e.g. ``ViT-B-16:openai``) and same number of shots.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional

from pini_core.data.names import canonical_dataset  # noqa: F401 - re-exported for the tables

PAPER_FILE = Path(__file__).with_name("paper_results.json")

# Canonical method keys, in the order the tables list them.
METHOD_ORDER = ["zeroshot", "linear_probe", "coop", "clip_adapter", "tip_adapter", "tip_adapter_f", "pini"]
METHOD_NAMES = {
    "zeroshot": "Zero-shot CLIP",
    "linear_probe": "Linear Probe",
    "coop": "CoOp",
    "clip_adapter": "CLIP-Adapter",
    "tip_adapter": "Tip-Adapter",
    "tip_adapter_f": "Tip-Adapter-F",
    "pini": "PiNI",
}

# Canonical CoOp dataset keys -> the short names of the paper's Table 7 / Table 3 headers.
DATASET_SHORT = {
    "imagenet": "ImageNet", "caltech101": "Caltech", "oxford_pets": "Pets", "stanford_cars": "Cars",
    "oxford_flowers": "Flowers", "food101": "Food", "fgvc_aircraft": "Aircraft", "sun397": "SUN",
    "dtd": "DTD", "eurosat": "SAT", "ucf101": "UCF",
    "imagenetv2": "-V2", "imagenet_sketch": "-S", "imagenet_a": "-A", "imagenet_r": "-R",
}

_BACKBONE_SHORT = {"ViT-B-16": "ViT-B/16", "ViT-B-32": "ViT-B/32", "ViT-L-14": "ViT-L/14"}


def dataset_display(name: str) -> str:
    """Column header for a dataset: the paper's abbreviation where it has one."""
    canon = canonical_dataset(name)
    return DATASET_SHORT.get(canon, name) if canon else name


def method_display(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def backbone_display(label: str) -> str:
    """'ViT-B-16:openai' -> 'ViT-B/16' (the paper's spelling); other labels unchanged."""
    name, _, tag = label.partition(":")
    if tag == "openai":
        return _BACKBONE_SHORT.get(name, name)
    return label


def method_sort_key(method: str):
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


@lru_cache(maxsize=1)
def paper_results() -> dict:
    with open(PAPER_FILE, encoding="utf-8") as f:
        return json.load(f)


def table2_value(method: str, shots: int, datasets: Iterable[str], backbone: str) -> Optional[float]:
    """Paper Table 2 (average over the 11 datasets) for this setting, else None."""
    t = paper_results()["table2"]
    if backbone != t["backbone"]:
        return None
    canon = {canonical_dataset(d) for d in datasets}
    if canon != set(t["datasets"]):
        return None
    if shots == 0 and method == "zeroshot":
        return t["zero_shot"]
    return t["rows"].get(str(shots), {}).get(method)


def table7_value(method: str, dataset: str, shots: int, backbone: str) -> Optional[float]:
    """Paper Table 7 (per dataset, 16 shots; zero-shot has no shots) for this setting, else None."""
    t = paper_results()["table7"]
    canon = canonical_dataset(dataset)
    if backbone != t["backbone"] or canon is None:
        return None
    if method != "zeroshot" and shots != t["shots"]:
        return None
    return t["rows"].get(method, {}).get(canon)


def table3_value(method: str, source: str, column: str, shots: int, backbone: str) -> Optional[float]:
    """Paper Table 3: `column` is the source, a target name, or 'average'."""
    t = paper_results()["table3"]
    if backbone != t["backbone"] or canonical_dataset(source) != t["source"]:
        return None
    if method != "zeroshot" and shots != t["shots"]:
        return None
    col = "average" if column == "average" else canonical_dataset(column)
    return t["rows"].get(method, {}).get(col) if col else None


def table4_value(method: str, dataset: str, backbone: str, shots: int) -> Optional[float]:
    """Paper Table 4 (ImageNet and Caltech101 over 4 backbones, 16 shots)."""
    t = paper_results()["table4"]
    canon = canonical_dataset(dataset)
    if canon not in t["rows"]:
        return None
    if method != "zeroshot" and shots != t["shots"]:
        return None
    return t["rows"][canon].get(method, {}).get(backbone)
