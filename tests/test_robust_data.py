"""Issue 12, engine side, data: broken images found before any work (one error listing
them, or skipped and counted), symbolic links never followed inside an ImageFolder, a flat
ImageNet val archive stopped with what to do, and data-check failing on empty splits or
listed files that do not exist."""
from __future__ import annotations

import io
import json
import os

import pytest
from PIL import Image

from pini_core.data.check import main as data_check
from pini_core.data.coop import DatasetLayoutError
from pini_core.data.imagefolder import check_images
from pini_core.data.registry import get_dataset
from pini_core.errors import ConfigError, DataError, PiniError


def _png(path, size=(16, 16), colour=(200, 100, 50)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _tree(root, classes=("cat", "dog"), n=6):
    for c in classes:
        for i in range(n):
            _png(root / c / f"{i:02d}.png")
    return root


def _break_four(root):
    """One corrupt, one empty, one 1x1 and one truncated image, in the cat folder."""
    (root / "cat" / "corrupt.png").write_bytes(b"this is not a png")
    (root / "cat" / "empty.png").write_bytes(b"")
    _png(root / "cat" / "tiny.png", size=(1, 1))
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="PNG")
    (root / "cat" / "truncated.png").write_bytes(buf.getvalue()[:-40])
    return ["corrupt.png", "empty.png", "tiny.png", "truncated.png"]


# ----------------------------------------------------------------------------- item 2: broken images

def test_check_images_raises_once_listing_every_broken_image(tmp_path):
    bad = _break_four(_tree(tmp_path / "t"))
    s = get_dataset("imagefolder", root=str(tmp_path / "t"))
    data = s.train + s.val + s.test
    assert len(data) == 16
    with pytest.raises(DataError) as e:
        check_images(data, "raise")
    msg = str(e.value)
    assert msg.startswith("4 of 16 images cannot be used: ")
    for name in bad:
        assert name in msg
    assert "the file is empty (0 bytes)" in msg and "image is only 1x1 pixels" in msg
    assert msg.endswith("Fix or remove these files, or skip them (--on-broken-image skip / on_error='skip').")
    assert isinstance(e.value, PiniError) and "\n" not in msg


@pytest.mark.parametrize("workers", [0, 2])
def test_check_images_skips_and_counts_when_asked(tmp_path, workers):
    bad = _break_four(_tree(tmp_path / "t"))
    s = get_dataset("imagefolder", root=str(tmp_path / "t"))
    data = s.train + s.val + s.test + [(Image.new("RGB", (32, 32)), 0)]  # in-memory images are checked too
    kept, broken = check_images(data, "skip", max_workers=workers)
    assert len(kept) == 13 and len(broken) == 4
    assert sorted(os.path.basename(f) for f, _ in broken) == bad
    assert all(os.path.basename(f) in why for f, why in broken)
    assert [k for k in data if k in kept] == kept  # order kept
    with pytest.raises(ConfigError, match="on_error must be 'raise' or 'skip', got 'ignore'"):
        check_images(data, "ignore")


# ----------------------------------------------------------------------------- item 17: symbolic links

def test_symlinks_inside_an_imagefolder_are_not_followed(tmp_path):
    root = _tree(tmp_path / "t")
    outside = _tree(tmp_path / "elsewhere", classes=("fox",), n=3)
    os.symlink("..", root / "cat" / "loop")  # back into the tree: would relabel dog images as cat
    os.symlink(outside / "fox", root / "cat" / "foxes")  # out of the tree
    os.symlink(root / "cat" / "00.png", root / "dog" / "copy.png")  # a file linked back into the tree
    os.symlink(outside / "fox", root / "fox")  # a class folder that lives outside the tree
    s = get_dataset("imagefolder", root=str(root))
    data = s.train + s.val + s.test
    assert s.classnames == ["cat", "dog"]
    assert len(data) == 12 and len({p for p, _ in data}) == 12
    for p, y in data:
        assert os.path.realpath(p).startswith(str(root)) and not os.path.islink(p)
        assert os.path.basename(os.path.dirname(p)) == s.classnames[y]
    assert not ({p for p, _ in s.train} & {p for p, _ in s.test})
    assert sorted(os.path.basename(p) for p in s.meta["skipped_links"]) == ["copy.png", "fox", "foxes", "loop"]


def test_data_check_reports_the_links_it_did_not_follow(tmp_path, capsys):
    root = _tree(tmp_path / "t")
    os.symlink("..", root / "cat" / "loop")
    assert data_check(["imagefolder", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "sizes     train 8, val 2, test 2" in out
    assert "links     1 symbolic link(s) not followed" in out and str(root / "cat" / "loop") in out


# ----------------------------------------------------------------------------- item 13: CoOp layouts

WNIDS = [("n01440764", "tench"), ("n01443537", "goldfish")]


def _imagenet(root, flat_val: bool):
    folder = root / "imagenet"
    folder.mkdir(parents=True)
    (folder / "classnames.txt").write_text("".join(f"{w} {n}\n" for w, n in WNIDS))
    for w, _ in WNIDS:
        for i in range(3):
            _png(folder / "images" / "train" / w / f"{w}_{i}.JPEG")
    for i in range(4):
        sub = "" if flat_val else WNIDS[i % 2][0]
        _png(folder / "images" / "val" / sub / f"ILSVRC2012_val_{i:08d}.JPEG")
    return folder


def test_a_flat_imagenet_val_archive_stops_before_training_saying_what_to_do(tmp_path, capsys):
    _imagenet(tmp_path, flat_val=True)
    with pytest.raises(DatasetLayoutError) as e:
        get_dataset("imagenet", root=str(tmp_path))
    msg = str(e.value)
    assert msg.startswith("imagenet: images/val/ holds 4 image files directly (ILSVRC2012_val_00000000.JPEG, ...) "
                          "but no wnid folders, so the val split would be empty.")
    assert "sort the flat official archive into one folder per wnid first" in msg
    assert isinstance(e.value, DataError) and isinstance(e.value, FileNotFoundError)
    assert data_check(["imagenet", "--root", str(tmp_path)]) == 1
    assert "holds 4 image files directly" in capsys.readouterr().err
    # the same tree sorted into wnid folders loads
    _imagenet(tmp_path / "ok", flat_val=False)
    assert len(get_dataset("imagenet", root=str(tmp_path / "ok")).test) == 4


def _pets(root, test_items=2):
    folder = root / "oxford_pets"
    split = {"train": [], "val": [], "test": []}
    for label, c in enumerate(("abyssinian", "beagle")):
        for part, n in (("train", 2), ("val", 1), ("test", test_items)):
            for i in range(n):
                rel = f"{c}_{part}_{i}.jpg"
                _png(folder / "images" / rel)
                split[part].append([rel, label, c])
    (folder / "split_zhou_OxfordPets.json").write_text(json.dumps(split))
    return folder


def test_data_check_fails_on_listed_files_that_do_not_exist(tmp_path, capsys):
    folder = _pets(tmp_path)
    assert data_check(["oxford_pets", "--root", str(tmp_path)]) == 0
    capsys.readouterr()
    (folder / "images" / "beagle_test_1.jpg").unlink()
    (folder / "images" / "abyssinian_train_0.jpg").unlink()
    assert data_check(["oxford_pets", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "error: 2 listed image file(s) do not exist, e.g. " in err
    assert "abyssinian_train_0.jpg" in err and "beagle_test_1.jpg" in err
    # also with --verify (which would otherwise just skip them as broken)
    assert data_check(["oxford_pets", "--root", str(tmp_path), "--verify"]) == 1
    assert "2 listed image file(s) do not exist" in capsys.readouterr().err


def test_data_check_fails_on_an_empty_split(tmp_path, capsys):
    _pets(tmp_path, test_items=0)
    assert data_check(["oxford_pets", "--root", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "sizes     train 4, val 2, test 0" in captured.out
    assert "error: the test split is empty: nothing to test on" in captured.err


def test_check_split_images_reports_every_split_at_once(tmp_path):
    from pini_core.data.imagefolder import check_split_images

    bad = _break_four(_tree(tmp_path / "t"))
    s = get_dataset("imagefolder", root=str(tmp_path / "t"))
    with pytest.raises(DataError, match=r"^4 of 16 images of t cannot be used: .*Fix or remove these files"):
        check_split_images(s, "raise")
    clean, broken = check_split_images(s, "skip")
    assert sorted(os.path.basename(f) for f, _ in broken) == bad
    assert len(clean.train) + len(clean.val) + len(clean.test) == 12
    assert sum(clean.meta["skipped"].values()) == 4
    assert set(clean.meta["skipped"]) == {"train", "val", "test"}
    for part in ("train", "val", "test"):
        assert [x for x in getattr(s, part) if x in getattr(clean, part)] == getattr(clean, part)
