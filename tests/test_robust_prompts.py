"""Issue 12, item 12: one prompt-length check, before any work, for every method (PiNI,
CoOp, zero-shot, CLIP-Adapter, Tip-Adapter), naming the class and its token count; zero-shot
no longer truncates silently."""
from __future__ import annotations

import pytest
import torch

from engine_fixtures import TEMPLATE, make_model, shared_backbone
from pini_core.baselines import CLIPAdapter, CoOp, TipAdapter, ZeroShotCLIP
from pini_core.data.templates import check_prompt_lengths, pini_prompt_prefix
from pini_core.errors import ConfigError, DataError, PromptTooLongError

LONG = "extraordinarily elongated " * 9 + "tabby cat"  # far beyond the tiny CLIP's 40-token context


@pytest.fixture(scope="module")
def bb():
    return shared_backbone()


def _tokens(bb, text: str) -> int:
    """Independent count: open_clip's BPE pieces + start and end tokens."""
    return len(bb.tokenizer.encode(text)) + 2


def _builders(bb, names):
    d = bb.embed_dim
    return {
        "pini": lambda: make_model(bb, names, n_ctx=4),
        "coop": lambda: CoOp(bb, names, n_ctx=4),
        "zeroshot": lambda: ZeroShotCLIP(bb, names, TEMPLATE),
        "clip_adapter": lambda: CLIPAdapter(bb, names, TEMPLATE),
        "tip_adapter": lambda: TipAdapter(bb, names, TEMPLATE, torch.zeros(2, d), torch.tensor([0, 1])),
    }


def _prompt(method: str, name: str) -> str:
    return {"pini": pini_prompt_prefix(TEMPLATE, 4).format(name),
            "coop": "X X X X " + name + "."}.get(method, TEMPLATE.format(name))


@pytest.mark.parametrize("method", ["pini", "coop", "zeroshot", "clip_adapter", "tip_adapter"])
def test_every_method_refuses_a_too_long_class_name_naming_it_and_its_tokens(bb, method):
    assert bb.context_length == 40
    k = _tokens(bb, _prompt(method, LONG))
    assert k > 40
    with pytest.raises(PromptTooLongError) as e:
        _builders(bb, ["dog", LONG])[method]()
    msg = str(e.value)
    assert msg.startswith("1 class name(s) make a prompt longer than the text encoder's context of 40 tokens")
    assert f"({k} tokens)" in msg and "'extraordinarily elongated extraordinarily" in msg
    assert "'dog'" not in msg and msg.endswith("Shorten these class names (e.g. rename the class folders).")
    assert isinstance(e.value, DataError)


def test_a_name_that_fits_is_accepted_by_every_method(bb):
    names = ["dog", "a rather long but acceptable class name"]
    for method, build in _builders(bb, names).items():
        build()  # no error
    # and the length limit is exact: the longest prompt that fits has 40 tokens
    words = ["cat"]
    while _tokens(bb, TEMPLATE.format(" ".join(words + ["cat"]))) <= 40:
        words.append("cat")
    fits = " ".join(words)
    assert check_prompt_lengths(bb, [fits], TEMPLATE) == 40
    with pytest.raises(PromptTooLongError, match=r"\(41 tokens\)"):
        check_prompt_lengths(bb, [fits + " cat"], TEMPLATE)


def test_zero_shot_no_longer_truncates_silently(bb):
    """Before: the tokenizer cut the prompt at the context length and zero-shot built a
    classifier from a prompt no other method saw."""
    with pytest.raises(PromptTooLongError):
        ZeroShotCLIP(bb, ["dog", LONG], TEMPLATE)


def test_the_check_counts_context_tokens_and_every_template(bb):
    name = " ".join(["cat"] * 25)
    base = _tokens(bb, TEMPLATE.format(name))
    assert check_prompt_lengths(bb, [name], TEMPLATE) == base
    assert check_prompt_lengths(bb, [name], TEMPLATE, n_ctx=3) == base + 3
    with pytest.raises(PromptTooLongError, match=rf"with 16 context tokens.*\({base + 16} tokens\)"):
        check_prompt_lengths(bb, [name], TEMPLATE, n_ctx=16)
    ensemble = [TEMPLATE, "a bad blurry low resolution photo of the very small {} seen from afar."]
    with pytest.raises(PromptTooLongError):
        check_prompt_lengths(bb, [name], ensemble)
    many = [f"{name} {i}" for i in range(7)]
    with pytest.raises(PromptTooLongError, match=r"^7 class name\(s\).* and 2 more\. Shorten"):
        check_prompt_lengths(bb, many, TEMPLATE, n_ctx=16)
    with pytest.raises(ConfigError, match="needs '{}' where the class name goes"):
        check_prompt_lengths(bb, ["dog"], "a photo")
    with pytest.raises(ConfigError, match="class names must be text, got 3"):
        check_prompt_lengths(bb, ["dog", 3], TEMPLATE)
