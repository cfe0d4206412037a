"""Small parts of the app, without a server: model specs, defaults, examples, benchmark view."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from demo import backbones, bench_view, engine, examples


def test_model_default_flag_beats_env_beats_embedded(monkeypatch):
    monkeypatch.delenv(backbones.ENV_MODEL, raising=False)
    assert backbones.default_spec() == "embedded"
    monkeypatch.setenv(backbones.ENV_MODEL, "ViT-B-16:openai")
    assert backbones.default_spec() == "ViT-B-16:openai"
    assert backbones.default_spec("RN50:openai") == "RN50:openai"


@pytest.mark.parametrize("spec, expect", [
    ("embedded", ("embedded", None)),
    ("ViT-B-16:openai", ("ViT-B-16", "openai")),
    ("ViT-B-32:/w/weights.safetensors", ("ViT-B-32", "/w/weights.safetensors")),
    ("local-dir:/models/clip", ("local-dir:/models/clip", None)),
    ("hf-hub:org/model", ("hf-hub:org/model", None)),
    ("RN50", ("RN50", None)),
])
def test_parse_spec(spec, expect):
    assert backbones.parse_spec(spec) == expect


def test_empty_spec_is_explained():
    with pytest.raises(ValueError, match="No model given"):
        backbones.parse_spec("  ")


def test_custom_spec_joins_the_choices():
    specs = [s for _, s in backbones.choices_with("local-dir:/x")]
    assert specs[0] == "embedded" and specs[-1] == "local-dir:/x"
    assert len(backbones.choices_with("embedded")) == len(backbones.CHOICES)


def test_photographs_come_from_scikit_image_with_licences():
    photos = examples.photo_examples()
    assert [n for n, _ in photos] == [label for label, _ in examples.PHOTOS.values()]
    import skimage.data

    for (name, path), key in zip(photos, examples.PHOTOS):
        assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), getattr(skimage.data, key)())
    for licence in ("public domain", "CC0"):
        assert licence in examples.LICENCE_NOTE
    assert examples.examples_for("ViT-B-16:openai") == photos


def test_embedded_examples_are_the_toy_renders():
    toy = examples.examples_for("embedded")
    assert toy, "assets/examples should hold the toy world's example images"
    assert all(p.startswith(str(examples.TOY_DIR)) for _, p in toy)


def test_engine_notice_names_missing_parts(monkeypatch):
    assert engine.notice("model", "trainer") == ""
    monkeypatch.setitem(engine.PARTS, "ghost", ("pini_core.no_such_module", "x", "a ghost part"))
    note = engine.notice("ghost")
    assert "Not available yet" in note and "a ghost part" in note
    with pytest.raises(engine.EngineMissing, match="a ghost part"):
        engine.get("ghost")


def test_bench_view_shows_results_only_when_they_exist(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_view, "BENCH_DIR", tmp_path / "bench")
    table, figs, note = bench_view.bench_files()
    assert table is None and figs == [] and "has not been run" in note
    (tmp_path / "bench").mkdir()
    assert "holds no results" in bench_view.bench_files()[2]
    (tmp_path / "bench" / "tables.md").write_text("| shots | PiNI |\n|---|---|\n| 1 | 50.0 |\n")
    for name in ("fig6_gain_over_zeroshot.png", "fig5_accuracy_vs_shots.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / "bench" / name)
    table, figs, note = bench_view.bench_files()
    assert "| 1 | 50.0 |" in table and note == ""
    assert [p.rsplit("/", 1)[1] for p in figs] == ["fig5_accuracy_vs_shots.png", "fig6_gain_over_zeroshot.png"]


def test_app_threads(monkeypatch):
    monkeypatch.setenv(backbones.ENV_THREADS, "3")
    assert backbones.app_threads() == 3
    monkeypatch.setenv(backbones.ENV_THREADS, "many")
    with pytest.raises(ValueError, match="whole number"):
        backbones.app_threads()
    monkeypatch.delenv(backbones.ENV_THREADS)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert backbones.app_threads() == 1
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert backbones.app_threads() == 4


def test_a_failed_load_is_remembered_and_explained():
    spec = "NoSuchNet-42:nothing"
    with pytest.raises(Exception) as e:
        backbones.CACHE.load(spec)
    assert "Unknown open_clip model name" in backbones.CACHE.last_error(spec) == str(e.value)
    msg = backbones.failure_message(spec, e.value)
    assert msg.startswith(f"**Could not load {spec}.**") and "local-dir:" in msg and "Embedded toy CLIP" in msg
