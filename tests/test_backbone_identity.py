"""One of each (issue 11, item 5): the backbone-spec parser, the weight identities, the CLIP
normalisation constants and the embedded-model loader each have one home in
pini_core/backbone.py, and the identities recorded in the shipped artefacts still match."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pini_core import backbone
from pini_core.backbone import BackboneSpec, parse_backbone_spec, weights_identity
from pini_core.errors import ConfigError, PiniError

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text, expect", [
    ("embedded", ("embedded", "embedded", None)),
    (" ViT-B-16:openai ", ("ViT-B-16:openai", "ViT-B-16", "openai")),
    ("RN50:/w/rn50.pt", ("RN50:/w/rn50.pt", "RN50", "/w/rn50.pt")),
    ("local-dir:/m/x", ("local-dir:/m/x", "local-dir:/m/x", None)),
    ("hf-hub:org/name", ("hf-hub:org/name", "hf-hub:org/name", None)),
    ("ViT-B-16:openai=ViT-B-16:/w/b16.pt", ("ViT-B-16:openai", "ViT-B-16", "/w/b16.pt")),
    ("mine=local-dir:/m/x", ("mine", "local-dir:/m/x", None)),
    ("RN50:", ("RN50:", "RN50", None)),
])
def test_one_parser_reads_every_spec(text, expect):
    spec = parse_backbone_spec(text)
    assert (spec.label, spec.name, spec.pretrained) == expect
    assert BackboneSpec.parse(text) == spec


@pytest.mark.parametrize("text, words", [("  ", "No model given"), ("=ViT-B-16", "cannot read backbone"),
                                         ("x=", "cannot read backbone"), (":openai", "no model name")])
def test_bad_specs_are_config_errors(text, words):
    with pytest.raises(ConfigError, match=words) as e:
        parse_backbone_spec(text)
    assert isinstance(e.value, PiniError)


def test_benchmark_and_app_use_the_same_parser():
    from demo import backbones as app_backbones
    from pini_core.bench import harness

    assert harness.BackboneSpec is BackboneSpec and harness.weights_identity is weights_identity
    # the app's box has no LABEL= part, so a path may contain "="
    assert app_backbones.parse_spec("ViT-B-32:/w/run=3.pt") == ("ViT-B-32", "/w/run=3.pt")
    assert parse_backbone_spec("ViT-B-32:/w/run=3.pt", allow_label=False).pretrained == "/w/run=3.pt"
    for text in ("embedded", "ViT-B-16:openai", "local-dir:/m/x", "hf-hub:org/m", "RN50"):
        spec = parse_backbone_spec(text)
        assert app_backbones.parse_spec(text) == (spec.name, spec.pretrained)


def test_weights_identity_of_the_embedded_model_is_the_one_the_shipped_bench_recorded():
    rows = [json.loads(line) for line in (ROOT / "assets" / "bench" / "results.jsonl").read_text().splitlines()
            if line.strip()]
    recorded = {r["settings"]["weights"] for r in rows if r["backbone"] == "embedded"}
    assert recorded == {weights_identity(BackboneSpec("embedded", "embedded"))}
    assert next(iter(recorded)).startswith("files:")
    # a hub tag is its own identity; a missing folder falls back to the name
    assert weights_identity(BackboneSpec("b16", "ViT-B-16", "openai")) == "ViT-B-16:openai"


def test_weights_identity_follows_the_files(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text("{}")
    (folder / "open_clip_model.safetensors").write_bytes(b"a" * 100)
    (folder / "notes.json").write_text("side file, not the model")
    spec = BackboneSpec("mine", f"local-dir:{folder}")
    first = weights_identity(spec)
    (folder / "notes.json").write_text("changed")
    assert weights_identity(spec) == first
    (folder / "open_clip_model.safetensors").write_bytes(b"b" * 100)  # retrained weights, same size
    assert weights_identity(spec) != first
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"c" * 10)
    assert weights_identity(BackboneSpec("x", "RN50", str(weights))).startswith("files:")


def test_loaded_fingerprint_matches_the_shipped_checkpoint_and_bench():
    bb = backbone.load_backbone("embedded", device="cpu")
    cfg = json.loads((ROOT / "checkpoints" / "pini" / "toy-clutter" / "pini_config.json").read_text())
    assert bb.identity["fingerprint"] == cfg["backbone"]["fingerprint"]
    rows = (ROOT / "assets" / "bench" / "results.jsonl").read_text().splitlines()
    assert {json.loads(r)["backbone_fingerprint"] for r in rows if r.strip()} == {bb.identity["fingerprint"]}


def test_one_copy_of_the_clip_normalisation():
    from pini_core.data import transforms

    assert transforms.CLIP_MEAN is backbone.CLIP_MEAN and transforms.CLIP_STD is backbone.CLIP_STD
    assert backbone.Backbone.__dataclass_fields__["mean"].default is backbone.CLIP_MEAN
    files = [p for d in ("pini_core", "demo") for p in (ROOT / d).rglob("*.py")] + [ROOT / "app.py"]
    holders = sorted(str(p.relative_to(ROOT)) for p in files if re.search(r"0\.4814546|0\.2686295", p.read_text()))
    assert holders == ["pini_core/backbone.py"], holders


def test_one_embedded_model_loader():
    """Only pini_core/backbone.py builds a CLIP from the embedded folder (open_clip local-dir)."""
    files = [p for d in ("pini_core", "demo") for p in (ROOT / d).rglob("*.py")] + [ROOT / "app.py"]
    callers = sorted(str(p.relative_to(ROOT)) for p in files
                     if re.search(r"create_model(_and_transforms)?\(\s*f?[\"']local-dir:", p.read_text()))
    assert callers == [], callers
    from pini_core.world.zeroshot import load_toyclip

    bb = load_toyclip()
    assert bb.identity["name"] == "embedded"
