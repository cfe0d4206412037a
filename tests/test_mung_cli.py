"""`python -m pini_core mung ...` through a standard Hugging Face host folder (model + processor)."""
import json

import pytest
import torch

from pini_core.mung import cli
from pini_core.mung.checkpoint import read_metadata
from pini_core.mung.hf_host import HFHost, export_toy_as_hf
from pini_core.mung.toy_mllm import new_toy_mllm
from pini_core.mung.vqa_data import make_vqa


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    bundle = new_toy_mllm(seed=0, hidden=32, layers=1, vision_hidden=32, vision_layers=1, patch_size=16)
    return export_toy_as_hf(bundle, tmp_path_factory.mktemp("host") / "tiny-llava")


def test_hf_host_batches_label_only_the_answer(hf_dir):
    host = HFHost.load(hf_dir)
    items = make_vqa(2, "source", seed=0)
    batch = host.encode([x.image for x in items], [x.question for x in items], [x.answer for x in items])
    eos = host.tokenizer.eos_token_id
    for i, x in enumerate(items):
        lab = batch["labels"][i][batch["labels"][i] != -100].tolist()
        assert lab == [host.tokenizer.convert_tokens_to_ids(x.answer), eos]
    n_img = (batch["input_ids"] == host.model.config.image_token_id).sum(1)
    assert n_img.tolist() == [16, 16]
    assert torch.isfinite(host.model(**batch).loss)


def test_cli_train_then_answer(hf_dir, tmp_path, capsys):
    out = tmp_path / "gen"
    rc = cli.main(["train", "--stage", "generator", "--host", str(hf_dir), "--data", "toy-shifted",
                   "--train-items", "8", "--steps", "2", "--batch-size", "4", "--eval-items", "4",
                   "--sigma", "exp", "--out", str(out)])
    assert rc == 0
    meta = read_metadata(out)
    assert meta["command"].startswith("python -m pini_core mung train --stage generator")
    assert meta["metrics"]["steps"] == 2
    assert {"accuracy_toy-shifted_without_mung", "accuracy_toy-shifted_with_mung"} <= set(meta["metrics"])
    cfg = json.loads((out / "mung_config.json").read_text())["config"]
    assert cfg["sigma"] == "exp" and cfg["visual_dim"] == 32 and cfg["host_family"] == "llava"
    capsys.readouterr()
    img = tmp_path / "x.png"
    make_vqa(1, "shifted", seed=5)[0].image.save(img)
    rc = cli.main(["answer", "--host", str(hf_dir), "--generator", str(out), "--image", str(img),
                   "--question", "which colour has the star ?"])
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and set(res) == {"question", "answer_without_mung", "answer_with_mung"}
    rc = cli.main(["answer", "--host", str(hf_dir), "--generator", str(out), "--image", str(tmp_path / "no.png"),
                   "--question", "q"])
    assert rc == 2 and "cannot read image" in capsys.readouterr().err


def test_cli_errors_are_explained(tmp_path):
    with pytest.raises(SystemExit, match="use toy-source or toy-shifted"):
        cli.load_items("toy-nowhere", 2, 0)
    with pytest.raises(SystemExit, match="no such file"):
        cli.load_items(str(tmp_path / "missing.jsonl"), 2, 0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    with pytest.raises(SystemExit, match="bad.jsonl:1: bad line"):
        cli.load_items(str(bad), 2, 0)
    assert cli.correct("Red.", "red") and not cli.correct("", "red") and not cli.correct("blue red", "red")
