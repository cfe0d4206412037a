"""mu / sigma of the learned visual noise for one image (paper Fig. 4 for raw-image
generators; for feature-level generators, mu/sigma over the feature dimensions and the
shift of the image embedding)."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.images import load_image
from ..features import test_transform
from ..model import PiNIModel


def to_pil(pixels: torch.Tensor, mean, std) -> Image.Image:
    """Normalised [3, H, W] pixels -> uint8 RGB image (clipped to the displayable range)."""
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    x = (pixels.detach().cpu().float() * s + m).clamp(0, 1)
    return Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


@torch.no_grad()
def noise_maps(model: PiNIModel, image, seed: int = 0) -> Dict[str, Any]:
    """One seeded noise draw for `image` (path or PIL) and the distribution behind it.

    Returns: kind ("image" | "feature" | "none"), the clean (cropped) image, and
    - raw-image generators: noisy image, mu/sigma heatmaps [H, W] (mean over RGB), per-channel
      mu/sigma [3, H, W], the drawn noise;
    - feature-level generators: mu, sigma, noise [D], clean/noisy features [D], the cosine
      between clean and noisy embedding, the embedding shift norm, CA attention over classes.
    """
    bb = model.backbone
    model.eval()
    pil = load_image(image)
    pixels = test_transform(bb)(pil).unsqueeze(0).to(bb.device)
    gen = torch.Generator(device=bb.device).manual_seed(int(seed))
    out = model.run({"pixels": pixels}, draws=1, mode="sample", generator=gen, keep_extras=True)
    ex = out.extras
    res: Dict[str, Any] = {"kind": model.noise_cfg.visual_location, "clean_image": to_pil(pixels[0], bb.mean, bb.std),
                           "probs": torch.softmax(out.logits[0, 0], -1).cpu().numpy(), "seed": int(seed)}
    if model.noise_cfg.visual_location == "image":
        mu, sigma = ex["visual_mu"][0, 0].cpu(), ex["visual_sigma"][0, 0].cpu()
        res.update(noisy_image=to_pil(ex["noisy_pixels"][0, 0], bb.mean, bb.std),
                   mu=mu.numpy(), sigma=sigma.numpy(), mu_map=mu.mean(0).numpy(), sigma_map=sigma.mean(0).numpy(),
                   noise=(ex["noisy_pixels"][0, 0].cpu() - pixels[0].cpu()).numpy())
    elif model.noise_cfg.visual_location == "feature":
        clean = ex["clean_features"][0].cpu()
        noisy = out.image_features[0, 0].cpu()
        res.update(mu=ex["visual_mu"][0, 0].cpu().numpy(), sigma=ex["visual_sigma"][0, 0].cpu().numpy(),
                   noise=(noisy - clean).numpy(), clean_feature=clean.numpy(), noisy_feature=noisy.numpy(),
                   cosine=float(F.cosine_similarity(clean, noisy, dim=0)),
                   shift_norm=float((noisy - clean).norm()), feature_norm=float(clean.norm()))
        if "visual_attention" in ex:  # CA generator: the image's attention over the class prompts
            res["class_attention"] = ex["visual_attention"][0, 0].cpu().numpy()
    return res
