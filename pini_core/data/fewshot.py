"""Few-shot subsets, sampled the way CoOp (Dassl's ``generate_fewshot_dataset``) does.

CoOp seeds Python's ``random`` with the run seed, then for the training split groups
the items by label (labels in order of first appearance), takes
``random.sample(items, k)`` per label, and continues with the SAME generator for the
validation split with ``min(k, 4)`` shots. A label with fewer than k items keeps all of
them (``repeat=False``, CoOp's default) or draws k with replacement
(``repeat=True``: ``random.choices``). We use a private ``random.Random(seed)``, which
draws the same numbers as a freshly seeded global ``random`` but never reads or changes
the global state, so results do not depend on what ran before.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Dict, List, Optional, Sequence, TypeVar

from pini_core.data.base import DatasetSplits
from pini_core.errors import ConfigError, DataError

T = TypeVar("T")

COOP_SHOTS = (1, 2, 4, 8, 16)
MAX_VAL_SHOTS = 4  # CoOp: val uses min(k, 4) shots


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k (shots per class) must be an integer >= 1, got {k!r}; "
                         f"CoOp's protocol uses {COOP_SHOTS}")
    return k


def _label_of(item) -> int:
    try:
        return int(item[1])
    except (TypeError, IndexError, ValueError) as e:
        raise DataError(f"few-shot sampling needs (source, label) items, got {item!r}") from e


def group_by_label(data: Sequence[T]) -> Dict[int, List[T]]:
    """label -> items, labels in order of first appearance (as Dassl's defaultdict)."""
    groups: Dict[int, List[T]] = {}
    for item in data:
        groups.setdefault(_label_of(item), []).append(item)
    return groups


def _sample_with(data: Sequence[T], k: int, rng: random.Random, repeat: bool) -> List[T]:
    out: List[T] = []
    for items in group_by_label(data).values():
        if len(items) >= k:
            out.extend(rng.sample(items, k))
        elif repeat:
            out.extend(rng.choices(items, k=k))
        else:
            out.extend(items)
    return out


def sample_few_shot(data: Sequence[T], k: int, seed: int = 1, *, repeat: bool = False) -> List[T]:
    """k items per label from ``data`` (a list of ``(source, label)``), CoOp's way.

    Same ``data`` order + same ``seed`` -> the same subset, whatever the global RNG
    state. Labels with fewer than k items keep all (``repeat=False``) or are drawn
    with replacement up to k (``repeat=True``)."""
    _check_k(k)
    return _sample_with(data, k, random.Random(seed), repeat)


def fewshot_splits(splits: DatasetSplits, k: int, seed: int = 1, *, repeat: bool = False,
                   val_k: Optional[int] = None) -> DatasetSplits:
    """A copy of ``splits`` with k-shot train and ``min(k, 4)``-shot val (CoOp).

    Train and val are drawn from one generator seeded with ``seed``, train first, as
    CoOp does, so the subsets match CoOp's for the same split files. Test and targets
    are untouched. Datasets whose val IS the test set (ImageNet in CoOp:
    ``meta["val_is_test"]``) keep val as it is, like CoOp. ``val_k`` overrides
    ``min(k, 4)``."""
    _check_k(k)
    if not splits.train:
        raise DataError(f"dataset {splits.name!r} has no training split to sample shots from "
                         "(it is a test-only set such as an ImageNet variant)")
    rng = random.Random(seed)
    train = _sample_with(splits.train, k, rng, repeat)
    if splits.meta.get("val_is_test"):
        val = list(splits.val)
    else:
        vk = min(k, MAX_VAL_SHOTS) if val_k is None else _check_k(val_k)
        val = _sample_with(splits.val, vk, rng, repeat)
    meta = dict(splits.meta)
    meta.update(shots=k, fewshot_seed=seed, fewshot_repeat=repeat,
                full_sizes={"train": len(splits.train), "val": len(splits.val)})
    return dataclasses.replace(splits, train=train, val=val, meta=meta)
