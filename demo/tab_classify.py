"""Classify: zero-shot CLIP vs PiNI (mean / single / average), and the spread over noise draws."""
from __future__ import annotations

import gradio as gr

from pini_core.spaces import gpu

from demo import engine, preview
from demo.context import BuildContext
from demo.session import SessionState
from demo.util import NO_GENERATOR, backbone, example_path, friendly, image_picker, picked_image, session_spec

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


def _verdicts(true, zs_top, tops) -> str:
    """One line: the true label and each column's top class marked right / wrong."""
    mark = lambda p: "✓" if p == true else "✗"  # noqa: E731
    parts = [f"zero-shot **{zs_top}** {mark(zs_top)}"] + [f"PiNI {m} **{p}** {mark(p)}" for m, p in tops]
    return f"True label: **{true}** — " + " · ".join(parts) + "."


def curated_counts(state: SessionState, method) -> str:
    """'On the 6 curated toy-clutter examples, PiNI (mean) fixes 2, breaks 2 of these 6', computed
    now for the session's generator (cached for the shipped one)."""
    from demo import examples as ex
    from demo.shipped import shipped_task

    task = shipped_task()
    rows = ex.curated(task)
    if method is None or not rows or not {r["true"] for r in rows} <= set(method.classnames):
        return ""
    paths = dict(ex.toy_examples())
    rows = [r for r in rows if r["name"] in paths]

    def run():
        from pini_core.uploads import open_uploaded_image
        from pini_core.world.examples import clip_predictions, outcome, pick_by_rule, summary_line

        bb = backbone(state)
        preds = clip_predictions(bb, method, [open_uploaded_image(paths[r["name"]]) for r in rows])
        names = list(method.classnames)
        outs = [outcome(r["true"], names[z], names[p]) for r, z, p in zip(rows, preds["zero_shot"], preds["pini_mean"])]
        c = pick_by_rule(outs)["counts"]
        return (f"On the {len(rows)} {task} examples in the list (chosen by a fixed rule on held-out renders, "
                f"not for success): {summary_line(c, len(rows), 'PiNI (mean)')}; zero-shot is right on "
                f"{c['break'] + c['both_right']}, PiNI on {c['fix'] + c['both_right']}.")

    key = preview.model_key(method)
    return preview.cached(("counts", key, task) if key else None, run)


def compute(example, up, class_text, tmpl, k, seed_v, state: SessionState, progress=preview.no_progress):
    """The Classify tab's seven outputs (cached for the shipped generator and an example)."""
    names_in = _parse_classes(class_text)
    tmpl = (tmpl or "").strip() or "a photo of a {}."
    img, where = picked_image(state, example, up)
    bb = backbone(state, progress)
    method = state.generator_for(state.backbone_spec)
    mkey = preview.model_key(method)
    key = None if (up or mkey is None) else ("classify", mkey, example, tuple(names_in), tmpl, int(k),
                                               int(seed_v or 0))
    return preview.cached(key, lambda: _classify(img, where, example if not up else None, names_in, tmpl, k,
                                                 seed_v, state, bb, method))


def _classify(img, where, example, names_in, tmpl, k, seed_v, state, bb, method):
    import torch

    from demo import plots
    from demo.examples import true_label
    from pini_core.features import test_transform

    names = names_in or (list(method.classnames) if method is not None else [])
    if len(names) < 2:
        raise gr.Error("Give at least two class names (comma-separated), or train/load a generator "
                       "whose classes are used.", print_exception=False)
    if tmpl.count("{}") != 1:
        raise gr.Error("The template needs exactly one {} where the class name goes, e.g. "
                       "'a photo of a {}.'", print_exception=False)
    k, seed_v = int(k), int(seed_v or 0)
    true = true_label(example) if example else None
    px = test_transform(bb)(img).unsqueeze(0)
    with torch.no_grad():
        zs_probs = torch.softmax(_zero_shot(bb, tuple(names), tmpl).predict({"pixels": px}), -1)[0].cpu()
    out_zs = {n: float(p) for n, p in zip(names, zs_probs)}
    zs_top = names[int(zs_probs.argmax())]
    result = {"image": where, "true_label": true, "zero_shot": out_zs}
    if method is None:
        msg = "The PiNI columns are empty: " + NO_GENERATOR
        if true:
            msg = f"True label: **{true}** — zero-shot **{zs_top}** {'✓' if zs_top == true else '✗'}. " + msg
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
    tops = [("mean", cn[int(mean.argmax())]), ("single", cn[int(single.argmax())]), ("average", cn[int(avg.argmax())])]
    result.update(pini_classes=cn, mean=lab(mean), single=lab(single), average=lab(avg),
                  spread_std=dict(zip(cn, per_draw.std(0).round(4).tolist())), draws=k, seed=seed_v,
                  predictions={"zero_shot": zs_top, **{m: p for m, p in tops}})
    fig = plots.spread(per_draw, cn, f"PiNI: {k} noise draws", true=true)
    if true:
        msg = _verdicts(true, zs_top, tops)
    else:
        msg = "True label unknown (your upload)." if where == "your upload" else ""
    msg = " ".join(x for x in (msg, f"Generator: {state.method_label}.", curated_counts(state, method)) if x)
    return [out_zs, lab(mean), lab(single), lab(avg), fig, result, msg]


def example_preview(state: SessionState, example):
    """The chosen example and its true label (shown before any click)."""
    from demo.examples import true_label

    if not example:
        return gr.update(value=None, label="Example")
    path = example_path(session_spec(state, ""), example) if isinstance(state, SessionState) else None
    true = true_label(example)
    from demo.plots import enlarge

    return gr.update(value=enlarge(path) if path else None, label=f"Example · true label: {true}" if true else "Example")


def build(ctx: BuildContext) -> None:
    note = engine.notice("model")
    gr.Markdown("Class probabilities of zero-shot CLIP (hand-written prompt) and of the session's PiNI "
                "generator, each marked ✓ / ✗ against the example's true label. " + MODES_HELP)
    if note:
        gr.Markdown(note)
    with gr.Row():
        with gr.Column(scale=3):
            example, upload = image_picker(ctx.default_spec)
        shown = gr.Image(label="Example", format="png", interactive=False, elem_id="classify-example",
                         height=160, scale=1, min_width=140)
    ctx.example_dropdowns.append(example)
    with gr.Row():
        classes = gr.Textbox(label="Class names for zero-shot CLIP (comma-separated; empty = the "
                                   "generator's classes)", scale=3)
        template = gr.Textbox(value="a photo of a {}.", label="Zero-shot prompt template", scale=2)
    with gr.Row():
        draws = gr.Slider(2, 64, value=8, step=1, label="K noise draws (average mode and the spread)")
        seed = gr.Number(value=0, precision=0, label="Seed")
        run = gr.Button("Classify", variant="primary")
    status = gr.Markdown(elem_id="classify-status")
    with gr.Row():
        zs = gr.Label(label="Zero-shot CLIP", elem_id="classify-zs")
        p_mean = gr.Label(label="PiNI · mean (ε = 0)", elem_id="classify-mean")
        p_single = gr.Label(label="PiNI · single draw")
        p_avg = gr.Label(label="PiNI · average over K draws")
    with gr.Row():
        spread_img = gr.Image(label="Spread of PiNI's probabilities over noise draws", format="png",
                              interactive=False, show_label=False, buttons=["download"], elem_id="classify-spread")
        info = gr.JSON(label="Numbers", open=False)

    @friendly
    @gpu
    def classify(example, up, class_text, tmpl, k, seed_v, state: SessionState, progress=gr.Progress()):
        return compute(example, up, class_text, tmpl, k, seed_v, state, progress)

    ins = [example, upload, classes, template, draws, seed, ctx.session]
    outs = [zs, p_mean, p_single, p_avg, spread_img, info, status]
    run.click(classify, ins, outs, api_name="classify")
    example.change(classify, ins, outs, api_visibility="private", trigger_mode="always_last")
    example.change(example_preview, [ctx.session, example], [shown], api_visibility="private", queue=False)
    ctx.page_load.append((preview.on_load(classify, 7, 6), ins, outs, {"concurrency_id": "preview", "concurrency_limit": 8}))
    ctx.page_load.append((example_preview, [ctx.session, example], [shown], {"queue": False}))
    default = example.value

    def warm():
        from demo.session import SessionState as S

        st = S(backbone_spec=ctx.default_spec)
        compute(default, None, "", "a photo of a {}.", 8, 0, st)

    ctx.warm.append(warm)
