"""Matplotlib figures rendered to RGB arrays (Agg, no pyplot: safe in worker threads).

Conventions (issue 15): figures are large with readable fonts and carry their own title at the
top (the page shows them without a label badge, so nothing covers the plot); colour maps are
perceptually uniform with honest ranges: signed maps (μ, embedding shifts) use a diverging map
centred on 0 with a symmetric range; non-negative maps (σ) a sequential one from 0; attention
is shown *relative to uniform* on a log scale whose range is at least ×½ … ×2, so nearly uniform
attention looks nearly white instead of sharply focused.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

DIVERGING = "RdBu_r"  # centred: blue < 0 < red
SEQUENTIAL = "viridis"
FONT = 12


def _figure(w: float = 6.4, h: float = 5.0):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    return fig


def _to_array(fig) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _channel_mean(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 3:  # [3, H, W] or [H, W, 3] per-channel -> mean over channels
        values = values.mean(axis=0 if values.shape[0] in (1, 3) else -1)
    return values


def heatmap(values: np.ndarray, title: str, cmap: Optional[str] = None, label: str = "",
            centred: bool = False) -> np.ndarray:
    """A 2-D map with its colour bar (the paper's Figure 4 rows 3-4). centred: a diverging map
    with a symmetric range around 0 (signed maps such as μ); otherwise sequential from 0 when the
    values are non-negative (σ)."""
    values = _channel_mean(values)
    fig = _figure(5.6, 5.0)
    ax = fig.add_subplot()
    if centred:
        m = float(np.abs(values).max()) or 1e-12
        im = ax.imshow(values, cmap=cmap or DIVERGING, vmin=-m, vmax=m)
    else:
        lo = 0.0 if float(values.min()) >= 0 else float(values.min())
        im = ax.imshow(values, cmap=cmap or SEQUENTIAL, vmin=lo, vmax=max(float(values.max()), lo + 1e-12))
    return _finish_map(fig, ax, im, title, label)


def _finish_map(fig, ax, im, title: str, label: str) -> np.ndarray:
    ax.set_title(title, fontsize=FONT + 1)
    ax.set_xticks([])
    ax.set_yticks([])
    cb = fig.colorbar(im, ax=ax, shrink=0.85)
    cb.ax.tick_params(labelsize=FONT - 2)
    if label:
        cb.set_label(label, fontsize=FONT - 1)
    return _to_array(fig)


def _upsample(values: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    values = np.asarray(values, dtype=np.float32)
    if values.shape == (h, w):
        return values
    return np.asarray(Image.fromarray(values).resize((w, h), Image.NEAREST))


def relative_to_uniform(attn: np.ndarray) -> np.ndarray:
    """log2(attention / (1/N)) over N cells: 0 = exactly uniform, +1 = twice uniform."""
    a = np.asarray(attn, dtype=np.float64)
    n = a.size
    return np.log2(np.clip(a * n, 1e-6, None)).astype(np.float32)


def _ratio_range(*maps: np.ndarray) -> float:
    """Symmetric log2 range: at least ±1 (×½ … ×2), wider when the data are."""
    return max(1.0, max(float(np.abs(m).max()) for m in maps))


def _ratio_colorbar(fig, im, ax, span: float):
    cb = fig.colorbar(im, ax=ax, shrink=0.85)
    step = 1 if span <= 2 else 2
    ticks = [t for t in range(-6, 7, step) if abs(t) <= span + 1e-9]
    cb.set_ticks(ticks)
    cb.set_ticklabels([f"×{2.0 ** t:g}" for t in ticks])
    cb.ax.tick_params(labelsize=FONT - 2)
    cb.set_label("attention ÷ uniform", fontsize=FONT - 1)
    return cb


def attention_overlay(image: np.ndarray, attn: np.ndarray, title: str) -> np.ndarray:
    """Attention over image patches shown relative to uniform (see the module docstring),
    laid over the image; the title states the actual range (min … max ÷ uniform)."""
    image = np.asarray(image)
    ratio = relative_to_uniform(attn)
    span = _ratio_range(ratio)
    h, w = image.shape[:2]
    fig = _figure(5.6, 5.0)
    ax = fig.add_subplot()
    ax.imshow(image)
    im = ax.imshow(_upsample(ratio, h, w), cmap=DIVERGING, vmin=-span, vmax=span, alpha=0.6)
    lo, hi = 2.0 ** float(ratio.min()), 2.0 ** float(ratio.max())
    ax.set_title(f"{title}\n(×{lo:.2f} … ×{hi:.2f} of uniform)", fontsize=FONT)
    ax.set_xticks([])
    ax.set_yticks([])
    _ratio_colorbar(fig, im, ax, span)
    return _to_array(fig)


def relevance_overlay(image: np.ndarray, values: np.ndarray, title: str, vmax: float) -> np.ndarray:
    """A relevance map over the image on a FIXED symmetric range ±vmax (the same for the
    before / after pair, so their colours compare)."""
    image = np.asarray(image)
    h, w = image.shape[:2]
    fig = _figure(5.6, 5.0)
    ax = fig.add_subplot()
    ax.imshow(image)
    im = ax.imshow(_upsample(values, h, w), cmap=DIVERGING, vmin=-vmax, vmax=vmax, alpha=0.6)
    ax.set_title(title, fontsize=FONT)
    ax.set_xticks([])
    ax.set_yticks([])
    cb = fig.colorbar(im, ax=ax, shrink=0.85)
    cb.ax.tick_params(labelsize=FONT - 2)
    cb.set_label("relevance (same scale before / after)", fontsize=FONT - 1)
    return _to_array(fig)


def overlay(image: np.ndarray, values: np.ndarray, title: str, cmap: str = SEQUENTIAL, label: str = "") -> np.ndarray:
    """A non-negative map laid over the image, with its colour bar from 0."""
    image = np.asarray(image)
    h, w = image.shape[:2]
    up = _upsample(values, h, w)
    fig = _figure(5.6, 5.0)
    ax = fig.add_subplot()
    ax.imshow(image)
    im = ax.imshow(up, cmap=cmap, alpha=0.5, vmin=min(0.0, float(up.min())), vmax=float(up.max()) or 1e-12)
    return _finish_map(fig, ax, im, title, label)


def mung_strip(image: np.ndarray, words: Sequence[str], per_word: np.ndarray, title: str,
               max_words: int = 8) -> np.ndarray:
    """The generator's attention per question word, each relative to uniform on ONE shared
    scale, large enough to read (one row, ~2.3 in per word)."""
    words = list(words)[:max_words]
    maps = [relative_to_uniform(m) for m in list(per_word)[:len(words)]]
    if not maps:
        fig = _figure(6, 2)
        fig.text(0.5, 0.5, "no question words", ha="center")
        return _to_array(fig)
    span = _ratio_range(*maps)
    image = np.asarray(image)
    h, w = image.shape[:2]
    n = len(maps)
    fig = _figure(2.3 * n + 1.2, 3.4)
    axes = fig.subplots(1, n, squeeze=False)[0]
    im = None
    for ax, word, m in zip(axes, words, maps):
        ax.imshow(image)
        im = ax.imshow(_upsample(m, h, w), cmap=DIVERGING, vmin=-span, vmax=span, alpha=0.6)
        ax.set_title(f"'{word}'", fontsize=FONT)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=FONT + 1)
    _ratio_colorbar(fig, im, list(axes), span)
    return _to_array(fig)


def feature_shift(clean: np.ndarray, noisy: np.ndarray, shift_norm: float, cosine: float,
                  feature_norm: Optional[float] = None, top: int = 64) -> np.ndarray:
    """Feature-level noise: the image embedding before / after the noise over its dimensions
    (the first `top`), with the shift Δ as bars; the title states |Δ|, ‖f‖ and cos."""
    clean = np.asarray(clean, dtype=np.float32).ravel()
    noisy = np.asarray(noisy, dtype=np.float32).ravel()
    d = len(clean)
    k = min(top, d)
    x = np.arange(k)
    fig = _figure(7.5, 5.2)
    ax = fig.add_subplot()
    delta = (noisy - clean)[:k]
    ax.bar(x, delta, color=np.where(delta >= 0, "#c0392b", "#2e6da4"), alpha=0.45, label="shift Δ = noisy − clean")
    ax.plot(x, clean[:k], "-", color="0.25", lw=1.6, label="clean embedding f")
    ax.plot(x, noisy[:k], "-", color="#e67e22", lw=1.6, label="noisy embedding f + noise")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xlabel(f"embedding dimension ({'all ' + str(d) if k == d else f'first {k} of {d}'})", fontsize=FONT)
    ax.set_ylabel("value", fontsize=FONT)
    rel = f" = {shift_norm / feature_norm:.0%} of ‖f‖ = {feature_norm:.2f}" if feature_norm else ""
    ax.set_title(f"Image embedding shift: |Δ| = {shift_norm:.3f}{rel}\ncos(clean, noisy) = {cosine:.3f}",
                 fontsize=FONT + 1)
    ax.tick_params(labelsize=FONT - 2)
    ax.legend(fontsize=FONT - 2, loc="lower right", framealpha=0.9)
    ax.grid(alpha=0.3)
    return _to_array(fig)


def feature_bars(values: np.ndarray, title: str, ylabel: str, signed: bool, top: int = 64) -> np.ndarray:
    """μ (signed: bars coloured by sign around 0) or σ (non-negative) over the embedding's
    dimensions, with their norm / mean in the title."""
    v = np.asarray(values, dtype=np.float32).ravel()
    k = min(top, len(v))
    fig = _figure(7.5, 4.6)
    ax = fig.add_subplot()
    colours = np.where(v[:k] >= 0, "#c0392b", "#2e6da4") if signed else "#5b8c5a"
    ax.bar(np.arange(k), v[:k], color=colours)
    ax.axhline(0, color="0.4", lw=0.8)
    stat = f"‖μ‖ = {np.linalg.norm(v):.3f}" if signed else f"mean σ = {v.mean():.4f}, max {v.max():.4f}"
    ax.set_title(f"{title}\n{stat}", fontsize=FONT + 1)
    ax.set_xlabel(f"embedding dimension ({'all ' + str(len(v)) if k == len(v) else f'first {k} of {len(v)}'})",
                  fontsize=FONT)
    ax.set_ylabel(ylabel, fontsize=FONT)
    ax.tick_params(labelsize=FONT - 2)
    ax.grid(alpha=0.3, axis="y")
    return _to_array(fig)


def vector_bars(series: Dict[str, np.ndarray], title: str, top: int = 64) -> np.ndarray:
    """Several vectors over the embedding's dimensions (line plots)."""
    fig = _figure(7.5, 4.6)
    ax = fig.add_subplot()
    for name, v in series.items():
        v = np.asarray(v, dtype=np.float32).ravel()[:top]
        ax.plot(np.arange(len(v)), v, label=name, lw=1.4)
    ax.set_title(title, fontsize=FONT + 1)
    ax.set_xlabel(f"embedding dimension (first {top})", fontsize=FONT)
    ax.legend(fontsize=FONT - 2)
    ax.grid(alpha=0.3)
    return _to_array(fig)


def spread(probs: np.ndarray, classnames: Sequence[str], title: str, true: Optional[str] = None) -> np.ndarray:
    """Box plot of each class's probability over noise draws (probs: [draws, C]); the true class
    (when known) is marked."""
    probs = np.asarray(probs, dtype=np.float32)
    order = np.argsort(-probs.mean(axis=0))[:10]
    fig = _figure(7.5, 5.0)
    ax = fig.add_subplot()
    labels = [classnames[i] + (" (true)" if classnames[i] == true else "") for i in order]
    ax.boxplot([probs[:, i] for i in order], vert=False, tick_labels=labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_title(title, fontsize=FONT + 1)
    ax.set_xlabel(f"probability over {probs.shape[0]} noise draws", fontsize=FONT)
    ax.tick_params(labelsize=FONT - 1)
    ax.grid(alpha=0.3, axis="x")
    return _to_array(fig)


def picture(image, title: str) -> np.ndarray:
    """An image with its title above it (nearest-neighbour: the model's pixels stay visible),
    the same size as the heatmaps next to it."""
    fig = _figure(5.6, 5.0)
    ax = fig.add_subplot()
    ax.imshow(np.asarray(image), interpolation="nearest")
    ax.set_title(title, fontsize=FONT + 1)
    ax.set_xticks([])
    ax.set_yticks([])
    return _to_array(fig)


def enlarge(image, side: int = 192) -> np.ndarray:
    """A small image enlarged with nearest-neighbour (pixels stay honest) for a preview."""
    from PIL import Image

    im = image if isinstance(image, Image.Image) else Image.open(image) if isinstance(image, str) else \
        Image.fromarray(np.asarray(image))
    im = im.convert("RGB")
    if max(im.size) < side:
        f = max(1, side // max(im.size))
        im = im.resize((im.width * f, im.height * f), Image.NEAREST)
    return np.asarray(im)
