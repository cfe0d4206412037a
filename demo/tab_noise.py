"""Noise on images: raw image, noise-injected image, μ and σ heatmaps (paper Figure 4);
for feature-level generators μ/σ over the feature and the shift of the image embedding."""
from __future__ import annotations

import gradio as gr

from pini_core.spaces import gpu

from demo import engine
from demo.context import BuildContext
from demo.session import SessionState
from demo.util import backbone, friendly, generator, image_picker, picked_image


def build(ctx: BuildContext) -> None:
    gr.Markdown("What noise does the session's generator add to *this* image? For raw-image generators: "
                "the noisy image and per-pixel μ and σ (as the paper's Figure 4). For feature-level "
                "generators: μ and σ over the image embedding and how far the noise moves it.")
    note = engine.notice("maps")
    if note:
        gr.Markdown(note)
        return
    example, upload = image_picker(ctx.default_spec)
    ctx.example_dropdowns.append(example)
    with gr.Row():
        seed = gr.Number(value=0, precision=0, label="Seed (the same seed gives the same ε)")
        run = gr.Button("Show the noise", variant="primary")
        resample = gr.Button("Re-sample ε (next seed)")
    with gr.Row():
        raw = gr.Image(label="Raw image", format="png", interactive=False, elem_id="noise-raw")
        noisy = gr.Image(label="Noise-injected image", format="png", interactive=False, elem_id="noise-noisy")
        mu = gr.Image(label="μ", format="png", interactive=False, elem_id="noise-mu")
        sigma = gr.Image(label="σ", format="png", interactive=False, elem_id="noise-sigma")
    info = gr.JSON(label="Numbers", elem_id="noise-info")
    status = gr.Markdown()

    @friendly
    @gpu
    def show(example_name, up, seed_v, state: SessionState, progress=gr.Progress()):
        from demo.noise_view import render

        img, where = picked_image(state, example_name, up)
        backbone(state, progress)
        method = generator(state)
        noise_maps = engine.get("maps")
        maps = noise_maps(method, img, seed=int(seed_v or 0))
        return render(maps, img, where, int(seed_v or 0), state.method_label, list(method.classnames))

    outs = [raw, noisy, mu, sigma, info, status]
    run.click(show, [example, upload, seed, ctx.session], outs, api_name="noise_maps")
    resample.click(lambda s: int(s or 0) + 1, [seed], [seed], api_visibility="private", queue=False).then(
        show, [example, upload, seed, ctx.session], outs, api_visibility="private")
