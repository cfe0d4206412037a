"""The raw-image generator shipped for the Noise tab's Figure 4 (checkpoints/pini/<task>-image):
it loads through the normal loader, reproduces its recorded accuracy, is small, and was made by
the normal training command (short: its recorded training time is measured, not guessed)."""
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
RAW = [p for p in sorted((ROOT / "checkpoints" / "pini").iterdir()) if (p / "pini_config.json").exists()
       and json.loads((p / "pini_config.json").read_text())["noise"]["visual_location"] == "image"]
pytestmark = pytest.mark.skipif(not RAW, reason="no raw-image generator shipped in checkpoints/pini/")


@pytest.fixture(scope="module")
def bb():
    from pini_core.backbone import load_backbone

    torch.set_num_threads(1)
    return load_backbone("embedded", device="cpu")


def test_raw_image_generator_reproduces_its_recorded_accuracy_and_maps(bb):
    from pini_core.analysis.maps import noise_maps
    from pini_core.checkpoint import load_pini, read_config
    from pini_core.data.registry import get_dataset
    from pini_core.trainer import evaluate

    folder = RAW[0]
    cfg = read_config(folder)
    data = cfg["data"]
    splits = get_dataset(data["dataset"], seed=data["seed"])
    model = load_pini(folder, bb, splits.classnames)
    acc = evaluate(model, bb, splits.test, mode=cfg["metrics"]["test_mode"])["accuracy"]
    assert acc == pytest.approx(cfg["metrics"]["test_accuracy"], abs=0.5)
    assert cfg["metrics"]["train_seconds"] <= 8 * 60  # a short training (measured when it was made)
    assert (folder / "pini_generators.safetensors").stat().st_size <= 2_000_000
    maps = noise_maps(model, splits.test[0][0], seed=0)
    assert maps["kind"] == "image" and maps["mu_map"].shape == maps["sigma_map"].shape
    assert float(maps["sigma"].min()) >= 0 and float(abs(maps["mu"]).max()) > 0
