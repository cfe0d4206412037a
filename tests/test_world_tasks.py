"""Toy tasks: registered, deterministic, correctly sized, biased the way they claim."""
import numpy as np
import pytest
from PIL import Image

from pini_core.data.registry import DatasetSplits, get_dataset, list_datasets
from pini_core.world.captions import RARE_NAMES
from pini_core.world.scene import DOMAINS, SHAPES
from pini_core.world.tasks import TASK_DOMAINS, load_task

SMALL = dict(train_per_class=2, val_per_class=1, test_per_class=2)


def test_all_tasks_are_registered_with_descriptions():
    names = list_datasets()
    assert set(TASK_DOMAINS) <= set(names)
    assert len(TASK_DOMAINS) >= 4  # the source domain + at least three biased tasks
    for t in TASK_DOMAINS:
        assert names[t].startswith("Toy world")


@pytest.mark.parametrize("task", list(TASK_DOMAINS))
def test_splits_shape_and_labels(task):
    s = get_dataset(task, seed=3, **SMALL)
    assert isinstance(s, DatasetSplits) and s.name == task
    assert s.num_classes == len(SHAPES) and "{}" in s.template
    assert len(s.train) == 2 * len(SHAPES) and len(s.val) == len(SHAPES) and len(s.test) == 2 * len(SHAPES)
    for split in (s.train, s.val, s.test):
        img, label = split[0]
        assert isinstance(img, Image.Image) and img.size == (64, 64) and img.mode == "RGB"
        assert sorted({y for _, y in split}) == list(range(len(SHAPES)))
    assert set(s.targets) == set(DOMAINS) - {TASK_DOMAINS[task]}
    for data in s.targets.values():
        assert len(data) == 2 * len(SHAPES)


def test_default_sizes_allow_16_shots_and_a_few_hundred_test_images():
    from pini_core.world import tasks

    assert tasks.TRAIN_PER_CLASS >= 16 and tasks.VAL_PER_CLASS >= 4
    assert 200 <= tasks.TEST_PER_CLASS * len(SHAPES) <= 1000


def test_same_seed_same_images_other_seed_other_images():
    a = load_task("toy-sketch", seed=5, **SMALL)
    b = load_task("toy-sketch", seed=5, **SMALL)
    assert a is b  # cached in memory
    from pini_core.world.tasks import _build

    _build.cache_clear()
    c = load_task("toy-sketch", seed=5, **SMALL)
    assert all(np.array_equal(np.asarray(x[0]), np.asarray(y[0])) and x[1] == y[1] for x, y in zip(a.test, c.test))
    bigger = load_task("toy-sketch", seed=5, train_per_class=2, val_per_class=1, test_per_class=3)
    # streams are per split: more test images extend the list without changing the first ones
    assert all(np.array_equal(np.asarray(x[0]), np.asarray(y[0])) for x, y in zip(a.test, bigger.test))
    d = load_task("toy-sketch", seed=6, **SMALL)
    assert not np.array_equal(np.asarray(a.test[0][0]), np.asarray(d.test[0][0]))


def test_splits_do_not_share_images():
    s = load_task("toy-shapes", seed=2, train_per_class=4, val_per_class=2, test_per_class=4)
    keys = [np.asarray(im).tobytes() for im, _ in s.train + s.val + s.test]
    assert len(set(keys)) == len(keys)


def test_rarewords_uses_rare_class_names_and_others_common_ones():
    assert load_task("toy-rarewords", seed=1, **SMALL).classnames == [RARE_NAMES[s] for s in SHAPES]
    assert load_task("toy-clutter", seed=1, **SMALL).classnames == list(SHAPES)


def test_domains_really_differ_in_pixels():
    """Sketches are mostly paper-white; colour-cast images are low-contrast."""
    sk = load_task("toy-sketch", seed=1, **SMALL)
    sk_white = np.mean([(np.asarray(im).min(-1) > 200).mean() for im, _ in sk.test])
    assert sk_white > 0.6
    src = load_task("toy-shapes", seed=1, **SMALL)
    cc = load_task("toy-colourcast", seed=1, **SMALL)

    def contrast(data):  # luminance std after a 4x box blur (sensor noise averaged out)
        return np.mean([np.asarray(im.convert("L").resize((16, 16), Image.BOX), np.float32).std()
                        for im, _ in data])

    assert contrast(cc.test) < 0.7 * contrast(src.test)


def test_bad_requests_have_clear_errors():
    with pytest.raises(KeyError, match="unknown dataset 'toy-nothing'"):
        get_dataset("toy-nothing")
    with pytest.raises(ValueError, match="takes no root folder"):
        get_dataset("toy-shapes", root="/data")
    with pytest.raises(ValueError, match="train_per_class must be a positive integer"):
        get_dataset("toy-shapes", train_per_class=0)
    with pytest.raises(KeyError, match="unknown toy task"):
        load_task("toy-nothing")


def test_examples_writer(tmp_path):
    from pini_core.world.examples import write_examples

    written = write_examples(tmp_path, per_task=3, seed=1, tasks=["toy-sketch"])
    paths = written["toy-sketch"]
    assert [p.name for p in paths] == ["00_circle.png", "01_square.png", "02_triangle.png"]
    with Image.open(paths[0]) as im:
        assert im.size == (64, 64)
    with pytest.raises(ValueError, match="per_task must be >= 1"):
        write_examples(tmp_path, per_task=0)


def test_shipped_examples_exist():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "assets" / "examples"
    for task in TASK_DOMAINS:
        pngs = sorted((root / task).glob("*.png"))
        assert len(pngs) >= 4, f"missing examples for {task}; run python -m pini_core examples"
