"""The app's examples are chosen by one documented rule (pini_core/world/examples.py) and carry
their true labels; the shipped generators are found by kind; results on open are cached only
for shared models; the Train tab's estimate and zip counts are right. No server needed."""
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_rule_takes_the_first_items_of_each_outcome_in_order():
    from pini_core.world.examples import outcome, pick_by_rule, summary_line

    assert outcome("a", "b", "a") == "fix" and outcome("a", "a", "b") == "break"
    assert outcome("a", "a", "a") == "both_right" and outcome("a", "b", "c") == "both_wrong"
    outs = ["both_wrong", "fix", "break", "both_right", "fix", "fix", "break", "both_right", "break", "both_wrong"]
    r = pick_by_rule(outs)
    assert r["chosen"] == [0, 1, 2, 3, 4, 6] and r["default"] == 1
    assert r["counts"] == {"fix": 3, "break": 3, "both_right": 2, "both_wrong": 2}
    assert r["chosen_counts"] == {"fix": 2, "break": 2, "both_right": 1, "both_wrong": 1}
    assert summary_line(r["chosen_counts"], 6) == "PiNI fixes 2, breaks 2 of these 6"
    # nothing fixed: the default is the first item right both ways, never a made-up success
    assert pick_by_rule(["break", "both_wrong", "both_right"])["default"] == 2


def test_examples_json_matches_the_files_and_the_rule():
    from pini_core.world.examples import TAKE, pick_by_rule, read_examples

    rec = read_examples(ROOT / "assets" / "examples")
    assert rec, "run python -m pini_core examples"
    for task, entry in rec["tasks"].items():
        for row in entry["examples"]:
            assert (ROOT / "assets" / "examples" / row["file"]).is_file(), row
            assert row["file"].rsplit("_", 1)[-1] == f"{row['true']}.png"  # the true label is in the name too
        if entry.get("rule") == "pick_by_rule":
            rows = entry["examples"]
            outs = [r["outcome"] for r in rows]
            for r in rows:
                want = ("fix" if r["pini_mean"] == r["true"] else "both_wrong") if r["zero_shot"] != r["true"] else \
                    ("both_right" if r["pini_mean"] == r["true"] else "break")
                assert r["outcome"] == want, r
            assert all(outs.count(k) <= n for k, n in TAKE.items())
            assert entry["chosen_counts"] == pick_by_rule(outs)["counts"]
            default = next(r for r in rows if r["name"] == entry["default"])
            assert default["outcome"] == "fix" or entry["population"]["fix"] == 0
    mung = rec.get("mung")
    if mung:
        assert all((ROOT / "assets" / "examples" / r["file"]).is_file() and r["true"] for r in mung["examples"])


def test_true_labels_and_default_example_first():
    from demo.examples import curated, toy_examples, true_label
    from demo.shipped import shipped_task

    names = [n for n, _ in toy_examples()]
    assert not any(n.startswith("mung/") for n in names)  # MuNG's pairs are its own
    task = shipped_task()
    rows = curated(task)
    if rows:
        from pini_core.world.examples import read_examples

        assert names[0] == read_examples(ROOT / "assets" / "examples")["tasks"][task]["default"]
        assert all(true_label(r["name"]) == r["true"] for r in rows)
    assert true_label("toy-sketch/03_star") == "star" and true_label(None) is None


def test_shipped_generators_are_found_by_kind():
    from demo.shipped import shipped_folder, shipped_image_folder

    folder = shipped_folder()
    assert folder is not None
    assert json.loads((folder / "pini_config.json").read_text())["noise"]["visual_location"] != "image"
    raw = shipped_image_folder()
    if raw is not None:
        assert json.loads((raw / "pini_config.json").read_text())["noise"]["visual_location"] == "image"


def test_the_test_split_rendered_alone_is_the_registry_split():
    from demo.shipped import _test_split
    from pini_core.data.registry import get_dataset

    a, b = _test_split("toy-sketch", 2, get_dataset), get_dataset("toy-sketch", seed=2).test
    assert len(a) == len(b) and all(x[1] == y[1] and np.array_equal(np.asarray(x[0]), np.asarray(y[0]))
                                    for x, y in zip(a, b))


def test_preview_cache_only_for_shared_models_and_copies():
    from demo import preview

    calls = []
    v1 = preview.cached(("t", 1), lambda: calls.append(1) or {"a": [1]})
    v1["a"].append(2)  # a caller changing its copy does not change the cache
    v2 = preview.cached(("t", 1), lambda: calls.append(1) or {"a": [9]})
    assert calls == [1] and v2 == {"a": [1]}
    preview.cached(None, lambda: calls.append(1))
    preview.cached(None, lambda: calls.append(1))
    assert len(calls) == 3

    class Own:  # a session's own generator is never cached
        pass

    shared = Own()
    shared._app_shipped = True
    assert preview.model_key(Own()) is None and preview.model_key(shared) is not None


def test_estimate_and_zip_counts(tmp_path):
    from PIL import Image

    from demo.estimate import training_note, zip_summary
    from pini_core.data.registry import get_dataset
    from pini_core.uploads import check_zip_images, extract_image_zip

    slow, fast = training_note("image", 16, 10, 100), training_note("feature", 16, 10, 100)
    assert "min" in slow and "raw-image" in slow and "About" in fast
    # 2 classes x 12 images: the summary reports 12 per class, the split, and the tiny test split
    import zipfile

    z = tmp_path / "two.zip"
    with zipfile.ZipFile(z, "w") as f:
        for c, colour in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
            for i in range(12):
                p = tmp_path / f"{c}{i}.png"
                Image.new("RGB", (16, 16), tuple(v + i for v in colour)).save(p)
                f.write(p, f"{c}/{i}.png")
    ds = check_zip_images(extract_image_zip(z, tmp_path / "out", shown="two.zip"))
    splits = get_dataset("imagefolder", root=str(ds.root), seed=1)
    line = zip_summary(ds, splits, 16)
    assert "24 images in 2 classes" in line and "cat 12, dog 12" in line
    assert f"{len(splits.test)} test images" in line and "⚠" in line and "(you asked for 16" in line
    assert "16 per class" not in line
