"""MuNG: the generator's attention over image patches, relevance maps before/after the
noise (same ε), and the multimodal LLM's answer with and without noise."""
from __future__ import annotations

import gradio as gr

from demo import engine
from demo.context import BuildContext
from demo.util import friendly, image_picker, picked_image


def build(ctx: BuildContext) -> None:
    gr.Markdown("MuNG puts a noise generator between a multimodal LLM's vision projector and its "
                "language model: cross-attention from the image tokens to the question's words gives "
                "μ and σ, and the noise suppresses image regions the question does not mention.")
    note = engine.notice("mung")
    if note:
        gr.Markdown(note)
        return
    from demo.tab_mung_impl import build_impl

    build_impl(ctx, friendly, image_picker, picked_image)
