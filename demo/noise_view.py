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


def verdict(probs, classnames, true) -> str:
    """'prediction with this draw: circle ✓ (true label: circle)' for the status line."""
    if probs is None or not classnames:
        return ""
    pred = classnames[int(np.argmax(probs))]
    if not true:
        return f"Prediction with this draw of ε: **{pred}** (true label unknown: your upload)."
    if true not in classnames:
        return f"Prediction with this draw of ε: **{pred}**; the true label *{true}* is not one of this generator's classes."
    mark = "✓ right" if pred == true else "✗ wrong"
    return f"True label: **{true}**. Prediction with this draw of ε: **{pred}** — {mark}."


def render(maps: Dict[str, Any], image, where: str, seed: int, label: str, classnames=None, true=None):
    kind = maps.get("kind", "none")
    clean = _show(maps["clean_image"])
    info: Dict[str, Any] = {"image": where, "generator": label, "kind": kind, "seed": seed, "true_label": true}
    classnames = list(classnames or [])
    if maps.get("probs") is not None and classnames:
        info["prediction_this_draw"] = classnames[int(np.argmax(maps["probs"]))]
    said = verdict(maps.get("probs"), classnames, true)
    raw_label = f"Raw image (as the model sees it){' · true label: ' + true if true else ''}"
    clean = plots.picture(maps["clean_image"], f"Raw image{' · true label: ' + true if true else ''}")
    if kind == "image":
        info.update(mu=_stats(maps["mu"]), sigma=_stats(maps["sigma"]), noise=_stats(maps["noise"]))
        return (gr.update(value=clean, label=raw_label),
                gr.update(value=plots.picture(maps["noisy_image"], f"Noise-injected image (seed {seed})\n"
                                              f"noise std {float(np.std(maps['noise'])):.3f} (normalised pixels)"),
                          label=f"Noise-injected image (seed {seed})"),
                gr.update(value=plots.heatmap(maps["mu_map"], "μ heatmap (mean over RGB; 0 = white)",
                                              label="pixel units (normalised)", centred=True),
                          label="μ heatmap"),
                gr.update(value=plots.heatmap(maps["sigma_map"], "σ heatmap (mean over RGB; from 0)",
                                              label="pixel units (normalised)"),
                          label="σ heatmap"),
                info, f"One draw of ε with seed {seed} on {where} ({label}). {said}")
    if kind == "feature":
        info.update(mu=_stats(maps["mu"]), sigma=_stats(maps["sigma"]), noise=_stats(maps["noise"]),
                    cosine_clean_vs_noisy=maps.get("cosine"), shift_norm=maps.get("shift_norm"),
                    feature_norm=maps.get("feature_norm"))
        attn = maps.get("class_attention")
        if attn is not None and len(np.ravel(attn)) == len(classnames):
            # the CA generator's query (the image) attends over the class text features
            info["generator_attention_over_classes"] = {c: round(float(a), 4)
                                                        for c, a in zip(classnames, np.ravel(attn))}
        shift = plots.feature_shift(maps["clean_feature"], maps["noisy_feature"], float(maps.get("shift_norm", 0)),
                                    float(maps.get("cosine", 0)), maps.get("feature_norm"))
        return (gr.update(value=clean, label=raw_label),
                gr.update(value=shift, label="Shift of the image embedding"),
                gr.update(value=plots.feature_bars(maps["mu"], "μ over the image embedding", "μ", signed=True),
                          label="μ over the feature"),
                gr.update(value=plots.feature_bars(maps["sigma"], "σ over the image embedding", "σ", signed=False),
                          label="σ over the feature"),
                info, f"Feature-level noise ({label}): one draw of ε with seed {seed} on {where}. {said}")
    return (gr.update(value=clean, label=raw_label), gr.update(value=None), gr.update(value=None),
            gr.update(value=None), info,
            "This generator adds no visual noise (its noise is on the text side): see the "
            "*Prompt distribution* tab.")
