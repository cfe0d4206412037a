"""The model panel (above the tabs): pick the CLIP backbone, and load a generator checkpoint."""
from __future__ import annotations

from typing import List

import gradio as gr

from demo import backbones
from demo.session import SessionState
from pini_core.errors import PiniError

from demo.util import example_choices, friendly, scrub_paths


def provenance(cfg: dict) -> str:
    """'task toy-clutter, recipe toy (lr 0.02), 100 epochs, test accuracy 64.7% (mean mode, 300
    images)' from a checkpoint's pini_config.json (pini_core.checkpoint.read_config); '' if it
    records nothing."""
    if not isinstance(cfg, dict):
        return ""
    exp = cfg.get("experiment") or {}
    data = cfg.get("data") or exp.get("data") or {}
    rec = exp.get("recipe") or cfg.get("train_config") or {}
    met = cfg.get("metrics") or {}
    parts = []
    task = cfg.get("task") if str(cfg.get("task", "")).startswith("your zip") else data.get("dataset")
    if task:
        shots = data.get("shots", exp.get("shots"))
        parts.append(f"task {task}" + (f" ({shots} shots per class)" if shots else ""))
    if rec:
        name = exp.get("preset")
        bits = []
        if rec.get("optimizer"):
            bits.append(str(rec["optimizer"]).upper())
        if isinstance(rec.get("lr"), (int, float)):
            bits.append(f"lr {rec['lr']:g}")
        parts.append(f"recipe {name + ' ' if name else ''}({', '.join(bits)})" if bits or name else "")
    done, planned = met.get("epochs_done"), rec.get("epochs")
    if done is not None:
        stopped = " (stopped early)" if met.get("stopped") else ""
        parts.append(f"{done}{'/' + str(planned) if planned and planned != done else ''} "
                     f"epoch{'' if done == 1 else 's'}{stopped}")
    if isinstance(met.get("test_accuracy"), (int, float)):
        parts.append(f"test accuracy {met['test_accuracy']:.1f}% ({met.get('test_mode', 'mean')} mode)")
    if isinstance(met.get("zero_shot_accuracy"), (int, float)):
        parts.append(f"zero-shot {met['zero_shot_accuracy']:.1f}%")
    return ", ".join(p for p in parts if p)


def generator_status(session: SessionState) -> str:
    spec = session.backbone_spec or backbones.default_spec()
    m = session.generator_for(spec)
    if m is None:
        return ("**Generator:** none yet for this model. Train one in the *Train* tab, or load a "
                "checkpoint (the two files the Train tab saves).")
    cfg = m.noise_cfg.describe() if hasattr(m, "noise_cfg") else ""
    where = provenance(getattr(m, "_app_provenance", None) or {})
    return (f"**Generator:** {session.method_label} — {cfg}; {len(m.classnames)} classes: "
            f"{', '.join(m.classnames[:8])}{' ...' if len(m.classnames) > 8 else ''}."
            + (f" Trained on: {where}." if where else ""))


def build(session: gr.State, default_spec: str, example_dropdowns: List[gr.Dropdown]):
    """Returns a function that wires the panel once the tabs' example dropdowns exist."""
    with gr.Group():
        with gr.Row():
            model = gr.Dropdown(choices=backbones.choices_with(default_spec), value=default_spec,
                                allow_custom_value=True, scale=3, label=backbones.box_label())
            load_btn = gr.Button("Load model", variant="primary", scale=1)
        model_status = gr.Markdown("Loading the model ...", elem_id="model-status")
        with gr.Accordion("Load a generator checkpoint", open=False), gr.Row():
            ckpt = gr.File(label="Load a generator checkpoint: its two files, pini_generators.safetensors "
                                 "and pini_config.json", file_count="multiple",
                           file_types=[".safetensors", ".json"], scale=3, height=110)
            ckpt_btn = gr.Button("Use this checkpoint", scale=1)
        gen_status = gr.Markdown(elem_id="generator-status")

    @friendly
    def load_model(spec: str, state: SessionState, progress=gr.Progress()):
        spec = (spec or "").strip() or backbones.default_spec()
        try:  # a visitor's spec: no server paths, no oversized builds (checked before anything is opened)
            backbones.check_visitor_spec(spec, default_spec)
        except PiniError as e:
            keep = state.backbone_spec
            msg = f"**Not loaded: {scrub_paths(spec)[:200]}.** {scrub_paths(str(e))}"
            if keep and backbones.CACHE.get_loaded(keep) is not None:
                msg += f"\n\nStill using: {backbones.label_for(keep)}."
            return [msg, state, generator_status(state), *[gr.update() for _ in example_dropdowns]]
        progress(0.05, desc=f"Loading {backbones.label_for(spec)} (first time: download/initialise) ...")
        try:
            bb = backbones.CACHE.load(spec)
        except Exception as e:  # noqa: BLE001 - explained to the user; the old model stays
            keep = state.backbone_spec
            msg = backbones.failure_message(spec, e)
            if keep and backbones.CACHE.get_loaded(keep) is not None:
                msg += f"\n\nStill using: {backbones.label_for(keep)}."
            dd = [gr.update() for _ in example_dropdowns]
            return [msg, state, generator_status(state), *dd]
        progress(1.0, desc="Loaded")
        state.backbone_spec = spec
        choices = example_choices(spec)
        dd = [gr.update(choices=choices, value=choices[0] if choices else None) for _ in example_dropdowns]
        msg = backbones.describe(bb, spec)
        if not backbones.is_embedded(spec):
            from demo.examples import LICENCE_NOTE

            msg += "\n\n" + LICENCE_NOTE
        return [msg, state, generator_status(state), *dd]

    @friendly
    def on_page_load(spec: str, state: SessionState, progress=gr.Progress()):
        """Like load_model, but a load that already failed (e.g. the background warm-up of an
        unreachable download) is reported at once instead of retried; Load model retries."""
        spec = (spec or "").strip() or backbones.default_spec()
        err = backbones.CACHE.last_error(spec)
        if err and backbones.CACHE.get_loaded(spec) is None:
            msg = backbones.failure_message(spec, PiniError(err)) + "\n\nPress **Load model** to try again."
            return [msg, state, generator_status(state), *[gr.update() for _ in example_dropdowns]]
        return load_model(spec, state, progress)

    @friendly
    def use_checkpoint(files, state: SessionState, progress=gr.Progress()):
        import os
        import shutil

        from pini_core.checkpoint import CONFIG_NAME, WEIGHTS_NAME

        from demo.session import new_scratch_dir
        from demo.util import backbone

        from demo.engine import get

        load_pini = get("checkpoint")
        paths = [p for p in (files if isinstance(files, list) else [files]) if p]
        names = {os.path.basename(p): p for p in paths}
        if set(names) != {WEIGHTS_NAME, CONFIG_NAME}:
            raise gr.Error(f"Choose the two files of a checkpoint together: {WEIGHTS_NAME} and {CONFIG_NAME} "
                           "(the Train tab's download gives both).", print_exception=False)
        bb = backbone(state, progress)
        folder = new_scratch_dir(state, "load-")
        try:  # the loaded model lives in memory: the copy is not kept
            for name, p in names.items():
                shutil.copy(p, folder / name)
            model = load_pini(folder, bb)
            from pini_core.checkpoint import read_config

            model._app_provenance = read_config(folder)  # task, recipe, epochs, accuracy for the panel
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        same_task = state.method is not None and list(state.method.classnames) == list(model.classnames)
        state.set_generator(model, "loaded checkpoint", state.backbone_spec or backbones.default_spec())
        if not same_task:  # held-out images of another task would be meaningless for the meter
            state.eval_data = []
        return state, generator_status(state)

    def wire(demo: gr.Blocks):
        outs = [model_status, session, gen_status, *example_dropdowns]
        load_btn.click(load_model, [model, session], outs, api_name="load_model", concurrency_id="model")
        demo.load(on_page_load, [model, session], outs, api_visibility="private", concurrency_id="model")
        ckpt_btn.click(use_checkpoint, [ckpt, session], [session, gen_status], api_name="load_checkpoint")
        return gen_status

    return wire, gen_status
