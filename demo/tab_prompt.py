"""Prompt distribution: the paper's Table 8 for the session's prompt-noise generator."""
from __future__ import annotations

import gradio as gr

from pini_core.spaces import gpu

from demo import engine
from demo.context import BuildContext
from demo.session import SessionState
from demo.util import backbone, friendly, generator


def build(ctx: BuildContext) -> None:
    gr.Markdown("With noise on the prompt's word embeddings, each position of the template becomes a "
                "*distribution* over words. Draw the noise N times, find the k vocabulary words nearest to "
                "each noisy position, and count them (paper Table 8). Needs a generator trained with "
                "text noise at **prompt embeddings**.")
    note = engine.notice("decode")
    if note:
        gr.Markdown(note)
        return
    with gr.Row():
        n = gr.Slider(10, 500, value=100, step=10, label="N noise draws")
        k = gr.Slider(1, 10, value=5, step=1, label="k nearest words")
        seed = gr.Number(value=0, precision=0, label="Seed")
        run = gr.Button("Decode the prompt noise", variant="primary")
    table = gr.Dataframe(label="Most frequent nearest words per template position (count over N draws)",
                         interactive=False, wrap=True)
    status = gr.Markdown()

    @friendly
    @gpu
    def decode(n_draws, k_words, seed_v, state: SessionState, progress=gr.Progress()):

        backbone(state, progress)
        method = generator(state)
        decode_prompt_noise = engine.get("decode")
        progress(0.3, desc="Decoding ...")
        rows = decode_prompt_noise(method, n_draws=int(n_draws), k=int(k_words), seed=int(seed_v or 0))
        return _table(rows, int(k_words)), f"{int(n_draws)} draws, {int(k_words)} nearest words ({state.method_label})."

    run.click(decode, [n, k, seed, ctx.session], [table, status], api_name="prompt_distribution")


def _table(rows, k):
    import pandas as pd

    out = []
    for r in rows:
        words = r.get("words") or r.get("top") or []
        rec = {"position": r.get("position"), "template word": r.get("token", r.get("template_token", ""))}
        for i in range(k):
            if i < len(words):
                w = words[i]
                word, count = (w["word"], w["count"]) if isinstance(w, dict) else (w[0], w[1])
                rec[str(i + 1)] = f"{word} ({count})"
            else:
                rec[str(i + 1)] = ""
        out.append(rec)
    return pd.DataFrame(out)
