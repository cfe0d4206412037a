"""Visual noise generators f_v(x, P) -> (mu_v, sigma_v) (paper Sec. 3.4, Fig. 3c-e, Table 1).

Feature level: the noise has the shape of the image feature [B, D].
Raw image:     the noise has the shape of the (normalised) pixels [B, 3, H, W].
The label never enters a generator: inputs are the image (or its features) and the prompts.
Every generator returns (mu, sigma); the cross-attention ones return their attention weights
as a third element (what the forward pass reports in `NoiseOutput.extras["visual_attention"]`),
and keep no state between calls.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import NoiseConfig
from .sampling import positive_sigma

MuSigma = Tuple[torch.Tensor, torch.Tensor]
# Cross-attention generators also return their attention weights (what the maps show).
MuSigmaAttn = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class MuSigmaHeads(nn.Module):
    """Two linear heads: mu = W_mu h, sigma = pos(W_sigma h) (Eq. 11, 14)."""

    def __init__(self, d_in: int, d_out: int, sigma_mode: str):
        super().__init__()
        self.mu = nn.Linear(d_in, d_out)
        self.sigma = nn.Linear(d_in, d_out)
        self.sigma_mode = sigma_mode

    def forward(self, h: torch.Tensor) -> MuSigma:
        return self.mu(h), positive_sigma(self.sigma(h), self.sigma_mode)


class CrossAttention(nn.Module):
    """Single-head cross-attention: queries from the image, keys/values from the C text
    features (one per class prompt). Returns (output, attention weights)."""

    def __init__(self, d_query: int, d_text: int, d_model: int, scale: bool):
        super().__init__()
        self.q = nn.Linear(d_query, d_model)
        self.k = nn.Linear(d_text, d_model)
        self.v = nn.Linear(d_text, d_model)
        self.scale = 1.0 / math.sqrt(d_model) if scale else 1.0

    def forward(self, query: torch.Tensor, text: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        # query [B, (N,) Dq], text [C, Dt] -> attn [B, (N,) C]
        q, k, v = self.q(query), self.k(text), self.v(text)
        attn = torch.softmax((q @ k.transpose(0, 1)) * self.scale, dim=-1)
        return attn @ v, attn


class FeatureMLP(nn.Module):
    """Visual feature + MLP: (mu, sigma) = f(V(x))."""

    needs_text = False

    def __init__(self, dim: int, cfg: NoiseConfig):
        super().__init__()
        hidden = cfg.hidden_dim or dim
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU())
        self.heads = MuSigmaHeads(hidden, dim, cfg.sigma)
        self.detach = cfg.ca_detach_query

    def forward(self, feats: torch.Tensor, text: Optional[torch.Tensor] = None, **_) -> MuSigma:
        return self.heads(self.body(feats.detach() if self.detach else feats))


class FeatureCA(nn.Module):
    """Visual feature + cross-attention (the paper's default): query = the image feature
    itself, key/value = the class text features (not detached, as in the code, so
    gradients also reach the prompt noise)."""

    needs_text = True

    def __init__(self, dim: int, cfg: NoiseConfig):
        super().__init__()
        self.attn = CrossAttention(dim, dim, dim, cfg.ca_scale)
        self.heads = MuSigmaHeads(dim, dim, cfg.sigma)
        self.detach = cfg.ca_detach_query

    def forward(self, feats: torch.Tensor, text: Optional[torch.Tensor] = None, **_) -> MuSigmaAttn:
        """feats [B, D], text [C, D] -> (mu [B, D], sigma [B, D], attention over classes [B, C])."""
        out, attn = self.attn(feats.detach() if self.detach else feats, text)
        mu, sigma = self.heads(out)
        return mu, sigma, attn


def _patch_grid(n_tokens: int, image_size: int) -> Tuple[int, int]:
    """(grid side, patch side) for n spatial tokens over a square image; drops a CLS token."""
    g = int(math.isqrt(n_tokens))
    if g * g != n_tokens:
        raise ValueError(f"cannot lay {n_tokens} spatial tokens on a square grid")
    if image_size % g:
        raise ValueError(f"image size {image_size} is not a multiple of the token grid {g}")
    return g, image_size // g


class ImageMLP(nn.Module):
    """Raw image + MLP: a token-wise MLP over non-overlapping pixel patches (the image's own
    patch grid), predicting mu and sigma for every pixel of its patch."""

    needs_text = False
    needs_tokens = False

    def __init__(self, image_size: int, cfg: NoiseConfig, patch: int = 8):
        super().__init__()
        while image_size % patch:
            patch //= 2
        self.patch = patch
        d = 3 * patch * patch
        hidden = cfg.hidden_dim or 2 * d
        self.body = nn.Sequential(nn.Linear(d, hidden), nn.GELU())
        self.heads = MuSigmaHeads(hidden, d, cfg.sigma)
        self.scale = cfg.image_noise_scale

    def forward(self, pixels: torch.Tensor, text=None, **_) -> MuSigma:
        b, c, h, w = pixels.shape
        p = self.patch
        patches = F.unfold(pixels, p, stride=p).transpose(1, 2)  # [B, N, 3p^2]
        mu, sigma = self.heads(self.body(patches))
        fold = lambda t: F.fold(t.transpose(1, 2), (h, w), p, stride=p)  # noqa: E731
        return self.scale * fold(mu), self.scale * fold(sigma)


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class ImageCNN(nn.Module):
    """Raw image + CNN, the project's own reading of the paper: a plain residual CNN (paper:
    10 layers; no BatchNorm) mapping the image to per-pixel mu and sigma, multiplied by the
    fixed factor image_noise_scale, so the noise energy is learned. Not the authors' released
    CNN; that one is `AuthorsImageCNN` ("cnn_authors")."""

    needs_text = False
    needs_tokens = False

    def __init__(self, image_size: int, cfg: NoiseConfig):
        super().__init__()
        w = cfg.cnn_width
        n_blocks = max(1, (cfg.cnn_layers - 2) // 2)  # stem + blocks*2 + head = cnn_layers convs
        self.stem = nn.Conv2d(3, w, 3, padding=1)
        self.blocks = nn.Sequential(*[ResidualBlock(w) for _ in range(n_blocks)])
        self.head = nn.Conv2d(w, 6, 3, padding=1)
        self.sigma_mode = cfg.sigma
        self.scale = cfg.image_noise_scale

    def forward(self, pixels: torch.Tensor, text=None, **_) -> MuSigma:
        out = self.head(F.relu(self.blocks(self.stem(pixels))))
        mu, raw_sigma = out[:, :3], out[:, 3:]
        return self.scale * mu, self.scale * positive_sigma(raw_sigma, self.sigma_mode)


def fixed_energy(t: torch.Tensor, rms: float) -> torch.Tensor:
    """The authors' CNN's normalisation: each channel of each image L2-normalised over its
    H*W pixels and rescaled by sqrt(H*W) * rms, so every channel's per-pixel RMS is `rms`
    (0.1 in the code) whatever the network outputs. t: [B, C, H, W]."""
    h, w = t.shape[-2:]
    return F.normalize(t.flatten(2), dim=-1).view_as(t) * (math.sqrt(h * w) * rms)


class _BNBasicBlock(nn.Module):
    """ResNet basic block with BatchNorm at full resolution (stride 1): relu(BN(conv(relu(BN(
    conv(x))))) + shortcut(x)); the shortcut is a 1x1 conv + BN when the width changes."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (nn.Identity() if c_in == c_out else
                         nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(h + self.shortcut(x))


class AuthorsImageCNN(nn.Module):
    """Raw image + CNN as the authors' released code builds it ("cnn_authors";
    hyzhang98/PiNI `clip_vpn_cnn_image.py`, METHOD.md):

    * a BatchNorm ResNet at full resolution on the normalised image: a 3x3 stem (64) + BN +
      ReLU, then basic blocks of widths 64 / 128 / 64, 2 / 1 / 1 blocks (bias-free convs),
      then two 3x3 heads (no bias), one for mu and one for sigma (~0.5 M parameters);
    * mu and sigma are each `fixed_energy`-normalised (per image and channel, over the pixels)
      to a per-pixel RMS of image_noise_scale (0.1): the noise ENERGY is fixed, not learned,
      only its spatial / channel pattern is; sigma = pos(normalised head), pos = `sigma`
      (|.| in the code);
    * in the authors' setup it runs with fixed hand-written prompts (text_location "none":
      the plain dataset template, text features computed once without gradient, no text noise).

    BatchNorm uses batch statistics in train mode and running ones in eval mode, so a
    trained generator's output for one image depends on its batch during training only.
    """

    needs_text = False
    needs_tokens = False
    WIDTHS = (64, 128, 64)
    BLOCKS = (2, 1, 1)

    def __init__(self, image_size: int, cfg: NoiseConfig):
        super().__init__()
        w0 = self.WIDTHS[0]
        self.stem = nn.Sequential(nn.Conv2d(3, w0, 3, padding=1, bias=False), nn.BatchNorm2d(w0), nn.ReLU())
        blocks, c = [], w0
        for width, n in zip(self.WIDTHS, self.BLOCKS):
            for _ in range(n):
                blocks.append(_BNBasicBlock(c, width))
                c = width
        self.blocks = nn.Sequential(*blocks)
        self.mu_head = nn.Conv2d(c, 3, 3, padding=1, bias=False)
        self.sigma_head = nn.Conv2d(c, 3, 3, padding=1, bias=False)
        self.sigma_mode = cfg.sigma
        self.rms = cfg.image_noise_scale

    def forward(self, pixels: torch.Tensor, text=None, **_) -> MuSigma:
        h = self.blocks(self.stem(pixels))
        mu = fixed_energy(self.mu_head(h), self.rms)
        sigma = positive_sigma(fixed_energy(self.sigma_head(h), self.rms), self.sigma_mode)
        return mu, sigma


class ImageCA(nn.Module):
    """Raw image + cross-attention (Fig. 3e): query = the image's spatial features from the
    frozen encoder (one per patch), key/value = the class text features; each patch's
    attention output is mapped to mu, sigma for that patch's pixels."""

    needs_text = True
    needs_tokens = True

    def __init__(self, image_size: int, token_dim: int, text_dim: int, n_tokens: int, cfg: NoiseConfig):
        super().__init__()
        self.grid, self.patch = _patch_grid(n_tokens, image_size)
        d_model = cfg.hidden_dim or text_dim
        self.attn = CrossAttention(token_dim, text_dim, d_model, cfg.ca_scale)
        self.heads = MuSigmaHeads(d_model, 3 * self.patch * self.patch, cfg.sigma)
        self.scale = cfg.image_noise_scale
        self.image_size = image_size

    def forward(self, pixels: torch.Tensor, text: torch.Tensor = None, tokens: torch.Tensor = None,
                **_) -> MuSigmaAttn:
        """tokens [B, N, Dt] (the frozen encoder's patch tokens), text [C, D] -> (mu, sigma
        [B, 3, H, W], attention of each patch over the classes [B, N, C])."""
        out, attn = self.attn(tokens.detach(), text)  # [B, N, d]
        mu, sigma = self.heads(out)
        s, p = self.image_size, self.patch
        fold = lambda t: F.fold(t.transpose(1, 2), (s, s), p, stride=p)  # noqa: E731
        return self.scale * fold(mu), self.scale * fold(sigma), attn


def build_visual_generator(cfg: NoiseConfig, embed_dim: int, image_size: int,
                           token_dim: int = 0, n_tokens: int = 0) -> Optional[nn.Module]:
    if cfg.visual_location == "none":
        return None
    if cfg.visual_location == "feature":
        return {"mlp": FeatureMLP, "ca": FeatureCA}[cfg.visual_generator](embed_dim, cfg)
    if cfg.visual_generator == "mlp":
        return ImageMLP(image_size, cfg)
    if cfg.visual_generator == "cnn":
        return ImageCNN(image_size, cfg)
    if cfg.visual_generator == "cnn_authors":
        return AuthorsImageCNN(image_size, cfg)
    return ImageCA(image_size, token_dim, embed_dim, n_tokens, cfg)
