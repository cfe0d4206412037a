"""Classify: zero-shot CLIP vs PiNI (mean / single / average), and the spread over noise draws."""
from __future__ import annotations

import gradio as gr

from pini_core.spaces import gpu

from demo import engine
from demo.context import BuildContext
from demo.session import SessionState
from demo.util import NO_GENERATOR, backbone, friendly, image_picker, picked_image

MODES_HELP = ("**mean**: ε = 0 (the noise's mean); **single**: one random draw, as the authors' code "
              "does at test time; **average**: the softmax averaged over K draws.")


def _parse_classes(text: str):
    names = [c.strip() for c in (text or "").replace("\n", ",").split(",") if c.strip()]
    return list(dict.fromkeys(names))


def _zero_shot(bb, names, tmpl):
    """Zero-shot CLIP for these classes; its text features are computed once per backbone
    (the cache lives on the backbone object, so it goes away with it)."""
    from collections import OrderedDict

    from pini_core.baselines.zeroshot import ZeroShotCLIP

    cache = bb.__dict__.setdefault("_app_zero_shot_cache", OrderedDict())
    key = (names, tmpl)
    if key not in cache:
        cache[key] = ZeroShotCLIP(bb, list(names), tmpl)
        while len(cache) > 16:
            cache.popitem(last=False)
    return cache[key]


def build(ctx: BuildContext) -> None:
    note = engine.notice("model")
    gr.Markdown("Class probabilities of zero-shot CLIP (hand-written prompt) and of the session's PiNI "
                "generator. " + MODES_HELP)
    if note:
        gr.Markdown(note)
    example, upload = image_picker(ctx.default_spec)
    ctx.example_dropdowns.append(example)
    with gr.Row():
        classes = gr.Textbox(label="Class names for zero-shot CLIP (comma-separated; empty = the "
                                   "generator's classes)", scale=3)
        template = gr.Textbox(value="a photo of a {}.", label="Zero-shot prompt template", scale=2)
    with gr.Row():
        draws = gr.Slider(2, 64, value=8, step=1, label="K noise draws (average mode and the spread)")
        seed = gr.Number(value=0, precision=0, label="Seed")
        run = gr.Button("Classify", variant="primary")
    with gr.Row():
        zs = gr.Label(label="Zero-shot CLIP", num_top_classes=None)
        p_mean = gr.Label(label="PiNI · mean (ε = 0)")
        p_single = gr.Label(label="PiNI · single draw")
        p_avg = gr.Label(label="PiNI · average over K draws")
    with gr.Row():
        spread_img = gr.Image(label="Spread of PiNI's probabilities over noise draws", format="png",
                              interactive=False)
        info = gr.JSON(label="Numbers")
    status = gr.Markdown()

    @friendly
    @gpu
    def classify(example, up, class_text, tmpl, k, seed_v, state: SessionState, progress=gr.Progress()):
        import torch

        from demo import plots
        from pini_core.features import test_transform

        img, where = picked_image(state, example, up)
        bb = backbone(state, progress)
        method = state.generator_for(state.backbone_spec)
        names = _parse_classes(class_text) or (list(method.classnames) if method is not None else [])
        if len(names) < 2:
            raise gr.Error("Give at least two class names (comma-separated), or train/load a generator "
                           "whose classes are used.", print_exception=False)
        tmpl = (tmpl or "").strip() or "a photo of a {}."
        if tmpl.count("{}") != 1:
            raise gr.Error("The template needs exactly one {} where the class name goes, e.g. "
                           "'a photo of a {}.'", print_exception=False)
        k, seed_v = int(k), int(seed_v or 0)
        px = test_transform(bb)(img).unsqueeze(0)
        with torch.no_grad():
            zs_probs = torch.softmax(_zero_shot(bb, tuple(names), tmpl).predict({"pixels": px}), -1)[0].cpu()
        out_zs = {n: float(p) for n, p in zip(names, zs_probs)}
        result = {"image": where, "zero_shot": out_zs}
        if method is None:
            msg = "The PiNI columns are empty: " + NO_GENERATOR
            return [out_zs, None, None, None, None, result, msg]
        with torch.no_grad():
            inputs = {"pixels": px}
            mean = method.predict_proba(inputs, mode="mean")[0].cpu()
            single = method.predict_proba(inputs, mode="single",
                                          generator=torch.Generator(device=bb.device).manual_seed(seed_v))[0].cpu()
            # K seeded draws in one pass: their softmaxes give the spread, and their mean is
            # exactly PiNIModel.predict(mode="average") (the mean softmax over K draws).
            gen = torch.Generator(device=bb.device).manual_seed(seed_v)
            per_draw = torch.softmax(method.run(inputs, draws=k, mode="sample", generator=gen).logits[:, 0], -1)
            avg = per_draw.mean(0).cpu()
        cn = list(method.classnames)
        lab = lambda p: {n: float(v) for n, v in zip(cn, p)}  # noqa: E731
        per_draw = per_draw.cpu().numpy()
        result.update(pini_classes=cn, mean=lab(mean), single=lab(single), average=lab(avg),
                      spread_std=dict(zip(cn, per_draw.std(0).round(4).tolist())), draws=k, seed=seed_v)
        fig = plots.spread(per_draw, cn, f"PiNI: {k} noise draws ({state.method_label})")
        return [out_zs, lab(mean), lab(single), lab(avg), fig, result, ""]

    run.click(classify, [example, upload, classes, template, draws, seed, ctx.session],
              [zs, p_mean, p_single, p_avg, spread_img, info, status], api_name="classify")
