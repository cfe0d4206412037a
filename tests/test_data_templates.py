"""Prompt templates (paper Table 6) and the PiNI prompt layout."""
import pytest

from pini_core.data.coop import IMAGENET_VARIANTS, SPECS
from pini_core.data.templates import (TABLE6_PROMPTS, TEMPLATES, class_last_words, pini_context_text,
                                      pini_prompt_prefix, template_for)

X16 = " ".join(["x"] * 16)


def test_authors_layout_examples():
    assert pini_prompt_prefix("a photo of a {}, a type of pet.") == X16 + " a type of pet, a photo of a {}."
    assert pini_prompt_prefix("{} texture.") == X16 + " texture {}."
    assert pini_prompt_prefix("a photo of {}, a type of food.") == X16 + " a type of food, a photo of {}."
    assert pini_prompt_prefix("a photo of a {}.") == X16 + " a photo of a {}."
    assert pini_prompt_prefix("a photo of a {}.").format("tench") == X16 + " a photo of a tench."
    assert pini_prompt_prefix("a photo of a {}.", n_ctx=2, placeholder="X") == "X X a photo of a {}."
    assert pini_prompt_prefix("{}.", n_ctx=0) == "{}."


def test_context_text_is_the_part_before_the_class_name():
    ctx = pini_context_text("a photo of a {}, a type of flower.")
    assert ctx == X16 + " a type of flower, a photo of a"
    assert pini_prompt_prefix("a photo of a {}, a type of flower.") == ctx + " {}."
    assert class_last_words("a photo of a person doing {}.") == "a photo of a person doing"


def test_coop_templates_reordered_give_table6_exactly():
    assert set(TABLE6_PROMPTS) == set(SPECS)
    for name, printed in TABLE6_PROMPTS.items():
        assert pini_prompt_prefix(TEMPLATES[name], n_ctx=0) == printed + ".", name


def test_every_registered_coop_dataset_has_a_template():
    for name in SPECS:
        assert template_for(name).count("{}") == 1
    for v in IMAGENET_VARIANTS:
        assert template_for(v) == "a photo of a {}."
    assert template_for("oxford_pets") == "a photo of a {}, a type of pet."
    with pytest.raises(KeyError, match="no prompt template for dataset 'petz'"):
        template_for("petz")


@pytest.mark.parametrize("bad", ["a photo of a cat.", "{} and {}.", None])
def test_bad_templates_raise(bad):
    with pytest.raises(ValueError, match="exactly one"):
        pini_prompt_prefix(bad)


def test_bad_placeholder_and_n_ctx():
    with pytest.raises(ValueError, match="n_ctx"):
        pini_prompt_prefix("a photo of a {}.", n_ctx=-1)
    with pytest.raises(ValueError, match="single word"):
        pini_prompt_prefix("a photo of a {}.", placeholder="x y")
