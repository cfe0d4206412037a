"""Issue 12, engine side, backbones: an OpenAI-style TorchScript .pt passed as a weights
file loads (read as open_clip reads OpenAI files, nothing unpickled); unreadable files get
a message never cut mid-word that never suggests weights_only=False; a network that accepts
connections and never answers fails fast."""
from __future__ import annotations

import argparse
import socket
import threading
import time

import open_clip
import pytest
import torch

from engine_fixtures import OTHER_CFG, TINY_CFG, TINY_NAME, shared_backbone
from pini_core.backbone import BackboneError, _short, load_backbone
from pini_core.errors import ModelLoadError


@pytest.fixture(scope="module")
def bb():
    return shared_backbone()


def _scripted(bb, path, cfg=None):
    """A TorchScript CLIP made offline: open_clip's model with `bb`'s weights, torch.jit.script."""
    model = open_clip.create_model(TINY_NAME, pretrained=None)
    if cfg is None:
        model.load_state_dict(bb.model.state_dict())
    torch.jit.save(torch.jit.script(model.eval()), str(path))
    return path


def test_a_torchscript_clip_loads_as_its_weights(bb, tmp_path):
    path = _scripted(bb, tmp_path / "ViT-tiny.pt")
    loaded = load_backbone(TINY_NAME, pretrained=str(path), model_cfg=TINY_CFG, device="cpu")
    assert loaded.identity["fingerprint"] == bb.identity["fingerprint"]  # every weight byte-identical
    act = loaded.model.transformer.resblocks[0].mlp.gelu
    assert type(act).__name__ == "QuickGELU"  # OpenAI's CLIPs use QuickGELU, as open_clip's openai tags
    assert loaded.encode_text(["a photo of a cat."]).shape == (1, TINY_CFG["embed_dim"])


def test_a_torchscript_of_another_architecture_is_named(bb, tmp_path):
    load_backbone("pini-test-other", model_cfg=OTHER_CFG, device="cpu")
    other = open_clip.create_model("pini-test-other", pretrained=None)
    path = tmp_path / "other.pt"
    torch.jit.save(torch.jit.script(other.eval()), str(path))
    with pytest.raises(BackboneError) as e:
        load_backbone(TINY_NAME, pretrained=str(path), model_cfg=TINY_CFG, device="cpu")
    msg = str(e.value)
    assert msg.startswith(f"The TorchScript archive {path} does not hold a {TINY_NAME} model (")
    assert msg.endswith("Check that the file belongs to this model name (open_clip naming).")
    assert "\n" not in msg and "weights_only" not in msg


def test_a_pickle_with_objects_is_refused_without_suggesting_weights_only_false(bb, tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": bb.model.state_dict(), "args": argparse.Namespace(lr=1)}, str(path))
    with pytest.raises(BackboneError) as e:
        load_backbone(TINY_NAME, pretrained=str(path), model_cfg=TINY_CFG, device="cpu")
    msg = str(e.value)
    assert "weights_only" not in msg and "weights only" not in msg.lower()
    assert "a pickle holding Python objects besides tensors, which pini_core does not load" in msg
    assert msg.endswith("Check that the file belongs to this model name (open_clip naming).")
    assert isinstance(e.value, ModelLoadError)


def test_a_wrong_weights_file_message_is_cut_at_a_word(bb, tmp_path):
    from safetensors.torch import save_file

    other = open_clip.create_model("pini-test-other", pretrained=None) if "pini-test-other" in \
        open_clip.list_models() else None
    if other is None:
        load_backbone("pini-test-other", model_cfg=OTHER_CFG, device="cpu")
        other = open_clip.create_model("pini-test-other", pretrained=None)
    path = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    with pytest.raises(BackboneError) as e:
        load_backbone(TINY_NAME, pretrained=str(path), model_cfg=TINY_CFG, device="cpu")
    msg = str(e.value)
    assert msg.startswith(f"Could not load weights file {path} into {TINY_NAME}: ")
    assert msg.endswith(" ... Check that the file belongs to this model name (open_clip naming).")
    detail = msg[len(f"Could not load weights file {path} into {TINY_NAME}: "):msg.index(" ... Check that")]
    assert detail.startswith("Error(s) in loading state_dict for CLIP: ") and len(detail) <= 300
    import re
    words = set(re.split(r"\s+", " ".join(str(e.value.__cause__).split())))
    assert detail.split()[-1] in {w.rstrip(",;:") for w in words}  # the last word shown is a whole word
    assert "\n" not in msg


def test_short_never_cuts_a_word():
    text = "size mismatch for visual.conv1.weight: copying a param with shape torch.Size([32, 3, 8, 8])"
    assert _short(text, 200) == text
    cut = _short(text, 40)
    assert cut == "size mismatch for visual.conv1.weight ..."
    assert _short("x" * 50, 10) == "x" * 10 + " ..."  # one endless word: a hard cut is all there is


# ----------------------------------------------------------------------------- item 18: hanging network

@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held = []

    def accept():
        while True:
            try:
                held.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}", held
    srv.close()
    for c in held:
        c.close()


def test_a_pretrained_tag_fails_fast_when_the_network_never_answers(silent_server, tmp_path, monkeypatch):
    from huggingface_hub import constants

    endpoint, held = silent_server
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    t0 = time.monotonic()
    with pytest.raises(BackboneError) as e:
        load_backbone("RN50", "openai", device="cpu", cache_dir=str(tmp_path / "cache"), timeout=1.0)
    took = time.monotonic() - t0
    assert took < 10, f"took {took:.1f} s"
    assert held, "the probe never reached the server"
    msg = str(e.value)
    assert msg.startswith(f"Pretrained weights for RN50 (openai) are not in the cache ({tmp_path / 'cache'}) and "
                          f"the hub at {endpoint} cannot be reached (no answer within 1 s): offline?")
    assert "--model embedded" in msg


def test_hub_request_timeouts_are_capped_unless_the_user_set_them(monkeypatch):
    from huggingface_hub import constants

    from pini_core.backbone import HUB_REQUEST_TIMEOUT, _limit_hub_timeouts

    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 10)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 60)
    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "60")
    _limit_hub_timeouts()
    assert constants.HF_HUB_ETAG_TIMEOUT == HUB_REQUEST_TIMEOUT == 8
    assert constants.HF_HUB_DOWNLOAD_TIMEOUT == 60  # the user's own setting is kept
