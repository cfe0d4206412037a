"""The CoOp dataset layouts: 11 few-shot datasets and 4 ImageNet variants.

``get_dataset("oxford_pets", root="/data")`` reads ``/data/oxford_pets/`` laid out as
CoOp's DATASETS.md asks (``root`` may also be the dataset folder itself). Three layout
kinds exist in CoOp's code:

* split JSON (9 datasets): ``split_zhou_<Name>.json`` =
  ``{"train"|"val"|"test": [[relative_path, label, classname], ...]}``, paths relative
  to the dataset's image folder;
* ImageNet: ``classnames.txt`` lines ``"n01440764 tench"`` and
  ``images/{train,val}/<wnid>/*``; CoOp tests on the official val set and uses it as
  val too (``meta["val_is_test"]``);
* FGVCAircraft: ``variants.txt`` (one class per line, label = line order) and
  ``images_variant_{train,val,test}.txt`` lines ``"<image id> <variant name>"``, images
  ``images/<id>.jpg``.

The ImageNet variants are test-only and use ImageNet's ``classnames.txt``:
ImageNetV2 folders are label numbers ``0..999`` (= line order of classnames.txt);
Sketch, -A and -R folders are wnids (labels = sorted folder order, so -A and -R have
their own 200-class label spaces, as in CoOp). For domain generalisation
``get_dataset("imagenet", root, targets=[...])`` (or :func:`attach_targets`) maps each
variant into ImageNet's 1000-class label space and records the variant's classes in
``meta["target_classes"][name]``: restrict the logits to those to reproduce CoOp's
200-way evaluation of -A/-R.

Class names have ``_`` replaced by spaces (as CoOp's and PiNI's prompt builders do);
the raw names are in ``meta["raw_classnames"]``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from pini_core.data.imagefolder import check_on_error, is_image_file, verify_splits
from pini_core.data.base import DatasetSplits, Datum, register_dataset
from pini_core.data.templates import template_for
from pini_core.errors import DataError, UnknownNameError

COOP_DATASETS = ("imagenet", "caltech-101", "oxford_pets", "stanford_cars", "oxford_flowers",
                 "food-101", "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
IMAGENET_VARIANTS = ("imagenetv2", "imagenet-sketch", "imagenet-adversarial", "imagenet-rendition")
IGNORED_ENTRIES = ("README.txt",)  # CoOp's TO_BE_IGNORED for -A / -R


class DatasetLayoutError(DataError, FileNotFoundError):
    """A dataset folder lacks a file or folder its layout needs; the message says which,
    where it is expected, and how to get it."""


@dataclass(frozen=True)
class CoOpSpec:
    name: str            # registry name == folder name under root (CoOp's dataset_dir)
    title: str           # the dataset's usual name
    kind: str            # "split_json" | "imagenet" | "fgvc" | "imagenetv2" | "wnid_folders"
    image_dir: str       # relative to the dataset folder ("" = the folder itself)
    split_file: str = ""  # split_zhou_<Name>.json for kind "split_json"
    how_to_get: str = ""  # CoOp's DATASETS.md instructions, in words


_COPY_CLASSNAMES = ("copy classnames.txt from your imagenet/ folder into this folder (the same "
                    "1000 lines 'n01440764 tench', from CoOp's DATASETS.md ImageNet section)")

SPECS: Dict[str, CoOpSpec] = {s.name: s for s in [
    CoOpSpec("imagenet", "ImageNet", "imagenet", "images",
             how_to_get="create imagenet/images/, extract the ILSVRC-2012 training set to "
                        "images/train/ and the validation set to images/val/, both as one folder "
                        "per class named by wnid (n01440764, ...; the official val archive is flat: "
                        "sort it into wnid folders first), and download classnames.txt (linked from "
                        "CoOp's DATASETS.md; lines like 'n01440764 tench', the names from CLIP's "
                        "ImageNet prompt-engineering notebook) into imagenet/"),
    CoOpSpec("caltech-101", "Caltech101", "split_json", "101_ObjectCategories",
             "split_zhou_Caltech101.json",
             "create caltech-101/, extract 101_ObjectCategories.tar.gz (from the Caltech "
             "Vision website) into it, and put split_zhou_Caltech101.json (linked from CoOp's "
             "DATASETS.md) next to the 101_ObjectCategories/ folder"),
    CoOpSpec("oxford_pets", "OxfordPets", "split_json", "images", "split_zhou_OxfordPets.json",
             "create oxford_pets/, extract images.tar.gz and annotations.tar.gz from the Oxford "
             "VGG pets page (robots.ox.ac.uk/~vgg/data/pets) into it, and add "
             "split_zhou_OxfordPets.json (linked from CoOp's DATASETS.md)"),
    CoOpSpec("stanford_cars", "StanfordCars", "split_json", "", "split_zhou_StanfordCars.json",
             "create stanford_cars/ and extract cars_train.tgz, cars_test.tgz and car_devkit.tgz "
             "into it (so cars_train/, cars_test/ and devkit/ sit inside), add "
             "cars_test_annos_withlabels.mat and split_zhou_StanfordCars.json (linked from "
             "CoOp's DATASETS.md)"),
    CoOpSpec("oxford_flowers", "Flowers102", "split_json", "jpg", "split_zhou_OxfordFlowers.json",
             "create oxford_flowers/, extract 102flowers.tgz (the jpg/ folder) and "
             "imagelabels.mat from the Oxford VGG flowers page into it, and add cat_to_name.json "
             "and split_zhou_OxfordFlowers.json (linked from CoOp's DATASETS.md)"),
    CoOpSpec("food-101", "Food101", "split_json", "images", "split_zhou_Food101.json",
             "extract food-101.tar.gz (ETH Zurich Food-101 page) under the root, giving "
             "food-101/images/ and food-101/meta/, and add split_zhou_Food101.json (linked "
             "from CoOp's DATASETS.md) to food-101/"),
    CoOpSpec("fgvc_aircraft", "FGVCAircraft", "fgvc", "images",
             how_to_get="download fgvc-aircraft-2013b.tar.gz (Oxford VGG FGVC-Aircraft page), "
                        "extract it, keep only its data/ folder, move that under the root and "
                        "rename it fgvc_aircraft/ (it holds images/, variants.txt and "
                        "images_variant_{train,val,test}.txt)"),
    CoOpSpec("sun397", "SUN397", "split_json", "SUN397", "split_zhou_SUN397.json",
             "create sun397/, extract SUN397.tar.gz and Partitions.zip (Princeton SUN "
             "database page) into it, and add split_zhou_SUN397.json (linked from CoOp's "
             "DATASETS.md)"),
    CoOpSpec("dtd", "DTD", "split_json", "images", "split_zhou_DescribableTextures.json",
             "extract dtd-r1.0.1.tar.gz (Oxford VGG DTD page) under the root, giving "
             "dtd/images/, and add split_zhou_DescribableTextures.json (linked from CoOp's "
             "DATASETS.md) to dtd/"),
    CoOpSpec("eurosat", "EuroSAT", "split_json", "2750", "split_zhou_EuroSAT.json",
             "create eurosat/, extract EuroSAT.zip (the RGB version; it unpacks to 2750/) into "
             "it, and add split_zhou_EuroSAT.json (linked from CoOp's DATASETS.md)"),
    CoOpSpec("ucf101", "UCF101", "split_json", "UCF-101-midframes", "split_zhou_UCF101.json",
             "create ucf101/, extract UCF-101-midframes.zip (the middle video frames, linked "
             "from CoOp's DATASETS.md) into it, and add split_zhou_UCF101.json (also linked "
             "there)"),
    CoOpSpec("imagenetv2", "ImageNetV2", "imagenetv2", "imagenetv2-matched-frequency-format-val",
             how_to_get="create imagenetv2/, extract imagenetv2-matched-frequency.tar.gz (from "
                        "github.com/modestyachts/ImageNetV2) into it, giving "
                        "imagenetv2-matched-frequency-format-val/0 ... /999, and "
                        + _COPY_CLASSNAMES),
    CoOpSpec("imagenet-sketch", "ImageNet-Sketch", "wnid_folders", "images",
             how_to_get="extract ImageNet-Sketch (github.com/HaohanWang/ImageNet-Sketch) to "
                        "imagenet-sketch/ so that imagenet-sketch/images/ holds 1000 wnid "
                        "folders, and " + _COPY_CLASSNAMES),
    CoOpSpec("imagenet-adversarial", "ImageNet-A", "wnid_folders", "imagenet-a",
             how_to_get="create imagenet-adversarial/, extract ImageNet-A "
                        "(github.com/hendrycks/natural-adv-examples) into it, giving "
                        "imagenet-adversarial/imagenet-a/ with 200 wnid folders, and "
                        + _COPY_CLASSNAMES),
    CoOpSpec("imagenet-rendition", "ImageNet-R", "wnid_folders", "imagenet-r",
             how_to_get="create imagenet-rendition/, extract ImageNet-R "
                        "(github.com/hendrycks/imagenet-r) into it, giving "
                        "imagenet-rendition/imagenet-r/ with 200 wnid folders, and "
                        + _COPY_CLASSNAMES),
]}


# ----------------------------------------------------------------------------- helpers

def _missing(spec: CoOpSpec, what: str, path: str) -> DatasetLayoutError:
    return DatasetLayoutError(
        f"{spec.name} ({spec.title}): expected {what} at {path}, but it is not there. "
        f"How to get it (CoOp's DATASETS.md): {spec.how_to_get}.")


def _marker(spec: CoOpSpec) -> str:
    if spec.kind == "split_json":
        return spec.split_file
    if spec.kind == "fgvc":
        return "variants.txt"
    if spec.kind == "imagenet":
        return "classnames.txt"
    return spec.image_dir


def dataset_dir(spec: Union[CoOpSpec, str], root: Optional[str]) -> str:
    """The dataset's folder: ``root/<name>``, or ``root`` itself if it already is that folder."""
    spec = SPECS[spec] if isinstance(spec, str) else spec
    if root is None:
        raise DataError(f"{spec.name} needs root=PATH: the folder that contains {spec.name}/ "
                         f"(CoOp's $DATA). How to set it up: {spec.how_to_get}.")
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    if not os.path.isdir(root):
        raise DatasetLayoutError(f"{spec.name}: the data root {root} does not exist. Pass the folder "
                                 f"that contains {spec.name}/ (CoOp's $DATA).")
    candidate = os.path.join(root, spec.name)
    if os.path.isdir(candidate):
        return candidate
    if os.path.basename(root) == spec.name or os.path.exists(os.path.join(root, _marker(spec))):
        return root
    raise _missing(spec, f"the folder {spec.name}/", candidate)


def _require(spec: CoOpSpec, path: str, what: str, folder: bool = False) -> str:
    ok = os.path.isdir(path) if folder else os.path.isfile(path)
    if not ok:
        raise _missing(spec, what, path)
    return path


def _list_files(folder: str) -> List[str]:
    """Image files directly in ``folder`` (CoOp's listdir_nohidden + an image-extension filter)."""
    return sorted(e.path for e in os.scandir(folder)
                  if e.is_file() and not e.name.startswith(".") and is_image_file(e.name))


def _subdirs(folder: str) -> List[str]:
    return sorted(e.name for e in os.scandir(folder)
                  if e.is_dir() and not e.name.startswith(".") and e.name not in IGNORED_ENTRIES)


def _pretty(names: Sequence[str]) -> List[str]:
    return [n.replace("_", " ").strip() for n in names]


def read_split_json(path: str, image_dir: str, spec_name: str = "") -> Tuple[Dict[str, List[Datum]], List[str]]:
    """Parse a CoOp ``split_zhou_*.json``: returns ({"train"|"val"|"test": [(abs_path, label)]},
    raw classnames indexed by label)."""
    who = f"{spec_name}: " if spec_name else ""
    try:
        with open(path, "r", encoding="utf-8") as f:
            split = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{who}{path} is not valid JSON ({e}); re-download the split file.") from e
    if not isinstance(split, dict) or not all(k in split for k in ("train", "val", "test")):
        keys = list(split) if isinstance(split, dict) else type(split).__name__
        raise DataError(f"{who}{path} must be a JSON object with 'train', 'val' and 'test' lists "
                         f"of [relative_path, label, classname]; found {keys}")
    names: Dict[int, str] = {}
    out: Dict[str, List[Datum]] = {}
    for part in ("train", "val", "test"):
        items = []
        for n, entry in enumerate(split[part]):
            if not (isinstance(entry, (list, tuple)) and len(entry) == 3):
                raise DataError(f"{who}{path}: {part}[{n}] should be [relative_path, label, "
                                 f"classname], got {entry!r}")
            rel, label, cname = entry
            if isinstance(label, bool) or not isinstance(label, int) or not isinstance(rel, str) \
                    or not isinstance(cname, str):
                raise DataError(f"{who}{path}: {part}[{n}] should be [relative_path (text), label (integer), "
                                f"classname (text)], got {entry!r}")
            if label < 0:
                raise DataError(f"{who}{path}: {part}[{n}] has a negative label {label}")
            if names.setdefault(label, cname) != cname:
                raise DataError(f"{who}{path}: label {label} is called both {names[label]!r} and "
                                 f"{cname!r} ({part}[{n}]); the split file is inconsistent")
            items.append((os.path.join(image_dir, rel), label))
        out[part] = items
    if not names:
        raise DataError(f"{who}{path} lists no images")
    missing = [i for i in range(max(names) + 1) if i not in names]
    if missing:
        raise DataError(f"{who}{path}: labels must be 0..{max(names)} without gaps; no image has "
                         f"label(s) {missing[:10]}")
    return out, [names[i] for i in range(len(names))]


def read_imagenet_classnames(path: str) -> Dict[str, str]:
    """``classnames.txt`` -> ordered {wnid: class name} (lines ``"n01440764 tench"``)."""
    out: Dict[str, str] = {}
    with open(path, "r", encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(" ", 1)
            if len(parts) != 2 or not parts[1].strip():
                raise DataError(f"{path}, line {n}: expected '<wnid> <class name>' such as "
                                 f"'n01440764 tench', got {line!r}")
            wnid, name = parts[0], parts[1].strip()
            if wnid in out:
                raise DataError(f"{path}, line {n}: wnid {wnid} appears twice")
            out[wnid] = name
    if not out:
        raise DataError(f"{path} is empty; it should hold one line '<wnid> <class name>' per class")
    return out


def _read_fgvc_list(spec: CoOpSpec, path: str, image_dir: str, index: Dict[str, int]) -> List[Datum]:
    items = []
    with open(path, "r", encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(" ", 1)
            if len(parts) != 2:
                raise DataError(f"{path}, line {n}: expected '<image id> <variant>', got {line!r}")
            image_id, variant = parts[0], parts[1].strip()
            if variant not in index:
                raise DataError(f"{path}, line {n}: variant {variant!r} is not in variants.txt")
            items.append((os.path.join(image_dir, image_id + ".jpg"), index[variant]))
    return items


# ----------------------------------------------------------------------------- loaders

def _finish(spec: CoOpSpec, raw_names: Sequence[str], train, val, test, folder: str, seed: int,
            on_error: str, verify: bool, progress: bool, **meta) -> DatasetSplits:
    meta.update(root=folder, layout=f"coop:{spec.kind}", raw_classnames=list(raw_names),
                on_error=on_error, seed=seed)
    splits = DatasetSplits(name=spec.name, classnames=_pretty(raw_names), template=template_for(spec.name),
                           train=list(train), val=list(val), test=list(test), meta=meta)
    return verify_splits(splits, on_error, progress=progress) if verify else splits


def _load_split_json(spec: CoOpSpec, folder: str) -> Tuple[List[str], List[Datum], List[Datum], List[Datum]]:
    split_path = _require(spec, os.path.join(folder, spec.split_file), f"the split file {spec.split_file}")
    image_dir = os.path.join(folder, spec.image_dir) if spec.image_dir else folder
    _require(spec, image_dir, f"the image folder {spec.image_dir or spec.name}/", folder=True)
    parts, names = read_split_json(split_path, image_dir, spec.name)
    return names, parts["train"], parts["val"], parts["test"]


def _load_fgvc(spec: CoOpSpec, folder: str):
    variants_path = _require(spec, os.path.join(folder, "variants.txt"), "the class list variants.txt")
    image_dir = _require(spec, os.path.join(folder, spec.image_dir), "the image folder images/", folder=True)
    with open(variants_path, "r", encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise DataError(f"{variants_path} is empty; it should list one aircraft variant per line")
    index = {c: i for i, c in enumerate(names)}
    parts = []
    for part in ("train", "val", "test"):
        fname = f"images_variant_{part}.txt"
        path = _require(spec, os.path.join(folder, fname), f"the {part} list {fname}")
        parts.append(_read_fgvc_list(spec, path, image_dir, index))
    return names, parts[0], parts[1], parts[2]


def _imagenet_classnames(spec: CoOpSpec, folder: str) -> Dict[str, str]:
    path = _require(spec, os.path.join(folder, "classnames.txt"), "classnames.txt")
    return read_imagenet_classnames(path)


def _load_imagenet(spec: CoOpSpec, folder: str):
    wnid_names = _imagenet_classnames(spec, folder)
    image_dir = _require(spec, os.path.join(folder, spec.image_dir), "the image folder images/", folder=True)
    split_dirs = {}
    for part in ("train", "val"):
        split_dirs[part] = _require(spec, os.path.join(image_dir, part),
                                    f"the {part} images (one folder per wnid) images/{part}/", folder=True)
    unknown = [d for part in split_dirs.values() for d in _subdirs(part) if d not in wnid_names]
    if unknown:
        raise DataError(f"imagenet: folder(s) {sorted(set(unknown))[:5]} under {image_dir} are not "
                         f"wnids listed in {os.path.join(folder, 'classnames.txt')}")
    present = set(_subdirs(split_dirs["train"]))
    # Labels follow classnames.txt order (CoOp: sorted train folders; the official file is sorted,
    # so both agree). Classes without a train folder are dropped and listed in meta.
    wnids = [w for w in wnid_names if w in present]
    if not wnids:
        raise _missing(spec, "training images in wnid folders (n01440764/, ...)", split_dirs["train"])
    index = {w: i for i, w in enumerate(wnids)}
    data = {}
    for part, d in split_dirs.items():
        items = []
        for w in _subdirs(d):
            if w in index:
                items.extend((p, index[w]) for p in _list_files(os.path.join(d, w)))
        data[part] = items
    for part, d in split_dirs.items():
        if data[part]:
            continue
        loose = _list_files(d)
        if loose:  # the official ILSVRC2012 val archive unpacks flat: images/val/ILSVRC2012_val_*.JPEG
            raise DatasetLayoutError(
                f"imagenet: images/{part}/ holds {len(loose)} image files directly ({os.path.basename(loose[0])}, "
                f"...) but no wnid folders, so the {part} split would be empty. CoOp's layout needs "
                f"images/{part}/<wnid>/*.JPEG: sort the flat official archive into one folder per wnid first "
                "(e.g. with the ILSVRC2012 devkit's validation ground truth, or the widely used valprep.sh "
                f"script), then run `python -m pini_core data-check imagenet --root ...` again. Folder: {d}")
        raise _missing(spec, f"{part} images in wnid folders (n01440764/*.JPEG, ...)", d)
    missing = [w for w in wnid_names if w not in present]
    return wnids, [wnid_names[w] for w in wnids], data["train"], data["val"], missing


def _load_variant(spec: CoOpSpec, folder: str) -> Tuple[List[str], List[str], List[Datum]]:
    """-> (wnids by label, raw classnames by label, test items)."""
    wnid_names = _imagenet_classnames(spec, folder)
    image_dir = _require(spec, os.path.join(folder, spec.image_dir), f"the image folder {spec.image_dir}/",
                         folder=True)
    items: List[Datum] = []
    if spec.kind == "imagenetv2":
        wnids = list(wnid_names)
        for sub in _subdirs(image_dir):
            if not sub.isdigit() or int(sub) >= len(wnids):
                raise DataError(f"imagenetv2: folder {os.path.join(image_dir, sub)} should be a class "
                                 f"number 0..{len(wnids) - 1} (line order of classnames.txt)")
            items.extend((p, int(sub)) for p in _list_files(os.path.join(image_dir, sub)))
    else:
        wnids = _subdirs(image_dir)
        unknown = [w for w in wnids if w not in wnid_names]
        if unknown:
            raise DataError(f"{spec.name}: folder(s) {unknown[:5]} in {image_dir} are not wnids in "
                             f"{os.path.join(folder, 'classnames.txt')}; {_COPY_CLASSNAMES}")
        for label, w in enumerate(wnids):
            items.extend((p, label) for p in _list_files(os.path.join(image_dir, w)))
    if not items:
        raise _missing(spec, "images", image_dir)
    return wnids, [wnid_names[w] for w in wnids], items


def load_coop(name: str, root: Optional[str] = None, seed: int = 1, *, on_error: str = "raise",
              verify: bool = False, progress: bool = False,
              targets: Union[None, bool, Sequence[str]] = None,
              targets_root: Optional[str] = None) -> DatasetSplits:
    """Load CoOp dataset ``name`` from ``root`` (the folder holding ``<name>/``).

    ``seed`` is recorded only: CoOp's splits are fixed files. ``verify=True`` opens every
    image now (``on_error`` "raise" | "skip"). ``targets`` (ImageNet only): variant
    names, or True for all four, attached as ``splits.targets`` (see :func:`attach_targets`)."""
    if name not in SPECS:
        raise UnknownNameError(f"unknown CoOp dataset {name!r}; known: {', '.join(SPECS)}")
    spec = SPECS[name]
    check_on_error(on_error)
    folder = dataset_dir(spec, root)
    if targets and name != "imagenet":
        raise DataError(f"targets= (domain-generalisation test sets) exist only for imagenet, whose "
                         f"variants are {', '.join(IMAGENET_VARIANTS)}; got them for {name}")
    common = dict(folder=folder, seed=seed, on_error=on_error, verify=False, progress=progress)
    if spec.kind == "split_json":
        names, train, val, test = _load_split_json(spec, folder)
        splits = _finish(spec, names, train, val, test, **common)
    elif spec.kind == "fgvc":
        names, train, val, test = _load_fgvc(spec, folder)
        splits = _finish(spec, names, train, val, test, **common)
    elif spec.kind == "imagenet":
        wnids, names, train, test, missing = _load_imagenet(spec, folder)
        # CoOp: "evaluate on the val set, also used as the val set"
        splits = _finish(spec, names, train, test, test, **common, wnids=wnids, val_is_test=True,
                         missing_classes=missing)
    else:
        wnids, names, test = _load_variant(spec, folder)
        splits = _finish(spec, names, [], [], test, **common, wnids=wnids, test_only=True)
    if targets:
        chosen = list(IMAGENET_VARIANTS) if targets is True else list(targets)
        splits = attach_targets(splits, chosen, targets_root if targets_root is not None else root)
    if verify:
        splits = verify_splits(splits, on_error, progress=progress)
    return splits


def attach_targets(splits: DatasetSplits, names: Iterable[str], root: Optional[str]) -> DatasetSplits:
    """Return a copy of an ImageNet ``splits`` with ImageNet variants as ``splits.targets``.

    Each variant's images are relabelled into the source's class list by wnid;
    ``meta["target_classes"][name]`` holds the source labels the variant covers (200 for
    -A and -R). Evaluate -A/-R over only those classes to match CoOp's protocol."""
    wnids = splits.meta.get("wnids")
    if not wnids:
        raise DataError(f"attach_targets needs an ImageNet-layout source (with meta['wnids']); "
                         f"{splits.name!r} has none")
    source_index = {w: i for i, w in enumerate(wnids)}
    targets = dict(splits.targets)
    target_classes = dict(splits.meta.get("target_classes", {}))
    for name in names:
        if name not in IMAGENET_VARIANTS:
            raise DataError(f"unknown ImageNet variant {name!r}; choose from {', '.join(IMAGENET_VARIANTS)}")
        spec = SPECS[name]
        v_wnids, _, items = _load_variant(spec, dataset_dir(spec, root))
        absent = [w for w in v_wnids if w not in source_index]
        if absent:
            raise DataError(f"{name}: classes {absent[:5]} are not in the source dataset's class list "
                             f"({len(absent)} in all); the source ImageNet needs all classes")
        remap = [source_index[w] for w in v_wnids]
        targets[name] = [(p, remap[y]) for p, y in items]
        target_classes[name] = sorted(set(remap))
    meta = dict(splits.meta)
    meta["target_classes"] = target_classes
    return dataclasses.replace(splits, targets=targets, meta=meta)


def _register(name: str) -> None:
    spec = SPECS[name]
    role = "ImageNet variant, test only" if name in IMAGENET_VARIANTS else "CoOp few-shot dataset"

    def loader(root: Optional[str] = None, seed: int = 1, **kwargs) -> DatasetSplits:
        return load_coop(name, root=root, seed=seed, **kwargs)

    loader.__name__ = "load_" + name.replace("-", "_")
    loader.__doc__ = f"{spec.title} in CoOp's layout under ROOT/{name}/."
    register_dataset(name, f"{spec.title} ({role}): CoOp layout ROOT/{name}/")(loader)


for _name in SPECS:
    _register(_name)
