"""MuNG: the generator's attention over image patches, relevance maps before/after the
noise (same ε), and the multimodal LLM's answer with and without noise."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import gradio as gr

from pini_core.spaces import gpu

from demo import engine, plots, preview
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
    """(name, image, question) chosen by the rule (see `_rows`)."""
    return [r[:3] for r in _rows()]


def _rows():
    """(name, image, question, true answer) chosen by the rule in pini_core/world/examples.py
    (assets/examples/examples.json, default first); without it, the first 6 held-out items."""
    if "rows" not in _LOADED:
        from PIL import Image

        from demo.examples import mung_examples

        rows = mung_examples()
        if rows:
            out = []
            for r in rows:
                with Image.open(r["path"]) as im:
                    out.append((r["name"], im.convert("RGB"), r["question"], r["true"]))
        else:
            from pini_core.mung.cli import TEST_SEED
            from pini_core.mung.vqa_data import make_vqa

            items = make_vqa(6, "shifted", seed=TEST_SEED)
            out = [(f"{i + 1}: {it.question}", it.image, it.question, it.answer) for i, it in enumerate(items)]
        _LOADED["rows"] = out
    return _LOADED["rows"]


def _counts_line() -> str:
    """'MuNG fixes 2, breaks 1 of these 5', from the recorded outcomes of the listed examples
    (pini_core.world.examples, re-run by `python -m pini_core examples`)."""
    from demo.examples import examples_record
    from pini_core.world.examples import summary_line

    rec = examples_record().get("mung") or {}
    if not rec.get("examples"):
        return ""
    pop, n = rec.get("population", {}), rec.get("held_out", {}).get("n")
    return (f"The examples were chosen by a fixed rule on held-out questions (not for success): "
            f"{summary_line(rec['chosen_counts'], len(rec['examples']), 'MuNG')}. On all {n} held-out questions: "
            f"{pop.get('accuracy_without_noise', 0):.1f}% right without noise, "
            f"{pop.get('accuracy_with_noise', 0):.1f}% with MuNG noise (seed {rec['held_out'].get('noise_seed', 0)}).")


def _square(img):
    """Pad an upload to a square (the model's input is square) instead of squashing it."""
    from PIL import Image, ImageOps

    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    fill = tuple(int(v) for v in ImageOps.fit(img, (1, 1)).getpixel((0, 0)))  # its mean colour
    out = Image.new("RGB", (side, side), fill)
    out.paste(img.convert("RGB"), ((side - w) // 2, (side - h) // 2))
    return out


def _true_answer(name, question):
    for n, _, q, a in _rows():
        if n == name and q.strip().lower() == (question or "").strip().lower():
            return a
    return None


def compute(name, up, q, seed_v):
    """The MuNG tab's seven outputs (cached per example, question and seed: the model is shared)."""
    if up:
        from pini_core.uploads import open_uploaded_image

        img, where = _square(open_uploaded_image(up)), "your upload"
    else:
        match = [im for n, im, _ in _examples() if n == name]
        if not match:
            raise gr.Error("Pick an example or upload an image first.", print_exception=False)
        img, where = match[0], "the example"
    q = (q or "").strip()
    if not q:
        raise gr.Error("Type a question about the image (e.g. 'which colour has the star ?').",
                       print_exception=False)
    seed = int(seed_v or 0)
    true = None if up else _true_answer(name, q)
    key = None if up else ("mung", name, q.lower(), seed)
    return preview.cached(key, lambda: _explain(img, where, q, seed, true))


def _explain(img, where, q, seed, true):
    import numpy as np

    from pini_core.mung.visualize import explain

    with _LOCK:
        bundle, inj = _host_and_injector()
        ex = explain(bundle, inj, img, q, seed=seed)
    up_ = ex.upsampled
    diff = ex.relevance_after - ex.relevance_before
    vmax = float(max(np.abs(ex.relevance_before).max(), np.abs(ex.relevance_after).max())) or 1e-12
    strip = plots.mung_strip(ex.image, ex.tokens, ex.attention_per_token,
                             "Generator attention per question word (÷ uniform, one shared scale)")

    def mark(ans):
        if true is None:
            return ""
        ok = (ans or "").lower().replace(".", " ").split()[:1] == [true.lower()]
        return "  ✓ right" if ok else f"  ✗ wrong (true answer: {true})"

    numbers = {"image": where, "question": q, "seed": seed, "true_answer": true, "target word": ex.target,
               "generator key words": ex.tokens, "answer_without_noise": ex.answer_before,
               "answer_with_noise": ex.answer_after,
               "attention_vs_uniform_range": [float(ex.attention_mean.min() * ex.attention_mean.size),
                                              float(ex.attention_mean.max() * ex.attention_mean.size)],
               "relevance_before_sum": float(ex.relevance_before.sum()),
               "relevance_after_sum": float(ex.relevance_after.sum()),
               "relevance_change_abs_mean": float(np.abs(diff).mean())}
    return (plots.attention_overlay(ex.image, ex.attention_mean, "Generator attention (mean over words)"),
            plots.relevance_overlay(ex.image, up_(ex.relevance_before), f"Relevance for '{ex.target}', no noise", vmax),
            plots.relevance_overlay(ex.image, up_(ex.relevance_after), f"Relevance for '{ex.target}', with noise",
                                    vmax),
            strip,
            ex.answer_before + mark(ex.answer_before), ex.answer_after + mark(ex.answer_after),
            numbers)


def _build_live(ctx: BuildContext) -> None:
    gr.Markdown("The shipped model is a *toy* multimodal LLM (a tiny LLaVA trained on the project's procedural "
                "world) with a trained MuNG generator. Both relevance maps use the **same ε** (seeded) and the "
                "same colour scale, so the only difference between them is the noise. Attention is shown "
                "relative to uniform attention (white = uniform), so nearly uniform attention looks pale.")
    gr.Markdown(_counts_line(), elem_id="mung-counts")
    names = [n for n, _, _ in _examples()]
    with gr.Row():
        with gr.Column(scale=3):
            example = gr.Dropdown(choices=names, value=names[0], label="Example (image + question)")
            upload = gr.File(label="…or upload an image (padded to a square)", file_types=["image"],
                             type="filepath", height=110)
        shown = gr.Image(value=plots.enlarge(_rows()[0][1]), label=f"Example · true answer: {_rows()[0][3]}",
                         format="png", interactive=False, elem_id="mung-example", height=160, scale=1,
                         min_width=140)
    with gr.Row():
        question = gr.Textbox(value=_examples()[0][2], label="Question", scale=3)
        seed = gr.Number(value=0, precision=0, label="Seed (ε)", scale=1)
        run = gr.Button("Explain", variant="primary", scale=1)
    with gr.Row():
        ans_before = gr.Textbox(label="Answer without noise", interactive=False, elem_id="mung-before")
        ans_after = gr.Textbox(label="Answer with MuNG noise", interactive=False, elem_id="mung-after")
    with gr.Row(equal_height=True):
        attn = gr.Image(label="Generator attention over patches", format="png", interactive=False,
                        elem_id="mung-attention", show_label=False, buttons=["download"])
        before = gr.Image(label="Relevance before noise", format="png", interactive=False, show_label=False, buttons=["download"])
        after = gr.Image(label="Relevance after noise (same ε)", format="png", interactive=False, show_label=False, buttons=["download"])
    per_token = gr.Image(label="Attention per question word", format="png", interactive=False,
                         show_label=False, buttons=["download"], elem_id="mung-strip")
    info = gr.JSON(label="Numbers", open=False)

    def pick(name):
        for n, im, q, a in _rows():
            if n == name:
                return q, gr.update(value=plots.enlarge(im), label=f"Example · true answer: {a}")
        return gr.update(), gr.update()

    @friendly
    @gpu
    def explain_one(name, up, q, seed_v):
        return compute(name, up, q, seed_v)

    ins = [example, upload, question, seed]
    outs = [attn, before, after, per_token, ans_before, ans_after, info]
    example.change(pick, [example], [question, shown], api_visibility="private", queue=False).then(
        explain_one, ins, outs, api_visibility="private")
    run.click(explain_one, ins, outs, api_name="mung")
    ctx.page_load.append((preview.on_load(explain_one, 7, 6), ins, outs, {"concurrency_id": "preview", "concurrency_limit": 8}))
    default = _examples()[0]
    ctx.warm.append(lambda: compute(default[0], None, default[2], 0))


def build(ctx: BuildContext) -> None:
    gr.Markdown("MuNG puts a noise generator between a multimodal LLM's vision projector and its "
                "language model: cross-attention from the image tokens to the question's words gives "
                "μ and σ, and the noise suppresses image regions the question does not mention.")
    note = engine.notice("mung")
    if not note and not _shipped_mung():
        note = ("**Not available yet:** no trained MuNG generator is shipped in `checkpoints/mung/` in this "
                "installation, so there is nothing honest to show. See docs/mung.md for how to train one.")
    if note:
        gr.Markdown(note)
        return
    _build_live(ctx)
