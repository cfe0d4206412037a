"""MuNG generator: attention masking, noise modes, config and checkpoints."""
import json

import pytest
import torch

from pini_core.mung.checkpoint import load_generator, save_generator
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
    assert path.suffix == ".safetensors" and (tmp_path / "g.json").is_file()
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["config"]["sigma"] == "exp" and doc["num_parameters"] == gen.num_parameters()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    host = tiny_llava(hidden=32)
    loaded = load_generator(tmp_path / "g", host=host)
    for k, v in gen.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    with pytest.raises(ValueError, match="trained for a host with visual/text dims 32/32.*has 64/64"):
        load_generator(tmp_path / "g", host=tiny_llava(hidden=64))
    with pytest.raises(FileNotFoundError, match="missing"):
        load_generator(tmp_path / "nothing")


def test_share_of_real_hosts_from_meta_configs():
    from pini_core.mung.param_count import share_table
    rows = {r["host"]: r for r in share_table()}
    llava, qwen = rows["LLaVA-1.5-7B"], rows["Qwen2.5-VL-3B"]
    assert llava["mung_parameters"] == 6 * (4096 ** 2 + 4096)
    assert qwen["mung_parameters"] == 6 * (2048 ** 2 + 2048)
    assert abs(llava["host_parameters_meta_count"] / 7.06e9 - 1) < 0.005    # published sizes
    assert abs(qwen["host_parameters_meta_count"] / 3.75e9 - 1) < 0.005
    assert 1.4 < llava["share_of_meta_count_%"] < 1.45 and 0.65 < qwen["share_of_meta_count_%"] < 0.7
