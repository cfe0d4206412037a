"""The pi-noise meter: is the noise beneficial for the task?

    H(T)      = E[-log p(y | x, P)]          the frozen CLIP with the model's own prompts P and
                                           no noise (Eq. 3): with prompt noise, the "x"-placeholder
                                           prompts PiNI trains, so I(T, eps) measures the noise only
    H(T|eps)  = E[-log p(y | x, eps, P)]     Monte Carlo over data and noise draws (Eq. 5)
    I(T, eps) = H(T) - H(T|eps)              > 0: eps is pi-noise (Eq. 1)

Measured for the learned noise, for random Gaussian noise of the same scale (same
injection points, RMS matched to the learned noise), and for no noise (I = 0).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch

from ..features import encode_images, labels_of
from ..model import PiNIModel
from ..objective import conditional_entropy, mutual_information
from .attention import attention_entropy


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


@torch.no_grad()
def pi_noise_meter(model: PiNIModel, data: Sequence, draws: int = 8, seed: int = 0, batch_size: int = 64,
                   features: Optional[torch.Tensor] = None) -> Dict[str, Dict[str, float]]:
    """Entropies in nats and accuracies (%) on `data` [(image, label)] for learned / random / no noise.

    Returns {"H_T", "scale": {"visual", "text"} (RMS of the learned noise), "draws", "n",
    "learned" | "random" | "none": {"H_T_given_eps", "I", "accuracy"}, "attention": the visual
    CA's attention entropy at eps = 0 (`analysis.attention.attention_entropy`; None when the
    visual generator is not a cross-attention)}. H(T) comes from the
    model itself with noise switched off (`PiNIModel.logits_without_noise`: its own prompts);
    learned and random noise go through `PiNIModel.run` (random: `noise=` override, same
    injection points). `features`: cached [N, D] image features of `data` (else encoded)."""
    from torch.utils.data import DataLoader

    from ..data.transforms import ImageDataset, collate_images
    from ..features import test_transform

    bb = model.backbone
    model.eval()
    labels = labels_of(data)
    feats = features if features is not None else encode_images(bb, data, progress=False)
    gen = torch.Generator(device=bb.device).manual_seed(int(seed))
    # Scale of the learned noise, for the matched random noise.
    probe = {"features": feats[:batch_size]} if not model.needs_pixels else None
    if model.needs_pixels:
        px, _, _ = next(iter(DataLoader(ImageDataset(data[:batch_size], test_transform(bb)),
                                        batch_size=batch_size, collate_fn=collate_images)))
        probe = {"pixels": px}
    ex = model.run(probe, draws=draws, mode="sample", generator=gen, keep_extras=True).extras
    scale_v = _rms(ex["visual_mu"] + ex["visual_sigma"] * ex["visual_eps"]) if "visual_mu" in ex else 0.0
    scale_t = _rms(ex["text_noise"]) if "text_noise" in ex else 0.0

    zs, learned, rnd = [], [], []
    if model.needs_pixels:
        loader = DataLoader(ImageDataset(data, test_transform(bb)), batch_size=batch_size, collate_fn=collate_images)
        batches = [({"pixels": px}, i) for i, (px, _, _) in enumerate(loader)]
    else:
        batches = [({"features": feats[i:i + batch_size]}, i // batch_size) for i in range(0, len(data), batch_size)]
    start = 0
    for inputs, _ in batches:
        n = inputs[next(iter(inputs))].shape[0]
        f = feats[start:start + n]
        start += n
        zs.append(model.logits_without_noise({"features": f}).cpu())  # Eq. 3: PiNI's own prompts, no noise
        learned.append(model.run(inputs, draws=draws, mode="sample", generator=gen).logits.cpu())
        rnd.append(_random_noise_logits(model, inputs, scale_v, scale_t, draws, gen).cpu())
    zs_l, learned_l, rnd_l = torch.cat(zs), torch.cat(learned, 1), torch.cat(rnd, 1)
    h_t = float(conditional_entropy(zs_l, labels))
    acc = lambda lg: float(100.0 * (lg.softmax(-1).mean(0).argmax(-1) == labels).float().mean())  # noqa: E731
    result = {"H_T": h_t, "scale": {"visual": scale_v, "text": scale_t}, "draws": draws, "n": len(data)}
    for name, logits in (("learned", learned_l), ("random", rnd_l)):
        h_c = float(conditional_entropy(logits, labels))
        result[name] = {"H_T_given_eps": h_c, "I": mutual_information(h_t, h_c), "accuracy": acc(logits)}
    result["none"] = {"H_T_given_eps": h_t, "I": 0.0, "accuracy": acc(zs_l.unsqueeze(0))}
    # The visual CA's attention over the classes (issue 14 item 7); None without a CA generator.
    result["attention"] = attention_entropy(model, data, features=feats, batch_size=batch_size)
    return result
