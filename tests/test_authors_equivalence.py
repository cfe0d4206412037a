"""The project's generators in the authors' configuration equal the authors' computation
(issue 14 item 5), on tiny random-init models.

Each reference below is written out here, in plain torch, from METHOD.md ("Facts from the
authors' PiNI code", "More facts from the authors' code") and the paper's equations: Eq. 2
(logits = exp(logit_scale) * cos), Eq. 12 / 14 (noise = mu + sigma * eps). The reference path
calls no pini_core code: it reads the generators' parameters (the same tensors, so gradients
are comparable) and the frozen CLIP's / host's own modules, and uses the same eps as the
project (read back from the project's outputs, or passed to both). Compared within 1e-5:
mu, sigma, the noisy features, the logits, and the gradients of the cross-entropy with
respect to every generator parameter.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from engine_fixtures import TEMPLATE, colour_data, pixels_of, shared_backbone

from pini_core.experiment import preset_config
from pini_core.model import PiNIModel
from pini_core.noise import NoiseConfig
from pini_core.noise.config import AUTHORS_CNN_NOISE, AUTHORS_NOISE

TOL = dict(rtol=1e-5, atol=1e-5)
CLASSES = ["red", "blue", "green"]
N_CTX = 16  # the authors' "x" placeholders


@pytest.fixture(scope="module")
def bb():
    return shared_backbone()


@pytest.fixture(scope="module")
def batch(bb):
    data = colour_data(per_class=2, classes=CLASSES, seed=3)
    return pixels_of(bb, data), torch.tensor([y for _, y in data])


def _grads(loss, params):
    return torch.autograd.grad(loss, params, retain_graph=True)


def _close_grads(got, ref, names):
    for name, g, r in zip(names, got, ref):
        assert r.abs().max() > 0 or g.abs().max() == 0, name
        torch.testing.assert_close(g, r, **TOL, msg=lambda m, n=name: f"gradient of {n}: {m}")


# ------------------------------------------------------------------ reference: CLIP text side
def _ref_encode_text_from_embeddings(clip, embeds, ids):
    """CoOp-style text encoder (METHOD.md): + positional embedding, transformer with the causal
    mask, ln_final, the EOT position (highest token id), projection."""
    x = embeds + clip.positional_embedding
    x = clip.transformer(x, attn_mask=clip.attn_mask)
    x = clip.ln_final(x)
    x = x[torch.arange(x.shape[0]), ids.argmax(dim=-1)]
    return x @ clip.text_projection


def _ref_logits(clip, img, txt):
    """Eq. 2: exp(logit_scale) * cos(image, text), both sides L2-normalised."""
    img = img / img.norm(dim=-1, keepdim=True)
    txt = txt / txt.norm(dim=-1, keepdim=True)
    return clip.logit_scale.exp() * img @ txt.t()


# ------------------------------------------------------------------ the authors' configuration
def test_the_authors_preset_uses_the_authors_noise_settings():
    noise = preset_config("authors").noise
    for key, value in AUTHORS_NOISE.items():
        assert getattr(noise, key) == value, key
    # the paper's preset keeps sigma >= 0 on both sides and the 1/sqrt(d) scaling
    paper = preset_config("paper").noise
    assert paper.ca_scale and paper.sigma == "abs" and paper.text_sigma_mode == "abs"


def test_text_sigma_modes():
    assert NoiseConfig().text_sigma_mode == "abs"
    assert NoiseConfig(sigma="exp").text_sigma_mode == "exp"  # "same" follows sigma (old configs)
    assert NoiseConfig(text_sigma="none").text_sigma_mode == "none"
    with pytest.raises(ValueError, match="text_sigma"):
        NoiseConfig(text_sigma="relu")


# ------------------------------------------------------------------ visual CA + prompt LE
def test_visual_ca_and_prompt_le_equal_the_authors_computation(bb, batch):
    pixels, labels = batch
    clip = bb.model
    torch.manual_seed(5)
    model = PiNIModel(bb, CLASSES, TEMPLATE, NoiseConfig(**AUTHORS_NOISE))
    with torch.no_grad():  # give mu_t / sigma_t a visible size (init N(0, 0.02) is tiny)
        model.text_gen.mu.normal_(0, 0.3)
        model.text_gen.sigma_raw.normal_(0, 0.3)
    model.train()
    with torch.no_grad():
        feats = clip.encode_image(pixels)  # the pooled image embedding
    gen = torch.Generator().manual_seed(11)
    out = model.run({"features": feats}, draws=1, mode="sample", generator=gen, keep_extras=True)
    ex = out.extras
    loss = F.cross_entropy(out.logits[0], labels)
    ca = model.visual_gen
    params = [ca.attn.q.weight, ca.attn.q.bias, ca.attn.k.weight, ca.attn.k.bias, ca.attn.v.weight, ca.attn.v.bias,
              ca.heads.mu.weight, ca.heads.mu.bias, ca.heads.sigma.weight, ca.heads.sigma.bias,
              model.text_gen.mu, model.text_gen.sigma_raw]
    names = ["Wq", "bq", "Wk", "bk", "Wv", "bv", "W_mu", "b_mu", "W_sigma", "b_sigma", "mu_t", "sigma_t"]
    got = _grads(loss, params)

    # ---- the authors' computation, written out
    tok = bb.tokenizer  # open_clip's tokenizer
    context = " ".join(["x"] * N_CTX) + " a photo of a"  # 16 "x" + the template, class name last
    prompts = [f"{context} {c}." for c in CLASSES]
    ids = tok(prompts)
    p_len = len(tok.encode(context))  # template_len: the rows of mu_t, sigma_t
    mu_t, sigma_t = model.text_gen.mu, model.text_gen.sigma_raw  # [template_len, D_tok]
    assert mu_t.shape == (p_len, clip.token_embedding.weight.shape[1])
    eps_t = ex["text_eps"][0]  # ONE draw, shared by all classes
    noise_t = mu_t + sigma_t * eps_t  # Eq. 12, sigma_t used raw as a std
    emb = clip.token_embedding.weight[ids]  # [C, L, W]
    emb = torch.cat([emb[:, :1], emb[:, 1:1 + p_len] + noise_t, emb[:, 1 + p_len:]], dim=1)  # SOS/class/EOS fixed
    text = _ref_encode_text_from_embeddings(clip, emb, ids)  # un-normalised, not detached

    def linear(x, lin):
        return x @ lin.weight.t() + lin.bias

    q = linear(feats.detach(), ca.attn.q)  # query: the detached pooled image embedding
    k, v = linear(text, ca.attn.k), linear(text, ca.attn.v)  # keys/values: the per-class text features
    attn = torch.softmax(q @ k.t(), dim=-1)  # single head, no 1/sqrt(d)
    o = attn @ v
    mu_v = linear(o, ca.heads.mu)
    sigma_v = linear(o, ca.heads.sigma).abs()
    img = feats + mu_v + sigma_v * ex["visual_eps"][0]  # noise added to the image embedding
    logits = _ref_logits(clip, img, text)
    ref = _grads(F.cross_entropy(logits, labels), params)

    torch.testing.assert_close(ex["text_mu"], mu_t, **TOL)
    torch.testing.assert_close(ex["text_sigma"], sigma_t, **TOL)
    assert (ex["text_sigma"] < 0).any()  # raw: no positivity constraint
    torch.testing.assert_close(out.text_features[0], text, **TOL)
    torch.testing.assert_close(ex["visual_attention"][0], attn, **TOL)
    torch.testing.assert_close(ex["visual_mu"][0], mu_v, **TOL)
    torch.testing.assert_close(ex["visual_sigma"][0], sigma_v, **TOL)
    torch.testing.assert_close(out.image_features[0], img, **TOL)
    torch.testing.assert_close(out.logits[0], logits, **TOL)
    _close_grads(got, ref, names)


def test_the_authors_test_time_is_one_random_draw_per_batch(bb, batch):
    """`single` (the authors' eval mode): one random draw, not eps = 0 and not an average."""
    pixels, _ = batch
    torch.manual_seed(5)
    model = PiNIModel(bb, CLASSES, TEMPLATE, NoiseConfig(**AUTHORS_NOISE)).eval()
    with torch.no_grad():
        feats = bb.model.encode_image(pixels)
        one = model.predict({"features": feats}, mode="single", generator=torch.Generator().manual_seed(1))
        same = model.run({"features": feats}, 1, "sample", torch.Generator().manual_seed(1)).logits[0]
        mean = model.predict({"features": feats}, mode="mean")
    torch.testing.assert_close(one, same, rtol=0, atol=0)
    assert not torch.allclose(one, mean)


# ------------------------------------------------------------------ the authors' raw-image CNN
def _ref_bn(x, bn, training):
    """BatchNorm2d: batch statistics (biased variance) in training, running ones otherwise."""
    if training:
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    x = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + bn.eps)
    return x * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]


def _ref_cnn(gen, pixels, training, level=0.1):
    """METHOD.md: a BatchNorm ResNet on the normalised image at full resolution - 3x3 stem (64),
    basic blocks of widths 64/128/64, 2/1/1 blocks (1x1 conv + BN shortcut where the width
    changes), two 3x3 heads (mu, sigma); each head's channel L2-normalised over the pixels and
    rescaled by sqrt(H*W) * 0.1; sigma = |.|."""
    conv = lambda x, w: F.conv2d(x, w, padding=w.shape[-1] // 2)  # noqa: E731  (stride 1, same size)
    h = F.relu(_ref_bn(conv(pixels, gen.stem[0].weight), gen.stem[1], training))
    widths = [64, 64, 128, 64]  # blocks 2, 1, 1 of widths 64, 128, 64
    assert [b.conv1.weight.shape[0] for b in gen.blocks] == widths
    for b, width in zip(gen.blocks, widths):
        y = F.relu(_ref_bn(conv(h, b.conv1.weight), b.bn1, training))
        y = _ref_bn(conv(y, b.conv2.weight), b.bn2, training)
        short = h if h.shape[1] == width else _ref_bn(conv(h, b.shortcut[0].weight), b.shortcut[1], training)
        h = F.relu(y + short)
    n, c, hh, ww = pixels.shape

    def energy(t):
        flat = t.reshape(n, c, hh * ww)
        return (flat / flat.norm(dim=-1, keepdim=True) * math.sqrt(hh * ww) * level).reshape(n, c, hh, ww)

    return energy(conv(h, gen.mu_head.weight)), energy(conv(h, gen.sigma_head.weight)).abs()


@pytest.mark.parametrize("training", [True, False])
def test_authors_cnn_generator_equals_the_authors_computation(bb, batch, training):
    """Train mode (BatchNorm on batch statistics): the parameter gradients are compared in
    float64, given the fp32 pipeline's gradient at mu and sigma (itself compared in fp32).
    In fp32 the backward through batch-statistics BatchNorm is ill-conditioned: two correct
    fp32 implementations (oneDNN's conv and PyTorch's own) differ by ~0.3 % relative there,
    while float64 agrees to 1e-12. Eval mode (running statistics) is compared in fp32 end to end."""
    pixels, labels = batch
    clip = bb.model
    torch.manual_seed(7)
    model = PiNIModel(bb, CLASSES, TEMPLATE, NoiseConfig(**AUTHORS_CNN_NOISE))
    gen_mod = model.visual_gen
    assert 4e5 < sum(p.numel() for p in gen_mod.parameters()) < 6e5  # ~0.5 M parameters
    if not training:  # non-trivial running statistics
        with torch.no_grad():
            for m in gen_mod.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.normal_(0, 0.1)
                    m.running_var.uniform_(0.5, 2.0)
    model.train(training)
    state = {k: v.clone() for k, v in gen_mod.state_dict().items()}  # before the running stats move
    params = [p for _, p in gen_mod.named_parameters()]
    names = [n for n, _ in gen_mod.named_parameters()]
    box = {}
    hook = gen_mod.register_forward_hook(lambda m, a, o: box.update(mu=o[0], sigma=o[1]))
    try:
        out = model.run({"pixels": pixels}, draws=1, mode="sample", generator=torch.Generator().manual_seed(2),
                        keep_extras=True)
    finally:
        hook.remove()
    loss = F.cross_entropy(out.logits[0], labels)
    got_up = _grads(loss, [box["mu"], box["sigma"]])
    got = _grads(loss, params) if not training else None
    ex = out.extras

    if training:
        gen_mod.load_state_dict(state)
    mu, sigma = _ref_cnn(gen_mod, pixels, training)
    noisy = pixels + mu + sigma * ex["visual_eps"][0]
    img = clip.encode_image(noisy)
    with torch.no_grad():  # fixed hand-written prompts, text features detached, no text noise
        text = clip.encode_text(bb.tokenizer([TEMPLATE.format(c) for c in CLASSES]))
    logits = _ref_logits(clip, img, text)
    ref_loss = F.cross_entropy(logits, labels)

    torch.testing.assert_close(ex["visual_mu"][0], mu, **TOL)
    torch.testing.assert_close(ex["visual_sigma"][0], sigma, **TOL)
    # fixed energy: every channel of every image has per-pixel RMS 0.1, whatever the weights
    torch.testing.assert_close(mu.pow(2).mean(dim=(2, 3)).sqrt(), torch.full(mu.shape[:2], 0.1), **TOL)
    torch.testing.assert_close(ex["noisy_pixels"][0], noisy.detach(), **TOL)
    torch.testing.assert_close(out.text_features[0], text, **TOL)
    torch.testing.assert_close(out.image_features[0], img, **TOL)
    torch.testing.assert_close(out.logits[0], logits, **TOL)
    assert not any(k.startswith("text_") for k in ex)  # no text noise
    _close_grads(got_up, _grads(ref_loss, [mu, sigma]), ["dL/dmu", "dL/dsigma"])
    if not training:
        _close_grads(got, _grads(ref_loss, params), names)
        return
    # float64: the project's module and the reference, same weights, same upstream gradient
    gen64 = copy.deepcopy(gen_mod).double().train()
    gen64.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in state.items()})
    p64 = list(gen64.parameters())
    up = [g.double() for g in got_up]
    x64 = pixels.double()
    got64 = torch.autograd.grad(gen64(x64), p64, grad_outputs=up)
    ref64 = torch.autograd.grad(_ref_cnn(gen64, x64, True), p64, grad_outputs=up)
    _close_grads(got64, ref64, names)


# ------------------------------------------------------------------ MuNG: LLaVA and Qwen codes
def _ref_mung(gen, visual, keys, eps, scale, sigma_fn):
    """MuNG (METHOD.md): multi-head cross-attention, queries = the image's projected visual
    tokens [N, d], keys/values = the word embeddings of its key tokens [T, d]; out-projection;
    mu = Linear(o), sigma = sigma_fn(Linear(o)); noise = mu + sigma * eps added to the tokens."""
    lin = lambda x, m: x @ m.weight.t() + m.bias  # noqa: E731
    ca = gen.cross_attn
    h = ca.num_heads
    split = lambda x: x.reshape(x.shape[0], h, -1).transpose(0, 1)  # noqa: E731  [H, n, d/H]
    q, k, v = split(lin(visual, ca.q_proj)), split(lin(keys, ca.k_proj)), split(lin(keys, ca.v_proj))
    attn = torch.softmax(q @ k.transpose(1, 2) * scale, dim=-1)  # [H, N, T]
    o = lin((attn @ v).transpose(0, 1).reshape(visual.shape[0], -1), ca.out_proj)
    mu, sigma = lin(o, gen.mu_head), sigma_fn(lin(o, gen.sigma_head))
    return mu, sigma, visual + mu + sigma * eps


def _replace_output(module, new):
    """A plain forward hook that swaps the module's output for `new` (reference logits)."""
    def hook(m, args, kwargs, output):
        if hasattr(output, "pooler_output"):
            output.pooler_output = new
            return output
        return new
    return module.register_forward_hook(hook, with_kwargs=True)


def _capture_output(module):
    box = {}

    def hook(m, args, output):
        box["out"] = (output.pooler_output if hasattr(output, "pooler_output") else output).detach().clone()
    return box, module.register_forward_hook(hook)


def _mung_grads_close(gen, loss, ref_loss):
    names = [n for n, _ in gen.named_parameters()]
    params = [p for _, p in gen.named_parameters()]
    _close_grads(_grads(loss, params), _grads(ref_loss, params), names)


def test_mung_llava_code_equals_the_authors_computation():
    from pini_core.mung.config import mung_preset
    from pini_core.mung.generator import MuNGGenerator
    from pini_core.mung.injector import attach
    from pini_core.mung.tiny_hosts import llava_tokens_per_image, tiny_llava

    host = tiny_llava(seed=0)
    cfg = host.config
    n_img, d = llava_tokens_per_image(cfg), cfg.text_config.hidden_size
    img_id = cfg.image_token_id
    # system prompt / "USER:" before the image, question + answer after it; right padding
    rows = [([3, 4], [5, 6, 7], [10, 11]), ([3], [8, 9], [12])]
    length = max(len(a) + n_img + len(b) + len(c) for a, b, c in rows)
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (pre, q, ans) in enumerate(rows):
        r = pre + [img_id] * n_img + q + ans
        ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), 1
        labels[i, len(r) - len(ans):len(r)] = torch.tensor(ans)
    size = cfg.vision_config.image_size
    batch = dict(input_ids=ids, attention_mask=mask,
                 pixel_values=torch.randn(len(rows), 3, size, size, generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(4)
    gen = MuNGGenerator(mung_preset("llava_code", d, d, num_heads=8, host_family="llava"))
    assert (gen.config.attn_scale, gen.config.init, gen.config.sigma, gen.config.keys) == \
        ("model", "default", "abs", "after_image")
    eps = torch.randn(len(rows), n_img, d, generator=torch.Generator().manual_seed(9))

    proj = host.model.multi_modal_projector
    box, h = _capture_output(proj)
    with torch.no_grad():
        host(**batch)
    h.remove()
    clean = box["out"]  # [B, N, d] projected visual tokens

    inj = attach(host, gen)
    with inj.settings(eps=eps):
        out = host(**batch, labels=labels)
    rec = inj.last
    inj.detach()

    wte = host.get_input_embeddings().weight
    ref_noisy, ref_mu, ref_sigma = [], [], []
    for i, (pre, q, ans) in enumerate(rows):
        key_ids = torch.tensor(q + ans)  # the text after the image, the answer included
        assert rec.text_ids[i].tolist() == key_ids.tolist()
        mu, sigma, noisy = _ref_mung(gen, clean[i], wte[key_ids], eps[i], 1 / math.sqrt(d), torch.abs)
        ref_mu.append(mu), ref_sigma.append(sigma), ref_noisy.append(noisy)
    ref_noisy = torch.stack(ref_noisy)
    torch.testing.assert_close(rec.output.mu, torch.stack(ref_mu), **TOL)
    torch.testing.assert_close(rec.output.sigma, torch.stack(ref_sigma), **TOL)
    torch.testing.assert_close(rec.output.tokens, ref_noisy, **TOL)
    h = _replace_output(proj, ref_noisy)
    try:
        ref_out = host(**batch, labels=labels)
    finally:
        h.remove()
    torch.testing.assert_close(out.logits, ref_out.logits, **TOL)
    _mung_grads_close(gen, out.loss, ref_out.loss)


def test_mung_qwen_code_equals_the_authors_computation():
    from pini_core.mung.config import mung_preset
    from pini_core.mung.generator import MuNGGenerator
    from pini_core.mung.injector import attach
    from pini_core.mung.tiny_hosts import qwen_batch, tiny_qwen25vl

    host = tiny_qwen25vl(seed=0)
    cfg = host.config
    d = cfg.text_config.hidden_size
    batch = qwen_batch(host, [[5, 6, 7, 8], [9, 10]], [(4, 4), (4, 4)], seed=0)  # left padding in row 1
    ids = batch["input_ids"]
    labels = torch.full_like(ids, -100)
    labels[:, -1] = ids[:, -1]  # the answer: the last token
    torch.manual_seed(4)
    gen = MuNGGenerator(mung_preset("authors", d, d, num_heads=8, host_family="qwen2_5_vl"))
    assert (gen.config.attn_scale, gen.config.init, gen.config.sigma, gen.config.keys) == \
        ("head", "xavier", "exp", "non_image")
    n_img = 4  # 4x4 patches, merge 2 -> 4 tokens per image
    eps = torch.randn(2, n_img, d, generator=torch.Generator().manual_seed(9))

    visual = host.model.visual
    box, h = _capture_output(visual)
    with torch.no_grad():
        host(**batch)
    h.remove()
    clean = box["out"].reshape(2, n_img, d)

    inj = attach(host, gen)
    with inj.settings(eps=eps):
        out = host(**batch, labels=labels)
    rec = inj.last
    inj.detach()

    wte = host.get_input_embeddings().weight
    ref_noisy, ref_mu, ref_sigma = [], [], []
    for i in range(2):
        key_ids = ids[i][ids[i] != cfg.image_token_id]  # every non-image token: padding, vision start/end, answer
        assert rec.text_ids[i].tolist() == key_ids.tolist()
        mu, sigma, noisy = _ref_mung(gen, clean[i], wte[key_ids], eps[i], 1 / math.sqrt(d // 8), torch.exp)
        ref_mu.append(mu), ref_sigma.append(sigma), ref_noisy.append(noisy)
    ref_noisy = torch.stack(ref_noisy)
    torch.testing.assert_close(rec.output.mu, torch.stack(ref_mu), **TOL)
    torch.testing.assert_close(rec.output.sigma, torch.stack(ref_sigma), **TOL)
    torch.testing.assert_close(rec.output.tokens, ref_noisy, **TOL)
    h = _replace_output(visual, ref_noisy.reshape(-1, d))
    try:
        ref_out = host(**batch, labels=labels)
    finally:
        h.remove()
    torch.testing.assert_close(out.logits, ref_out.logits, **TOL)
    _mung_grads_close(gen, out.loss, ref_out.loss)


def test_mung_code_inits_and_recipes():
    from pini_core.mung.config import MUNG_RECIPES, MuNGConfig, mung_preset
    from pini_core.mung.generator import MuNGGenerator
    from pini_core.mung.train import warmup_steps

    d = 32
    torch.manual_seed(0)
    qwen = MuNGGenerator(mung_preset("qwen_code", d, d))
    bound = math.sqrt(6 / (d + d))  # Xavier-uniform weights, PyTorch-default biases
    for m in qwen.modules():
        if isinstance(m, torch.nn.Linear):
            assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.8 * bound
            assert m.bias.abs().max() <= 1 / math.sqrt(d) and m.bias.abs().max() > 0
    torch.manual_seed(1)
    llava = MuNGGenerator(mung_preset("llava_code", d, d))
    torch.manual_seed(1)
    plain = [torch.nn.Linear(d, d) for _ in range(6)]  # q, k, v, out, mu, sigma: PyTorch's default init
    for a, b in zip([m for m in llava.modules() if isinstance(m, torch.nn.Linear)], plain):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert MuNGConfig.from_dict({"visual_dim": d, "text_dim": d}).keys == "prompt"  # old configs
    r = MUNG_RECIPES["qwen_code"]
    assert (r.lr, r.weight_decay, r.betas[1], warmup_steps(r, 1000)) == (5e-4, 0.1, 0.95, 10)
    r = MUNG_RECIPES["llava_code"]
    assert (r.lr, r.weight_decay, warmup_steps(r, 1000)) == (2e-4, 0.0, 30)
    assert warmup_steps(MUNG_RECIPES["project"], 500) == 25
