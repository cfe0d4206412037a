"""Matplotlib figures rendered to RGB arrays (Agg, no pyplot: safe in worker threads)."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def _figure(w: float = 4.0, h: float = 3.4):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def _to_array(fig) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def heatmap(values: np.ndarray, title: str, cmap: str = "viridis", label: str = "") -> np.ndarray:
    """A 2-D map with its colour bar (the paper's Figure 4 rows 3-4)."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 3:  # [3, H, W] or [H, W, 3] per-channel -> mean over channels
        values = values.mean(axis=0 if values.shape[0] in (1, 3) else -1)
    fig = _figure()
    ax = fig.add_subplot()
    im = ax.imshow(values, cmap=cmap)
    return _finish_map(fig, ax, im, title, label)


def _finish_map(fig, ax, im, title: str, label: str) -> np.ndarray:
    """Title below the map (the UI's label badge covers the top edge), no ticks, a colour bar."""
    ax.set_xlabel(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    cb = fig.colorbar(im, ax=ax, shrink=0.85)
    if label:
        cb.set_label(label, fontsize=8)
    return _to_array(fig)


def overlay(image: np.ndarray, values: np.ndarray, title: str, cmap: str = "jet", label: str = "") -> np.ndarray:
    """A map laid over the image (attention / relevance), with its colour bar."""
    from PIL import Image

    image = np.asarray(image)
    values = np.asarray(values, dtype=np.float32)
    h, w = image.shape[:2]
    up = np.asarray(Image.fromarray(values).resize((w, h), Image.BILINEAR))
    fig = _figure()
    ax = fig.add_subplot()
    ax.imshow(image)
    im = ax.imshow(up, cmap=cmap, alpha=0.5)
    return _finish_map(fig, ax, im, title, label)


def vector_bars(series: Dict[str, np.ndarray], title: str, top: int = 64) -> np.ndarray:
    """Feature-level mu / sigma / shift over the embedding's dimensions."""
    fig = _figure(6.0, 3.2)
    ax = fig.add_subplot()
    for name, v in series.items():
        v = np.asarray(v, dtype=np.float32).ravel()[:top]
        ax.plot(np.arange(len(v)), v, label=name, lw=1.2)
    ax.set_xlabel(f"embedding dimension (first {top})\n{title}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _to_array(fig)


def spread(probs: np.ndarray, classnames: Sequence[str], title: str) -> np.ndarray:
    """Box plot of each class's probability over noise draws (probs: [draws, C])."""
    probs = np.asarray(probs, dtype=np.float32)
    order = np.argsort(-probs.mean(axis=0))[:10]
    fig = _figure(6.0, 3.4)
    ax = fig.add_subplot()
    ax.boxplot([probs[:, i] for i in order], vert=False, tick_labels=[classnames[i] for i in order])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"probability over {probs.shape[0]} noise draws\n{title}", fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    return _to_array(fig)
