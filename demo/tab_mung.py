"""MuNG: the generator's attention over image patches, relevance maps before/after the
noise (same ε), and the multimodal LLM's answer with and without noise."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import gradio as gr

from pini_core.spaces import gpu

from demo import engine
from demo.context import BuildContext
from demo.util import friendly

# $PINI_MUNG_DIR points the tab at another folder with the same layout (host/ + generator/).
MUNG_DIR = Path(os.environ.get("PINI_MUNG_DIR") or Path(__file__).resolve().parent.parent / "checkpoints" / "mung")
HOST_DIR = MUNG_DIR / "host"  # the toy multimodal LLM (a tiny LLaVA) shipped with the project
GENERATOR = MUNG_DIR / "generator"  # its trained MuNG generator (checkpoint folder, pini_core.mung.checkpoint)
_LOCK = threading.Lock()  # the injector keeps per-call state: one explanation at a time
_LOADED: dict = {}


def _shipped_mung() -> bool:
    from pini_core.mung.checkpoint import is_generator

    return HOST_DIR.is_dir() and is_generator(GENERATOR)


def _host_and_injector():
    """The shipped toy MLLM with its generator attached (loaded once, shared read-only)."""
    if "injector" not in _LOADED:
        from pini_core.mung.checkpoint import load_generator
        from pini_core.mung.hf_host import load_host
        from pini_core.mung.injector import MuNGInjector

        bundle = load_host(HOST_DIR)
        gen = load_generator(GENERATOR, host=bundle.model)
        _LOADED["bundle"], _LOADED["injector"] = bundle, MuNGInjector(bundle.model, gen).attach()
    return _LOADED["bundle"], _LOADED["injector"]


def _examples():
    """(name, image, question) from the toy VQA world (the questions MuNG was trained on)."""
    if "examples" not in _LOADED:
        from pini_core.mung.vqa_data import make_vqa

        items = make_vqa(6, "shifted", seed=7)
        _LOADED["examples"] = [(f"{i + 1}: {it.question}", it.image, it.question) for i, it in enumerate(items)]
    return _LOADED["examples"]


def _build_live(ctx: BuildContext) -> None:
    gr.Markdown("The shipped model is a *toy* multimodal LLM (a tiny LLaVA trained on the project's procedural "
                "world) with a trained MuNG generator. Both relevance maps use the **same ε** (seeded), so the "
                "only difference between them is the noise.")
    with gr.Row():
        names = [n for n, _, _ in _examples()]
        example = gr.Dropdown(choices=names, value=names[0], label="Example (image + question)", scale=2)
        upload = gr.File(label="…or upload an image", file_types=["image"], type="filepath", scale=2, height=110)
    with gr.Row():
        question = gr.Textbox(value=_examples()[0][2], label="Question", scale=3)
        seed = gr.Number(value=0, precision=0, label="Seed (ε)")
        run = gr.Button("Explain", variant="primary")
    with gr.Row():
        attn = gr.Image(label="Generator attention over patches", format="png", interactive=False,
                        elem_id="mung-attention")
        before = gr.Image(label="Relevance before noise", format="png", interactive=False)
        after = gr.Image(label="Relevance after noise (same ε)", format="png", interactive=False)
    per_token = gr.Image(label="Attention per question word, and relevance before / after", format="png",
                         interactive=False)
    with gr.Row():
        ans_before = gr.Textbox(label="Answer without noise", interactive=False)
        ans_after = gr.Textbox(label="Answer with MuNG noise", interactive=False)
    info = gr.JSON(label="Numbers")

    def pick(name):
        for n, _, q in _examples():
            if n == name:
                return q
        return gr.update()

    @friendly
    @gpu
    def explain_one(name, up, q, seed_v):
        import numpy as np

        from demo import plots
        from pini_core.mung.visualize import explain, explanation_figure

        if up:
            from pini_core.uploads import open_uploaded_image

            img, where = open_uploaded_image(up), "your upload"
        else:
            match = [im for n, im, _ in _examples() if n == name]
            if not match:
                raise gr.Error("Pick an example or upload an image first.", print_exception=False)
            img, where = match[0], "the example"
        q = (q or "").strip()
        if not q:
            raise gr.Error("Type a question about the image (e.g. 'what colour is the circle?').",
                           print_exception=False)
        with _LOCK:
            bundle, inj = _host_and_injector()
            ex = explain(bundle, inj, img, q, seed=int(seed_v or 0))
            fig = explanation_figure(ex)
            from matplotlib.backends.backend_agg import FigureCanvasAgg

            canvas = FigureCanvasAgg(fig)
            canvas.draw()
            strip = np.asarray(canvas.buffer_rgba())[..., :3].copy()
            import matplotlib.pyplot as plt

            plt.close(fig)
        up_ = ex.upsampled
        diff = ex.relevance_after - ex.relevance_before
        numbers = {"image": where, "question": q, "seed": int(seed_v or 0), "target word": ex.target,
                   "generator key words": ex.tokens, "answer_without_noise": ex.answer_before,
                   "answer_with_noise": ex.answer_after,
                   "relevance_before_sum": float(ex.relevance_before.sum()),
                   "relevance_after_sum": float(ex.relevance_after.sum()),
                   "relevance_change_abs_mean": float(np.abs(diff).mean())}
        return (plots.overlay(ex.image, up_(ex.attention_mean), "generator attention (mean over words)"),
                plots.overlay(ex.image, up_(ex.relevance_before), f"relevance for '{ex.target}', no noise"),
                plots.overlay(ex.image, up_(ex.relevance_after), f"relevance for '{ex.target}', with noise"),
                strip, ex.answer_before, ex.answer_after, numbers)

    example.change(pick, [example], [question], api_visibility="private", queue=False)
    run.click(explain_one, [example, upload, question, seed],
              [attn, before, after, per_token, ans_before, ans_after, info], api_name="mung")




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
