"""Noise on images: raw image, noise-injected image, μ and σ heatmaps (paper Figure 4);
for feature-level generators μ/σ over the feature and the shift of the image embedding.

The tab opens on the shipped raw-image generator (Figure 4 at once); "auto" switches to the
session's own generator as soon as it trains or loads one."""
from __future__ import annotations

import gradio as gr

from pini_core.spaces import gpu

from demo import engine, preview
from demo.context import BuildContext
from demo.session import SessionState
from demo.util import backbone, friendly, generator, image_picker, picked_image

AUTO = "auto: yours once you train or load one, else Figure 4"
FIGURE4 = "Figure 4: the shipped raw-image generator"
SESSION = "the generator the other tabs use"
SOURCES = [AUTO, FIGURE4, SESSION]


def _generator(state: SessionState, source: str):
    """(model, label) shown for the chosen source."""
    from demo import backbones
    from demo.shipped import shipped_image_generator

    spec = state.backbone_spec or backbones.default_spec()
    own = state.method is not None and state.method_backbone == spec
    if source == SESSION or (source != FIGURE4 and own) or not backbones.is_embedded(spec):
        return generator(state), state.method_label
    shipped = shipped_image_generator(backbones.CACHE.get_loaded(spec))
    if shipped is None:  # no raw-image generator shipped: the session's (or default) one
        return generator(state), state.method_label
    return shipped[0], shipped[1]


def compute(example_name, up, seed_v, state: SessionState, source: str = AUTO, progress=preview.no_progress):
    from demo.examples import true_label
    from demo.noise_view import render

    img, where = picked_image(state, example_name, up)
    backbone(state, progress)
    method, label = _generator(state, source or AUTO)
    seed = int(seed_v or 0)
    key = None if up else ("noise", preview.model_key(method), example_name, seed)
    if key is not None and key[1] is None:
        key = None

    def run():
        maps = engine.get("maps")(method, img, seed=seed)
        return render(maps, img, where, seed, label, list(method.classnames),
                      None if up else true_label(example_name))

    return preview.cached(key, run)


def build(ctx: BuildContext) -> None:
    gr.Markdown("What noise does a generator add to *this* image? For raw-image generators: the noisy "
                "image and per-pixel μ and σ (as the paper's Figure 4: μ on a diverging scale centred on "
                "0, σ from 0). For feature-level generators: μ and σ over the image embedding and how far "
                "the noise moves it.")
    note = engine.notice("maps")
    if note:
        gr.Markdown(note)
        return
    example, upload = image_picker(ctx.default_spec)
    ctx.example_dropdowns.append(example)
    with gr.Row():
        source = gr.Radio(SOURCES, value=AUTO, label="Generator shown", elem_id="noise-source", scale=3)
        seed = gr.Number(value=0, precision=0, label="Seed (the same seed gives the same ε)", scale=1)
    with gr.Row():
        run = gr.Button("Show the noise", variant="primary")
        resample = gr.Button("Re-sample ε (next seed)")
    status = gr.Markdown(elem_id="noise-status")
    with gr.Row(equal_height=True):
        raw = gr.Image(label="Raw image", format="png", interactive=False, elem_id="noise-raw", show_label=False, buttons=["download"])
        noisy = gr.Image(label="Noise-injected image", format="png", interactive=False, elem_id="noise-noisy",
                         show_label=False, buttons=["download"])
    with gr.Row(equal_height=True):
        mu = gr.Image(label="μ", format="png", interactive=False, elem_id="noise-mu", show_label=False, buttons=["download"])
        sigma = gr.Image(label="σ", format="png", interactive=False, elem_id="noise-sigma", show_label=False, buttons=["download"])
    info = gr.JSON(label="Numbers", elem_id="noise-info", open=False)

    @friendly
    @gpu
    def show(example_name, up, seed_v, state: SessionState, source=AUTO, progress=gr.Progress()):
        return compute(example_name, up, seed_v, state, source, progress)

    outs = [raw, noisy, mu, sigma, info, status]
    ins = [example, upload, seed, ctx.session, source]
    run.click(show, ins, outs, api_name="noise_maps")
    resample.click(lambda s: int(s or 0) + 1, [seed], [seed], api_visibility="private", queue=False).then(
        show, ins, outs, api_visibility="private")
    for trigger in (example.change, source.change):
        trigger(show, ins, outs, api_visibility="private", trigger_mode="always_last")
    ctx.page_load.append((preview.on_load(show, 6, 5), ins, outs, {"concurrency_id": "preview", "concurrency_limit": 8}))

    default = example.value

    def warm():
        from demo.session import SessionState as S

        compute(default, None, 0, S(backbone_spec=ctx.default_spec), AUTO)

    ctx.warm.append(warm)
