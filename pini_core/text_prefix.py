"""Exact shared-prefix text encoding: run a prompt prefix shared by all classes once.

PiNI's prompt (SOS + n_ctx noisy placeholders + template words + class name + "." + EOT)
and CoOp's unified context (SOS + M context vectors + class name + "." + EOT) begin with
the same P positions for every class. CLIP's text tower is causal (position i attends only
to positions <= i), so the hidden states of those P positions -- and their keys and values
in every layer -- are identical for all C classes. This module computes them ONCE per noise
draw and runs only each class's suffix (class-name tokens, ".", EOT) with its queries
attending to [prefix K/V, its own causal suffix K/V]:

    per layer:  X_p <- Block(X_p)                               X_p: [m, P, W], causal
                A_s = softmax(Q_s [K_p ; K_s]^T / sqrt(d) + M) [V_p ; V_s]
                M[i, j] = 0 for j < P (prefix) or j - P <= i (own causal suffix), else -inf

That is exactly the full encoder's computation (Backbone.encode_text_embeddings, open_clip's
CLIP.encode_text: token embeddings + positional embedding, causal transformer, ln_final,
pooling at the EOT, text projection -- Radford et al. 2021; CoOp's TextEncoder, Zhou et al.
2022), rearranged: the same open_clip layer weights are used (no copies), attention runs
through torch.nn.functional.scaled_dot_product_attention. Token count at C = 1000 with a
21-token prefix: ~4 200 instead of ~34 000.

Suffixes of different lengths are grouped (at most MAX_GROUPS groups of similar length,
chosen to minimise padded tokens) and padded at their end with the prompt's own trailing
tokens; under the causal mask, later positions never change earlier ones, so the padding is
exact (the full encoder pads the same way).

Towers it does not reproduce (no causal mask, custom attention blocks such as scaled-cosine
or qk-norm, cross-attention blocks, pooling types other than argmax / eos / last, a prefix
whose token ids differ between classes) fall back to the full encoder with one warning per
reason. Switch off globally with `text_prefix.SHARED_PREFIX = False` or per call with
`enabled=False` (the models read their `shared_prefix` attribute when it is set).
"""
from __future__ import annotations

import logging
import warnings
import weakref
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError

log = logging.getLogger(__name__)

SHARED_PREFIX: bool = True  # module-level switch; per-call `enabled=` overrides it
MAX_GROUPS: int = 8  # at most this many suffix-length groups per call
# A group's fixed cost (its attention call, K/V concatenation, per layer) in suffix tokens:
# another group is formed only when it saves more padded tokens than this.
GROUP_TOKEN_COST: int = 8

_SUPPORT: "weakref.WeakKeyDictionary[nn.Module, Optional[str]]" = weakref.WeakKeyDictionary()
_WARNED: set = set()


class SharedPrefixFallbackWarning(UserWarning):
    """The shared-prefix encoder cannot reproduce this text tower; the full encoder runs instead."""


def _warn_once(reason: str) -> None:
    if reason in _WARNED:
        return
    _WARNED.add(reason)
    msg = f"shared-prefix text encoding is off for this model ({reason}); using the full text encoder"
    log.warning(msg)
    warnings.warn(msg, SharedPrefixFallbackWarning, stacklevel=3)


def tower_unsupported_reason(model: nn.Module) -> Optional[str]:
    """Why the shared-prefix encoder cannot reproduce `model`'s text tower, or None if it can.

    Covered: open_clip CLIP text towers (the CLIP class's own `transformer`, OpenAI-style)
    built from standard `ResidualAttentionBlock`s (nn.MultiheadAttention, pre-LN, optional
    LayerScale) with a causal mask, pooling `argmax`, `eos` or `last`. The answer is cached
    per model object.
    """
    if model in _SUPPORT:
        return _SUPPORT[model]
    reason = _tower_reason(model)
    _SUPPORT[model] = reason
    return reason


def _tower_reason(model: nn.Module) -> Optional[str]:
    from open_clip.transformer import ResidualAttentionBlock, Transformer

    tr = getattr(model, "transformer", None)
    if not isinstance(tr, Transformer) or not all(
            hasattr(model, a) for a in ("token_embedding", "positional_embedding", "ln_final", "text_pool_type")):
        return "custom text tower (not open_clip's built-in CLIP text transformer)"
    pool = model.text_pool_type
    if pool not in ("argmax", "eos", "last"):
        return f"text pooling {pool!r} (covered: argmax, eos, last)"
    if pool == "eos" and getattr(model, "text_eos_id", None) is None:
        return "eos pooling without an eos token id"
    mask = getattr(model, "attn_mask", None)
    if mask is None:
        return "bidirectional text attention (no causal mask)"
    L = mask.shape[-1]
    if mask.dim() != 2 or mask.shape[0] != L:
        return "attention mask that is not one [L, L] matrix"
    upper = torch.ones(L, L, dtype=torch.bool, device=mask.device).triu(1)
    if mask.dtype == torch.bool:
        causal = torch.equal(mask, upper)
    else:
        causal = bool(torch.isneginf(mask[upper]).all()) and bool((mask[~upper] == 0).all())
    if not causal:
        return "attention mask that is not the causal mask"
    for blk in tr.resblocks:
        if type(blk) is not ResidualAttentionBlock:
            return f"attention variant {type(blk).__name__} (covered: open_clip ResidualAttentionBlock)"
        if hasattr(blk, "ln_1_kv"):
            return "cross-attention text blocks"
        a = blk.attn
        if (type(a) is not nn.MultiheadAttention or not a._qkv_same_embed_dim or a.bias_k is not None
                or a.add_zero_attn or (a.dropout > 0 and a.training)):
            return "a multi-head attention configuration other than packed q/k/v without extra biases"
    return None


def _pool_index(model: nn.Module, token_ids: torch.Tensor) -> torch.Tensor:
    """[C] position pooled by open_clip's text_global_pool for each prompt."""
    pool = model.text_pool_type
    if pool == "argmax":
        return token_ids.argmax(dim=-1)
    if pool == "eos":
        return (token_ids == model.text_eos_id).int().argmax(dim=-1)
    return torch.full((token_ids.shape[0],), token_ids.shape[1] - 1, dtype=torch.long, device=token_ids.device)


def group_lengths(lengths: Sequence[int], max_groups: Optional[int] = None,
                  group_cost: Optional[int] = None) -> List[Tuple[int, int]]:
    """Split sorted suffix lengths into <= max_groups contiguous ranges, each padded to its
    longest member, minimising padded tokens + group_cost x groups (exact dynamic programme
    over the distinct lengths). Returns [(lo, hi)] length ranges, inclusive, ascending.
    Defaults: the module's MAX_GROUPS and GROUP_TOKEN_COST (read at call time)."""
    from collections import Counter

    max_groups = MAX_GROUPS if max_groups is None else max_groups
    group_cost = GROUP_TOKEN_COST if group_cost is None else group_cost
    counts = sorted(Counter(int(x) for x in lengths).items())
    n, k = len(counts), max(1, min(max_groups, len(counts)))
    inf = float("inf")
    # cost[a][b]: tokens when distinct lengths a..b (inclusive) form one group padded to length b
    prefix_n = [0]
    for _, c in counts:
        prefix_n.append(prefix_n[-1] + c)
    best = [[inf] * (n + 1) for _ in range(k + 1)]
    back = [[0] * (n + 1) for _ in range(k + 1)]
    best[0][0] = 0
    for g in range(1, k + 1):
        for b in range(1, n + 1):
            for a in range(g - 1, b):
                if best[g - 1][a] == inf:
                    continue
                cost = best[g - 1][a] + (prefix_n[b] - prefix_n[a]) * counts[b - 1][0]
                if cost < best[g][b]:
                    best[g][b], back[g][b] = cost, a
    g = min(range(1, k + 1), key=lambda i: best[i][n] + group_cost * i)
    out, b = [], n
    while g > 0:
        a = back[g][b]
        out.append((counts[a][0], counts[b - 1][0]))
        b, g = a, g - 1
    return out[::-1]


def _heads(qkv: torch.Tensor, batch: int, length: int, heads: int):
    """Rows [batch * length, 3W] of a packed in-projection -> q, k, v [batch, H, length, hd]."""
    return qkv.view(batch, length, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)


def encode_shared_prefix(bb, prefix: torch.Tensor, suffix: torch.Tensor, token_ids: torch.Tensor,
                         max_groups: Optional[int] = None) -> torch.Tensor:
    """Text features of C prompts that share their first P embeddings (no fallback).

    prefix:    [P, W] or [m, P, W] embeddings of positions 0..P-1 (SOS + context / noisy
               placeholders + template words), one per noise draw; gradients flow to it.
    suffix:    [C, L - P, W] embeddings of positions P..L-1 of every prompt (class name,
               ".", EOT, padding), shared by the m draws.
    token_ids: [C, L] the prompts' token ids (they only locate the pooled EOT position).
    Returns [C, D] (2-D prefix) or [m, C, D] un-normalised features, equal to
    `bb.encode_text_embeddings(cat(prefix, suffix), token_ids)` (fp32: within ~1e-6), see
    the module docstring for the derivation. Raises ConfigError on inconsistent shapes or an
    uncovered tower (check `tower_unsupported_reason` first, or use `encode_prompts`).

    Layout: all tokens (the m*P prefix tokens, then each group's m*Cg*S suffix tokens) are
    rows of one [T, W] matrix, so LayerNorms, projections and MLPs are one op per layer;
    only the attention is per group (scaled_dot_product_attention over [prefix K/V ; suffix]).
    In the last layer only the pooled rows matter: the other rows give keys and values, and
    the query, out-projection and MLP run on the C pooled rows per draw only (exact).
    """
    m_model = bb.model
    reason = tower_unsupported_reason(m_model)
    if reason is not None:
        raise ConfigError(f"shared-prefix encoding does not cover this text tower: {reason}")
    squeeze = prefix.dim() == 2
    if squeeze:
        prefix = prefix.unsqueeze(0)
    if prefix.dim() != 3 or suffix.dim() != 3 or token_ids.dim() != 2:
        raise ConfigError(f"expected prefix [m, P, W], suffix [C, S, W], token_ids [C, L]; got "
                          f"{tuple(prefix.shape)}, {tuple(suffix.shape)}, {tuple(token_ids.shape)}")
    m, P, W = prefix.shape
    C, L = token_ids.shape
    if suffix.shape[0] != C or P + suffix.shape[1] != L or suffix.shape[2] != W:
        raise ConfigError(f"prefix {tuple(prefix.shape)} + suffix {tuple(suffix.shape)} do not make "
                          f"the {C} prompts of {L} tokens in token_ids")
    cast = m_model.transformer.get_cast_dtype()
    dev = prefix.device
    token_ids = token_ids.to(dev)
    pool = _pool_index(m_model, token_ids)
    if int(pool.min()) < P:
        raise ConfigError("the pooled (EOT) token lies inside the shared prefix")
    pos = m_model.positional_embedding
    lengths = (pool - P + 1).tolist()  # suffix tokens each class needs (through its EOT)
    groups = []  # (class indices [Cg], padded length S)
    for lo, hi in group_lengths(lengths, max_groups):
        groups.append((torch.tensor([c for c, n in enumerate(lengths) if lo <= n <= hi], device=dev), hi))
    heads = m_model.transformer.resblocks[0].attn.num_heads
    with bb.autocast():
        rows = [(prefix.to(cast) + pos[:P].to(cast)).reshape(m * P, W)]
        for idx, S in groups:
            x = suffix.index_select(0, idx)[:, :S].to(cast) + pos[P:P + S].to(cast)  # [Cg, S, W]
            rows.append(x.unsqueeze(0).expand(m, -1, -1, -1).reshape(-1, W))  # [m*Cg*S, W], draw-major
        x = torch.cat(rows)  # [T, W]
        sizes = [r.shape[0] for r in rows]
        masks = [torch.cat([torch.ones(S, P, dtype=torch.bool, device=dev),
                            torch.ones(S, S, dtype=torch.bool, device=dev).tril()], dim=1) for _, S in groups]
        # The pooled (EOT) row of every (draw, class), per group, draw-major: the last layer
        # only needs these queries and rows (the other rows only give it keys / values).
        pooled_rows, locals_, order, off = [], [], [], sizes[0]
        for (idx, S), n in zip(groups, sizes[1:]):
            local = (pool[idx] - P).repeat(m)  # EOT position inside each padded suffix
            pooled_rows.append(off + torch.arange(m * len(idx), device=dev) * S + local)
            locals_.append(local)
            order.append(idx)
            off += n
        blocks = list(m_model.transformer.resblocks)
        for blk in blocks[:-1]:
            a = blk.attn
            qkv = F.linear(blk.ln_1(x), a.in_proj_weight, a.in_proj_bias).split(sizes)  # one matmul for all
            qp, kp, vp = _heads(qkv[0], m, P, heads)  # [m, H, P, hd]
            outs = [F.scaled_dot_product_attention(qp, kp, vp, is_causal=True)]
            for (idx, S), part, mask in zip(groups, qkv[1:], masks):
                B = m * len(idx)
                q, k, v = _heads(part, B, S, heads)  # [m*Cg, H, S, hd]
                kpe = kp.unsqueeze(1).expand(m, len(idx), *kp.shape[1:]).reshape(B, *kp.shape[1:])
                vpe = vp.unsqueeze(1).expand(m, len(idx), *vp.shape[1:]).reshape(B, *vp.shape[1:])
                outs.append(F.scaled_dot_product_attention(q, torch.cat([kpe, k], 2), torch.cat([vpe, v], 2),
                                                           attn_mask=mask))
            o = torch.cat([t.transpose(1, 2).reshape(-1, W) for t in outs])  # [T, W]
            x = x + blk.ls_1(F.linear(o, a.out_proj.weight, a.out_proj.bias))
            x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
        # Last layer: keys/values of all rows, queries / out-projection / MLP of pooled rows only.
        blk = blocks[-1]
        a = blk.attn
        h = blk.ln_1(x)
        bias = a.in_proj_bias
        kv = F.linear(h, a.in_proj_weight[W:], None if bias is None else bias[W:]).split(sizes)
        kp, vp = kv[0].view(m, P, 2, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)  # [m, H, P, hd]
        sel_rows = torch.cat(pooled_rows)
        q_all = F.linear(h[sel_rows], a.in_proj_weight[:W], None if bias is None else bias[:W])
        outs, start = [], 0
        for (idx, S), part, local in zip(groups, kv[1:], locals_):
            B = m * len(idx)
            k, v = part.view(B, S, 2, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, S, hd]
            q = q_all[start:start + B].view(B, 1, heads, -1).transpose(1, 2)  # [B, H, 1, hd]
            start += B
            kpe = kp.unsqueeze(1).expand(m, len(idx), *kp.shape[1:]).reshape(B, *kp.shape[1:])
            vpe = vp.unsqueeze(1).expand(m, len(idx), *vp.shape[1:]).reshape(B, *vp.shape[1:])
            mask = torch.cat([torch.ones(B, P, dtype=torch.bool, device=dev),
                              torch.arange(S, device=dev).unsqueeze(0) <= local.unsqueeze(1)], dim=1)
            outs.append(F.scaled_dot_product_attention(q, torch.cat([kpe, k], 2), torch.cat([vpe, v], 2),
                                                       attn_mask=mask.view(B, 1, 1, P + S)).reshape(B, W))
        xr = x[sel_rows] + blk.ls_1(F.linear(torch.cat(outs), a.out_proj.weight, a.out_proj.bias))
        xr = xr + blk.ls_2(blk.mlp(blk.ln_2(xr)))  # [sum m*Cg, W]: group order, draw-major
        # -> [m, C, W] in class order
        x = torch.cat([g.view(m, -1, W) for g in xr.split([m * len(idx) for idx, _ in groups])], dim=1)
        inv = torch.empty(C, dtype=torch.long, device=dev)
        inv[torch.cat(order)] = torch.arange(C, device=dev)
        x = x[:, inv]
        x = m_model.ln_final(x)  # per-token LayerNorm: pooling first is the same
        proj = m_model.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
    x = x.float()
    return x[0] if squeeze else x


def prefix_unsupported_reason(bb, token_ids: torch.Tensor, n_prefix: int) -> Optional[str]:
    """Why the prompts `token_ids` [C, L] cannot use a shared prefix of `n_prefix` positions
    on backbone `bb` (tower not covered, prefix ids differ between classes, EOT inside the
    prefix), or None if they can."""
    reason = tower_unsupported_reason(bb.model)
    if reason is not None:
        return reason
    head = token_ids[:, :n_prefix]
    if not bool((head == head[:1]).all()):
        return "the prompts' prefix token ids differ between classes"
    if int(_pool_index(bb.model, token_ids).min()) < n_prefix:
        return "the pooled (EOT) token lies inside the prefix"
    return None


def encode_prompts(bb, prefix: torch.Tensor, suffix: torch.Tensor, token_ids: torch.Tensor, *,
                   enabled: Optional[bool] = None) -> torch.Tensor:
    """Text features of C prompts [prefix ; suffix_c]: the shared-prefix encoder where it is
    exact, else the full encoder (one warning per reason).

    prefix [P, W] or [m, P, W]; suffix [C, L - P, W]; token_ids [C, L].
    Returns [C, D] or [m, C, D] (fp32, un-normalised). enabled: None = module switch
    SHARED_PREFIX; False forces the full encoder `bb.encode_text_embeddings` (the reference,
    which this equals within float rounding).
    """
    if enabled is None:
        enabled = SHARED_PREFIX
    P = prefix.shape[-2]
    if enabled:
        reason = prefix_unsupported_reason(bb, token_ids, P)
        if reason is None:
            return encode_shared_prefix(bb, prefix, suffix, token_ids)
        _warn_once(reason)
    squeeze = prefix.dim() == 2
    pre = prefix.unsqueeze(0) if squeeze else prefix
    m, C, L = pre.shape[0], token_ids.shape[0], token_ids.shape[1]
    emb = torch.cat([pre.unsqueeze(1).expand(-1, C, -1, -1),
                     suffix.to(pre.dtype).unsqueeze(0).expand(m, -1, -1, -1)], dim=2)  # [m, C, L, W]
    feats = bb.encode_text_embeddings(emb.reshape(m * C, L, -1), token_ids.repeat(m, 1)).view(m, C, -1)
    return feats[0] if squeeze else feats


def token_counts(token_ids: torch.Tensor, n_prefix: int, model: nn.Module, draws: int = 1) -> dict:
    """Tokens the text tower processes per step: full encoder (truncated at the longest EOT,
    as Backbone.encode_text_embeddings), the uncached full-context encoder (all L positions,
    the authors' code) and the shared-prefix encoder (prefix once per draw + grouped suffixes)."""
    pool = _pool_index(model, token_ids)
    C, L = token_ids.shape
    n = int(pool.max()) + 1 if model.text_pool_type in ("argmax", "eos") else L
    lengths = (pool - n_prefix + 1).tolist()
    shared = sum(hi * sum(1 for x in lengths if lo <= x <= hi) for lo, hi in group_lengths(lengths))
    return {"full": draws * C * n, "full_context": draws * C * L, "shared_prefix": draws * (n_prefix + shared)}
