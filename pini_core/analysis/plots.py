"""matplotlib figures of the engine's analyses (Agg backend: works headless)."""
from __future__ import annotations

from typing import Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_meter(res: Dict) -> "plt.Figure":
    """Bars of H(T|eps) and I(T, eps) for learned / random / no noise, H(T) as a line."""
    names = ["learned", "random", "none"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    h = [res[n]["H_T_given_eps"] for n in names]
    i = [res[n]["I"] for n in names]
    colours = ["tab:green", "tab:gray", "tab:blue"]
    axes[0].bar(names, h, color=colours)
    axes[0].axhline(res["H_T"], color="k", ls="--", lw=1, label="H(T)")
    axes[0].set_title("H(T | ε)  (nats, lower is better)")
    axes[0].legend()
    axes[1].bar(names, i, color=colours)
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set_title("I(T, ε) = H(T) − H(T | ε)")
    fig.tight_layout()
    return fig


def plot_noise_maps(res: Dict) -> "plt.Figure":
    """Paper Fig. 4 for one image: raw, noisy, mu and sigma heatmaps with colour bars
    (raw-image noise), or mu / sigma over the feature dimensions (feature noise)."""
    if res["kind"] == "image":
        fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
        axes[0].imshow(res["clean_image"]), axes[0].set_title("raw image")
        axes[1].imshow(res["noisy_image"]), axes[1].set_title("noise-injected")
        for ax, key, title, cmap in ((axes[2], "mu_map", "μ (mean over RGB)", "coolwarm"),
                                     (axes[3], "sigma_map", "σ (mean over RGB)", "viridis")):
            im = ax.imshow(res[key], cmap=cmap)
            ax.set_title(title)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        for ax in axes:
            ax.axis("off")
    elif res["kind"] == "feature":
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), gridspec_kw={"width_ratios": [1, 2, 2]})
        axes[0].imshow(res["clean_image"]), axes[0].axis("off"), axes[0].set_title("image")
        d = np.arange(len(res["mu"]))
        axes[1].bar(d, res["mu"], color="tab:red", width=1.0, label="μ")
        axes[1].plot(d, res["sigma"], color="tab:blue", lw=1, label="σ")
        axes[1].set_title("visual-feature noise per dimension"), axes[1].legend()
        axes[2].plot(d, res["clean_feature"], lw=1, label="clean V(x)")
        axes[2].plot(d, res["noisy_feature"], lw=1, label="V(x) + ε_v")
        axes[2].set_title(f"embedding shift: cos = {res['cosine']:.3f}"), axes[2].legend()
    else:
        fig, ax = plt.subplots(figsize=(3.2, 3.2))
        ax.imshow(res["clean_image"]), ax.axis("off"), ax.set_title("no visual noise in this model")
    fig.tight_layout()
    return fig


def plot_history(history: List[Dict]) -> "plt.Figure":
    """Loss and validation accuracy per epoch."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["loss"] for h in history], "o-", color="tab:red", label="train loss (Eq. 13)")
    ax.set_xlabel("epoch"), ax.set_ylabel("loss")
    if any("val_accuracy" in h for h in history):
        ax2 = ax.twinx()
        ax2.plot([h["epoch"] for h in history if "val_accuracy" in h],
                 [h["val_accuracy"] for h in history if "val_accuracy" in h], "s-", color="tab:blue", label="val acc")
        ax2.set_ylabel("val accuracy (%)")
    fig.tight_layout()
    return fig
