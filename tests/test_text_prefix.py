"""Shared-prefix text encoding (pini_core.text_prefix) equals the full encoder
(Backbone.encode_text_embeddings) in features and gradients, and falls back on towers it
does not cover. Tiny random-init open_clip CLIPs (ViT and ResNet image towers; argmax, eos
and last pooling; LayerScale + biased projection)."""
from __future__ import annotations

import warnings

import pytest
import torch
from engine_fixtures import TINY_CFG, tiny_backbone

from pini_core import text_prefix
from pini_core.baselines.coop import CoOp
from pini_core.errors import ConfigError, PiniError
from pini_core.model import PiNIModel
from pini_core.noise import NoiseConfig

TXT = {"context_length": 40, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}
RN_CFG = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 16},
          "text_cfg": dict(TXT)}
EOS_CFG = {**TINY_CFG, "text_cfg": {**TXT, "pool_type": "eos", "eos_id": 49407}}
LAST_CFG = {**TINY_CFG, "text_cfg": {**TXT, "pool_type": "last", "ls_init_value": 0.5, "proj_bias": True}}
NOCAUSAL_CFG = {**TINY_CFG, "text_cfg": {**TXT, "no_causal_mask": True}}
QKNORM_CFG = {**TINY_CFG, "text_cfg": {**TXT, "qk_norm": True}}
# Class names of 1 to 9 BPE tokens: several suffix-length groups, padding inside groups.
CLASSES = ["cat", "golden retriever", "x", "a very long class name with many words in it", "red fox",
           "tench", "great white shark dog", "b"]
TOL = dict(rtol=1e-5, atol=1e-5)


def assert_close_scaled(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    """max |a - b| <= tol * max(1, max |b|): fp32 rounding relative to the tensor's scale
    (gradients w.r.t. N(0, 0.02) context vectors reach ~100; both paths then differ from an
    fp64 reference by ~6e-5 absolute, i.e. ~1e-6 relative)."""
    assert a.shape == b.shape, (a.shape, b.shape)
    err, scale = float((a - b).abs().max()), max(1.0, float(b.abs().max()))
    assert err <= tol * scale, f"max abs diff {err:.3g} > {tol} x scale {scale:.3g}"

_BB = {}


def backbone(kind: str):
    cfgs = {"vit": TINY_CFG, "rn": RN_CFG, "eos": EOS_CFG, "last": LAST_CFG, "nocausal": NOCAUSAL_CFG,
            "qknorm": QKNORM_CFG}
    if kind not in _BB:
        torch.set_num_threads(1)
        _BB[kind] = tiny_backbone(seed=3, name=f"pini-test-prefix-{kind}", cfg=cfgs[kind])
    return _BB[kind]


class CountFull:
    """Counts calls of the full encoder on a backbone (to prove which path ran)."""

    def __init__(self, bb):
        self.bb, self.n = bb, 0

    def __enter__(self):
        orig = type(self.bb).encode_text_embeddings

        def wrapped(*a, **k):
            self.n += 1
            return orig(self.bb, *a, **k)

        self.bb.encode_text_embeddings = wrapped
        return self

    def __exit__(self, *exc):
        del self.bb.encode_text_embeddings


def _pini_pair(model, draws: int, mode: str):
    """Features [m, C, D] and gradients w.r.t. the LE generator's mu/sigma, both paths, same eps."""
    out = {}
    for shared in (True, False):
        model.shared_prefix = shared
        model.zero_grad()
        g = torch.Generator().manual_seed(7)
        with CountFull(model.backbone) as cnt:
            feats = model.text_features(draws, mode=mode, generator=g)
        w = torch.linspace(-1, 1, feats.numel()).view_as(feats)
        (feats * w).sum().backward()
        grads = [p.grad.clone() for p in model.text_gen.parameters()]
        out[shared] = (feats.detach(), grads, cnt.n)
    return out


@pytest.mark.parametrize("kind", ["vit", "rn", "eos", "last"])
@pytest.mark.parametrize("draws,mode", [(1, "sample"), (3, "sample"), (1, "mean")])
def test_pini_prompt_le_shared_prefix_equals_full(kind, draws, mode):
    bb = backbone(kind)
    torch.manual_seed(0)
    model = PiNIModel(bb, CLASSES, "a photo of a {}.", NoiseConfig(init_std=0.3))
    assert text_prefix.prefix_unsupported_reason(bb, model.token_ids, model.prompt_span().stop) is None
    out = _pini_pair(model, draws, mode)
    (fs, gs, n_shared), (ff, gf, n_full) = out[True], out[False]
    assert n_shared == 0 and n_full == 1  # the shared path did not call the full encoder
    assert fs.shape == (draws, len(CLASSES), bb.embed_dim)
    torch.testing.assert_close(fs, ff, **TOL)
    assert len(gs) == 2 and gs[0].abs().max() > 0  # mu
    assert (gs[1].abs().max() > 0) == (mode == "sample")  # sigma: no gradient when eps = 0
    for a, b in zip(gs, gf):
        assert_close_scaled(a, b)
    if mode == "sample" and draws > 1:  # distinct draws give distinct features
        assert (fs[0] - fs[1]).abs().max() > 1e-4


@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_coop_shared_prefix_equals_full(kind):
    bb = backbone(kind)
    coop = CoOp(bb, CLASSES, n_ctx=4, generator=torch.Generator().manual_seed(1))
    res = {}
    for shared in (True, False):
        coop.shared_prefix = shared
        coop.ctx.grad = None
        with CountFull(bb) as cnt:
            t = coop.text_features()
        (t * torch.linspace(-1, 1, t.numel()).view_as(t)).sum().backward()
        res[shared] = (t.detach(), coop.ctx.grad.clone(), cnt.n)
    assert res[True][2] == 0 and res[False][2] == 1
    assert res[True][0].shape == (len(CLASSES), bb.embed_dim)
    torch.testing.assert_close(res[True][0], res[False][0], **TOL)
    assert res[True][1].abs().max() > 0
    assert_close_scaled(res[True][1], res[False][1])


def test_direct_call_matches_reference_and_noise_gradient():
    """encode_shared_prefix on raw embeddings: [P, W] -> [C, D] and [m, P, W] -> [m, C, D];
    gradient w.r.t. the (noisy) prefix embeddings equals the full encoder's."""
    bb = backbone("vit")
    ids = bb.tokenize([f"x x x a photo of a {c}." for c in CLASSES])
    emb = bb.embed_tokens(ids).float()
    P = 8
    noise = (0.2 * torch.randn(2, P, emb.shape[-1], generator=torch.Generator().manual_seed(0))).requires_grad_()
    prefix = emb[0, :P] + noise
    a = text_prefix.encode_shared_prefix(bb, prefix, emb[:, P:], ids)
    full = bb.encode_text_embeddings(torch.cat([prefix.unsqueeze(1).expand(-1, len(CLASSES), -1, -1),
                                                emb[:, P:].unsqueeze(0).expand(2, -1, -1, -1)], 2).flatten(0, 1),
                                     ids.repeat(2, 1)).view(2, len(CLASSES), -1)
    torch.testing.assert_close(a, full, **TOL)
    ga, = torch.autograd.grad(a.pow(2).sum(), noise)
    gf, = torch.autograd.grad(full.pow(2).sum(), noise)
    assert_close_scaled(ga, gf)
    one = text_prefix.encode_shared_prefix(bb, prefix[0], emb[:, P:], ids)
    assert one.shape == (len(CLASSES), bb.embed_dim)
    torch.testing.assert_close(one, full[0], **TOL)


def test_shape_errors_are_config_errors():
    bb = backbone("vit")
    ids = bb.tokenize([f"a photo of a {c}." for c in CLASSES[:2]])
    emb = bb.embed_tokens(ids).float()
    with pytest.raises(ConfigError, match="do not make the 2 prompts of 40 tokens"):
        text_prefix.encode_shared_prefix(bb, emb[0, :5], emb[:, 6:], ids)
    with pytest.raises(ConfigError, match="pooled \\(EOT\\) token lies inside the shared prefix"):
        text_prefix.encode_shared_prefix(bb, emb[0, :30], emb[:, 30:], ids)
    assert issubclass(ConfigError, PiniError)


@pytest.mark.parametrize("kind,reason", [("nocausal", "no causal mask"),
                                         ("qknorm", "attention variant CustomResidualAttentionBlock")])
def test_fallback_on_unsupported_tower_warns_once_and_is_exact(kind, reason):
    bb = backbone(kind)
    assert reason in text_prefix.tower_unsupported_reason(bb.model)
    text_prefix._WARNED.clear()
    torch.manual_seed(0)
    model = PiNIModel(bb, CLASSES[:3], "a photo of a {}.", NoiseConfig())
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with CountFull(bb) as cnt:
            a = model.text_features(1, mode="mean")
            b = model.text_features(1, mode="mean")
    hits = [w for w in rec if issubclass(w.category, text_prefix.SharedPrefixFallbackWarning)]
    assert len(hits) == 1 and reason in str(hits[0].message)
    assert "using the full text encoder" in str(hits[0].message)
    assert cnt.n == 2  # both calls went through the full encoder
    model.shared_prefix = False
    torch.testing.assert_close(a, model.text_features(1, mode="mean"), rtol=0, atol=0)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="does not cover this text tower"):
        text_prefix.encode_shared_prefix(bb, model.prompt_embeds[0, :3], model.prompt_embeds[:, 3:],
                                         model.token_ids)


def test_fallback_when_prefix_ids_differ_and_global_switch():
    bb = backbone("vit")
    ids = bb.tokenize(["a photo of a cat.", "one photo of a dog."])
    emb = bb.embed_tokens(ids).float()
    assert "prefix token ids differ" in text_prefix.prefix_unsupported_reason(bb, ids, 3)
    text_prefix._WARNED.clear()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with CountFull(bb) as cnt:
            out = text_prefix.encode_prompts(bb, emb[0, :3], emb[:, 3:], ids)
    assert cnt.n == 1 and any("prefix token ids differ" in str(w.message) for w in rec)
    # the full encoder was fed class 0's prefix for both rows: row 0 is exactly prompt 0
    torch.testing.assert_close(out[0], bb.encode_text_embeddings(emb[:1], ids[:1])[0], **TOL)
    # global switch off: full encoder, no warning
    ids2 = bb.tokenize(["a photo of a cat.", "a photo of a dog."])
    emb2 = bb.embed_tokens(ids2).float()
    old = text_prefix.SHARED_PREFIX
    try:
        text_prefix.SHARED_PREFIX = False
        with CountFull(bb) as cnt:
            text_prefix.encode_prompts(bb, emb2[0, :5], emb2[:, 5:], ids2)
        assert cnt.n == 1
        text_prefix.SHARED_PREFIX = True
        with CountFull(bb) as cnt:
            text_prefix.encode_prompts(bb, emb2[0, :5], emb2[:, 5:], ids2)
        assert cnt.n == 0
    finally:
        text_prefix.SHARED_PREFIX = old


def test_group_lengths_minimises_padding():
    lengths = [1] * 10 + [2] * 5 + [3] * 1 + [9] * 1
    assert text_prefix.group_lengths(lengths, max_groups=1, group_cost=0) == [(1, 9)]
    # 2 groups: {1,2},{3,9}: 15*2 + 2*9 = 48 tokens (vs {1,2,3},{9}: 57; {1},{2,3,9}: 73)
    assert text_prefix.group_lengths(lengths, max_groups=2, group_cost=0) == [(1, 2), (3, 9)]
    # 3 groups: {1},{2,3},{9}: 10 + 6*3 + 9 = 37 tokens (vs {1},{2},{3,9}: 38; {1,2},{3},{9}: 42)
    assert text_prefix.group_lengths(lengths, max_groups=3, group_cost=0) == [(1, 1), (2, 3), (9, 9)]
    assert text_prefix.group_lengths([4, 4, 4], max_groups=4) == [(4, 4)]
    # a group costs group_cost tokens: 3 groups (37 + 3*8 = 61) beat 2 (48 + 16 = 64) at cost 8,
    # but not at cost 12 (73 vs 72)
    assert len(text_prefix.group_lengths(lengths, max_groups=4, group_cost=8)) == 3
    assert len(text_prefix.group_lengths(lengths, max_groups=4, group_cost=12)) == 2


def test_token_counts():
    bb = backbone("vit")
    torch.manual_seed(0)
    model = PiNIModel(bb, CLASSES, "a photo of a {}.", NoiseConfig())
    n = text_prefix.token_counts(model.token_ids, model.prompt_span().stop, bb.model)
    longest = int(model.token_ids.argmax(-1).max()) + 1
    assert n["full"] == len(CLASSES) * longest
    assert n["full_context"] == len(CLASSES) * 40
    assert model.prompt_span().stop + len(CLASSES) <= n["shared_prefix"] < n["full"] // 2


# ----------------------------------------------------------------- python -m pini_core speed
def test_speed_command_three_paths_json_and_extrapolation(tmp_path, capsys):
    import json

    from pini_core.cli import main

    out = tmp_path / "speed.json"
    assert main(["speed", "--model", "embedded", "--classes", "3,4,40", "--steps", "1", "--warmup", "0",
                 "--mem-limit-gb", "0.012", "--json", str(out), "--no-progress", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("embedded (toy CLIP), batch 32, 3,4,40 classes")
    rows = json.loads(out.read_text())
    assert [(r["classes"], r["path"]) for r in rows] == [(c, p) for c in (3, 4, 40)
                                                         for p in ("default", "shared", "authors")]
    by = {(r["classes"], r["path"]): r for r in rows}
    for c in (3, 4, 40):
        assert by[c, "authors"]["text_tokens"] == c * 40  # full 40-token context of the toy CLIP
        assert by[c, "shared"]["text_tokens"] < by[c, "default"]["text_tokens"] < by[c, "authors"]["text_tokens"]
        assert by[c, "authors"]["image_tower_per_step"] and not by[c, "shared"]["image_tower_per_step"]
        for p in ("default", "shared", "authors"):
            r = by[c, p]
            assert r["steps_per_s"] == pytest.approx(1 / r["s_per_step"]) and r["s_per_step"] > 0
            assert r["x_vs_default"] == pytest.approx(by[c, "default"]["s_per_step"] / r["s_per_step"])
            assert r["cpu_s_per_step"] > 0
            assert r["cpu_x_vs_default"] == pytest.approx(by[c, "default"]["cpu_s_per_step"] / r["cpu_s_per_step"])
    # 40 classes: default (~1 100 tokens) and authors (1 600) exceed the 12 MB activation budget
    assert by[40, "default"]["extrapolated"] and by[40, "authors"]["extrapolated"]
    assert not by[40, "shared"]["extrapolated"] and len(by[40, "shared"]["s_per_step_all"]) == 1
    assert "--mem-limit-gb 0.012" in by[40, "default"]["reason"] and "extrapolated from C=" in text
    assert "s_per_step_all" not in by[40, "default"]


def test_speed_command_rejects_bad_input(capsys):
    from pini_core.cli import main

    assert main(["speed", "--model", "ViT-Nope", "--classes", "2", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "unknown open_clip architecture 'ViT-Nope'" in err and "random-init" not in err
    assert main(["speed", "--model", "embedded", "--paths", "default,fast", "--device", "cpu"]) == 2
    assert "paths must be among" in capsys.readouterr().err
    assert main(["speed", "--model", "embedded", "--classes", "ten", "--device", "cpu"]) == 2
    assert "--classes must be a comma-separated list" in capsys.readouterr().err


def test_speed_features_cost_report(tmp_path, capsys):
    import json

    from pini_core.cli import main

    out = tmp_path / "f.json"
    assert main(["speed", "--features", "--model", "embedded", "--images", "2", "--views", "2",
                 "--target-images", "1000", "--target-views", "10", "--json", str(out), "--device", "cpu"]) == 0
    r = json.loads(out.read_text())
    assert r["storage_gb_fp16"] == pytest.approx(1000 * 10 * 64 * 2 / 1e9)
    assert r["storage_gb_fp32"] == pytest.approx(2 * r["storage_gb_fp16"])
    for k in ("s_per_view_batched", "s_per_view_decode_every_view", "s_decode_per_image", "s_augment_per_view",
              "s_tower_per_image"):
        assert r[k] > 0, k
    assert r["hours_on_this_machine"] == pytest.approx(
        (1000 * 10 * (r["s_tower_per_image"] + r["s_augment_per_view"]) + 1000 * r["s_decode_per_image"]) / 3600)
    assert "GB fp16" in capsys.readouterr().out
