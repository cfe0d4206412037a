"""MuNG hooks on tiny random-init LLaVA and Qwen2.5-VL hosts built from configs (offline)."""
import pytest
import torch
from torch import nn

from pini_core.mung.config import MuNGConfig
from pini_core.mung.generator import MuNGGenerator
from pini_core.mung.hosts import inspect_host
from pini_core.mung.injector import MuNGInjector, attach
from pini_core.mung.tiny_hosts import llava_batch, qwen_batch, tiny_llava, tiny_qwen25vl, tiny_qwen2vl


@pytest.fixture(scope="module")
def llava():
    return tiny_llava(seed=0)


@pytest.fixture(scope="module")
def qwen():
    return tiny_qwen25vl(seed=0)


def _gen(d=32, seed=1):
    torch.manual_seed(seed)
    return MuNGGenerator(MuNGConfig(visual_dim=d, text_dim=d, num_heads=8, init="default"))


def _capture_llm_inputs(host):
    cap = {}
    h = host.model.language_model.register_forward_pre_hook(
        lambda m, a, k: cap.__setitem__("e", k["inputs_embeds"].detach().clone()), with_kwargs=True)
    return cap, h


def test_llava_hook_adds_exactly_the_noise_and_detach_restores(llava):
    batch = llava_batch(llava, [[5, 6, 7], [8, 9]], pad_side="right")
    cap, h = _capture_llm_inputs(llava)
    with torch.no_grad():
        llava(**batch)
        clean = cap["e"]
        inj = attach(llava, _gen())
        with inj.settings(seed=3):
            llava(**batch)
        noisy = cap["e"]
        rec = inj.last
        inj.detach()
        llava(**batch)
        restored = cap["e"]
    h.remove()
    assert torch.equal(restored, clean)
    ph = batch["input_ids"] == llava.config.image_token_id
    delta = (noisy - clean)[ph].view(2, -1, 32)
    torch.testing.assert_close(delta, rec.output.noise, rtol=0, atol=1e-6)
    for c, n, z in zip(rec.clean, rec.noisy, rec.output.noise):
        assert torch.equal(n, c + z)
    assert rec.output.noise.abs().mean() > 0.01
    # keys: each image attends to its own text only, never placeholders or padding
    assert [t.tolist() for t in rec.text_ids] == [[5, 6, 7], [8, 9]]
    assert rec.image_to_sample == [0, 1]
    assert torch.all(rec.output.attn[1, :, :, 2] == 0)
    torch.testing.assert_close(rec.output.attn[1, :, :, :2].sum(-1), torch.ones(8, 17))
    # text is in nothing else: text positions unchanged
    assert torch.equal(noisy[~ph], clean[~ph])


def test_answer_tokens_are_hidden_from_the_generator(llava):
    batch = llava_batch(llava, [[5, 6, 7, 10, 11]])
    labels = torch.full_like(batch["input_ids"], -100)
    labels[0, -2:] = batch["input_ids"][0, -2:]
    inj = attach(llava, _gen())
    with torch.no_grad():
        llava(**batch, labels=labels)
    inj.detach()
    assert inj.last.text_ids[0].tolist() == [5, 6, 7]


def test_frozen_host_and_clear_errors(llava):
    inj = MuNGInjector(llava, _gen()).attach()
    assert not any(p.requires_grad for p in llava.parameters()) and not llava.training
    with pytest.raises(RuntimeError, match="needs the sample's text tokens"):
        with torch.no_grad():
            llava.model.get_image_features(pixel_values=torch.randn(1, 3, 32, 32))
    inj.detach()
    with pytest.raises(ValueError, match="built for visual/text dims 64/64"):
        MuNGInjector(llava, _gen(d=64))
    with pytest.raises(ValueError, match="MuNG supports LLaVA, Qwen2-VL and Qwen2.5-VL"):
        inspect_host(nn.Linear(2, 2))


def test_old_checkpoint_layout_is_found():
    """transformers < 4.52 checkpoints: multi_modal_projector / visual at the top level."""
    new = tiny_llava()

    class OldLlava(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = new.config
            self.multi_modal_projector = new.model.multi_modal_projector
            self.language_model = new.model.language_model

        def get_input_embeddings(self):
            return self.language_model.get_input_embeddings()

    spec = inspect_host(OldLlava())
    assert spec.visual_path == "multi_modal_projector" and spec.visual_module is new.model.multi_modal_projector
    assert inspect_host(new).visual_path == "model.multi_modal_projector"


def test_qwen25vl_hook_raster_order_and_exact_noise(qwen):
    from transformers.vision_utils import get_vision_window_index
    batch = qwen_batch(qwen, [[5, 6, 7], [8, 9]], [(8, 8), (4, 8)])
    merged = {}
    hm = qwen.model.visual.merger.register_forward_hook(lambda m, a, o: merged.__setitem__("w", o.detach()))
    cap, h = _capture_llm_inputs(qwen)
    with torch.no_grad():
        qwen(**batch)
        clean = cap["e"]
        inj = attach(qwen, _gen())
        with inj.settings(seed=0):
            qwen(**batch)
        noisy = cap["e"]
    rec = inj.last
    inj.detach()
    h.remove()
    hm.remove()
    vc = qwen.config.vision_config
    window_index, _ = get_vision_window_index(batch["image_grid_thw"], spatial_merge_size=vc.spatial_merge_size,
                                              window_size=vc.window_size, patch_size=vc.patch_size)
    assert not torch.equal(window_index, torch.arange(len(window_index)))   # window order really differs
    raster = merged["w"][torch.argsort(window_index)]
    torch.testing.assert_close(torch.cat(rec.clean), raster, rtol=0, atol=0)  # hooked tokens: raster order
    assert rec.grids == [(4, 4, 0), (2, 4, 0)]
    ph = batch["mm_token_type_ids"] == 1
    noise = torch.cat([rec.output.noise[i, : c.shape[0]] for i, c in enumerate(rec.clean)])
    torch.testing.assert_close((noisy - clean)[ph], noise, rtol=0, atol=1e-6)
    assert [t.tolist() for t in rec.text_ids] == [[5, 6, 7], [8, 9]]   # no vision start/end/pad tokens
    # the second image has 8 tokens: padded query rows carry no weight into the result
    assert rec.noisy[1].shape[0] == 8


def test_generation_injects_once_per_prompt(qwen, llava):
    for host, batch in ((qwen, qwen_batch(qwen, [[5, 6, 7], [8, 9]], [(4, 4), (4, 4)])),
                        (llava, llava_batch(llava, [[5, 6, 7], [8, 9]], pad_side="left"))):
        inj = attach(host, _gen())
        calls = []
        hk = inj.spec.visual_module.register_forward_hook(lambda *a: calls.append(1))
        with inj.settings(seed=0):
            out = inj.generate(**batch, max_new_tokens=3, do_sample=False)
        with inj.settings(seed=0):
            out2 = inj.generate(**batch, max_new_tokens=3, do_sample=False)
        hk.remove()
        inj.detach()
        assert out.shape == (2, batch["input_ids"].shape[1] + 3)
        assert len(calls) == 2 and torch.equal(out, out2)


def test_qwen2vl_hook_adds_exactly_the_noise():
    host = tiny_qwen2vl(seed=0)
    batch = qwen_batch(host, [[5, 6], [7, 8, 9]], [(4, 4), (4, 8)])
    cap, h = _capture_llm_inputs(host)
    with torch.no_grad():
        host(**batch)
        clean = cap["e"]
        inj = attach(host, _gen())
        host(**batch)
        noisy = cap["e"]
    h.remove()
    rec = inj.last
    inj.detach()
    assert inj.spec.family == "qwen2_vl" and inj.spec.visual_path == "model.visual"
    ph = batch["mm_token_type_ids"] == 1
    noise = torch.cat([rec.output.noise[i, : c.shape[0]] for i, c in enumerate(rec.clean)])
    torch.testing.assert_close((noisy - clean)[ph], noise, rtol=0, atol=1e-6)
    assert rec.grids == [(2, 2, 0), (2, 4, 0)] and [t.tolist() for t in rec.text_ids] == [[5, 6], [7, 8, 9]]
