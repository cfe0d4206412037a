"""Any ImageFolder tree (one sub-folder per class) as a :class:`DatasetSplits`.

Two layouts are understood::

    root/cat/1.jpg, root/dog/2.png, ...              -> seeded, stratified train/val/test split
    root/train/cat/... [root/val/cat/...] [root/test/cat/...] -> the given splits
                         (a missing val or test folder is carved from train, seeded, stratified)

Images are not opened while listing (a 100k-image tree lists in seconds); they are
checked when loaded (:class:`pini_core.data.transforms.ImageDataset`) or all up front
with :func:`verify_images` / :func:`verify_splits` (``verify=True``). ``on_error``
says what a broken image does: ``"raise"`` an error naming the file, or ``"skip"`` it
and count it (``splits.meta["skipped"]``). :func:`check_images` /
:func:`check_split_images` check everything before any work and raise ONE error listing
every broken file (or skip and count them).

Symbolic links inside the tree are never followed (they lead out of the tree, or back
into it, where a loop like ``cat/loop -> ..`` would relabel and duplicate images); the
ones skipped are listed in ``meta["skipped_links"]`` and shown by ``data-check``.
"""
from __future__ import annotations

import dataclasses
import os
import random
from typing import Dict, List, Optional, Sequence, Tuple

from pini_core.data.images import ImageLoadError, describe_source, load_image
from pini_core.errors import ConfigError, DataError, DataNotFoundError
from pini_core.data.base import DatasetSplits, Datum, register_dataset
from pini_core.data.templates import DEFAULT_TEMPLATE

IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico",
})
SPLIT_DIR_NAMES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}
ON_ERROR = ("raise", "skip")


def check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be 'raise' (stop with an error naming the broken file) "
                         f"or 'skip' (leave broken images out and count them), got {on_error!r}")
    return on_error


def is_image_file(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_image_files(folder: str, links: Optional[List[str]] = None) -> Tuple[List[str], int]:
    """All image files under ``folder`` (recursively, sorted, hidden entries skipped),
    and how many non-image files were ignored.

    Symbolic links inside the tree are never followed, to files or to folders: a link
    either leads out of the tree (files the user did not put in it) or back into it
    (``cat/loop -> ..`` would list every image again under the wrong class, and the same
    image in train and test). Each link skipped is appended to ``links`` when given."""
    found, ignored = [], 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        kept_dirs = []
        for d in sorted(dirnames):
            if d.startswith("."):
                continue
            if os.path.islink(os.path.join(dirpath, d)):
                if links is not None:
                    links.append(os.path.join(dirpath, d))
                continue
            kept_dirs.append(d)
        dirnames[:] = kept_dirs
        for f in sorted(filenames):
            if f.startswith("."):
                continue
            path = os.path.join(dirpath, f)
            if os.path.islink(path):
                if links is not None:
                    links.append(path)
                continue
            if is_image_file(f):
                found.append(path)
            else:
                ignored += 1
    return found, ignored


def _real_dirs(folder: str, links: Optional[List[str]] = None) -> List[str]:
    """Names of the visible sub-folders of ``folder`` that are real folders (not links;
    links are appended to ``links``)."""
    out = []
    for e in os.scandir(folder):
        if e.name.startswith("."):
            continue
        if e.is_symlink():
            if links is not None and e.is_dir():
                links.append(e.path)
            continue
        if e.is_dir(follow_symlinks=False):
            out.append(e.name)
    return sorted(out)


def _class_dirs(folder: str, links: Optional[List[str]] = None) -> List[str]:
    return _real_dirs(folder, links)


def _find_split_dirs(root: str) -> Dict[str, str]:
    """{split: folder} when EVERY sub-folder of ``root`` is a split name (train/val/test and
    their spellings), else {} (then the sub-folders are classes)."""
    subdirs = _real_dirs(root)
    lookup = {n: split for split, names in SPLIT_DIR_NAMES.items() for n in names}
    if not subdirs or any(d.lower() not in lookup for d in subdirs):
        return {}
    out: Dict[str, str] = {}
    for d in sorted(subdirs):
        split = lookup[d.lower()]
        if split in out:
            raise DataError(f"{root}: both {os.path.basename(out[split])}/ and {d}/ look like the "
                             f"{split} split; keep one")
        out[split] = os.path.join(root, d)
    if "train" not in out:
        raise DataError(f"{root}: found split folders {sorted(subdirs)} but no train/ folder; add "
                         "train/<class>/... (val/ and test/ are optional and carved from train if absent)")
    return out


def stratified_split(data: Sequence[Datum], fractions: Sequence[float], seed: int) -> List[List[Datum]]:
    """Split ``data`` per label into len(fractions)+1 parts: part i gets
    round(n * fractions[i]) of each label's (seed-shuffled) items, the first part the rest.
    Every label keeps at least one item in the first part."""
    rng = random.Random(seed)
    groups: Dict[int, List[Datum]] = {}
    for item in data:
        groups.setdefault(item[1], []).append(item)
    parts: List[List[Datum]] = [[] for _ in range(len(fractions) + 1)]
    for label in sorted(groups):
        items = list(groups[label])
        rng.shuffle(items)
        n = len(items)
        counts = [int(round(n * f)) for f in fractions]
        while n - sum(counts) < 1 and sum(counts) > 0:  # keep >= 1 training item
            counts[counts.index(max(counts))] -= 1
        start = 0
        for i, c in enumerate(counts, start=1):
            parts[i].extend(items[start:start + c])
            start += c
        parts[0].extend(items[start:])
    return parts


def _scan(folder: str, class_index: Dict[str, int], links: Optional[List[str]] = None) -> Tuple[List[Datum], int]:
    data, ignored = [], 0
    for cname in _class_dirs(folder, links):
        if cname not in class_index:
            continue
        files, ign = list_image_files(os.path.join(folder, cname), links)
        ignored += ign
        data.extend((f, class_index[cname]) for f in files)
    return data, ignored


@register_dataset("imagefolder", "your own images: ROOT/<class>/*.jpg (or ROOT/{train,val,test}/<class>/...)")
def load_imagefolder(root: Optional[str] = None, seed: int = 1, *, val_fraction: float = 0.2,
                     test_fraction: float = 0.2, template: str = DEFAULT_TEMPLATE,
                     on_error: str = "raise", verify: bool = False, name: Optional[str] = None,
                     progress: bool = False) -> DatasetSplits:
    """Load an ImageFolder tree. Class names are the folder names with ``_`` read as spaces;
    labels follow the sorted folder names. See the module docstring for the layouts."""
    check_on_error(on_error)
    if root is None:
        raise DataError("imagefolder needs root=PATH: a folder with one sub-folder of images per "
                         "class (ROOT/cat/*.jpg, ROOT/dog/*.jpg), or with train/ and test/ "
                         "(and optionally val/) folders laid out that way")
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    if not os.path.isdir(root):
        raise DataNotFoundError(f"imagefolder root {root} does not exist or is not a folder")
    for frac, what in ((val_fraction, "val_fraction"), (test_fraction, "test_fraction")):
        if not 0.0 <= frac < 1.0:
            raise ConfigError(f"{what} must be in [0, 1), got {frac}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError("val_fraction + test_fraction must leave something to train on (< 1)")

    split_dirs = _find_split_dirs(root)
    meta: Dict[str, object] = {"root": root, "on_error": on_error}
    links: List[str] = []  # symbolic links inside the tree: never followed, reported
    if split_dirs:
        folders = {sp: _class_dirs(d) for sp, d in split_dirs.items()}
        raw_names = sorted(set().union(*folders.values()))
        index = {c: i for i, c in enumerate(raw_names)}
        parts, ignored = {}, 0
        for split, d in split_dirs.items():
            parts[split], ign = _scan(d, index, links)
            ignored += ign
        train = parts["train"]
        carve = [sp for sp in ("val", "test") if sp not in parts]
        if carve:  # missing val and/or test: seeded stratified split of train
            fr = {"val": val_fraction, "test": test_fraction}
            train, *carved = stratified_split(train, [fr[sp] for sp in carve], seed)
            parts.update(zip(carve, carved))
            meta["split_seed"] = seed
        val, test = parts["val"], parts["test"]
        meta["layout"] = "splits" + (f" ({' and '.join(carve)} carved from train)" if carve else "")
    else:
        raw_names = _class_dirs(root, links)
        index = {c: i for i, c in enumerate(raw_names)}
        data, ignored = _scan(root, index, links)
        train, val, test = stratified_split(data, [val_fraction, test_fraction], seed)
        meta["layout"] = "classes (seeded stratified split)"
        meta["split_seed"] = seed

    counts = [0] * len(raw_names)
    for _, y in (*train, *val, *test):
        counts[y] += 1
    empty = [raw_names[i] for i, c in enumerate(counts) if c == 0]
    if empty:  # drop classes with no images and re-index the others
        keep = [i for i, c in enumerate(counts) if c > 0]
        remap = {old: new for new, old in enumerate(keep)}
        raw_names = [raw_names[i] for i in keep]
        train, val, test = ([(p, remap[y]) for p, y in part] for part in (train, val, test))
        meta["empty_classes"] = empty
    if len(raw_names) < 2:
        hint = (f" ({len(set(links))} symbolic link(s) in the tree were not followed: put the images "
                "themselves in the class folders)" if links else "")
        raise DataError(f"{root}: found {len(raw_names)} class folder(s) with images; a classifier "
                        "needs at least 2. Put each class's images in its own sub-folder "
                        f"(ROOT/cat/*.jpg, ROOT/dog/*.jpg){hint}.")
    if not train:
        raise DataError(f"{root}: no training images found (looked for {sorted(IMAGE_EXTENSIONS)})")
    meta["ignored_files"] = ignored
    meta["skipped_links"] = sorted(set(links))
    meta["raw_classnames"] = list(raw_names)
    splits = DatasetSplits(name=name or os.path.basename(root.rstrip(os.sep)) or "imagefolder",
                           classnames=[c.replace("_", " ").strip() for c in raw_names],
                           template=template, train=train, val=val, test=test, meta=meta)
    return verify_splits(splits, on_error, progress=progress) if verify else splits


def verify_images(data: Sequence[Datum], on_error: str = "raise", *, progress: bool = False,
                  desc: str = "checking images", **load_kwargs) -> Tuple[List[Datum], List[Tuple[str, str]]]:
    """Open every image of ``data`` now. Returns ``(kept, skipped)``, ``skipped`` being
    ``(file, reason)`` pairs. With ``on_error="raise"`` the first broken image raises
    :class:`ImageLoadError` naming it. ``load_kwargs`` go to :func:`load_image`."""
    check_on_error(on_error)
    kept: List[Datum] = []
    skipped: List[Tuple[str, str]] = []
    items = data
    if progress:
        from tqdm.auto import tqdm
        items = tqdm(data, desc=desc, unit="img")
    for item in items:
        try:
            load_image(item[0], **load_kwargs)
        except ImageLoadError as e:
            if on_error == "raise":
                raise
            skipped.append((describe_source(item[0]), str(e)))
            continue
        kept.append(item)
    return kept, skipped


def check_images(data: Sequence[Datum], on_error: str = "raise", *, progress: bool = False,
                 max_workers: int = 0, **load_kwargs) -> Tuple[List[Datum], List[Tuple[str, str]]]:
    """Open (fully decode) every image of ``data`` before any work uses it.

    ``data``: ``[(source, label)]``, a source being a path or an in-memory PIL image.
    Returns ``(kept, broken)``: ``kept`` the items that load, in their order; ``broken``
    ``(file, reason)`` pairs. With ``on_error="raise"`` every image is still checked, then
    ONE :class:`pini_core.errors.DataError` lists the broken files (up to 10) and what to do
    (fix or remove them, or skip them with ``on_error="skip"`` / ``--on-broken-image skip``);
    with ``"skip"`` they are left out and returned for counting. An empty, corrupt,
    truncated, non-image or too-small (``min_side``, default 8 px) file is broken, as
    :func:`pini_core.data.images.load_image` decides. ``max_workers`` > 0 decodes in that
    many threads (PIL releases the GIL while decoding). Raises ``ConfigError`` for an
    unknown ``on_error``."""
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    items = list(data)

    def probe(item) -> Optional[str]:
        try:
            load_image(item[0], **load_kwargs)
        except ImageLoadError as e:
            return str(e)
        return None

    if max_workers and max_workers > 0 and len(items) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            reasons = list(pool.map(probe, items))
    else:
        it = items
        if progress:
            from tqdm.auto import tqdm
            it = tqdm(items, desc="checking images", unit="img")
        reasons = [probe(item) for item in it]
    kept = [item for item, why in zip(items, reasons) if why is None]
    broken = [(describe_source(item[0]), why) for item, why in zip(items, reasons) if why is not None]
    if broken and on_error == "raise":
        shown = "; ".join(why for _, why in broken[:10])
        more = f" (and {len(broken) - 10} more)" if len(broken) > 10 else ""
        raise DataError(f"{len(broken)} of {len(items)} images cannot be used: {shown}{more}. Fix or remove "
                        "these files, or skip them (--on-broken-image skip / on_error='skip').")
    return kept, broken


def check_split_images(splits: DatasetSplits, on_error: str = "raise", *,
                       parts: Sequence[str] = ("train", "val", "test"), targets: bool = True,
                       max_workers: int = 0) -> Tuple[DatasetSplits, List[Tuple[str, str]]]:
    """:func:`check_images` over the named splits (and the domain-generalisation targets),
    with ONE error for all of them: returns ``(splits without the broken items, broken)``,
    ``broken`` being ``(file, reason)`` pairs, and records per-split counts in
    ``meta["skipped"]``. With ``on_error="raise"`` a :class:`DataError` lists the broken
    files of every split at once. An image in several splits is decoded once."""
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    named = [(p, list(getattr(splits, p))) for p in parts]
    if targets:
        named += [(f"target:{t}", list(d)) for t, d in splits.targets.items()]
    seen: Dict[object, Optional[str]] = {}
    unique = []
    for _, data in named:
        for item in data:
            key = item[0] if isinstance(item[0], str) else id(item[0])
            if key not in seen:
                seen[key] = None
                unique.append(item)
    _, broken = check_images(unique, "skip", max_workers=max_workers)
    if broken and on_error == "raise":
        shown = "; ".join(why for _, why in broken[:10])
        more = f" (and {len(broken) - 10} more)" if len(broken) > 10 else ""
        raise DataError(f"{len(broken)} of {len(unique)} images of {splits.name} cannot be used: {shown}{more}. "
                        "Fix or remove these files, or skip them (--on-broken-image skip / on_error='skip').")
    bad = {f for f, _ in broken}
    keep = lambda item: describe_source(item[0]) not in bad  # noqa: E731
    counts = {name: sum(not keep(i) for i in data) for name, data in named}
    new = {p: [i for i in data if keep(i)] for p, data in named if p in parts}
    new_targets = {t[len("target:"):]: [i for i in data if keep(i)] for t, data in named if t.startswith("target:")}
    meta = dict(splits.meta)
    meta.update(skipped=counts, skipped_files=list(broken), on_error=on_error)
    out = dataclasses.replace(splits, meta=meta, **new, **({"targets": new_targets} if targets else {}))
    return out, broken


def verify_splits(splits: DatasetSplits, on_error: str = "raise", *, progress: bool = False,
                  **load_kwargs) -> DatasetSplits:
    """:func:`verify_images` on every split and target; returns a new DatasetSplits whose
    ``meta["skipped"]`` holds the count per split and ``meta["skipped_files"]`` the
    ``(file, reason)`` pairs."""
    check_on_error(on_error)
    counts: Dict[str, int] = {}
    files: List[Tuple[str, str]] = []
    new = {}
    for part in ("train", "val", "test"):
        new[part], bad = verify_images(getattr(splits, part), on_error, progress=progress,
                                       desc=f"checking {splits.name} {part}", **load_kwargs)
        counts[part] = len(bad)
        files.extend(bad)
    targets = {}
    for tname, tdata in splits.targets.items():
        targets[tname], bad = verify_images(tdata, on_error, progress=progress,
                                            desc=f"checking {tname}", **load_kwargs)
        counts[f"target:{tname}"] = len(bad)
        files.extend(bad)
    meta = dict(splits.meta)
    meta.update(skipped=counts, skipped_files=files, verified=True, on_error=on_error)
    return dataclasses.replace(splits, targets=targets, meta=meta, **new)
