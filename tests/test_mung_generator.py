"""MuNG generator: attention masking, noise modes, config and checkpoints."""
import hashlib
import json

import pytest
import torch

from pini_core.checkpoint import CheckpointError, config_digest
from pini_core.errors import PiniError
from pini_core.mung.checkpoint import (CONFIG_NAME, WEIGHTS_NAME, MuNGCheckpoint, convert_legacy, is_generator,
                                       load_generator, read_metadata, save_generator)
from pini_core.mung.config import MuNGConfig
from pini_core.mung.generator import MuNGGenerator
from pini_core.mung.tiny_hosts import tiny_llava


def _gen(sigma="abs", init="default", seed=0, d=32):
    torch.manual_seed(seed)
    return MuNGGenerator(MuNGConfig(visual_dim=d, text_dim=d, num_heads=8, sigma=sigma, init=init))


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    vis = torch.randn(3, 5, 32, generator=g)
    text = torch.randn(3, 4, 32, generator=g)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    return vis, text, mask


def test_attention_rows_sum_to_one_and_padding_gets_zero():
    gen = _gen()
    vis, text, mask = _inputs()
    out = gen(vis, text, mask)
    assert out.attn.shape == (3, 8, 5, 4)
    sums = out.attn.sum(-1)
    torch.testing.assert_close(sums[:2], torch.ones(2, 8, 5))
    assert torch.all(out.attn[0, :, :, 3] == 0) and torch.all(out.attn[1, :, :, 2:] == 0)
    assert torch.all(out.attn[2] == 0)          # a sample without text attends to nothing
    assert (out.attn[0, :, :, :3] > 0).all()


def test_samples_do_not_see_each_other_nor_padding_values():
    gen = _gen()
    vis, text, mask = _inputs()
    a = gen(vis, text, mask, mode="mean")
    text2 = text.clone()
    text2[1] = torch.randn(4, 32)            # another sample's text changes
    text2[0, 3] = 1e3                        # a padding position of sample 0 changes
    b = gen(vis, text2, mask, mode="mean")
    torch.testing.assert_close(a.mu[0], b.mu[0], rtol=0, atol=0)
    torch.testing.assert_close(a.attn[0], b.attn[0], rtol=0, atol=0)
    assert not torch.allclose(a.mu[1], b.mu[1])


@pytest.mark.parametrize("sigma", ["abs", "exp"])
def test_noise_is_reparameterised_and_modes(sigma):
    gen = _gen(sigma)
    vis, text, mask = _inputs()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    s1 = gen(vis, text, mask, generator=g1)
    s2 = gen(vis, text, mask, generator=g2)
    torch.testing.assert_close(s1.tokens, s2.tokens, rtol=0, atol=0)       # shared eps via seeded generator
    assert (s1.sigma >= 0).all()
    torch.testing.assert_close(s1.noise, s1.mu + s1.sigma * s1.eps)
    torch.testing.assert_close(s1.tokens, vis + s1.noise)
    assert s1.eps.std() > 0.5
    mean = gen(vis, text, mask, mode="mean")
    torch.testing.assert_close(mean.noise, mean.mu)
    torch.testing.assert_close(mean.tokens, vis + mean.mu)
    off = gen(vis, text, mask, mode="off")
    assert torch.equal(off.tokens, vis)
    eps = torch.randn(3, 5, 32)
    fixed = gen(vis, text, mask, eps=eps)
    torch.testing.assert_close(fixed.noise, fixed.mu + fixed.sigma * eps)
    with pytest.raises(ValueError, match="eps override has shape"):
        gen(vis, text, mask, eps=torch.randn(2, 5, 32))


def test_small_init_starts_near_identity_and_bad_inputs_are_explained():
    gen = _gen(init="small")
    vis, text, mask = _inputs()
    out = gen(vis, text, mask)
    assert out.mu.abs().max() == 0
    assert out.noise.abs().max() < 0.1
    with pytest.raises(ValueError, match="built for another host"):
        gen(torch.randn(1, 5, 16), torch.randn(1, 4, 32))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MuNGConfig(visual_dim=30, text_dim=30, num_heads=8)
    with pytest.raises(ValueError, match="sigma must be one of"):
        MuNGConfig(visual_dim=32, text_dim=32, sigma="softplus")


def test_parameter_count_matches_formula():
    for d in (32, 4096):
        cfg = MuNGConfig(visual_dim=d, text_dim=d)
        n = 6 * (d * d + d)            # q, k, v, out, mu, sigma linears
        with torch.device("meta"):
            assert MuNGGenerator(cfg).num_parameters() == n
    assert 6 * (4096 ** 2 + 4096) == 100_687_872


def test_checkpoint_roundtrip_and_dimension_mismatch(tmp_path):
    gen = _gen(sigma="exp")
    path = save_generator(gen, tmp_path / "g", metadata={"note": "x"})
    assert path == tmp_path / "g" and sorted(p.name for p in path.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    doc = json.loads((path / CONFIG_NAME).read_text())
    assert doc["format"] == "mung-generator/1" and doc["metadata"] == {"note": "x"}
    assert doc["config"]["sigma"] == "exp" and doc["num_parameters"] == gen.num_parameters()
    # the same content hashes as PiNI checkpoints: sha256 of the weights, and of the config itself
    assert doc["weights_sha256"] == hashlib.sha256((path / WEIGHTS_NAME).read_bytes()).hexdigest()
    assert doc["config_sha256"] == config_digest(doc)
    host = tiny_llava(hidden=32)
    loaded = load_generator(tmp_path / "g", host=host)
    for k, v in gen.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    with pytest.raises(CheckpointError, match="trained for a host with visual/text dims 32/32.*has 64/64"):
        load_generator(tmp_path / "g", host=tiny_llava(hidden=64))
    with pytest.raises(PiniError, match="is not a MuNG generator checkpoint: mung_config.json is missing"):
        load_generator(tmp_path / "nothing")


def test_checkpoint_refuses_edited_config_and_replaced_weights(tmp_path):
    gen = _gen()
    path = save_generator(gen, tmp_path / "g")
    cfg_file = path / CONFIG_NAME
    doc = json.loads(cfg_file.read_text())
    cfg_file.write_text(json.dumps({**doc, "config": {**doc["config"], "num_heads": 2}}))
    with pytest.raises(CheckpointError, match="was changed after the checkpoint was saved"):
        load_generator(path)
    save_generator(gen, path)  # a fresh save replaces the pair as one unit
    other = save_generator(_gen(seed=1), tmp_path / "other")
    (path / WEIGHTS_NAME).write_bytes((other / WEIGHTS_NAME).read_bytes())
    with pytest.raises(CheckpointError, match="sha256 differs"):
        load_generator(path)
    assert not [p.name for p in path.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_hub_mixin_saves_the_same_folder(tmp_path):
    gen = _gen()
    MuNGCheckpoint(gen, {"note": "hub"}).save_pretrained(tmp_path / "hub")
    assert is_generator(tmp_path / "hub") and read_metadata(tmp_path / "hub") == {"note": "hub"}
    back = MuNGCheckpoint.from_pretrained(str(tmp_path / "hub"), host=tiny_llava(hidden=32))
    assert back.metadata == {"note": "hub"}
    for k, v in gen.state_dict().items():
        assert torch.equal(v, back.generator.state_dict()[k])


def test_earlier_file_pair_is_converted_with_identical_weights(tmp_path):
    from safetensors.torch import save_file

    gen = _gen()
    state = {k: v.detach().contiguous() for k, v in gen.state_dict().items()}
    save_file(state, str(tmp_path / "old.safetensors"), metadata={"format": "pt", "kind": "mung-generator"})
    (tmp_path / "old.json").write_text(json.dumps({"kind": "mung-generator", "config": gen.config.to_dict(),
                                                   "num_parameters": gen.num_parameters(),
                                                   "metadata": {"command": "python -m pini_core mung train"}}))
    with pytest.raises(CheckpointError, match="earlier file-pair format.*mung convert --old"):
        load_generator(tmp_path / "old")
    out = convert_legacy(tmp_path / "old", tmp_path / "new")
    meta = read_metadata(out)
    assert meta["command"] == "python -m pini_core mung train"
    assert meta["converted_from"]["weights_sha256"] == hashlib.sha256(
        (tmp_path / "old.safetensors").read_bytes()).hexdigest()
    loaded = load_generator(out)
    assert all(torch.equal(state[k], loaded.state_dict()[k]) for k in state)


def test_share_of_real_hosts_from_meta_configs():
    from pini_core.mung.param_count import share_table
    rows = {r["host"]: r for r in share_table()}
    llava, qwen = rows["LLaVA-1.5-7B"], rows["Qwen2.5-VL-3B"]
    assert llava["mung_parameters"] == 6 * (4096 ** 2 + 4096)
    assert qwen["mung_parameters"] == 6 * (2048 ** 2 + 2048)
    assert abs(llava["host_parameters_meta_count"] / 7.06e9 - 1) < 0.005    # published sizes
    assert abs(qwen["host_parameters_meta_count"] / 3.75e9 - 1) < 0.005
    assert 1.4 < llava["share_of_meta_count_%"] < 1.45 and 0.65 < qwen["share_of_meta_count_%"] < 0.7
