"""Turn `pini_core.analysis.maps.noise_maps` results into the Noise tab's widgets."""
from __future__ import annotations

from typing import Any, Dict

import gradio as gr
import numpy as np

from demo import plots


def _stats(a) -> Dict[str, float]:
    a = np.asarray(a, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()), "max": float(a.max())}


DISPLAY_SIDE = 256  # small model inputs (the toy CLIP sees 64 px) are enlarged for the eye


def _show(im) -> np.ndarray:
    """An image for display: enlarged with nearest-neighbour so pixels stay honest."""
    from PIL import Image

    im = im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im))
    if max(im.size) < DISPLAY_SIDE:
        f = DISPLAY_SIDE // max(im.size)
        im = im.resize((im.width * f, im.height * f), Image.NEAREST)
    return np.asarray(im)


def render(maps: Dict[str, Any], image, where: str, seed: int, label: str, classnames=None):
    kind = maps.get("kind", "none")
    clean = _show(maps["clean_image"])
    info: Dict[str, Any] = {"image": where, "generator": label, "kind": kind, "seed": seed}
    if kind == "image":
        info.update(mu=_stats(maps["mu"]), sigma=_stats(maps["sigma"]), noise=_stats(maps["noise"]))
        return (gr.update(value=clean, label="Raw image (as the model sees it)"),
                gr.update(value=_show(maps["noisy_image"]), label="Noise-injected image"),
                gr.update(value=plots.heatmap(maps["mu_map"], "μ (mean over RGB)", "coolwarm", "pixel units"),
                          label="μ heatmap"),
                gr.update(value=plots.heatmap(maps["sigma_map"], "σ (mean over RGB)", "magma", "pixel units"),
                          label="σ heatmap"),
                info, f"One draw of ε with seed {seed} on {where}.")
    if kind == "feature":
        info.update(mu=_stats(maps["mu"]), sigma=_stats(maps["sigma"]), noise=_stats(maps["noise"]),
                    cosine_clean_vs_noisy=maps.get("cosine"), shift_norm=maps.get("shift_norm"),
                    feature_norm=maps.get("feature_norm"))
        attn = maps.get("class_attention")
        if attn is not None and len(np.ravel(attn)) == len(classnames or []):
            # the CA generator's query (the image) attends over the class text features
            info["generator_attention_over_classes"] = {c: round(float(a), 4)
                                                        for c, a in zip(classnames, np.ravel(attn))}
        shift = plots.vector_bars({"clean embedding": maps["clean_feature"], "noisy embedding": maps["noisy_feature"]},
                                  f"Embedding shift: |Δ| = {maps.get('shift_norm', 0):.3f}, "
                                  f"cos = {maps.get('cosine', 0):.3f}")
        return (gr.update(value=clean, label="Raw image (as the model sees it)"),
                gr.update(value=shift, label="Shift of the image embedding"),
                gr.update(value=plots.vector_bars({"μ": maps["mu"]}, "μ over the feature"), label="μ over the feature"),
                gr.update(value=plots.vector_bars({"σ": maps["sigma"]}, "σ over the feature"),
                          label="σ over the feature"),
                info, f"Feature-level noise: one draw of ε with seed {seed} on {where}.")
    return (gr.update(value=clean, label="Raw image"), gr.update(value=None), gr.update(value=None),
            gr.update(value=None), info,
            "This generator adds no visual noise (its noise is on the text side): see the "
            "*Prompt distribution* tab.")
