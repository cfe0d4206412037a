"""Learn π-noise: a short guided explanation next to the live π-noise meter, and the
miniature benchmark (Table 2 / Figure 5) when its results exist."""
from __future__ import annotations

import gradio as gr

from pini_core.spaces import gpu

from demo import engine
from demo.context import BuildContext
from demo.session import SessionState
from demo.util import NO_GENERATOR, backbone, friendly

EXPLAIN = r"""
### Why can noise *help*?
A task **T** is uncertain: its entropy **H(T)** measures how unsure the classifier is about the
label. For CLIP with one prompt per class, $H(T) = \mathbb{E}[-\log p(y \mid x, P)]$.
Noise **ε** is *beneficial* (π-noise) when knowing it makes the task *less* uncertain:

$$ I(T, \varepsilon) = H(T) - H(T \mid \varepsilon) > 0 .$$

PiNI learns a generator $G_\theta(\varepsilon, x, P) = \mu_\theta(x, P) + \sigma_\theta(x, P)\odot\varepsilon$
(ε ~ N(0, I), Eq. 12) and trains it by minimising a Monte-Carlo upper bound of
$H(T \mid \varepsilon)$ (Eq. 13) — which maximises $I(T,\varepsilon)$, since $H(T)$ does not
depend on the generator. The noise is *learned*, so the fair comparison is random noise of the
same size: if the generator learned something about the task, the learned noise's $I$ is the
larger one.

**The meter** below measures, on held-out images of the task your generator was trained on:
$H(T)$ without noise, $H(T \mid \varepsilon)$ with the learned noise, and with random noise
of matching scale, and shows $I = H(T) - H(T\mid\varepsilon)$ for each.
"""


def build(ctx: BuildContext) -> None:
    with gr.Row():
        with gr.Column(scale=3):
            gr.Markdown(EXPLAIN, latex_delimiters=[{"left": "$$", "right": "$$", "display": True},
                                                   {"left": "$", "right": "$", "display": False}])
        with gr.Column(scale=2):
            note = engine.notice("meter")
            if note:
                gr.Markdown(note)
            else:
                _meter(ctx)
    gr.Markdown("### Miniature benchmark (paper Table 2 and Figure 5)")
    _bench()


def _meter(ctx: BuildContext) -> None:
    draws = gr.Slider(1, 32, value=8, step=1, label="Noise draws per image")
    n_images = gr.Slider(10, 200, value=100, step=10, label="Held-out images to measure on")
    run = gr.Button("Measure π-noise", variant="primary")
    bars = gr.BarPlot(x="noise", y="I (nats)", title="I(T, ε) = H(T) − H(T|ε)", height=260,
                      sort=["learned", "random", "none"])
    table = gr.Dataframe(label="Entropies (nats)", interactive=False)
    status = gr.Markdown()

    @friendly
    @gpu
    def measure(k, n, state: SessionState, progress=gr.Progress()):
        import pandas as pd

        meter = engine.get("meter")
        backbone(state, progress)
        method = state.generator_for(state.backbone_spec)
        data = getattr(state, "eval_data", None)
        if method is None:
            raise gr.Error(NO_GENERATOR, print_exception=False)
        if not data:
            raise gr.Error("The meter needs held-out images of the generator's task: train a generator in "
                           "the Train tab (a loaded checkpoint carries no images).", print_exception=False)
        progress(0.2, desc="Measuring H(T) and H(T|ε) ...")
        data = _balanced(data, int(n))
        res = meter(method, data, draws=int(k))
        rows = [{"noise": name, "H(T)": res["H_T"], "H(T|ε)": res[name]["H_T_given_eps"],
                 "I (nats)": res[name]["I"], "accuracy (%)": res[name]["accuracy"]}
                for name in ("learned", "random", "none")]
        df = pd.DataFrame(rows)
        return df[["noise", "I (nats)"]], df.round(4), f"Measured on {len(data)} held-out images."

    run.click(measure, [draws, n_images, ctx.session], [bars, table, status], api_name="pi_noise_meter")


def _balanced(data, n: int):
    """Up to n items, taken round-robin over the classes so every class is represented."""
    by_class = {}
    for item in data:
        by_class.setdefault(int(item[1]), []).append(item)
    out, i = [], 0
    while len(out) < min(n, len(data)):
        for items in by_class.values():
            if i < len(items) and len(out) < n:
                out.append(items[i])
        i += 1
    return out


def _bench() -> None:
    from demo.bench_view import bench_files

    table_md, figures, note = bench_files()
    if note:
        gr.Markdown(note)
    if table_md:
        with gr.Accordion("Tables (miniature benchmark)", open=True):
            gr.Markdown(table_md)
    if figures:
        with gr.Row():
            for path in figures:
                name = "Figure 5 (miniature): accuracy vs shots" if "fig5" in path else "Gain over zero-shot CLIP"
                gr.Image(value=path, label=name, interactive=False, format="png", height=420)
