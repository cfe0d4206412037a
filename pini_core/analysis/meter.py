"""The pi-noise meter: is the noise beneficial for the task? (paper Eq. 1, 3, 5)

    H(T)      = E[-log p(y | x, P)]          Eq. 3, estimated on the held-out images: the frozen
                                           CLIP with the model's own prompts P and no noise (with
                                           prompt noise: the "x"-placeholder prompts PiNI trains,
                                           so I(T, eps) measures the noise only)
    H(T|eps)  = E[-log p(y | x, eps, P)]     Eq. 5, Monte Carlo over the images and m noise draws
    I(T, eps) = H(T) - H(T|eps)              Eq. 1: > 0 means eps is pi-noise

Both "entropies" are what the paper defines them to be: cross-entropies of CLIP's predicted
class distribution against the true labels, estimated on N images (in nats). They are not
the Shannon entropy of the label distribution: a confidently wrong classifier pays more than
a uniform guess, so the estimate of H(T) can exceed ln C; and I is the difference of two
such estimates for the same fixed classifier, so it comes out negative when the noise makes
the predictions worse (the true mutual information is never negative).

Four rows, always in this order (`ROWS`):

    none          no noise                                   I = 0 by definition
    random        isotropic Gaussian noise at the model's own injection points, its RMS
                  matched per side to the learned noise (mu + sigma * eps)
    learned_mean  the learned noise with eps = 0, i.e. mu only (the model's `mean` mode)
    learned       the learned noise mu + sigma * eps with m sampled draws per image

`pi_noise_meter` returns all rows as data; the CLI (`python -m pini_core meter`) and the
app's Learn tab print the same rows (`meter_table`, `meter_notes`).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..errors import DataError
from ..features import encode_images, labels_of
from ..model import PiNIModel
from ..objective import conditional_entropy, mutual_information
from .attention import attention_entropy

ROWS = ("none", "random", "learned_mean", "learned")
ROW_LABELS = {
    "none": "no noise",
    "random": "random noise, same scale",
    "learned_mean": "learned, ε = 0 (μ only)",
    "learned": "learned, sampled ε (μ + σ⊙ε)",
}
# Where each row's H comes from (the paper's equations).
ROW_EQUATIONS = {
    "none": "Eq. 3: H(T) = E[−log p(y | x, P)]",
    "random": "Eq. 5 with ε ~ N(0, s²I), s = RMS of the learned noise",
    "learned_mean": "Eq. 5 at ε = 0: G = μ(x, P)",
    "learned": "Eq. 5: Monte Carlo over m draws, G = μ + σ⊙ε (Eq. 12)",
}
# I > this (nats) counts as "the meter says the noise helps"
I_TOLERANCE = 1e-3


def _rms(t: torch.Tensor) -> float:
    return float(t.float().pow(2).mean().sqrt())


@torch.no_grad()
def _random_noise_logits(model: PiNIModel, inputs, scale_v: float, scale_t: float, draws: int,
                         gen: torch.Generator) -> torch.Tensor:
    """Logits [m, B, C] with isotropic Gaussian noise of RMS scale_v / scale_t injected by the
    model itself at its own injection points (`PiNIModel.run(noise=...)`)."""
    bb, cfg = model.backbone, model.noise_cfg
    rand = lambda shape, s: s * torch.randn(shape, generator=gen, device=gen.device).to(bb.device)  # noqa: E731
    outs = []
    for _ in range(draws):
        noise = {}
        if cfg.text_location == "prompt":
            noise["text"] = rand((model.n_prefix, model.prompt_embeds.shape[-1]), scale_t).unsqueeze(0)
        elif cfg.text_location == "feature":
            noise["text"] = rand(model.base_text_features.shape, scale_t).unsqueeze(0)
        if cfg.visual_location == "image":
            noise["visual"] = rand(inputs["pixels"].shape, scale_v).unsqueeze(0)
        elif cfg.visual_location == "feature":
            noise["visual"] = rand(inputs["features"].shape, scale_v).unsqueeze(0)
        outs.append(model.run(inputs, draws=1, noise=noise).logits[0])
    return torch.stack(outs)


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """% correct; logits [m, B, C]: the mean over the m draws of each draw's accuracy (the
    expected accuracy of one random draw, as the authors' code tests)."""
    if logits.dim() == 2:
        logits = logits.unsqueeze(0)
    return float(100.0 * (logits.argmax(-1) == labels.unsqueeze(0)).double().mean())


@torch.no_grad()
def pi_noise_meter(model: PiNIModel, data: Sequence, draws: int = 8, seed: int = 0, batch_size: int = 64,
                   features: Optional[torch.Tensor] = None) -> Dict[str, Any]:
    """The meter on held-out images `data` [(image, label)] of the model's task.

    Returns a dict (entropies in nats, accuracies in % of the N images):

    - "rows": list of 4 dicts in `ROWS` order, each {"name", "label", "equation",
      "H_T_given_eps" (for "none": H(T) itself), "I" (= H_T - H_T_given_eps),
      "accuracy" (argmax correct; sampled rows: mean over the m draws of one draw's
      accuracy), "correct" (images correct, a mean over draws for sampled rows)};
      also reachable by name: res["none"], res["random"], res["learned_mean"], res["learned"].
      The "learned_mean" accuracy equals `PiNIModel.predict(mode="mean")`'s; the "none" row is
      zero-shot CLIP with the model's own prompts (`PiNIModel.logits_without_noise`).
    - "H_T": float, "ln_C": ln(number of classes) (the cross-entropy of a uniform guess),
      "num_classes": C, "n": N images, "draws": m.
    - "scale": {"visual", "text"}: RMS of the learned noise mu + sigma*eps per side, over the
      first `batch_size` images and the m draws (the random row's scale; 0 for a side
      without noise).
    - "parts": {"visual" | "text": {"mu_rms", "sigma_eps_rms", "noise_rms"}} for the sides the
      model injects: how large the mean shift mu is against the random part sigma*eps.
    - "attention": the visual CA's attention entropy at eps = 0 over `data`
      (`analysis.attention.attention_entropy`: mean entropy in nats, relative to ln C, top
      class and its share of images), None when the visual generator is not a cross-attention.
    - "warnings": list of one-line strings (e.g. I > 0 while accuracy is unchanged).

    `features`: cached [N, D] image features of `data` (else encoded).
    Raises DataError for an empty `data`."""
    from torch.utils.data import DataLoader

    from ..data.transforms import ImageDataset, collate_images
    from ..features import test_transform

    if not data:
        raise DataError("The meter needs held-out images of the model's task; none were given.")
    bb = model.backbone
    model.eval()
    labels = labels_of(data)
    feats = features if features is not None else encode_images(bb, data, progress=False)
    gen = torch.Generator(device=bb.device).manual_seed(int(seed))
    draws = int(draws)

    batches = []
    if model.needs_pixels:
        loader = DataLoader(ImageDataset(data, test_transform(bb)), batch_size=batch_size, collate_fn=collate_images)
        batches = [{"pixels": px} for px, _, _ in loader]
    else:
        batches = [{"features": feats[i:i + batch_size]} for i in range(0, len(data), batch_size)]

    # Scale of the learned noise (RMS of mu + sigma*eps per side), for the matched random noise,
    # and its parts mu vs sigma*eps.
    ex = model.run(batches[0], draws=draws, mode="sample", generator=gen, keep_extras=True).extras
    parts: Dict[str, Dict[str, float]] = {}
    for side in ("visual", "text"):
        if f"{side}_mu" in ex:
            mu, sigma, eps = ex[f"{side}_mu"], ex[f"{side}_sigma"], ex[f"{side}_eps"]
            parts[side] = {"mu_rms": _rms(mu), "sigma_eps_rms": _rms(sigma * eps),
                           "noise_rms": _rms(mu + sigma * eps)}
    scale_v = parts.get("visual", {}).get("noise_rms", 0.0)
    scale_t = parts.get("text", {}).get("noise_rms", 0.0)

    zs, mean, learned, rnd = [], [], [], []
    start = 0
    for inputs in batches:
        n = inputs[next(iter(inputs))].shape[0]
        f = feats[start:start + n]
        start += n
        zs.append(model.logits_without_noise({"features": f}).cpu())  # Eq. 3: PiNI's own prompts, no noise
        mean.append(model.run(inputs, draws=1, mode="mean").logits.cpu())  # eps = 0: mu only
        learned.append(model.run(inputs, draws=draws, mode="sample", generator=gen).logits.cpu())
        rnd.append(_random_noise_logits(model, inputs, scale_v, scale_t, draws, gen).cpu())
    logits = {"none": torch.cat(zs).unsqueeze(0), "random": torch.cat(rnd, 1),
              "learned_mean": torch.cat(mean, 1), "learned": torch.cat(learned, 1)}
    h_t = float(conditional_entropy(logits["none"], labels))
    c = model.num_classes
    result: Dict[str, Any] = {"H_T": h_t, "ln_C": math.log(c), "num_classes": c, "n": len(data), "draws": draws,
                              "scale": {"visual": scale_v, "text": scale_t}, "parts": parts}
    rows = []
    for name in ROWS:
        h_c = h_t if name == "none" else float(conditional_entropy(logits[name], labels))
        acc = _accuracy(logits[name], labels)
        row = {"name": name, "label": ROW_LABELS[name], "equation": ROW_EQUATIONS[name], "H_T_given_eps": h_c,
               "I": 0.0 if name == "none" else mutual_information(h_t, h_c), "accuracy": acc,
               "correct": acc * len(data) / 100.0}
        rows.append(row)
        result[name] = row
    result["rows"] = rows
    # The visual CA's attention over the classes (issue 14 item 7); None without a CA generator.
    result["attention"] = attention_entropy(model, data, features=feats, batch_size=batch_size)
    result["warnings"] = meter_warnings(result)
    return result


def meter_warnings(res: Dict[str, Any]) -> List[str]:
    """One line per row whose I says the noise helps (I > 0) while its accuracy equals the
    no-noise accuracy (less than half an image apart), and when a saturated visual
    cross-attention makes mu the same for every image."""
    out = []
    base = res["none"]
    same = [res[name] for name in ROWS[1:]
            if res[name]["I"] > I_TOLERANCE and abs(res[name]["correct"] - base["correct"]) < 0.5]
    if same:
        rows = "; ".join(f"{r['label']}: I(T, ε) = {r['I']:+.3f} nats" for r in same)
        out.append(f"I > 0 but accuracy unchanged ({base['accuracy']:.1f} % with and without noise) for {rows}. "
                   "The noise made the true class more probable on average without changing a single decision: "
                   "I > 0 is not the same as more images right.")
    att = res.get("attention")
    if att and att.get("n") and att.get("relative_entropy", 1.0) < 0.1 and att.get("top_class_share", 0.0) > 0.9:
        out.append(f"The visual cross-attention is saturated: it attends to '{att['top_class']}' for "
                   f"{100 * att['top_class_share']:.0f} % of the images (mean attention entropy "
                   f"{att['mean_entropy']:.3f} nats of at most {att['max_entropy']:.3f}), so μ is nearly the same "
                   "shift for every image.")
    return out


def meter_notes(res: Dict[str, Any]) -> List[str]:
    """The lines that say what the numbers are (the CLI prints them, the app shows them)."""
    h, ln_c, c = res["H_T"], res["ln_C"], res["num_classes"]
    above = (f"here H(T) = {h:.3f} > ln {c} = {ln_c:.3f}: without noise CLIP is confidently wrong often enough "
             "to pay more than a uniform guess" if h > ln_c else
             f"here H(T) = {h:.3f} ≤ ln {c} = {ln_c:.3f}")
    return [
        f"H(T) = {h:.4f} nats: the paper's task entropy (Eq. 3), the cross-entropy −log p(y | x, P) of the frozen "
        f"CLIP with the model's own prompts and no noise, averaged over {res['n']} held-out images.",
        "It is a cross-entropy estimate, not the entropy of the labels, so it can exceed ln C (a uniform guess) "
        f"when predictions are confidently wrong; {above}.",
        "H(T|ε) (Eq. 5) is the same estimate with the noise injected (m = "
        f"{res['draws']} draws per image); I(T, ε) = H(T) − H(T|ε) (Eq. 1). Both terms are estimates for one "
        "fixed classifier, so I comes out negative when the noise makes predictions worse (the true mutual "
        "information cannot be negative).",
    ]


def meter_table(res: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The rows as the CLI and the app show them: noise, H(T|ε), I(T, ε), accuracy, correct."""
    return [{"noise": r["label"], "key": r["name"], "H(T|ε) (nats)": r["H_T_given_eps"], "I(T, ε) (nats)": r["I"],
             "accuracy (%)": r["accuracy"], "correct": r["correct"], "n": res["n"]} for r in res["rows"]]


def task_splits(model: PiNIModel):
    """The `DatasetSplits` of the task a checkpoint was trained on, rebuilt from the facts its
    config records (`model.checkpoint_config["data"]`, set by `checkpoint.load_pini`).

    Only procedurally rendered tasks (the toy world: no root folder) are rebuilt, so a
    checkpoint's config never makes this open a path. Raises DataError saying what to do
    otherwise (a generator trained on uploaded or on-disk images). The classes must be the
    model's, in its order."""
    from ..data.registry import get_dataset, list_datasets

    cfg = getattr(model, "checkpoint_config", None) or {}
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    name, seed = data.get("dataset"), data.get("seed", 1)
    if not isinstance(name, str) or not name:
        raise DataError("This generator's checkpoint does not record the task it was trained on, so there are no "
                        "held-out images to measure on. Train a generator in the Train tab instead.")
    if data.get("root") is not None or name not in list_datasets() or not name.startswith("toy-"):
        raise DataError("This generator was trained on images of its own (an upload or a folder on disk), whose "
                        "held-out images the meter cannot rebuild. Train it again in the Train tab in this session: "
                        "the meter then uses its held-out images.")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
        raise DataError(f"This checkpoint's data seed {seed!r} is not a seed; re-save or re-train it.")
    splits = get_dataset(name, seed=seed)
    if list(splits.classnames) != list(model.classnames):
        raise DataError(f"The checkpoint's classes are not those of {name}; its held-out images cannot be rebuilt.")
    return splits


def held_out_for(model: PiNIModel, limit: Optional[int] = None) -> List[Any]:
    """The test images of the checkpoint's task (`task_splits`), the first `limit` of them."""
    test = list(task_splits(model).test)
    return test[:limit] if limit else test


def balanced_subset(data: Sequence, n: int) -> List[Any]:
    """Up to n items of `data`, taken round-robin over the classes (in order of first
    appearance) so every class is represented; deterministic."""
    by_class: Dict[int, List[Any]] = {}
    for item in data:
        by_class.setdefault(int(item[1]), []).append(item)
    out: List[Any] = []
    i, n = 0, min(int(n), len(data))
    while len(out) < n:
        for items in by_class.values():
            if i < len(items) and len(out) < n:
                out.append(items[i])
        i += 1
    return out


ROW_COLOURS = {"none": "#8c8c8c", "random": "#c7c7c7", "learned_mean": "#3b528b", "learned": "#21918c"}


def plot_meter_rows(res: Dict[str, Any], title: Optional[str] = None):
    """matplotlib Figure of the four rows: I(T, eps) in nats (left, 0 marked) and accuracy in %
    (right, 0-100, with chance 100/C and the no-noise accuracy marked). Titles sit inside the
    figure, above the axes, so nothing that frames the image can cover them."""
    from matplotlib.figure import Figure  # no pyplot: safe in the app's request threads

    rows = res["rows"][::-1]  # first row on top
    labels = [r["label"] for r in rows]
    colours = [ROW_COLOURS[r["name"]] for r in rows]
    fig = Figure(figsize=(9.5, 3.8))
    ax_i, ax_a = fig.subplots(1, 2, sharey=True)
    y = range(len(rows))
    i_vals = [r["I"] for r in rows]
    ax_i.barh(y, i_vals, color=colours, edgecolor="black", linewidth=0.5)
    ax_i.axvline(0, color="black", lw=0.8)
    lo, hi = min(0.0, *i_vals), max(0.0, *i_vals)
    pad = 0.15 * (hi - lo or 1.0)
    ax_i.set_xlim(lo - (2 * pad if lo < 0 else pad), hi + 2 * pad)  # room for the value labels
    for k, v in enumerate(i_vals):
        ax_i.text(v + (pad * 0.1 if v >= 0 else -pad * 0.1), k, f"{v:+.3f}", va="center",
                  ha="left" if v >= 0 else "right", fontsize=9)
    ax_i.set_yticks(list(y), labels)
    ax_i.set_xlabel("nats")
    ax_i.set_title("I(T, ε) = H(T) − H(T|ε)   (Eq. 1)", fontsize=10)
    accs = [r["accuracy"] for r in rows]
    ax_a.barh(y, accs, color=colours, edgecolor="black", linewidth=0.5)
    ax_a.set_xlim(0, 100)
    chance = 100.0 / res["num_classes"]
    ax_a.axvline(chance, color="black", ls=":", lw=1, label=f"chance ({chance:.0f} %)")
    ax_a.axvline(res["none"]["accuracy"], color="#8c8c8c", ls="--", lw=1, label="no noise")
    for k, v in enumerate(accs):
        ax_a.text(min(v + 1, 86), k, f"{v:.1f} %", va="center", fontsize=9)
    ax_a.set_xlabel("% of the held-out images")
    ax_a.set_title(f"accuracy ({res['n']} images)", fontsize=10)
    ax_a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
