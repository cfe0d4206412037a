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

from typing import Dict, Sequence, Union

from pini_core.errors import ConfigError, PromptTooLongError, UnknownNameError

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
        raise UnknownNameError(f"no prompt template for dataset {name!r}; known: {', '.join(sorted(TEMPLATES))}. "
                       f"For your own data pass a template such as {DEFAULT_TEMPLATE!r}.")
    return TEMPLATES[name]


def _check_template(template: str) -> None:
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ConfigError(f"a prompt template must contain exactly one '{{}}' where the class name "
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
        raise ConfigError(f"n_ctx must be >= 0, got {n_ctx}")
    if n_ctx and (not placeholder or placeholder.strip() != placeholder or " " in placeholder):
        raise ConfigError(f"placeholder must be a single word without spaces, got {placeholder!r}")
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


def _prompt_token_count(backbone, text: str) -> int:
    """Tokens the backbone's tokenizer makes of ``text``, start/end tokens included, without
    truncation (open_clip's SimpleTokenizer: BPE pieces + 2; Hugging Face tokenizers: their
    ``input_ids`` with special tokens)."""
    tok = backbone.tokenizer
    if hasattr(tok, "encode") and hasattr(tok, "sot_token_id"):  # open_clip SimpleTokenizer
        return len(tok.encode(text)) + 2
    hf = getattr(tok, "tokenizer", None)
    if hf is not None and callable(hf):  # open_clip HFTokenizer
        return len(hf(text, truncation=False)["input_ids"])
    return len(backbone.text_token_ids(text)) + 2


def check_prompt_lengths(backbone, classnames: Sequence[str], templates: Union[str, Sequence[str]],
                         n_ctx: int = 0, placeholder: str = PINI_PLACEHOLDER) -> int:
    """Refuse, before any work, class names whose prompt does not fit the text encoder.

    ``classnames``: the names exactly as the method puts them in its prompts (after its own
    ``_`` -> space replacement, if any); ``templates``: the format string(s) it fills with
    each name (``"{}"`` where the name goes);
    ``n_ctx``: learnable context tokens the method puts in front of that text (CoOp: 16,
    tokenised as ``placeholder`` words; PiNI passes its full prompt format, with its
    placeholders already in the text, and ``n_ctx=0``). A prompt needs
    ``tokens(template.format(name)) + n_ctx`` <= the backbone's ``context_length`` (77 for
    CLIP), start and end tokens counted. Every method calls this once (PiNI, CoOp,
    zero-shot, CLIP-Adapter, Tip-Adapter), so no method silently truncates a prompt that
    another refuses. Returns the longest prompt's token count. Raises
    :class:`pini_core.errors.PromptTooLongError` naming each class that does not fit (up to
    5) and its token count, and ``ConfigError`` for a template without ``{}``."""
    if isinstance(templates, str):
        templates = [templates]
    templates = list(templates)
    for t in templates:
        if not isinstance(t, str) or "{}" not in t:
            raise ConfigError(f"a prompt template needs '{{}}' where the class name goes, e.g. "
                              f"{DEFAULT_TEMPLATE!r}; got {t!r}")
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 0:
        raise ConfigError(f"n_ctx must be a whole number >= 0, got {n_ctx!r}")
    limit = int(backbone.context_length)
    prefix = " ".join([placeholder] * n_ctx)
    longest, too_long = 0, []
    for name in classnames:
        if not isinstance(name, str):
            raise ConfigError(f"class names must be text, got {name!r} ({type(name).__name__})")
        worst = 0
        for t in templates:
            text = t.format(name)
            worst = max(worst, _prompt_token_count(backbone, f"{prefix} {text}" if prefix else text))
        longest = max(longest, worst)
        if worst > limit:
            too_long.append((name, worst))
    if too_long:
        short = [(n if len(n) <= 60 else n[:57].rsplit(" ", 1)[0] + "...", k) for n, k in too_long]
        listed = "; ".join(f"{n!r} ({k} tokens)" for n, k in short[:5])
        more = f" and {len(too_long) - 5} more" if len(too_long) > 5 else ""
        ctx = f" with {n_ctx} context tokens" if n_ctx else ""
        raise PromptTooLongError(
            f"{len(too_long)} class name(s) make a prompt longer than the text encoder's context of {limit} "
            f"tokens (template {templates[0]!r}{ctx}, start/end tokens included): {listed}{more}. "
            "Shorten these class names (e.g. rename the class folders).")
    return longest

