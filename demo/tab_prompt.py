"""Prompt distribution: the paper's Table 8 for the session's prompt-noise generator."""
from __future__ import annotations

import gradio as gr

from pini_core.spaces import gpu

from demo import engine, preview
from demo.context import BuildContext
from demo.session import SessionState
from demo.util import backbone, friendly, generator


HOW_TO_READ = (
    "**How to read the table.** One row per position of the prompt template (the template's own "
    "word is in *template word*; a generator with learnable placeholder tokens adds rows marked *x*). Column **1** "
    "holds the word that was most often among the k nearest vocabulary entries of the noisy embedding "
    "at that position, column **2** the second most often, and so on up to column k; the number in "
    "brackets is in how many of the N draws it was among the k nearest (at most N). A cell can hold a "
    "**sub-word piece** (such as *cre* from *crescent*): CLIP's tokenizer splits rarer words into "
    "pieces and each piece has its own embedding, so the nearest entry may be a piece, not a whole word.")


def compute(n_draws, k_words, seed_v, state: SessionState, progress=preview.no_progress):
    backbone(state, progress)
    method = generator(state)
    n_draws, k_words, seed_v = int(n_draws), int(k_words), int(seed_v or 0)
    mkey = preview.model_key(method)
    key = ("prompt", mkey, n_draws, k_words, seed_v) if mkey else None

    def run():
        decode_prompt_noise = engine.get("decode")
        progress(0.3, desc="Decoding ...")
        rows = decode_prompt_noise(method, n_draws=n_draws, k=k_words, seed=seed_v)
        return _table(rows, k_words), (f"{n_draws} draws, {k_words} nearest words, seed {seed_v} "
                                       f"({state.method_label}).")

    return preview.cached(key, run)


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
    status = gr.Markdown(elem_id="prompt-status")
    gr.Markdown(HOW_TO_READ)
    table = gr.Dataframe(label="Most frequent nearest words per template position (count over N draws; the table scrolls sideways)",
                         interactive=False, wrap=False, elem_id="prompt-table", elem_classes=["pini-table"],
                         max_height=520)

    @friendly
    @gpu
    def decode(n_draws, k_words, seed_v, state: SessionState, progress=gr.Progress()):
        return compute(n_draws, k_words, seed_v, state, progress)

    run.click(decode, [n, k, seed, ctx.session], [table, status], api_name="prompt_distribution")
    ctx.page_load.append((preview.on_load(decode, 2, 1), [n, k, seed, ctx.session], [table, status],
                          {"concurrency_id": "preview", "concurrency_limit": 8}))
    defaults = (n.value, k.value, seed.value)

    def warm():
        from demo.session import SessionState as S

        compute(*defaults, S(backbone_spec=ctx.default_spec))

    ctx.warm.append(warm)


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
