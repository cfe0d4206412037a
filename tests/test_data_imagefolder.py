"""ImageFolder trees: seeded stratified splits or given splits; broken images raise or are skipped."""
import os

import pytest
from PIL import Image

from pini_core.data.imagefolder import stratified_split, verify_images
from pini_core.data.images import ImageLoadError
from pini_core.data.registry import get_dataset


def _img(path, colour=(10, 20, 30)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (12, 12), colour).save(path)


def _flat(root, n=10, classes=("cat", "dog", "red_fox")):
    for c in classes:
        for i in range(n):
            _img(str(root / c / f"{i:02d}.png"))
    return root


def test_flat_tree_stratified_seeded_split(tmp_path):
    _flat(tmp_path)
    (tmp_path / "cat" / "notes.txt").write_text("x")
    (tmp_path / "dog" / ".hidden.png").write_text("x")
    s = get_dataset("imagefolder", root=str(tmp_path), seed=1)
    assert s.classnames == ["cat", "dog", "red fox"] and s.meta["raw_classnames"][2] == "red_fox"
    for part, n in (("train", 6), ("val", 2), ("test", 2)):
        data = getattr(s, part)
        assert sorted(y for _, y in data) == sorted([0, 1, 2] * n), part
    allp = [p for p, _ in s.train + s.val + s.test]
    assert len(allp) == len(set(allp)) == 30
    assert all(p.endswith(".png") for p in allp) and s.meta["ignored_files"] == 1
    assert s.template == "a photo of a {}." and s.name == os.path.basename(str(tmp_path))
    again = get_dataset("imagefolder", root=str(tmp_path), seed=1)
    assert (again.train, again.val, again.test) == (s.train, s.val, s.test)
    other = get_dataset("imagefolder", root=str(tmp_path), seed=2)
    assert other.test != s.test
    for p, y in s.train:
        assert os.path.basename(os.path.dirname(p)) == s.meta["raw_classnames"][y]


def test_nested_files_and_custom_fractions(tmp_path):
    _flat(tmp_path, n=5)
    _img(str(tmp_path / "cat" / "sub" / "deep.jpg"))
    s = get_dataset("imagefolder", root=str(tmp_path), val_fraction=0.0, test_fraction=0.5,
                    template="a photo of a {}, a pet.")
    assert len(s.val) == 0 and len(s.train) + len(s.test) == 16
    assert any(p.endswith("deep.jpg") for p, _ in s.train + s.test)
    assert s.template == "a photo of a {}, a pet."


def test_given_splits_with_and_without_val(tmp_path):
    for part, n in (("train", 5), ("test", 2)):
        _flat(tmp_path / part, n=n, classes=("a", "b"))
    s = get_dataset("imagefolder", root=str(tmp_path))
    assert s.meta["layout"] == "splits (val carved from train)"
    assert len(s.train) == 8 and len(s.val) == 2 and len(s.test) == 4
    assert all(f"{os.sep}test{os.sep}" in p for p, _ in s.test)
    assert all(f"{os.sep}train{os.sep}" in p for p, _ in s.train + s.val)
    _flat(tmp_path / "Validation", n=1, classes=("a", "b"))
    s = get_dataset("imagefolder", root=str(tmp_path))
    assert s.meta["layout"] == "splits" and len(s.train) == 10 and len(s.val) == 2
    assert s.classnames == ["a", "b"]


def test_train_only_and_train_val_split_folders(tmp_path):
    _flat(tmp_path / "train", n=10, classes=("a", "b"))
    s = get_dataset("imagefolder", root=str(tmp_path))
    assert s.meta["layout"] == "splits (val and test carved from train)"
    assert (len(s.train), len(s.val), len(s.test)) == (12, 4, 4) and s.classnames == ["a", "b"]
    _flat(tmp_path / "val", n=1, classes=("a", "b"))
    s = get_dataset("imagefolder", root=str(tmp_path))
    assert (len(s.train), len(s.val), len(s.test)) == (16, 2, 4)
    assert all(f"{os.sep}val{os.sep}" in p for p, _ in s.val)


def test_split_folders_without_train_or_twice(tmp_path):
    _flat(tmp_path / "val", n=2, classes=("a", "b"))
    _flat(tmp_path / "test", n=2, classes=("a", "b"))
    with pytest.raises(ValueError, match="no train/ folder"):
        get_dataset("imagefolder", root=str(tmp_path))
    _flat(tmp_path / "train", n=2, classes=("a", "b"))
    _flat(tmp_path / "valid", n=2, classes=("a", "b"))
    with pytest.raises(ValueError, match="look like the val split"):
        get_dataset("imagefolder", root=str(tmp_path))


def test_class_named_like_a_split_among_other_classes_is_a_class(tmp_path):
    _flat(tmp_path, n=3, classes=("test", "zebra"))
    s = get_dataset("imagefolder", root=str(tmp_path))
    assert s.classnames == ["test", "zebra"] and s.meta["layout"].startswith("classes")


def test_stratified_split_keeps_a_training_item():
    data = [("a", 0), ("b", 1), ("c", 1)]
    train, val, test = stratified_split(data, [0.4, 0.4], seed=0)
    assert {y for _, y in train} == {0, 1} and len(train) + len(val) + len(test) == 3


def test_bad_roots(tmp_path):
    with pytest.raises(ValueError, match="needs root=PATH"):
        get_dataset("imagefolder")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        get_dataset("imagefolder", root=str(tmp_path / "nope"))
    _flat(tmp_path, classes=("only",))
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="found 1 class folder"):
        get_dataset("imagefolder", root=str(tmp_path))
    with pytest.raises(ValueError, match="on_error must be 'raise'"):
        get_dataset("imagefolder", root=str(tmp_path), on_error="warn")
    with pytest.raises(TypeError):
        get_dataset("imagefolder", root=str(tmp_path), shots=4)


def test_empty_class_folders_dropped(tmp_path):
    _flat(tmp_path, n=4, classes=("a", "c"))
    (tmp_path / "b").mkdir()
    s = get_dataset("imagefolder", root=str(tmp_path))
    assert s.classnames == ["a", "c"] and s.meta["empty_classes"] == ["b"]
    assert {y for _, y in s.train} == {0, 1}


def test_broken_image_named_or_skipped_and_counted(tmp_path):
    _flat(tmp_path, n=5, classes=("a", "b"))
    bad = tmp_path / "b" / "03.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    lazy = get_dataset("imagefolder", root=str(tmp_path))  # listing opens nothing
    assert str(bad) in [p for p, _ in lazy.train + lazy.val + lazy.test]
    with pytest.raises(ImageLoadError, match=r"b.03\.png"):
        get_dataset("imagefolder", root=str(tmp_path), verify=True)
    s = get_dataset("imagefolder", root=str(tmp_path), verify=True, on_error="skip")
    assert sum(s.meta["skipped"].values()) == 1
    assert s.meta["skipped_files"][0][0] == str(bad) and "03.png" in s.meta["skipped_files"][0][1]
    assert len(s.train) + len(s.val) + len(s.test) == 9
    kept, skipped = verify_images(lazy.train + lazy.val + lazy.test, on_error="skip")
    assert len(kept) == 9 and skipped[0][0] == str(bad)


def test_data_check_cli(tmp_path, capsys):
    from pini_core.data.check import main
    _flat(tmp_path / "photos", n=5, classes=("a", "b"))
    (tmp_path / "photos" / "b" / "00.png").write_bytes(b"junk")
    assert main(["imagefolder", "--root", str(tmp_path / "photos"), "--verify", "--shots", "2"]) == 0
    out = capsys.readouterr().out
    assert "classes   2: a, b" in out and "broken" in out and "00.png" in out
    assert "2-shot    train 4" in out and "x x x" in out
    assert main(["oxford_pets", "--root", str(tmp_path)]) == 1
    assert "expected the folder oxford_pets/" in capsys.readouterr().err
    assert main(["--list"]) == 0 and "imagefolder" in capsys.readouterr().out
