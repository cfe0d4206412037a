"""Learn π-noise: a guided lesson whose every number is computed (from the shipped generator
and its task, at start-up, cached per generator) and shown next to the equation it comes
from; the π-noise meter (four rows: none / random / learned ε = 0 / learned sampled); and the
miniature benchmark under each protocol, labelled with its recipe.

The numbers come from `pini_core.analysis.lesson.pi_noise_lesson` and
`pini_core.analysis.meter.pi_noise_meter`; this module only writes the words around them.
"""
from __future__ import annotations

import io
import logging
import threading
from typing import Any, Dict, List, Tuple

import gradio as gr

from pini_core.spaces import gpu

from demo import backbones, engine
from demo.context import BuildContext
from demo.session import SessionState
from demo.util import NO_GENERATOR, backbone, friendly

log = logging.getLogger("pini.app")

DEFAULT_DRAWS = 8
DEFAULT_IMAGES = 200
N_STEPS = 6
# The tabs the lesson's steps open (their names in demo/build.py).
TAB_NOISE, TAB_CLASSIFY, TAB_PROMPT, TAB_TRAIN = "Noise on images", "Classify", "Prompt distribution", "Train"

INTRO = """## Why can noise *help*? A lesson in six steps
Every number below is computed by this app from the generator it ships with and that generator's task
(held-out images it never trained on), and sits next to the equation it comes from. The **meter** further
down measures the same quantities for *your* generator."""

METER_HEAD = """### The π-noise meter
A task T is uncertain; the paper measures that uncertainty with **H(T) = E[−log p(y | x, P)]** (Eq. 3),
the cross-entropy of CLIP's predictions with one prompt per class. Noise ε is *beneficial* (π-noise) when
knowing it makes the task less uncertain: **I(T, ε) = H(T) − H(T | ε) > 0** (Eq. 1), with
H(T | ε) = E[−log p(y | x, ε, P)] (Eq. 5). PiNI trains a generator G = μ(x, P) + σ(x, P)⊙ε (ε ~ N(0, I))
by minimising a Monte Carlo bound of H(T | ε) (Eq. 13). The fair comparison for learned noise is random
noise of the same size, and the learned noise with ε = 0 (μ alone) shows how much of the gain is the
random part σ⊙ε."""

# Clicking a step's button selects the named tab (also from the phone layout's "More tabs" menu).
_OPEN_TAB_JS = """
() => {
  const name = "TAB_NAME";
  const find = () => [...document.querySelectorAll('button[role="tab"], .overflow-dropdown button')]
    .find(b => b.textContent.trim().startsWith(name) && b.offsetParent !== null);
  const go = (b) => { b.click(); window.scrollTo({top: 0, behavior: 'smooth'}); };
  const b = find();
  if (b) { go(b); return; }
  const more = document.querySelector('button[aria-label="More tabs"]');
  if (more) { more.click(); setTimeout(() => { const c = find(); if (c) go(c); }, 50); }
}
"""


# ------------------------------------------------------------------ the lesson's numbers, cached
class _LessonCache:
    """One lesson per generator (keyed by the model object, which the entry keeps alive),
    computed once; concurrent callers wait for the computation under way."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: Dict[int, Tuple[Any, Dict[str, Any]]] = {}
        self._busy: Dict[int, threading.Lock] = {}

    def get(self, model) -> Dict[str, Any]:
        key = id(model)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] is model:
                return hit[1]
            lock = self._busy.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                hit = self._items.get(key)
                if hit is not None and hit[0] is model:
                    return hit[1]
            from pini_core.analysis.lesson import pi_noise_lesson

            lesson = pi_noise_lesson(model, n_images=DEFAULT_IMAGES, draws=DEFAULT_DRAWS, seed=0)
            with self._lock:
                while len(self._items) >= 4:  # a few generators (a new embedded CLIP replaces the old one)
                    self._items.pop(next(iter(self._items)))
                self._items[key] = (model, lesson)
            return lesson


LESSONS = _LessonCache()


def _shipped_model(spec: str):
    """(model, label) of the generator shipped for the backbone `spec` (loading both), or None."""
    if not backbones.is_embedded(spec):
        return None
    from demo.shipped import shipped_generator

    shipped = shipped_generator(backbones.CACHE.load(spec))
    return (shipped[0], shipped[1]) if shipped else None


def warm_lesson(spec: str) -> None:
    """Compute the shipped generator's lesson now (start-up), so the page opens with it."""
    found = _shipped_model(spec)
    if found is not None:
        LESSONS.get(found[0])


def precompute(spec: str) -> threading.Thread:
    """`warm_lesson` in a background thread."""

    def work():
        try:
            warm_lesson(spec)
        except Exception:  # noqa: BLE001 - the page-load handler computes it again and shows the error
            log.exception("precomputing the Learn tab's lesson failed")

    t = threading.Thread(target=work, daemon=True, name="pini-app-lesson")
    t.start()
    return t


# ------------------------------------------------------------------ words around the numbers
def _n(k: float, word: str) -> str:
    k_txt = f"{k:g}" if isinstance(k, float) and not float(k).is_integer() else f"{int(k)}"
    return f"{k_txt} {word}" + ("" if k == 1 else "s")


def _pts(d: float) -> str:
    return f"{d:+.1f} " + ("point" if abs(round(d, 1)) == 1 else "points")


def _verdict(r: Dict[str, Any], base: Dict[str, Any], tol: float) -> str:
    """'helps' / 'hurts' / 'changes nothing' in the meter's and in accuracy's words."""
    meter = "helps" if r["I"] > tol else ("hurts" if r["I"] < -tol else "changes nothing")
    d = r["correct"] - base["correct"]
    acc = "helps" if d >= 0.5 else ("hurts" if d <= -0.5 else "changes nothing")
    return meter, acc


def lesson_steps(L: Dict[str, Any]) -> List[str]:
    """The six steps' Markdown, every number from `L` (`pini_core.analysis.lesson.pi_noise_lesson`)."""
    from pini_core.analysis.meter import I_TOLERANCE

    M = L["meter"]
    none, rnd, mean, smp = M["none"], M["random"], M["learned_mean"], M["learned"]
    n, c, task = L["n"], len(L["classes"]), L["task"]
    zs = L["zero_shot"]
    steps = []

    # 1. zero-shot under dataset bias
    src = zs["targets"].get("source")
    others = "; ".join(f"{acc['accuracy']:.1f} % on the *{d}* renders (H(T) = {acc['H_T']:.3f})"
                       for d, acc in sorted(zs["targets"].items(), key=lambda kv: -kv[1]["accuracy"]) if d != "source")
    bias, title = "", "**1 · Zero-shot CLIP under dataset bias.**"
    if src is not None:
        worse = src["accuracy"] - zs["test"]["accuracy"]
        if worse > 0:
            title = "**1 · Zero-shot CLIP fails under dataset bias.**"
            bias = (f" On clean renders like its pretraining (*source*) it gets **{src['accuracy']:.1f} %** "
                    f"(H(T) = {src['H_T']:.3f} nats): this task's bias costs {_pts(worse).lstrip('+')}.")
        else:
            bias = f" On clean renders (*source*) it gets {src['accuracy']:.1f} %, no better: this task shows no bias."
    steps.append(
        f"{title} On *{task}* ({L['task_description'].rstrip('.')}) CLIP with the hand-written prompt "
        f"“{zs['template']}” classifies **{zs['test']['accuracy']:.1f} %** of {n} held-out images correctly "
        f"(chance: {100 / c:.0f} %), with task entropy H(T) = E[−log p(y | x, P)] = **{zs['test']['H_T']:.3f} nats** "
        f"(Eq. 3).{bias}" + (f" Other domains: {others}." if others else ""))

    # 2. random noise of the same size
    rec = L["recipe"]
    scale = M["scale"]
    sizes = " and ".join(f"RMS {scale[s]:.3g} on the {where}" for s, where in
                         (("visual", "image side"), ("text", "prompt")) if scale.get(s))
    d_rnd = rnd["correct"] - none["correct"]
    share = f"{100 * rnd['I'] / smp['I']:.0f} % of the learned noise's I" if smp["I"] > I_TOLERANCE else ""
    if d_rnd < 0.5 and (rnd["I"] <= I_TOLERANCE or (share and rnd["I"] <= 0.1 * smp["I"])):
        title = "**2 · Random noise of the same size does not help.**"
        verdict = "it does not help" + (f" (its I is {share})" if share and rnd["I"] > I_TOLERANCE else "")
    elif d_rnd >= 0.5:
        title = "**2 · Random noise of the same size: does it help?**"
        verdict = f"here it does help: {_n(round(d_rnd, 1), 'more image')} right"
    else:
        title = "**2 · Random noise of the same size: does it help?**"
        verdict = "the meter sees a gain (" + (share or f"{rnd['I']:+.3f} nats") + ") but accuracy does not rise"
    prompt_note = ""
    if L["noise"].get("n_ctx"):
        prompt_note = (f" (H(T) here uses PiNI's own prompt, {_n(L['noise']['n_ctx'], 'placeholder word')} before "
                       "the template, so it differs slightly from step 1.)")
    steps.append(
        f"{title} Gaussian noise as large as the learned noise ({sizes}) gives H(T | ε) = "
        f"{rnd['H_T_given_eps']:.3f} nats (Eq. 5), so I(T, ε) = H(T) − H(T | ε) = {none['H_T_given_eps']:.3f} − "
        f"{rnd['H_T_given_eps']:.3f} = **{rnd['I']:+.3f} nats** (Eq. 1), and accuracy {rnd['accuracy']:.1f} % against "
        f"{none['accuracy']:.1f} % without noise ({_pts(rnd['accuracy'] - none['accuracy'])}): {verdict}.{prompt_note}")

    # 3. learned noise
    m_l, a_l = _verdict(smp, none, I_TOLERANCE)
    loss = (f" It was trained by minimising the Monte Carlo bound of Eq. 13 (training loss at the last epoch "
            f"{rec['last_loss']:.3f} nats" + (f", {_n(rec['epochs_done'], 'epoch')}" if rec.get("epochs_done") else "")
            + ")." if rec.get("last_loss") is not None else "")
    if m_l == a_l == "helps":
        title = "**3 · Learned noise helps — and the meter and accuracy agree.**"
        agree = "**the meter and accuracy agree: the learned noise helps**"
    elif m_l == a_l:
        title = "**3 · Learned noise: does it help?**"
        agree = f"the meter and accuracy agree: the learned noise {m_l}"
    else:
        title = "**3 · Learned noise: the meter and accuracy disagree.**"
        agree = (f"**the meter says the noise {m_l}, accuracy says it {a_l}**: I(T, ε) measures how probable "
                 "the true class is, not how many decisions flip")
    steps.append(
        f"{title} With the learned noise (ε sampled, m = {M['draws']} draws per image): "
        f"H(T | ε) = {smp['H_T_given_eps']:.3f} nats (Eq. 5), I(T, ε) = **{smp['I']:+.3f} nats** (Eq. 1), accuracy "
        f"**{smp['accuracy']:.1f} %** ({_pts(smp['accuracy'] - none['accuracy'])} over no noise): {agree}.{loss}")

    # 4. mu versus sigma * eps
    drop = none["H_T_given_eps"] - mean["H_T_given_eps"]
    total = none["H_T_given_eps"] - smp["H_T_given_eps"]
    share = (f" μ alone brings {100 * drop / total:.0f} % of the learned noise's drop in H(T | ε)."
             if abs(total) > I_TOLERANCE else "")
    parts = M.get("parts") or {}
    sizes = "; ".join(f"on the {where}: RMS(μ) = {parts[s]['mu_rms']:.3g}, RMS(σ⊙ε) = {parts[s]['sigma_eps_rms']:.3g}"
                      for s, where in (("visual", "image side"), ("text", "prompt")) if s in parts)
    steps.append(
        f"**4 · What μ does versus what σ⊙ε does.** The noise is G = μ + σ⊙ε. With ε = 0 (μ only): "
        f"H(T | ε) = {mean['H_T_given_eps']:.3f} nats, I = {mean['I']:+.3f} nats, accuracy {mean['accuracy']:.1f} %. "
        f"With sampled ε: H(T | ε) = {smp['H_T_given_eps']:.3f} nats, accuracy {smp['accuracy']:.1f} %.{share} "
        f"The random part σ⊙ε changes H(T | ε) by {smp['H_T_given_eps'] - mean['H_T_given_eps']:+.3f} nats and "
        f"accuracy by {_pts(smp['accuracy'] - mean['accuracy'])}" + (f" ({sizes})." if sizes else ".") +
        " Compare the *mean* and *single* modes in the Classify tab.")

    # 5. where the noise lands
    nz = L["noise"]
    where = {"feature": "the image's CLIP embedding, after the image encoder,", "image": "the raw pixels,",
             "none": "nothing on the image side,"}[nz["visual_location"]]
    att = M.get("attention")
    att_txt = ""
    if att and att.get("n"):
        flat = att["relative_entropy"] < 0.1 and att["top_class_share"] > 0.9
        att_txt = (f" Its cross-attention over the {c} class prompts has mean entropy {att['mean_entropy']:.3f} nats "
                   f"of at most ln {c} = {att['max_entropy']:.3f}, and attends most to “{att['top_class']}” for "
                   f"{100 * att['top_class_share']:.0f} % of the images: "
                   + ("**μ is nearly the same shift for every image** (a saturated attention)." if flat else
                      "μ depends on the image."))
    if nz["visual_location"] == "image":
        fig4 = "the Noise tab shows the noisy image with μ and σ per pixel (paper Figure 4)"
    elif L.get("image_generator_shipped"):
        fig4 = ("the paper's Figure 4 puts the noise on the raw pixels instead: the Noise tab opens on a shipped "
                "raw-image generator for the same task and shows the noisy image with μ and σ per pixel")
    else:
        fig4 = ("the Noise tab shows μ and σ over the embedding's dimensions and how far the noise moves it; "
                "Figure 4's per-pixel maps need a raw-image generator (Train tab: raw image · CNN)")
    gen_name = {"ca": "a cross-attention", "mlp": "an MLP", "cnn": "a CNN"}.get(nz["visual_generator"],
                                                                              nz["visual_generator"])
    if nz["visual_location"] == "none":
        steps.append("**5 · Where the noise lands (Figure 4).** This generator adds no noise on the image side, "
                     "only to the prompt; the Noise tab shows Figure 4 for generators with visual noise.")
    else:
        steps.append(f"**5 · Where the noise lands (Figure 4).** This generator adds its visual noise to {where} "
                     f"made by {gen_name}; {fig4}.{att_txt}")

    # 6. which words the noisy prompt means
    dec = L.get("decode")
    if dec:
        kept = sum(1 for r in dec if r["word"] == r["token"])
        words = ", ".join(f"“{r['token']}” → “{r['word']}” ({r['count']}/{r['draws']})" for r in dec)
        steps.append(f"**6 · Which words the noisy prompt means (Table 8).** Adding the learned prompt noise "
                     f"μ_t + σ_t⊙ε to the template's word embeddings and decoding each position to its nearest "
                     f"vocabulary word over {_n(dec[0]['draws'], 'draw')}: {words}. {kept} of {_n(len(dec), 'word')} "
                     "keep their meaning; the Prompt tab shows the 5 nearest words per position.")
    else:
        steps.append("**6 · Which words the noisy prompt means (Table 8).** This generator adds no noise to the "
                     "prompt's word embeddings, so there is nothing to decode; train one with prompt noise "
                     "(Train tab) and open the Prompt tab.")
    return steps


def _count(correct: float, n: int) -> str:
    """'125 of 200', or '89.6 of 200' for a mean over noise draws."""
    return (f"{int(round(correct))}" if abs(correct - round(correct)) < 1e-6 else f"{correct:.1f}") + f" of {n}"


def meter_outputs(res: Dict[str, Any], label: str):
    """(figure image, table rows, Markdown notes) of a meter result, as the tab shows them."""
    import pandas as pd

    from pini_core.analysis.meter import meter_notes, plot_meter_rows

    rows = [{"noise": r["label"], "H(T|ε) (nats)": round(r["H_T_given_eps"], 4), "I(T, ε) (nats)": round(r["I"], 4),
             "accuracy (%)": round(r["accuracy"], 2), "images right": _count(r["correct"], res["n"]),
             "from": r["equation"]} for r in res["rows"]]
    table = pd.DataFrame(rows)
    fig = plot_meter_rows(res)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    from PIL import Image

    buf.seek(0)
    image = Image.open(buf).convert("RGB")
    lines = [f"Measured for the **{label}** on {_n(res['n'], 'held-out image')}, "
             f"{_n(res['draws'], 'noise draw')} per image. The *no noise* row's H is H(T); sampled rows give "
             "the mean accuracy of one random draw."]
    lines += meter_notes(res)
    att = res.get("attention")
    if att and att.get("n"):
        lines.append(f"Visual cross-attention over the {res['num_classes']} classes (ε = 0): mean entropy "
                     f"{att['mean_entropy']:.3f} nats = {att['relative_entropy']:.2f} × ln C; most attended class "
                     f"“{att['top_class']}” for {100 * att['top_class_share']:.0f} % of the images.")
    for w in res.get("warnings", []):
        lines.append(f"⚠️ **Warning:** {w}")
    return image, table, "\n\n".join(lines)


# ------------------------------------------------------------------ the tab
def build(ctx: BuildContext) -> None:
    note = engine.notice("meter")
    gr.Markdown(INTRO)
    steps: List[gr.Markdown] = []
    for i, (tab, words) in enumerate(((TAB_CLASSIFY, "Try it in the Classify tab"),
                                      (TAB_CLASSIFY, "Classify tab"), (TAB_TRAIN, "Train your own"),
                                      (TAB_CLASSIFY, "Classify tab: mean vs single"),
                                      (TAB_NOISE, "Noise tab"), (TAB_PROMPT, "Prompt tab"))):
        with gr.Row(equal_height=False):  # on a phone the button wraps below its step
            with gr.Column(scale=6, min_width=320):
                steps.append(gr.Markdown("Computing this step's numbers …" if not note else "",
                                         elem_id=f"learn-step-{i + 1}", container=False))
            with gr.Column(scale=1, min_width=170):
                btn = gr.Button(words + " →", size="sm")
        btn.click(None, None, None, js=_OPEN_TAB_JS.replace("TAB_NAME", tab))
    gr.Markdown(METER_HEAD)
    if note:
        gr.Markdown(note)
        _bench()
        return
    with gr.Row():
        draws = gr.Slider(1, 32, value=DEFAULT_DRAWS, step=1, label="Noise draws per image (m)")
        n_images = gr.Slider(10, 500, value=DEFAULT_IMAGES, step=10, label="Held-out images to measure on")
        run = gr.Button("Measure π-noise", variant="primary")
    plot = gr.Image(show_label=False, format="png", interactive=False, elem_id="learn-meter-plot")
    table = gr.Dataframe(show_label=False, interactive=False, elem_id="learn-meter-table", elem_classes=["pini-table"])
    notes = gr.Markdown(elem_id="learn-meter-notes")

    @friendly
    @gpu
    def measure(k, n, state: SessionState, progress=gr.Progress()):
        from pini_core.analysis.meter import balanced_subset, held_out_for
        from pini_core.errors import DataError

        backbone(state, progress)
        method = state.generator_for(state.backbone_spec or backbones.default_spec())
        if method is None:
            raise gr.Error(NO_GENERATOR, print_exception=False)
        data = state.eval_data
        if getattr(method, "checkpoint_config", None):  # loaded or shipped: the task its checkpoint records
            progress(0.1, desc="Rendering the held-out images of the generator's task ...")
            try:  # (toy tasks share their class names, so the session's images may be another task's)
                data = held_out_for(method)
            except DataError:
                if not data:  # e.g. trained on uploaded images: say so
                    raise
        if not data:
            raise DataError("The meter needs held-out images of the generator's task; train a generator in the "
                            "Train tab.")
        progress(0.2, desc="Measuring H(T) and H(T|ε) ...")
        res = engine.get("meter")(method, balanced_subset(data, int(n)), draws=int(k))
        return meter_outputs(res, state.method_label or "session's generator")

    run.click(measure, [draws, n_images, ctx.session], [plot, table, notes], api_name="pi_noise_meter")
    _bench()
    # the page opens with the lesson and the meter computed (in the preview group of the other tabs)
    ctx.page_load.append((_on_load(ctx), [ctx.session], [*steps, plot, table, notes],
                          {"concurrency_id": "preview", "concurrency_limit": 8}))
    if hasattr(ctx, "warm"):  # demo.preview runs it at start-up, after the backbone is loaded
        ctx.warm.append(lambda: warm_lesson(ctx.default_spec))
    else:
        precompute(ctx.default_spec)


def _on_load(ctx: BuildContext):
    @friendly
    def on_load(state: SessionState, progress=gr.Progress()):
        spec = (state.backbone_spec if isinstance(state, SessionState) else None) or ctx.default_spec
        found = _shipped_model(spec)
        if found is None:
            msg = ("The lesson's numbers are computed from the generator shipped for the embedded toy CLIP; this "
                   f"page opened on {backbones.label_for(spec)}, which has none. Train a generator in the Train tab "
                   "and press **Measure π-noise** below.")
            return [msg] + [""] * (N_STEPS - 1) + [None, None, ""]
        model, label = found
        progress(0.3, desc="Computing the lesson's numbers ...")
        lesson = LESSONS.get(model)
        page = lesson.get("_page")  # the words and figure, made once per lesson
        if page is None:
            L = dict(lesson, image_generator_shipped=_image_generator_shipped())
            page = lesson["_page"] = [*lesson_steps(L), *meter_outputs(L["meter"], label)]
        return list(page)

    return on_load


def _bench() -> None:
    from demo.bench_view import bench_sections, shots_word

    gr.Markdown("### Miniature benchmark (paper Table 2 and Figure 5)")
    sections, note = bench_sections()
    gr.Markdown(_recipes_note(sections))
    if note:
        gr.Markdown(note)
    for s in sections:
        gr.Markdown(f"#### {s.title}\n\n{s.description}", elem_id=f"learn-bench-{s.protocol}")
        if s.table_md:
            with gr.Accordion(f"Tables: {s.protocol} protocol", open=s.protocol == "reference"):
                gr.Markdown(shots_word(s.table_md), elem_classes=["pini-table"])
        if s.figures:
            with gr.Row():
                for path in s.figures:
                    name = ("Figure 5 (miniature): accuracy against shots" if "fig5" in path else
                            "Gain over zero-shot CLIP")
                    with gr.Column():
                        gr.Markdown(f"**{name}** ({s.protocol} protocol)")
                        gr.Image(value=path, show_label=False, interactive=False, format="png", height=420)


def _image_generator_shipped() -> bool:
    try:
        from demo.shipped import shipped_image_folder
    except ImportError:
        return False
    return shipped_image_folder() is not None


def _recipes_note(sections=None) -> str:
    """Which recipe the Train tab's defaults and the shipped generator use, against the tables'."""
    from demo.bench_view import bench_sections, recipe_words

    try:
        from pini_core.experiment import default_preset, preset_config

        name = default_preset("embedded")
        r = preset_config(name).recipe
        train = (f"recipe '{name}' (lr {r.lr:g}, {_n(r.epochs, 'epoch')}, augmentation "
                 f"{'on' if r.augment else 'off'}), chosen for the embedded toy CLIP")
    except Exception:  # noqa: BLE001 - only words
        return ""
    shipped = ""
    try:
        from demo.shipped import shipped_folder

        folder = shipped_folder()
        if folder is not None:
            from pini_core.checkpoint import read_config

            cfg = read_config(folder)
            tc = (cfg.get("experiment") or {}).get("recipe") or cfg.get("train_config") or {}
            if tc.get("lr") and tc.get("epochs"):
                shipped = (f" The shipped generator was trained with lr {float(tc['lr']):g}, "
                           f"{_n(int(tc['epochs']), 'epoch')}.")
    except Exception:  # noqa: BLE001 - only words
        shipped = ""
    if sections is None:
        sections = bench_sections()[0]
    tables = "; ".join(f"the {s.protocol}-protocol table trains PiNI with {recipe_words(s.recipe)}"
                       + (" except for the learning rate, chosen on the validation split" if s.protocol == "tuned"
                          else "") for s in sections)
    if not tables:
        return f"**Recipes.** The Train tab's defaults train PiNI with {train}.{shipped}"
    return ("**Read these tables with their recipe.** The Train tab's defaults train PiNI with "
            f"{train}.{shipped} Below, {tables}. So the Train tab can show a gain that a table does not: "
            "same task, different recipe.")
