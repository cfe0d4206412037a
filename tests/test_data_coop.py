"""CoOp layouts parse from tiny fake trees; missing files give actionable messages."""
import json
import os

import pytest
from PIL import Image

from pini_core.data.coop import IMAGENET_VARIANTS, DatasetLayoutError, attach_targets
from pini_core.data.fewshot import fewshot_splits
from pini_core.data.images import ImageLoadError, load_image
from pini_core.data.registry import get_dataset, list_datasets

# (registry name, image folder, split file) as CoOp's datasets/*.py lay them out.
SPLIT_JSON = [
    ("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json"),
    ("oxford_pets", "images", "split_zhou_OxfordPets.json"),
    ("stanford_cars", "", "split_zhou_StanfordCars.json"),
    ("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json"),
    ("food-101", "images", "split_zhou_Food101.json"),
    ("sun397", "SUN397", "split_zhou_SUN397.json"),
    ("dtd", "images", "split_zhou_DescribableTextures.json"),
    ("eurosat", "2750", "split_zhou_EuroSAT.json"),
    ("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json"),
]
WNIDS = [("n01440764", "tench"), ("n01443537", "goldfish"), ("n01484850", "great white shark")]


def _img(path, colour=(200, 100, 50)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path)


def _split_tree(root, name, image_dir, split_file):
    folder = root / name
    imgs = folder / image_dir if image_dir else folder
    split = {"train": [], "val": [], "test": []}
    classes = ["Apply_Eye_Makeup", "abyssinian", "Annual Crop Land"]
    for label, cname in enumerate(classes):
        for part, n in (("train", 3), ("val", 1), ("test", 2)):
            for i in range(n):
                rel = f"{cname}/{part}_{i}.jpg"
                _img(str(imgs / rel))
                split[part].append([rel, label, cname])
    (folder / split_file).write_text(json.dumps(split))
    return folder, imgs


def test_all_coop_names_registered():
    names = set(list_datasets())
    assert {n for n, _, _ in SPLIT_JSON} | {"imagenet", "fgvc_aircraft", "imagefolder"} | set(IMAGENET_VARIANTS) <= names


@pytest.mark.parametrize("name,image_dir,split_file", SPLIT_JSON)
def test_split_json_layouts(tmp_path, name, image_dir, split_file):
    folder, imgs = _split_tree(tmp_path, name, image_dir, split_file)
    s = get_dataset(name, root=str(tmp_path))
    assert s.name == name
    assert s.classnames == ["Apply Eye Makeup", "abyssinian", "Annual Crop Land"]
    assert s.meta["raw_classnames"][0] == "Apply_Eye_Makeup"
    assert (len(s.train), len(s.val), len(s.test)) == (9, 3, 6)
    assert s.train[0] == (str(imgs / "Apply_Eye_Makeup" / "train_0.jpg"), 0)
    assert [y for _, y in s.test] == [0, 0, 1, 1, 2, 2]
    assert all(os.path.isfile(p) for p, _ in s.train + s.val + s.test)
    assert "{}" in s.template
    # root may also be the dataset folder itself
    assert get_dataset(name, root=str(folder)).train == s.train


def test_pets_template_and_fewshot(tmp_path):
    _split_tree(tmp_path, "oxford_pets", "images", "split_zhou_OxfordPets.json")
    s = get_dataset("oxford_pets", root=str(tmp_path))
    assert s.template == "a photo of a {}, a type of pet."
    f = fewshot_splits(s, 2, seed=1)
    assert len(f.train) == 6 and len(f.val) == 3 and f.test == s.test


def test_missing_split_file_says_which_where_and_how(tmp_path):
    (tmp_path / "oxford_pets" / "images").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError) as e:
        get_dataset("oxford_pets", root=str(tmp_path))
    msg = str(e.value)
    assert "split_zhou_OxfordPets.json" in msg
    assert str(tmp_path / "oxford_pets" / "split_zhou_OxfordPets.json") in msg
    assert "annotations.tar.gz" in msg and "DATASETS.md" in msg
    assert isinstance(e.value, FileNotFoundError)


def test_missing_dataset_folder_and_image_folder(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"expected the folder dtd/ at .*dtd.*dtd-r1\.0\.1"):
        get_dataset("dtd", root=str(tmp_path))
    (tmp_path / "eurosat").mkdir()
    (tmp_path / "eurosat" / "split_zhou_EuroSAT.json").write_text('{"train": [], "val": [], "test": []}')
    with pytest.raises(DatasetLayoutError, match=r"image folder 2750/ at .*eurosat.2750.*EuroSAT\.zip"):
        get_dataset("eurosat", root=str(tmp_path))
    with pytest.raises(ValueError, match="needs root=PATH"):
        get_dataset("dtd")
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        get_dataset("dtd", root=str(tmp_path / "nowhere"))


@pytest.mark.parametrize("content,pattern", [
    ("{not json", "not valid JSON"),
    ('{"train": []}', "'train', 'val' and 'test'"),
    ('{"train": [["a.jpg", 0]], "val": [], "test": []}', r"train\[0\] should be"),
    ('{"train": [["a.jpg", 0, "x"], ["b.jpg", 0, "y"]], "val": [], "test": []}', "called both"),
    ('{"train": [["a.jpg", 0, "x"], ["b.jpg", 2, "y"]], "val": [], "test": []}', r"no image has label\(s\) \[1\]"),
])
def test_broken_split_json(tmp_path, content, pattern):
    (tmp_path / "dtd" / "images").mkdir(parents=True)
    (tmp_path / "dtd" / "split_zhou_DescribableTextures.json").write_text(content)
    with pytest.raises(ValueError, match=pattern):
        get_dataset("dtd", root=str(tmp_path))


def _imagenet_tree(root):
    folder = root / "imagenet"
    folder.mkdir()
    (folder / "classnames.txt").write_text("".join(f"{w} {n}\n" for w, n in WNIDS))
    for w, _ in WNIDS:
        for i in range(4):
            _img(str(folder / "images" / "train" / w / f"{w}_{i}.JPEG"))
        for i in range(2):
            _img(str(folder / "images" / "val" / w / f"ILSVRC2012_val_{w}_{i}.JPEG"))
    (folder / "images" / "train" / WNIDS[0][0] / "notes.txt").write_text("not an image")
    return folder


def _variant_trees(root):
    # ImageNetV2: folders are label numbers; Sketch / A / R: wnid folders (A, R: subsets)
    for name, sub, wnids in [("imagenetv2", "imagenetv2-matched-frequency-format-val", None),
                             ("imagenet-sketch", "images", [w for w, _ in WNIDS]),
                             ("imagenet-adversarial", "imagenet-a", [WNIDS[0][0], WNIDS[2][0]]),
                             ("imagenet-rendition", "imagenet-r", [WNIDS[1][0], WNIDS[2][0]])]:
        folder = root / name
        folder.mkdir()
        (folder / "classnames.txt").write_text("".join(f"{w} {n}\n" for w, n in WNIDS))
        dirs = [str(i) for i in range(3)] if wnids is None else wnids
        for d in dirs:
            for i in range(2):
                _img(str(folder / sub / d / f"{i}.jpg"))
        if name in ("imagenet-adversarial", "imagenet-rendition"):
            (folder / sub / "README.txt").write_text("readme")


def test_imagenet_layout(tmp_path):
    folder = _imagenet_tree(tmp_path)
    s = get_dataset("imagenet", root=str(tmp_path))
    assert s.classnames == ["tench", "goldfish", "great white shark"]
    assert s.meta["wnids"] == [w for w, _ in WNIDS]
    assert len(s.train) == 12 and len(s.test) == 6
    assert s.val == s.test and s.meta["val_is_test"]
    p, y = s.test[5]
    assert y == 2 and p.startswith(str(folder / "images" / "val" / WNIDS[2][0]))
    assert all(p.endswith(".JPEG") for p, _ in s.train)  # notes.txt not taken
    f = fewshot_splits(s, 2, seed=1)
    assert len(f.train) == 6 and f.val == s.test


def test_imagenet_missing_pieces(tmp_path):
    (tmp_path / "imagenet").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"classnames\.txt at .*imagenet.classnames\.txt.*n01440764 tench"):
        get_dataset("imagenet", root=str(tmp_path))
    (tmp_path / "imagenet" / "classnames.txt").write_text("n01440764 tench\n")
    (tmp_path / "imagenet" / "images" / "train").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match=r"images/val/ at .*sort it into wnid folders"):
        get_dataset("imagenet", root=str(tmp_path))
    (tmp_path / "imagenet" / "classnames.txt").write_text("n01440764\n")
    with pytest.raises(ValueError, match=r"line 1: expected '<wnid> <class name>'"):
        get_dataset("imagenet", root=str(tmp_path))


def test_variants_standalone_use_their_own_labels(tmp_path):
    _variant_trees(tmp_path)
    v2 = get_dataset("imagenetv2", root=str(tmp_path))
    assert v2.classnames == ["tench", "goldfish", "great white shark"] and v2.train == []
    assert sorted({y for _, y in v2.test}) == [0, 1, 2] and len(v2.test) == 6
    a = get_dataset("imagenet-adversarial", root=str(tmp_path))
    assert a.classnames == ["tench", "great white shark"]  # the subset, README.txt ignored
    assert sorted({y for _, y in a.test}) == [0, 1] and a.meta["test_only"]
    r = get_dataset("imagenet-rendition", root=str(tmp_path))
    assert r.classnames == ["goldfish", "great white shark"]
    sk = get_dataset("imagenet-sketch", root=str(tmp_path))
    assert len(sk.test) == 6 and sk.template == "a photo of a {}."


def test_imagenet_with_targets_maps_into_source_labels(tmp_path):
    _imagenet_tree(tmp_path)
    _variant_trees(tmp_path)
    s = get_dataset("imagenet", root=str(tmp_path), targets=True)
    assert set(s.targets) == set(IMAGENET_VARIANTS)
    a = s.targets["imagenet-adversarial"]
    assert sorted({y for _, y in a}) == [0, 2]  # tench, great white shark in ImageNet's labels
    assert all(f"{os.sep}{WNIDS[y][0]}{os.sep}" in p for p, y in a)
    assert s.meta["target_classes"]["imagenet-rendition"] == [1, 2]
    assert s.meta["target_classes"]["imagenetv2"] == [0, 1, 2]
    v2 = s.targets["imagenetv2"]
    assert all(p.split(os.sep)[-2] == str(y) for p, y in v2)
    only = attach_targets(get_dataset("imagenet", root=str(tmp_path)), ["imagenet-sketch"], str(tmp_path))
    assert list(only.targets) == ["imagenet-sketch"]
    with pytest.raises(ValueError, match="unknown ImageNet variant"):
        attach_targets(s, ["imagenet-c"], str(tmp_path))


def test_targets_only_for_imagenet_and_variant_missing_classnames(tmp_path):
    _split_tree(tmp_path, "dtd", "images", "split_zhou_DescribableTextures.json")
    with pytest.raises(ValueError, match="exist only for imagenet"):
        get_dataset("dtd", root=str(tmp_path), targets=["imagenetv2"])
    (tmp_path / "imagenet-sketch" / "images").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match=r"classnames\.txt.*copy classnames\.txt from your imagenet/"):
        get_dataset("imagenet-sketch", root=str(tmp_path))


def _fgvc_tree(root):
    folder = root / "fgvc_aircraft"
    (folder / "images").mkdir(parents=True)
    variants = ["707-320", "A300B4", "Cessna 172"]
    (folder / "variants.txt").write_text("\n".join(variants) + "\n")
    lines = {"train": [("1025794", "707-320"), ("1340192", "Cessna 172"), ("0056978", "A300B4")],
             "val": [("2000001", "A300B4")],
             "test": [("3000001", "Cessna 172"), ("3000002", "707-320")]}
    for part, rows in lines.items():
        (folder / f"images_variant_{part}.txt").write_text("".join(f"{i} {v}\n" for i, v in rows))
        for i, _ in rows:
            _img(str(folder / "images" / f"{i}.jpg"))
    return folder


def test_fgvc_aircraft_layout(tmp_path):
    folder = _fgvc_tree(tmp_path)
    s = get_dataset("fgvc_aircraft", root=str(tmp_path))
    assert s.classnames == ["707-320", "A300B4", "Cessna 172"]
    assert s.train == [(str(folder / "images" / "1025794.jpg"), 0),
                       (str(folder / "images" / "1340192.jpg"), 2),
                       (str(folder / "images" / "0056978.jpg"), 1)]
    assert s.val == [(str(folder / "images" / "2000001.jpg"), 1)]
    assert [y for _, y in s.test] == [2, 0]
    assert s.template == "a photo of a {}, a type of aircraft."


def test_fgvc_missing_list_and_unknown_variant(tmp_path):
    folder = _fgvc_tree(tmp_path)
    os.remove(folder / "images_variant_val.txt")
    with pytest.raises(DatasetLayoutError, match=r"images_variant_val\.txt at .*fgvc-aircraft-2013b"):
        get_dataset("fgvc_aircraft", root=str(tmp_path))
    (folder / "images_variant_val.txt").write_text("2000001 Boeing 999\n")
    with pytest.raises(ValueError, match=r"line 1: variant 'Boeing 999' is not in variants\.txt"):
        get_dataset("fgvc_aircraft", root=str(tmp_path))


def test_verify_skips_and_counts_broken_images(tmp_path):
    folder, imgs = _split_tree(tmp_path, "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json")
    broken = imgs / "abyssinian" / "test_1.jpg"
    broken.write_bytes(b"garbage")
    os.remove(imgs / "abyssinian" / "train_2.jpg")
    lazy = get_dataset("ucf101", root=str(tmp_path))  # nothing opened yet
    assert len(lazy.test) == 6
    with pytest.raises(ImageLoadError, match="abyssinian.test_1.jpg: not an image"):
        load_image(lazy.test[3][0])
    s = get_dataset("ucf101", root=str(tmp_path), verify=True, on_error="skip")
    assert s.meta["skipped"] == {"train": 1, "val": 0, "test": 1}
    assert len(s.train) == 8 and len(s.test) == 5
    assert {os.path.basename(f) for f, _ in s.meta["skipped_files"]} == {"train_2.jpg", "test_1.jpg"}
    with pytest.raises(ImageLoadError, match="train_2.jpg: file not found"):
        get_dataset("ucf101", root=str(tmp_path), verify=True, on_error="raise")
    with pytest.raises(ValueError, match="on_error must be"):
        get_dataset("ucf101", root=str(tmp_path), on_error="ignore")
