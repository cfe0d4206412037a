"""Issue 12 items 15 and 16: MuNG questions with the image placeholder or unknown words, and
integrated-gradient relevance maps on a batch of two images."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pini_core.errors import PiniError
from pini_core.mung.config import MuNGConfig
from pini_core.mung.generator import MuNGGenerator
from pini_core.mung.injector import attach
from pini_core.mung.toy_mllm import QuestionError, new_toy_mllm, question_words
from pini_core.mung.visualize import relevance_maps
from pini_core.mung.vqa_data import make_vqa


@pytest.fixture(scope="module")
def setup():
    bundle = new_toy_mllm(seed=0, hidden=32, layers=1, vision_hidden=32, vision_layers=1, patch_size=16)
    with torch.no_grad():  # untrained (std 0.02) weights make every key and query alike
        bundle.model.get_input_embeddings().weight.mul_(10)
        bundle.model.model.multi_modal_projector.linear_2.weight.mul_(20)
    torch.manual_seed(0)
    inj = attach(bundle.model, MuNGGenerator(MuNGConfig(visual_dim=32, text_dim=32, num_heads=8, init="default")))
    return bundle, inj, make_vqa(2, "shifted", seed=2)


@pytest.mark.parametrize("question, token", [("what is <image> ?", "'<image>'"), ("<IMAGE>what colour", "'<image>'"),
                                             ("is there a red star <ans> yes", "'<ans>'"),
                                             ("<bos> which shape", "'<bos>'")])
def test_reserved_tokens_in_a_question_are_refused(setup, question, token):
    bundle, inj, items = setup
    with pytest.raises(QuestionError) as e:
        bundle.encode([items[0].image], [question])
    msg = str(e.value)
    assert msg.startswith(f"The question contains {token}, which the model reserves for its prompt layout")
    assert isinstance(e.value, PiniError) and isinstance(e.value, ValueError)
    with pytest.raises(QuestionError):  # also on the way to an answer (what the CLI and the app call)
        bundle.answer([items[0].image], [question])


def test_unknown_words_are_named_not_silently_unk(setup):
    bundle, _, items = setup
    with pytest.raises(QuestionError) as e:
        bundle.encode([items[0].image], ["what shape is it?"])
    msg = str(e.value)
    assert msg.startswith("The toy model does not know the word 'it' in the question 'what shape is it?'; "
                          "it would read it as <unk>. Its 54 words: ? a are arrow")
    with pytest.raises(QuestionError, match="the words 'zebra', 'purple-ish' in the question"):
        bundle.encode([items[0].image], ["is the zebra purple-ish ?"])
    with pytest.raises(QuestionError, match="in the answer 'maybe'"):
        bundle.encode([items[0].image], [items[0].question], ["maybe"])
    with pytest.raises(QuestionError, match="The question is empty"):
        bundle.encode([items[0].image], ["   "])


def test_a_question_mark_stuck_to_a_word_is_split(setup):
    bundle, _, items = setup
    assert question_words("Which colour has the star?") == ["which", "colour", "has", "the", "star", "?"]
    a = bundle.encode([items[0].image], ["which colour has the star?"])["input_ids"]
    b = bundle.encode([items[0].image], ["which colour has the star ?"])["input_ids"]
    assert torch.equal(a, b)
    assert (a == bundle.ids["<unk>"]).sum() == 0
    assert int((a == bundle.ids["<image>"]).sum()) == bundle.n_image_tokens  # exactly the image's slots


def test_hf_host_refuses_its_image_placeholder(setup, tmp_path):
    from pini_core.mung.hf_host import HFHost, export_toy_as_hf

    bundle, _, items = setup
    host = HFHost.load(export_toy_as_hf(bundle, tmp_path / "tiny-llava"))
    assert "<image>" in host.reserved_tokens()
    with pytest.raises(QuestionError, match="The question contains '<image>'"):
        host.encode([items[0].image], ["what is in <image> ?"])
    ok = host.encode([items[0].image], ["what colour is the star ?"])
    assert int((ok["input_ids"] == host.model.config.image_token_id).sum()) == 16


def test_integrated_gradients_on_two_images_match_one_at_a_time(setup):
    """captum repeats the batch n_steps times; the fixed eps must follow (issue 12 item 16)."""
    bundle, inj, items = setup
    batch = bundle.encode([x.image for x in items], [x.question for x in items])
    tids = torch.tensor([bundle.tokenizer.token_to_id("red"), bundle.tokenizer.token_to_id("blue")])
    before, after = relevance_maps(inj, batch, tids, seed=4, method="integrated_gradients", n_steps=4)
    assert before.shape == after.shape == (2, 4, 4)
    with torch.no_grad(), inj.settings(seed=4):  # the eps the batched call drew for each image
        bundle.model(**batch)
    eps = inj.last.output.eps.detach()
    for k in range(2):
        one = {key: v[k:k + 1] for key, v in batch.items()}
        with inj.settings(eps=eps[k:k + 1]):
            b1, a1 = relevance_maps(inj, one, tids[k:k + 1], seed=4, method="integrated_gradients", n_steps=4)
        np.testing.assert_allclose(b1[0], before[k], rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(a1[0], after[k], rtol=1e-3, atol=1e-8)
    assert np.abs(before - after).max() > 1e-3 * before.max() > 0  # the noise changes the maps
    gxa_b, _ = relevance_maps(inj, batch, tids, seed=4)  # grad x act on the same batch still works
    assert gxa_b.shape == (2, 4, 4)
