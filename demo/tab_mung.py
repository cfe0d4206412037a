"""MuNG: the generator's attention over image patches, relevance maps before/after the
noise (same ε), and the multimodal LLM's answer with and without noise."""
from __future__ import annotations

import gradio as gr

from demo import engine
from demo.context import BuildContext
from demo.util import friendly, image_picker, picked_image

MUNG_DIR = __import__("pathlib").Path(__file__).resolve().parent.parent / "checkpoints" / "mung"


def _shipped_mung() -> bool:
    return MUNG_DIR.is_dir() and any(MUNG_DIR.glob("*.safetensors"))


def _build_live(ctx: BuildContext) -> None:
    raise NotImplementedError


def build(ctx: BuildContext) -> None:
    gr.Markdown("MuNG puts a noise generator between a multimodal LLM's vision projector and its "
                "language model: cross-attention from the image tokens to the question's words gives "
                "μ and σ, and the noise suppresses image regions the question does not mention.")
    note = engine.notice("mung")
    if not note and not _shipped_mung():
        note = ("**Not available yet:** no trained MuNG generator is shipped in `checkpoints/mung/` in this "
                "installation, so there is nothing honest to show. Train one with `python -m pini_core mung "
                "train` (see docs/app.md).")
    if note:
        gr.Markdown(note)
        return
    _build_live(ctx)
