"""Train: fit a PiNI generator on a toy task or an uploaded zip, with live curves and Stop.

The trainer runs in a worker thread; its `on_epoch` callback feeds a queue that this
generator handler drains, yielding plot updates as epochs finish. Stop sets the
session's `stop_event`: the trainer finishes the current step and keeps what it learnt.
The result becomes this session's generator (other sessions never see it).
"""
from __future__ import annotations

import os
import queue
import threading
import time

import gradio as gr

from pini_core.spaces import gpu

from demo import backbones, engine, estimate
from demo.context import BuildContext
from demo.session import SessionState, new_scratch_dir
from demo.shipped import shipped_task
from demo.util import backbone, friendly

UPLOAD_TASK = "my images (upload a zip below)"
VISUAL = {"none": ("none", "ca"), "visual feature · cross-attention (paper default)": ("feature", "ca"),
          "visual feature · MLP": ("feature", "mlp"), "raw image · CNN": ("image", "cnn"),
          "raw image · MLP": ("image", "mlp")}
TEXT = {"none": ("none", "le"), "prompt embeddings · learnable (paper default)": ("prompt", "le"),
        "text feature · MLP": ("feature", "mlp"), "text feature · learnable": ("feature", "le")}
# Trainings that run at once for the whole room (each in its own worker; later ones wait in
# the queue and see their place): 2 on a 2-core machine; PINI_APP_TRAININGS overrides.
TRAININGS_AT_ONCE = max(1, int(os.environ.get("PINI_APP_TRAININGS", "2") or 2))
MAX_TEST_IMAGES = 200  # final evaluation / meter subset (keeps a class session short)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def toy_tasks():
    """Names of the registered toy tasks ([] until the world module lands)."""
    if engine.missing("toy"):
        return []
    try:
        from pini_core.data.registry import list_datasets
        return [n for n in list_datasets() if n.startswith("toy-")]
    except Exception:  # noqa: BLE001 - a broken optional module must not break the page
        return []


def _frame(history, keys):
    import pandas as pd

    rows = [{"epoch": h["epoch"], "value": float(h[k]), "series": label}
            for h in history for k, label in keys if k in h]
    return pd.DataFrame(rows, columns=["epoch", "value", "series"])


def experiment_from_inputs(task_name: str, k, n_epochs, lr_v, seed_v, vis: str, txt: str, spec: str):
    """The ExperimentConfig the Train tab's inputs describe: the backbone's preset (`toy` for
    the embedded model, `paper` otherwise) with the sliders' shots, epochs, lr and seed and
    the chosen noise locations. An uploaded zip of photos trains with augmentation. Raises
    ConfigError (shown as one line) for settings out of range."""
    import dataclasses as dc

    from pini_core.errors import ConfigError
    from pini_core.experiment import DataSpec, default_preset, preset_config

    if vis not in VISUAL or txt not in TEXT:
        raise ConfigError("Pick the noise locations from the lists.")
    if VISUAL[vis][0] == "none" and TEXT[txt][0] == "none":
        raise ConfigError("Choose at least one place to inject noise (visual or text).")
    try:
        k, n_epochs, lr_v = int(k), int(n_epochs), float(lr_v)
        seed_v = 1 if seed_v in (None, "") else int(seed_v)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError("Shots, epochs, learning rate and seed must be numbers.") from None
    if not 1 <= n_epochs <= 200:
        raise ConfigError("Epochs must be between 1 and 200.")
    if not 0 < lr_v <= 1:
        raise ConfigError("The learning rate must be a positive number up to 1 (e.g. 0.002).")
    name, pretrained = backbones.parse_spec(spec)
    upload = task_name == UPLOAD_TASK
    cfg = preset_config(default_preset(name), shots=k, dataset="imagefolder" if upload else task_name, seed=seed_v,
                        backbone=name, pretrained=pretrained)
    (vloc, vgen), (tloc, tgen) = VISUAL[vis], TEXT[txt]
    recipe = dc.replace(cfg.recipe, epochs=n_epochs, lr=lr_v, eval_every=1,
                        # photos: CoOp's crop + flip; 64-px toy shapes do not survive the crop
                        augment=upload or cfg.recipe.augment, aug_views=2 if upload else cfg.recipe.aug_views)
    noise = dc.replace(cfg.noise, visual_location=vloc, visual_generator=vgen, text_location=tloc,
                       text_generator=tgen)
    from pini_core.methods import check_config

    return check_config(cfg.replace(recipe=recipe, noise=noise, data=DataSpec(cfg.data.dataset)))


def build(ctx: BuildContext) -> None:
    gr.Markdown("Train a noise generator on a few-shot task. Curves update after every epoch; **Stop** "
                "ends early and keeps what was learnt. The generator is then used by the other tabs — "
                "for *your* browser session only.")
    note = engine.notice("model", "trainer", "checkpoint")
    if note:
        gr.Markdown(note)
    tasks = toy_tasks()
    with gr.Row():
        shipped = shipped_task()  # open on the task the shipped generator was trained on
        default_task = shipped if shipped in tasks else (tasks[0] if tasks else UPLOAD_TASK)
        task = gr.Dropdown(choices=tasks + [UPLOAD_TASK], value=default_task,
                           allow_custom_value=True, label="Task")
        zip_file = gr.File(label="Zip of class-named image folders (cat/1.jpg, dog/2.jpg, ...)",
                           file_types=[".zip"], type="filepath", height=110)
    with gr.Row():
        # Defaults = the preset of the app's model (pini_core.experiment: `toy` for the embedded
        # model, the recipe of the shipped generator; `paper` for real CLIPs) — one place.
        from pini_core.experiment import default_preset, preset_config

        preset = preset_config(default_preset(backbones.parse_spec(backbones.default_spec())[0]))
        shots = gr.Slider(1, 16, value=preset.shots, step=1, label="Shots per class")
        epochs = gr.Slider(1, 200, value=min(200, preset.recipe.epochs), step=1, label="Epochs")
        lr = gr.Number(value=preset.recipe.lr, label=f"Learning rate (recipe '{preset.preset}')")
        seed = gr.Number(value=preset.seed, precision=0, label="Seed")
    with gr.Row():
        visual = gr.Dropdown(list(VISUAL), value="visual feature · cross-attention (paper default)",
                             label="Visual noise (location · generator)")
        text = gr.Dropdown(list(TEXT), value="prompt embeddings · learnable (paper default)",
                           label="Text noise (location · generator)")
    estimate_md = gr.Markdown(estimate.training_note("feature", shots.value, 10, epochs.value), elem_id="train-estimate")
    with gr.Row():
        start = gr.Button("Train", variant="primary")
        stop = gr.Button("Stop (keep what was trained)", variant="stop")
    status = gr.Markdown(elem_id="train-status")
    stop_note = gr.Markdown(elem_id="train-stop-note")  # Stop's reply: never overwrites a final result
    with gr.Row():
        loss_plot = gr.LinePlot(x="epoch", y="value", color="series", title="Training loss (Eq. 13)",
                                label="loss", height=260)
        acc_plot = gr.LinePlot(x="epoch", y="value", color="series", title="Validation accuracy (%)",
                               label="accuracy", height=260)
    ckpt = gr.File(label="Checkpoint: pini_generators.safetensors + pini_config.json (load both in the model "
                         "panel later)", file_count="multiple", interactive=False)

    @friendly
    @gpu(duration=300)
    def train(task_name, zip_path, k, n_epochs, lr_v, seed_v, vis, txt, state: SessionState,
              progress=gr.Progress()):
        from pini_core.errors import DataError
        from pini_core.runner import open_dataset, run

        spec = state.backbone_spec or backbones.default_spec()
        if task_name != UPLOAD_TASK and task_name not in toy_tasks():
            raise gr.Error(f"Unknown task {task_name!r}; pick one from the list.", print_exception=False)
        config = experiment_from_inputs(task_name or UPLOAD_TASK, k, n_epochs, lr_v, seed_v, vis, txt, spec)
        bb = backbone(state, progress)
        progress(0.05, desc="Preparing the data ...")
        if config.data.dataset == "imagefolder":
            if not zip_path:
                raise gr.Error("Upload a zip of class-named image folders, or pick a toy task.",
                               print_exception=False)
            from demo.session import session_zip
            from pini_core.data.registry import get_dataset

            ds = session_zip(state, zip_path)  # unpacked once per session (by content), disk bounded
            splits = get_dataset("imagefolder", root=str(ds.root), seed=config.data.seed)
            where = f"your zip ({len(ds.items)} images, {len(ds.classnames)} classes)"
            summary = estimate.zip_summary(ds, splits, config.shots)  # real counts, shots used, tiny-test warning
        else:
            splits = open_dataset(config)
            where = f"toy task {task_name}"
            summary = f"{config.shots} per class"
        if not splits.train or not splits.test:
            raise DataError("This task needs training and test images.")
        k, n_epochs = config.shots, config.recipe.epochs
        stop_event = state.stop_event
        stop_event.clear()
        q: "queue.Queue" = queue.Queue()
        ckpt_dir = new_scratch_dir(state, "ckpt-")

        def work():
            try:
                res = run(config, backbone=bb, dataset=splits, checkpoint_dir=str(ckpt_dir), progress=False,
                          on_epoch=lambda row: q.put(("epoch", row)), stop_event=stop_event,
                          test_limit=MAX_TEST_IMAGES, provenance={"trained_in": "app", "task": where})
                if res.history:  # the same images without noise (one zero-shot path): what training bought
                    zs = run(config.replace(method="zeroshot", shots=0), backbone=bb, dataset=splits,
                             progress=False, test_limit=MAX_TEST_IMAGES)
                    res.metrics["zero_shot_accuracy"] = zs.metrics["test_accuracy"]
                q.put(("done", res))
            except BaseException as e:  # noqa: BLE001 - handed to the UI thread
                q.put(("error", e))

        threading.Thread(target=work, daemon=True, name="pini-app-train").start()
        history = []
        head = (f"Training on {where}: {config.noise.describe()}, {_plural(n_epochs, 'epoch')} "
                f"(recipe '{config.preset}', lr {config.recipe.lr:g}).\n\n{summary}")
        yield (f"{head}\n\nPreparing (the first epoch includes encoding the images) ...", None, None,
               None, state, gr.update(), "")  # a new run clears the last Stop note
        t0 = time.time()
        res = None
        while res is None:
            try:
                events = [q.get(timeout=0.5)]
            except queue.Empty:
                continue
            while True:  # epochs can finish faster than the page redraws: one update for all that are in
                try:
                    events.append(q.get_nowait())
                except queue.Empty:
                    break
            for kind, payload in events:
                if kind == "error":
                    raise payload
                if kind == "epoch":
                    history.append(payload)
                else:
                    res = payload
            if history and any(kind == "epoch" for kind, _ in events):
                last = history[-1]
                progress((last["epoch"], n_epochs), desc="epochs", unit="epochs")
                acc = f", val accuracy {last['val_accuracy']:.1f}%" if "val_accuracy" in last else ""
                msg = (f"{head}\n\nEpoch {last['epoch']}/{n_epochs}: loss {last['loss']:.4f}{acc} "
                       f"({time.time() - t0:.0f} s).")
                yield (msg, _frame(history, [("loss", "train loss")]),
                       _frame(history, [("val_accuracy", "val accuracy")]), None, state, gr.update(), gr.update())
        state.history = history
        ended = f"Stopped early: {res.reason}." if res.stopped else "Finished."
        metrics = {}
        if "test_accuracy" in res.metrics and history:
            metrics = {"test_accuracy_mean": res.metrics["test_accuracy"],
                       "zero_shot_accuracy": res.metrics["zero_shot_accuracy"]}
        test = list(splits.test)[:MAX_TEST_IMAGES]
        files = None
        label = f"trained here ({where}, {_plural(len(history), 'epoch')})"
        if history:
            state.set_generator(res.method, label, spec)
            state.eval_data = test
            files = sorted(str(p) for p in res.checkpoint.iterdir() if p.is_file()) if res.checkpoint else None
        acc_txt = "".join(f" Test accuracy ({m.split('_')[-1]} mode, {len(test)} images): {v:.1f}%."
                          for m, v in metrics.items() if m.startswith("test_accuracy_"))
        if "zero_shot_accuracy" in metrics:
            acc_txt += f" Zero-shot CLIP on the same images: {metrics['zero_shot_accuracy']:.1f}%."
        from demo.tab_model import generator_status

        if not history:
            yield (f"{head}\n\n{ended} No epoch finished, so there is no new generator.", None, None, None,
                   state, generator_status(state), gr.update())
            return
        yield (f"{head}\n\n{ended}{acc_txt} The generator is now used by the other tabs in this session.",
               _frame(history, [("loss", "train loss")]), _frame(history, [("val_accuracy", "val accuracy")]),
               files, state, generator_status(state), gr.update())

    def request_stop(state: SessionState):
        if isinstance(state, SessionState):
            state.stop_event.set()
        return "Stopping after the current step; what was trained so far is kept ..."

    gen_status = ctx.generator_status[0] if ctx.generator_status else gr.Markdown(visible=False)
    start.click(train, [task, zip_file, shots, epochs, lr, seed, visual, text, ctx.session],
                [status, loss_plot, acc_plot, ckpt, ctx.session, gen_status, stop_note], api_name="train",
                concurrency_id="train", concurrency_limit=TRAININGS_AT_ONCE)
    stop.click(request_stop, [ctx.session], [stop_note], api_name="stop_training", queue=False)
    gr.on([visual.change, shots.change, epochs.change, task.change, zip_file.change], estimate.train_note,
          [task, zip_file, shots, epochs, visual, seed, ctx.session], [estimate_md], api_visibility="private")
