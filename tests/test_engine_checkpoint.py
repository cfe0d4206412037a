"""Engine checkpoints (save_pini / load_pini, atomic writes, clear refusals) and
Table 8 prompt decoding."""
from __future__ import annotations

import json

import pytest
import torch

import pini_core.checkpoint as ckpt_mod
from engine_fixtures import OTHER_CFG, colour_data, make_model, pixels_of, shared_backbone, tiny_backbone
from pini_core.analysis.decode import DecodeError, decode_prompt_noise, format_table8
from pini_core.checkpoint import (CONFIG_NAME, WEIGHTS_NAME, CheckpointError, PiNICheckpoint, load_pini,
                                  read_config, save_pini)


@pytest.fixture(scope="module")
def bb():
    return shared_backbone()


@pytest.fixture(scope="module")
def px(bb):
    return pixels_of(bb, colour_data(per_class=4, seed=3))


@pytest.fixture
def model(bb):
    m = make_model(bb, seed=11, n_ctx=4)
    with torch.no_grad():  # move away from the init so that a fresh model would differ
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_round_trip_gives_identical_predictions(bb, model, px, tmp_path):
    folder = save_pini(model, tmp_path / "ck", metrics={"test_accuracy": 50.0})
    assert _files(folder) == [CONFIG_NAME, WEIGHTS_NAME]
    cfg = read_config(folder)
    assert cfg["classnames"] == ["red", "blue"] and cfg["metrics"] == {"test_accuracy": 50.0}
    assert cfg["backbone"]["fingerprint"] == bb.identity["fingerprint"]
    assert cfg["noise"]["n_ctx"] == 4
    loaded = load_pini(folder, bb, classnames=["red", "blue"])
    assert loaded.metrics == {"test_accuracy": 50.0}
    feats = {"features": bb.encode_image(px)}
    with torch.no_grad():
        assert torch.equal(loaded.predict(feats, mode="mean"), model.predict(feats, mode="mean"))
        fresh = make_model(bb, seed=11, n_ctx=4)
        assert not torch.equal(fresh.predict(feats, mode="mean"), model.predict(feats, mode="mean"))
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    # the frozen CLIP is not copied into the checkpoint
    assert (folder / WEIGHTS_NAME).stat().st_size < 200_000


def test_hub_mixin_save_and_load_from_a_local_folder(bb, model, px, tmp_path):
    PiNICheckpoint(model).save_pretrained(tmp_path / "hub")
    loaded = PiNICheckpoint.from_pretrained(str(tmp_path / "hub"), backbone=bb).model
    feats = {"features": bb.encode_image(px)}
    with torch.no_grad():
        assert torch.equal(loaded.predict(feats), model.predict(feats))
    with pytest.raises(CheckpointError, match="needs backbone"):
        PiNICheckpoint.from_pretrained(str(tmp_path / "hub"))


def test_other_architecture_is_refused_naming_the_difference(model, tmp_path):
    folder = save_pini(model, tmp_path / "ck")
    other = tiny_backbone(seed=0, name="pini-test-other", cfg=OTHER_CFG)
    with pytest.raises(CheckpointError) as e:
        load_pini(folder, other)
    msg = str(e.value)
    assert "different backbone" in msg
    assert "name: checkpoint has 'pini-test-tiny', loaded backbone has 'pini-test-other'" in msg
    assert "embed_dim: checkpoint has 32, loaded backbone has 24" in msg
    assert "--model pini-test-tiny" in msg


def test_same_architecture_other_weights_is_refused_by_fingerprint(bb, model, tmp_path):
    folder = save_pini(model, tmp_path / "ck")
    reseeded = tiny_backbone(seed=1)  # same name and config, other random weights
    assert reseeded.identity["fingerprint"] != bb.identity["fingerprint"]
    with pytest.raises(CheckpointError, match="fingerprint: checkpoint has") as e:
        load_pini(folder, reseeded)
    assert "name:" not in str(e.value)  # only what differs is listed


@pytest.mark.parametrize("classes, expect", [
    (["red", "green"], ["only in the checkpoint: ['blue']", "only in the dataset: ['green']"]),
    (["blue", "red"], ["same classes in a different order"]),
    (["red", "blue", "green"], ["2 classes in the checkpoint vs 3 in the dataset", "only in the dataset: ['green']"]),
])
def test_mismatched_class_list_is_refused_saying_what_differs(bb, model, tmp_path, classes, expect):
    folder = save_pini(model, tmp_path / "ck")
    with pytest.raises(CheckpointError, match="trained on other classes") as e:
        load_pini(folder, bb, classnames=classes)
    for text in expect:
        assert text in str(e.value)


def test_truncated_weights_fail_with_a_clear_message(bb, model, tmp_path):
    folder = save_pini(model, tmp_path / "ck")
    w = folder / WEIGHTS_NAME
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or was replaced"):
        load_pini(folder, bb)
    # without the checksums (a config written before they existed) the reader still names the problem
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    del cfg["weights_sha256"], cfg["config_sha256"]
    (folder / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="cannot be read .*truncated or damaged"):
        load_pini(folder, bb)


def test_missing_or_damaged_files_are_named(bb, model, tmp_path):
    with pytest.raises(CheckpointError, match="not a PiNI checkpoint: pini_config.json is missing"):
        load_pini(tmp_path / "nothing", bb)
    folder = save_pini(model, tmp_path / "ck")
    (folder / WEIGHTS_NAME).unlink()
    with pytest.raises(CheckpointError, match="is missing; the checkpoint is incomplete"):
        load_pini(folder, bb)
    (folder / CONFIG_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_pini(folder, bb)


def test_writes_are_atomic_and_leave_no_temp_files(bb, model, px, tmp_path, monkeypatch):
    folder = save_pini(model, tmp_path / "ck")
    before = {n: (folder / n).read_bytes() for n in _files(folder)}
    feats = {"features": bb.encode_image(px)}
    with torch.no_grad():
        expect = model.predict(feats)
        for p in model.parameters():
            p.mul_(2.0)

    def broken_save_file(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt_mod, "save_file", broken_save_file)
    with pytest.raises(OSError, match="disk full"):
        save_pini(model, folder)
    monkeypatch.undo()
    assert _files(folder) == [CONFIG_NAME, WEIGHTS_NAME]  # no temp file left behind
    assert {n: (folder / n).read_bytes() for n in _files(folder)} == before
    with torch.no_grad():
        assert torch.equal(load_pini(folder, bb).predict(feats), expect)
    # a successful re-save replaces both files and leaves nothing else
    save_pini(model, folder)
    assert _files(folder) == [CONFIG_NAME, WEIGHTS_NAME]
    with torch.no_grad():
        assert torch.equal(load_pini(folder, bb).predict(feats), model.predict(feats))


# Regression test: was a bug (save_pini replaces the weights before the config is written; if writing the config
# fails (e.g. metrics JSON cannot hold), the previous checkpoint's weights are gone and its config no longer
# matches); fixed in the engine.
def test_failed_config_write_keeps_the_previous_checkpoint(bb, model, px, tmp_path):
    folder = save_pini(model, tmp_path / "ck", metrics={"test_accuracy": 50.0})
    feats = {"features": bb.encode_image(px)}
    with torch.no_grad():
        expect = model.predict(feats)
        for p in model.parameters():
            p.mul_(2.0)
    with pytest.raises(TypeError):  # a metric JSON cannot hold (a set): the config write fails
        save_pini(model, folder, metrics={"test_accuracy": 75.0, "classes_seen": {"red", "blue"}})
    assert _files(folder) == [CONFIG_NAME, WEIGHTS_NAME]
    with torch.no_grad():
        assert torch.equal(load_pini(folder, bb).predict(feats), expect)


# Regression test: was a bug (_check_backbone compares the backbone's name/pretrained strings, which for local-
# dir:/path and weights files are paths: the same weights (same fingerprint) moved or copied elsewhere are
# refused); fixed in the engine.
def test_same_weights_at_another_path_still_load(bb, tmp_path):
    from engine_fixtures import save_local_open_clip_dir
    from pini_core.backbone import load_backbone

    a = load_backbone(f"local-dir:{save_local_open_clip_dir(bb, tmp_path / 'a')}", device="cpu")
    folder = save_pini(make_model(a, seed=0, n_ctx=4), tmp_path / "ck")
    b = load_backbone(f"local-dir:{save_local_open_clip_dir(bb, tmp_path / 'b')}", device="cpu")
    assert b.identity["fingerprint"] == a.identity["fingerprint"]
    load_pini(folder, b)


# Regression test: was a bug (load_pini lets NoiseConfigError (a ValueError) escape for a config with unknown
# noise keys (a checkpoint from a newer pini_core); the CLI commands catch only CheckpointError, so users get a
# traceback); fixed in the engine.
def test_checkpoint_from_a_newer_noise_config_is_a_checkpoint_error(bb, model, tmp_path):
    """A config key this version does not know should surface as a CheckpointError (what
    the CLI catches), not as a bare NoiseConfigError."""
    folder = save_pini(model, tmp_path / "ck")
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    cfg["noise"]["future_option"] = 1
    (folder / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="future_option"):
        load_pini(folder, bb)


# ----------------------------------------------------------------- Table 8 decoding
TEMPLATE_WORDS = ["a", "photo", "of", "a"]  # "a photo of a {}." -> words before the class name


def _zero_noise_model(bb, n_ctx=4):
    m = make_model(bb, seed=0, n_ctx=n_ctx, visual_location="none")
    with torch.no_grad():
        m.text_gen.mu.zero_()
        m.text_gen.sigma_raw.zero_()
    return m


@pytest.mark.parametrize("mode", ["sample", "mean"])
def test_decoding_zero_noise_returns_the_template_words(bb, mode):
    model = _zero_noise_model(bb)
    rows = decode_prompt_noise(model, n_draws=12, k=3, seed=0, mode=mode)
    assert [r["position"] for r in rows] == [1, 2, 3, 4]
    assert [r["token"] for r in rows] == TEMPLATE_WORDS
    for r in rows:
        assert not r["placeholder"]
        assert len(r["words"]) == 3
        assert r["words"][0] == (r["token"], 12)  # the template's own word, in every draw
    table = format_table8(rows)
    assert table.splitlines()[0] == "| Position | 1 | 2 | 3 |"
    assert "| 2 (photo) | photo (12) |" in table


def test_decoding_with_placeholders_and_cosine(bb):
    model = _zero_noise_model(bb, n_ctx=2)
    rows = decode_prompt_noise(model, n_draws=5, k=2, metric="cosine", include_placeholders=True)
    assert [r["token"] for r in rows] == ["x", "x", *TEMPLATE_WORDS]
    assert [r["placeholder"] for r in rows] == [True, True, False, False, False, False]
    assert all(r["words"][0] == (r["token"], 5) for r in rows)


def test_decoding_real_noise_moves_away_from_the_template(bb):
    model = _zero_noise_model(bb)
    with torch.no_grad():
        model.text_gen.sigma_raw.fill_(1.0)  # noise far larger than the word embeddings
    rows = decode_prompt_noise(model, n_draws=20, k=5, seed=1)
    assert any(r["words"][0] != (r["token"], 20) for r in rows)
    assert all(sum(c for _, c in r["words"]) <= 20 * 5 for r in rows)


def test_decoding_needs_prompt_noise(bb):
    model = make_model(bb, seed=0, text_location="feature", text_generator="le")
    with pytest.raises(DecodeError, match="Train with --text-location prompt"):
        decode_prompt_noise(model)
    with pytest.raises(DecodeError, match=">= 1"):
        decode_prompt_noise(_zero_noise_model(bb), n_draws=0)
