"""Hand-crafted prompt templates per dataset (paper Table 6) and the PiNI prompt layout.

Two forms of each template live here:

* ``TEMPLATES``: the CLIP / CoOp form with the class name in place, e.g.
  ``"a photo of a {}, a type of pet."``. Zero-shot CLIP and the baselines use this.
* ``TABLE6_PROMPTS``: the prompts exactly as printed in the paper's Table 6, which
  are already in PiNI's layout (class name moved to the end, no final period), e.g.
  ``"a type of pet, a photo of a {}"``. They are kept to check that
  :func:`pini_prompt_prefix` reproduces the paper (tests/test_data_templates.py).

OCR check of Table 6 (papers/pini-paper-fulltext.txt): all 15 prompt strings are
legible. Only a dataset name is garbled ("ImageNetV?2" = ImageNetV2). Food101's prompt
reads "a type of food, a photo of [class]" (no article); that is not an OCR slip, it is
CoOp's "a photo of {}, a type of food." with the class moved to the end. DTD's
"texture [class]" is CoOp's "{} texture." reordered the same way.
"""
from __future__ import annotations

from typing import Dict

DEFAULT_TEMPLATE = "a photo of a {}."

# CLIP / CoOp form (CoOp's CUSTOM_TEMPLATES), keyed by our registry names.
TEMPLATES: Dict[str, str] = {
    "imagenet": "a photo of a {}.",
    "caltech-101": "a photo of a {}.",
    "oxford_pets": "a photo of a {}, a type of pet.",
    "stanford_cars": "a photo of a {}.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "food-101": "a photo of {}, a type of food.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "sun397": "a photo of a {}.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "ucf101": "a photo of a person doing {}.",
    "imagenetv2": "a photo of a {}.",
    "imagenet-sketch": "a photo of a {}.",
    "imagenet-adversarial": "a photo of a {}.",
    "imagenet-rendition": "a photo of a {}.",
    "imagefolder": DEFAULT_TEMPLATE,
}

# Paper Table 6, verbatim ("[class]" written as "{}").
TABLE6_PROMPTS: Dict[str, str] = {
    "imagenet": "a photo of a {}",
    "caltech-101": "a photo of a {}",
    "oxford_pets": "a type of pet, a photo of a {}",
    "stanford_cars": "a photo of a {}",
    "oxford_flowers": "a type of flower, a photo of a {}",
    "food-101": "a type of food, a photo of {}",
    "fgvc_aircraft": "a type of aircraft, a photo of a {}",
    "sun397": "a photo of a {}",
    "dtd": "texture {}",
    "eurosat": "a centered satellite photo of {}",
    "ucf101": "a photo of a person doing {}",
    "imagenetv2": "a photo of a {}",
    "imagenet-sketch": "a photo of a {}",
    "imagenet-adversarial": "a photo of a {}",
    "imagenet-rendition": "a photo of a {}",
}

PINI_N_CTX = 16  # placeholder words, "to ensure the same number of learnable word embeddings as CoOp"
PINI_PLACEHOLDER = "x"


def template_for(name: str) -> str:
    """The CLIP/CoOp template of a dataset name (``"a photo of a {}."`` for unknown names
    would hide typos, so unknown names raise)."""
    if name not in TEMPLATES:
        raise KeyError(f"no prompt template for dataset {name!r}; known: {', '.join(sorted(TEMPLATES))}. "
                       f"For your own data pass a template such as {DEFAULT_TEMPLATE!r}.")
    return TEMPLATES[name]


def _check_template(template: str) -> None:
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(f"a prompt template must contain exactly one '{{}}' where the class name "
                         f"goes, e.g. {DEFAULT_TEMPLATE!r}; got {template!r}")


def class_last_words(template: str) -> str:
    """The template's words with the class-name slot removed and the text after the slot
    moved to the front (paper App. A.2): ``"a photo of a {}, a type of pet."`` ->
    ``"a type of pet, a photo of a"``; ``"{} texture."`` -> ``"texture"``."""
    _check_template(template)
    before, after = template.split("{}")
    before = before.strip()
    after = after.strip()
    if after.endswith("."):
        after = after[:-1].rstrip()
    after = after.lstrip(",;:").strip()
    if after and before:
        return f"{after}, {before}"
    return after or before


def pini_context_text(template: str, n_ctx: int = PINI_N_CTX, placeholder: str = PINI_PLACEHOLDER) -> str:
    """The text in front of the class name in the authors' PiNI prompt: ``n_ctx``
    placeholder words then :func:`class_last_words`, e.g. ``"x x ... x a type of pet, a
    photo of a"``. PiNI's prompt noise (mu_t, sigma_t) has one row per token of this text."""
    if n_ctx < 0:
        raise ValueError(f"n_ctx must be >= 0, got {n_ctx}")
    if n_ctx and (not placeholder or placeholder.strip() != placeholder or " " in placeholder):
        raise ValueError(f"placeholder must be a single word without spaces, got {placeholder!r}")
    words = [placeholder] * n_ctx
    tail = class_last_words(template)
    if tail:
        words.append(tail)
    return " ".join(words)


def pini_prompt_prefix(template: str, n_ctx: int = PINI_N_CTX, placeholder: str = PINI_PLACEHOLDER) -> str:
    """The authors' PiNI prompt layout as a format string with the class name at the end:
    ``"a photo of a {}, a type of pet."`` -> ``"x x x x x x x x x x x x x x x x a type of pet,
    a photo of a {}."`` (``.format(classname)`` gives the prompt text). Pure function."""
    context = pini_context_text(template, n_ctx, placeholder)
    return f"{context} {{}}." if context else "{}."
