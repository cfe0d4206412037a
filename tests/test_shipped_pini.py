"""The embedded default end to end: PiNI on a toy task beats zero-shot CLIP, and the shipped
PiNI generators load through the normal loader and reproduce their recorded accuracy."""
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = sorted(p for p in (ROOT / "checkpoints" / "pini").iterdir() if (p / "pini_config.json").exists())
CONFIGS = {p: json.loads((p / "pini_config.json").read_text()) for p in FOLDERS}
DEFAULTS = [p for p in FOLDERS if CONFIGS[p]["noise"]["visual_location"] != "image"]
RAW_IMAGE = [p for p in FOLDERS if CONFIGS[p]["noise"]["visual_location"] == "image"]
SHIPPED = DEFAULTS[0]  # the feature-level default every tab opens on
TASK = CONFIGS[SHIPPED]["data"]["dataset"]


def test_one_default_and_one_raw_image_generator_on_the_same_toy_task():
    # the app opens every tab on the default and the Noise tab on the raw-image one (Figure 4);
    # two of a kind would make that choice arbitrary
    assert len(DEFAULTS) == 1 and len(RAW_IMAGE) == 1 and len(FOLDERS) == 2, FOLDERS
    assert TASK.startswith("toy-") and SHIPPED.name == TASK
    raw = CONFIGS[RAW_IMAGE[0]]
    assert raw["data"]["dataset"] == TASK and raw["noise"]["visual_generator"] == "cnn"
    assert raw["command"].startswith("python -m pini_core train") and "--visual-location image" in raw["command"]
    assert raw["backbone"]["fingerprint"] == CONFIGS[SHIPPED]["backbone"]["fingerprint"]  # the same CLIP
    assert (RAW_IMAGE[0] / "pini_generators.safetensors").stat().st_size <= 2_000_000
    from demo.shipped import shipped_folder, shipped_image_folder

    assert shipped_folder() == SHIPPED and shipped_image_folder() == RAW_IMAGE[0]


@pytest.fixture(scope="module")
def bb():
    from pini_core.backbone import load_backbone

    # the shipped generators were trained with 1 torch thread (OMP_NUM_THREADS=1): bit-identity
    # of the retraining below holds at the same thread count (reductions sum in another order
    # with 2 threads, and 100 epochs amplify the last-bit differences)
    torch.set_num_threads(1)
    return load_backbone("embedded", device="cpu")


def test_short_pini_run_beats_zero_shot(bb):
    from pini_core.data.fewshot import fewshot_splits
    from pini_core.data.registry import get_dataset
    from pini_core.model import PiNIModel
    from pini_core.noise import NoiseConfig
    from pini_core.experiment import reference_recipe
    from pini_core.trainer import evaluate, fit

    splits = fewshot_splits(get_dataset(TASK, seed=1), 16, seed=1)
    zero = PiNIModel(bb, splits.classnames, splits.template, NoiseConfig(visual_location="none",
                                                                         text_location="none"))
    zs = evaluate(zero, bb, splits.test)["accuracy"]
    # seeded as `pini_core.run` seeds (the shipped run): on the placeholder-free tower the
    # outcome depends on the generators' init (issue 14 note: another init state gave 20.7 %)
    torch.manual_seed(1)
    model = PiNIModel(bb, splits.classnames, splits.template, NoiseConfig())
    # the `toy` preset's recipe (chosen on val splits; no augmentation: CoOp's random resized
    # crop cuts 64-px toy shapes to fragments)
    recipe = reference_recipe("pini", 16, TASK, "toy")
    res = fit(model, bb, splits.train, recipe, seed=1, progress=False)
    assert not res.stopped and len(res.history) == recipe.epochs
    acc = evaluate(model, bb, splits.test, mode="mean")["accuracy"]
    assert acc > zs + 5.0, f"PiNI {acc:.1f}% vs zero-shot {zs:.1f}%"


def test_shipped_generator_reproduces_its_recorded_accuracy(bb):
    from pini_core.checkpoint import load_pini, read_config
    from pini_core.data.registry import get_dataset
    from pini_core.trainer import evaluate

    cfg = read_config(SHIPPED)
    data = cfg["data"]
    splits = get_dataset(data["dataset"], seed=data["seed"])
    model = load_pini(SHIPPED, bb, splits.classnames)
    acc = evaluate(model, bb, splits.test, mode=cfg["metrics"]["test_mode"])["accuracy"]
    assert acc == pytest.approx(cfg["metrics"]["test_accuracy"], abs=0.5)
    assert cfg["command"].startswith("python -m pini_core train")
    assert (SHIPPED / "pini_generators.safetensors").stat().st_size < 5_000_000


def test_the_toy_preset_through_run_reproduces_the_shipped_generator(bb):
    """The shipped generator's command is the `toy` preset; `pini_core.run` retrains it to the
    same weights (bit-identical with the full text encoder) and the same test accuracy."""
    from safetensors.torch import load_file

    from pini_core.checkpoint import read_config
    from pini_core.experiment import preset_config
    from pini_core.runner import run

    recorded = read_config(SHIPPED)
    cfg = preset_config("toy", dataset=TASK, shots=recorded["data"]["shots"], seed=recorded["data"]["seed"],
                        shared_prefix=False)
    assert cfg.recipe.to_dict().items() >= {k: v for k, v in recorded["train_config"].items()
                                            if k in ("epochs", "lr", "batch_size", "augment")}.items()
    res = run(cfg, backbone=bb, progress=False)
    shipped = load_file(str(SHIPPED / "pini_generators.safetensors"))
    mine = res.method.state_dict()
    assert sorted(shipped) == sorted(mine)
    for k, v in shipped.items():
        assert torch.equal(v, mine[k].cpu()), k
    assert res.metrics["test_accuracy"] == pytest.approx(recorded["metrics"]["test_accuracy"], abs=1e-9)
