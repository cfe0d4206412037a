"""Nearest-vocabulary decoding of noisy prompts (paper Table 8).

Sample the text noise N times (N = 100 in the paper), add it to the template's word
embeddings, and for every template position record the k (= 5) vocabulary words whose
embeddings are nearest; count how often each word appears per position.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List

import torch

from ..model import PiNIModel


from pini_core.errors import ConfigError  # noqa: E402  (one error hierarchy, issue 12)


class DecodeError(ConfigError, ValueError):
    pass


@torch.no_grad()
def nearest_tokens(queries: torch.Tensor, vocab: torch.Tensor, k: int, metric: str = "l2",
                   exclude: List[int] = (), chunk: int = 4096) -> torch.Tensor:
    """[Q, W] queries -> [Q, k] ids of the nearest rows of vocab [V, W]."""
    if metric == "cosine":
        queries, vocab = torch.nn.functional.normalize(queries, dim=-1), torch.nn.functional.normalize(vocab, dim=-1)
    out = []
    v_sq = (vocab * vocab).sum(-1)
    for i in range(0, queries.shape[0], chunk):
        q = queries[i:i + chunk]
        if metric == "cosine":
            score = q @ vocab.T  # larger is nearer
        else:  # -||q - v||^2 up to a per-row constant
            score = 2 * q @ vocab.T - v_sq
        if exclude:
            score[:, list(exclude)] = float("-inf")
        out.append(score.topk(k, dim=-1).indices)
    return torch.cat(out)


@torch.no_grad()
def decode_prompt_noise(model: PiNIModel, n_draws: int = 100, k: int = 5, seed: int = 0, metric: str = "l2",
                        include_placeholders: bool = False, mode: str = "sample") -> List[Dict]:
    """Table 8 for the model's prompt noise. One row per template position:
    {"position", "token" (the template's own word), "words": [(word, count), ...] (k most frequent)}.
    mode="mean" decodes eps = 0 (mu only). The noisy prompts are the model's own
    (`PiNIModel.prompt_noise`, the injection training uses), read at `prompt_span()`.
    Raises DecodeError (a ConfigError) without prompt-level text noise or for n_draws/k < 1."""
    if model.noise_cfg.text_location != "prompt":
        raise DecodeError("Table 8 decodes noise added to prompt word embeddings; this model's text noise is at "
                          f"{model.noise_cfg.text_location!r}. Train with --text-location prompt.")
    if n_draws < 1 or k < 1:
        raise DecodeError("n_draws and k must be >= 1")
    bb = model.backbone
    gen = torch.Generator(device=model.prompt_embeds.device).manual_seed(int(seed))
    # the prefix is shared by every class prompt: class 0's noisy prefix is the template's
    noisy = model.prompt_noise(n_draws, mode, gen, classes=[0])["embeds"][:, 0, model.prompt_span()]  # [N, P, W]
    vocab = bb.token_embedding.float()
    ids = nearest_tokens(noisy.reshape(-1, noisy.shape[-1]).float(), vocab, k, metric,
                         exclude=[i for i in bb.special_token_ids() if i != 0])
    ids = ids.reshape(n_draws, model.n_prefix, k).cpu()
    start = 0 if include_placeholders else model.noise_cfg.n_ctx
    rows = []
    for pos in range(start, model.n_prefix):
        counts, rank_sum = Counter(), Counter()
        for draw in ids[:, pos].tolist():
            for r, t in enumerate(draw):
                counts[t] += 1
                rank_sum[t] += r
        # most frequent first; ties broken by mean rank (nearer first)
        top = sorted(counts, key=lambda t: (-counts[t], rank_sum[t] / counts[t]))[:k]
        words = [(bb.decode_token(t), counts[t]) for t in top]
        rows.append({"position": pos - start + 1, "token": bb.decode_token(model.prefix_ids[pos]),
                     "placeholder": pos < model.noise_cfg.n_ctx, "words": words})
    return rows


def format_table8(rows: List[Dict]) -> str:
    """Markdown in the paper's layout: position | 1 | 2 | ... with 'word (count)'."""
    k = max(len(r["words"]) for r in rows) if rows else 0
    head = "| Position | " + " | ".join(str(i + 1) for i in range(k)) + " |"
    sep = "|---" * (k + 1) + "|"
    body = ["| " + f"{r['position']} ({r['token']})" + " | " +
            " | ".join(f"{w} ({c})" for w, c in r["words"]) + " |" for r in rows]
    return "\n".join([head, sep, *body])
