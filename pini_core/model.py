"""PiNIModel: a frozen CLIP + learned noise generators + the class prompts -> logits.

    q(y | x, eps, P) = softmax_i( s * cos(V(x) (+) eps_v, T(p_i) (+) eps_t) )      (Eq. 2 with noise)

The backbone is held by reference, never registered as a submodule: the model's
state_dict holds the generators only, and the backbone stays frozen and untouched.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbone import Backbone
from .data.templates import check_prompt_lengths, pini_context_text, pini_prompt_prefix
from .noise import NoiseConfig, build_text_generator, build_visual_generator, draw_eps, fuse, reparameterise
from .objective import pi_noise_bound

MODES = ("single", "mean", "average")


from pini_core.errors import PromptError  # noqa: E402,F401  (one error hierarchy, issue 12; re-exported)


@dataclass
class NoiseOutput:
    """Everything one pass computed: logits per draw and the noise that made them."""

    logits: torch.Tensor  # [m, B, C]
    image_features: torch.Tensor  # [m, B, D] after visual noise (un-normalised)
    text_features: torch.Tensor  # [m or 1, C, D] after text noise (un-normalised)
    extras: Dict[str, torch.Tensor] = field(default_factory=dict)  # mu/sigma/eps per side


class PiNIModel(nn.Module):
    def __init__(self, backbone: Backbone, classnames: Sequence[str], template: str,
                 noise: Optional[NoiseConfig] = None):
        super().__init__()
        object.__setattr__(self, "backbone", backbone)  # by reference: not a submodule
        self.noise_cfg = noise or NoiseConfig()
        self.classnames: List[str] = list(classnames)
        self.template = template
        if not self.classnames:
            raise PromptError("no class names given")
        cfg, bb = self.noise_cfg, backbone

        # Prompts. With prompt-level noise: the authors' layout, n_ctx "x" placeholders + the
        # template with the class name last; otherwise the plain template (zero-shot CLIP).
        if cfg.text_location == "prompt":
            self.prompt_format = pini_prompt_prefix(template, cfg.n_ctx)
            prefix_text = pini_context_text(template, cfg.n_ctx)
        else:
            self.prompt_format = template if "{}" in template else template.replace("{class}", "{}")
            prefix_text = ""
        check_prompt_lengths(bb, self.classnames, self.prompt_format)  # one check for every method (issue 12)
        prompts = [self.prompt_format.format(c) for c in self.classnames]
        token_ids = bb.tokenize(prompts)
        if (token_ids[:, -1] != 0).any():
            raise PromptError(f"a prompt is longer than the text encoder's context ({bb.context_length} tokens); "
                              "use shorter class names or fewer placeholders (n_ctx)")
        self.prefix_ids = bb.text_token_ids(prefix_text) if prefix_text else []
        self.n_prefix = len(self.prefix_ids)
        if self.n_prefix:
            expect = torch.tensor(self.prefix_ids, device=token_ids.device)
            bad = [c for c, row in zip(self.classnames, token_ids) if not torch.equal(row[1:1 + self.n_prefix], expect)]
            if bad:
                raise PromptError(f"the template prefix tokenises differently for classes {bad[:3]}; "
                                  "put the class name at the end of the template")
        self.register_buffer("token_ids", token_ids, persistent=False)
        with torch.no_grad():
            self.register_buffer("prompt_embeds", bb.embed_tokens(token_ids).float(), persistent=False)
            self.register_buffer("base_text_features", bb.encode_text_embeddings(
                self.prompt_embeds, token_ids), persistent=False)

        # Generators (Table 1).
        n_tokens = token_dim = 0
        if cfg.visual_location == "image" and cfg.visual_generator == "ca":
            with torch.no_grad():
                probe = torch.zeros(1, 3, bb.image_size, bb.image_size, device=bb.device)
                tok = bb.encode_image_tokens(probe)
            n_tokens, token_dim = tok.shape[1], tok.shape[2]
        self.visual_gen = build_visual_generator(cfg, bb.embed_dim, bb.image_size, token_dim, n_tokens)
        self.text_gen = build_text_generator(cfg, bb.embed_dim, bb.token_dim, self.n_prefix, len(self.classnames))
        self.to(bb.device)

    # ------------------------------------------------------------------ properties
    @property
    def needs_pixels(self) -> bool:
        """Noise in the raw image: the image encoder must run every step (no caching)."""
        return self.noise_cfg.visual_location == "image"

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    # ------------------------------------------------------------------ text side
    def prompt_span(self) -> slice:
        """Token positions the prompt noise lands on: after SOS, the n_ctx "x" placeholders
        and the template words before the class name (n_prefix positions)."""
        return slice(1, 1 + self.n_prefix)

    def noisy_prompt_embeddings(self, noise: torch.Tensor, classes: Optional[Sequence[int]] = None) -> torch.Tensor:
        """Inject prompt noise into the class prompts' word embeddings (Eq. 12's injection).

        noise: [m, P, W] (P = n_prefix, W = token width), one draw shared by all classes
        (the authors' code). Returns [m, C, L, W]: SOS and the class-name/EOT tokens untouched,
        the P prefix positions fused with the noise (`noise_cfg.fusion`). `classes`: only
        these class prompts (C = len(classes)), e.g. [0] when only the shared prefix matters.
        Raises ValueError if the model has no prompt-level text noise or shapes disagree."""
        if self.noise_cfg.text_location != "prompt":
            raise ValueError(f"this model's text noise is at {self.noise_cfg.text_location!r}, not in the prompt")
        if noise.dim() != 3 or tuple(noise.shape[1:]) != (self.n_prefix, self.prompt_embeds.shape[-1]):
            raise ValueError(f"prompt noise must be [m, {self.n_prefix}, {self.prompt_embeds.shape[-1]}], "
                             f"got {list(noise.shape)}")
        base = self.prompt_embeds if classes is None else self.prompt_embeds[list(classes)]
        emb = base.unsqueeze(0).expand(noise.shape[0], -1, -1, -1)  # [m, C, L, W]
        span = self.prompt_span()
        noisy_prefix = fuse(emb[:, :, span], noise.unsqueeze(1), self.noise_cfg.fusion)
        return torch.cat([emb[:, :, :span.start], noisy_prefix, emb[:, :, span.stop:]], dim=2)

    def prompt_noise(self, draws: int, mode: str = "sample", generator: Optional[torch.Generator] = None,
                     classes: Optional[Sequence[int]] = None) -> Dict[str, torch.Tensor]:
        """One set of prompt-noise draws from the text generator (paper Eq. 12, LE at the prompt).

        Returns {"mu", "sigma": [P, W], "eps", "noise": [m, P, W] (noise = mu + sigma * eps),
        "embeds": [m, C, L, W] the noisy prompt embeddings (of `classes` only, if given)}.
        mode "mean": eps = 0.
        `text_features` uses exactly this; Table 8 decoding reads "embeds" at `prompt_span()`.
        Raises ValueError if the model has no prompt-level text noise."""
        if self.noise_cfg.text_location != "prompt":
            raise ValueError(f"this model's text noise is at {self.noise_cfg.text_location!r}, not in the prompt")
        mu, sigma = self.text_gen()  # [P, W]
        eps = draw_eps(tuple(mu.shape), draws, like=mu, mode=mode, generator=generator)
        noise = reparameterise(mu, sigma, eps)  # Eq. 12: [m, P, W]
        return {"mu": mu, "sigma": sigma, "eps": eps, "noise": noise,
                "embeds": self.noisy_prompt_embeddings(noise, classes)}

    def text_features(self, draws: int, mode: str = "sample", generator: Optional[torch.Generator] = None,
                      extras: Optional[Dict[str, torch.Tensor]] = None,
                      noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[m, C, D] text features with text noise eps_t (one draw shared by all classes,
        as the code), or [1, C, D] without text noise.

        noise: replaces the learned noise at the same injection point ([m, P, W] at the prompt,
        [m, C, D] at the text feature); used by the meter's random-noise control. The
        generator is then not run (nothing is added to `extras`)."""
        cfg, bb = self.noise_cfg, self.backbone
        if cfg.text_location == "none":
            return self.base_text_features.unsqueeze(0)
        mu = sigma = eps = None
        if cfg.text_location == "prompt":
            # The noisy prefix is the same for every class: build it for one prompt only
            # (classes=[0]); the class suffixes (name, ".", EOT) are untouched by the noise.
            if noise is None:
                pn = self.prompt_noise(draws, mode, generator, classes=[0])
                mu, sigma, eps, noise, emb = pn["mu"], pn["sigma"], pn["eps"], pn["noise"], pn["embeds"]
            else:
                emb = self.noisy_prompt_embeddings(noise, classes=[0])
            # Exact shared-prefix encoding (pini_core.text_prefix): SOS + noisy prefix once per
            # draw, class suffixes against its cached K/V; full encoder where not covered.
            from .text_prefix import encode_prompts

            p = self.prompt_span().stop
            out = encode_prompts(bb, emb[:, 0, :p], self.prompt_embeds[:, p:], self.token_ids,
                                 enabled=getattr(self, "shared_prefix", None))  # [m, C, D]
        else:  # text feature level
            base = self.base_text_features
            if noise is None:
                mu, sigma = self.text_gen(base)  # [C, D]
                eps = draw_eps(tuple(mu.shape), draws, like=mu, mode=mode, generator=generator)
                noise = reparameterise(mu, sigma, eps)
            out = fuse(base.unsqueeze(0), noise, cfg.fusion)
        if extras is not None and mu is not None:
            extras.update(text_mu=mu, text_sigma=sigma, text_eps=eps, text_noise=noise)
        return out

    # ------------------------------------------------------------------ image side
    def visual_noise(self, query: torch.Tensor, text: torch.Tensor, tokens: Optional[torch.Tensor] = None):
        """(mu, sigma, attention) of the visual generator for one draw (Sec. 3.4, Table 1).

        query: [B, D] image features or [B, 3, H, W] pixels; text: [C, D] the draw's text
        features (keys/values of a CA generator). attention: [B, C] (feature CA) or [B, N, C]
        (raw-image CA, one row per patch), None for MLP/CNN generators."""
        out = self.visual_gen(query, text=text, tokens=tokens)
        return out[0], out[1], (out[2] if len(out) > 2 else None)

    def image_features(self, inputs: Dict[str, torch.Tensor], text: torch.Tensor, draws: int,
                       mode: str = "sample", generator: Optional[torch.Generator] = None,
                       extras: Optional[Dict[str, torch.Tensor]] = None,
                       noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[m, B, D] image features with visual noise eps_v. `text` [m or 1, C, D].

        noise: replaces the learned noise at the same injection point ([m, B, 3, H, W] pixels
        or [m, B, D] features; the meter's random-noise control); the generator is then not run."""
        cfg, bb = self.noise_cfg, self.backbone
        if cfg.visual_location == "image":
            pixels = inputs["pixels"].to(bb.device).float()
            if noise is not None:
                return torch.stack([bb.encode_image(fuse(pixels, n, cfg.fusion)) for n in noise])
            tokens = None
            if getattr(self.visual_gen, "needs_tokens", False):
                with torch.no_grad():
                    tokens = bb.encode_image_tokens(pixels)
            feats, mus, sigmas, epss, noisy, attns = [], [], [], [], [], []
            for j in range(draws):
                mu, sigma, attn = self.visual_noise(pixels, text[min(j, text.shape[0] - 1)], tokens)
                eps = draw_eps(tuple(mu.shape), 1, like=mu, mode=mode, generator=generator)[0]
                x = fuse(pixels, reparameterise(mu, sigma, eps.unsqueeze(0))[0], cfg.fusion)
                feats.append(bb.encode_image(x))  # gradients flow through the frozen encoder
                mus.append(mu), sigmas.append(sigma), epss.append(eps), noisy.append(x.detach())
                if attn is not None:
                    attns.append(attn.detach())
            if extras is not None:
                extras.update(visual_mu=torch.stack(mus), visual_sigma=torch.stack(sigmas),
                              visual_eps=torch.stack(epss), noisy_pixels=torch.stack(noisy))
                if attns:
                    extras["visual_attention"] = torch.stack(attns)  # [m, B, N, C]
            return torch.stack(feats)
        if "features" in inputs:
            f = inputs["features"].to(bb.device).float()
        else:
            with torch.no_grad():
                f = bb.encode_image(inputs["pixels"])
        if cfg.visual_location == "none":
            return f.unsqueeze(0).expand(draws, -1, -1)
        if noise is not None:
            return torch.stack([fuse(f, n, cfg.fusion) for n in noise])
        outs, mus, sigmas, epss, attns = [], [], [], [], []
        for j in range(draws):
            mu, sigma, attn = self.visual_noise(f, text[min(j, text.shape[0] - 1)])  # [B, D]
            eps = draw_eps(tuple(mu.shape), 1, like=mu, mode=mode, generator=generator)[0]
            outs.append(fuse(f, reparameterise(mu, sigma, eps.unsqueeze(0))[0], cfg.fusion))
            mus.append(mu), sigmas.append(sigma), epss.append(eps)
            if attn is not None:
                attns.append(attn.detach())
        if extras is not None:
            extras.update(visual_mu=torch.stack(mus), visual_sigma=torch.stack(sigmas),
                          visual_eps=torch.stack(epss), clean_features=f)
            if attns:
                extras["visual_attention"] = torch.stack(attns)  # [m, B, C]
        return torch.stack(outs)

    # ------------------------------------------------------------------ forward
    def _logits(self, img: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """s * cos(image, text) for every draw: img [m, B, D], text [m or 1, C, D] -> [m, B, C] (Eq. 2)."""
        return self.backbone.logit_scale * (F.normalize(img, dim=-1) @ F.normalize(text, dim=-1).transpose(1, 2))

    def run(self, inputs: Dict[str, torch.Tensor], draws: int = 1, mode: str = "sample",
            generator: Optional[torch.Generator] = None, keep_extras: bool = False,
            noise: Optional[Dict[str, torch.Tensor]] = None) -> NoiseOutput:
        """One pass with `draws` noise draws (mode "sample") or eps = 0 (mode "mean").

        keep_extras: fill `NoiseOutput.extras` with mu/sigma/eps/noise per side and, for CA
        visual generators, "visual_attention" ([m, B, C] feature level, [m, B, N, C] raw image).
        noise: {"text": ..., "visual": ...} replaces the learned noise of that side at the same
        injection point (see `text_features` / `image_features` for shapes)."""
        noise = noise or {}
        extras: Optional[Dict[str, torch.Tensor]] = {} if keep_extras else None
        text = self.text_features(draws, mode, generator, extras, noise=noise.get("text"))
        img = self.image_features(inputs, text, draws, mode, generator, extras, noise=noise.get("visual"))
        return NoiseOutput(logits=self._logits(img, text), image_features=img, text_features=text,
                           extras=extras or {})

    @torch.no_grad()
    def logits_without_noise(self, inputs: Dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, C] logits of the frozen CLIP with this model's own prompts and no noise at all
        (Eq. 2 without eps): the zero-shot classifier PiNI starts from. With prompt noise the
        prompts are the "x"-placeholder format PiNI trains (`prompt_format`), not the bare template.
        `inputs` {"features": [B, D]} or {"pixels": [B, 3, H, W]}."""
        bb = self.backbone
        if "features" in inputs:
            f = inputs["features"].to(bb.device).float()
        else:
            f = bb.encode_image(inputs["pixels"].to(bb.device).float())
        return self._logits(f.unsqueeze(0), self.base_text_features.unsqueeze(0))[0]

    def compute_loss(self, inputs: Dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """Eq. 13 with m = noise_cfg.train_draws draws per image."""
        out = self.run(inputs, draws=self.noise_cfg.train_draws, mode="sample")
        return pi_noise_bound(out.logits, labels.to(out.logits.device))

    def predict(self, inputs: Dict[str, torch.Tensor], mode: str = "mean", draws: int = 8,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Logits [B, C] for inference.

        single:  one random draw (the authors' code);  mean: eps = 0;
        average: log of the mean softmax over `draws` random draws.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "mean":
            return self.run(inputs, 1, "mean").logits[0]
        if mode == "single":
            return self.run(inputs, 1, "sample", generator).logits[0]
        probs = torch.softmax(self.run(inputs, draws, "sample", generator).logits, dim=-1).mean(0)
        return probs.clamp_min(1e-12).log()

    def predict_proba(self, inputs, mode: str = "mean", draws: int = 8, generator=None) -> torch.Tensor:
        return torch.softmax(self.predict(inputs, mode, draws, generator), dim=-1)

    def forward(self, inputs: Dict[str, torch.Tensor], mode: str = "mean", draws: int = 8) -> torch.Tensor:
        return self.predict(inputs, mode, draws)

    def restrict_to(self, class_idx: Sequence[int]) -> "PiNIModel":
        """The same generators over a subset of the classes (ImageNet-A/-R: 200 of 1000), as the
        reference evaluates a class subset: prompts rebuilt over the subset, so the CA keys
        and the shared prompt noise see only those classes. Per-class parameters (text-feature
        LE, [C, D]) keep the subset's rows. Logits [B, len(class_idx)] in the subset's order."""
        idx = [int(i) for i in class_idx]
        if not idx or min(idx) < 0 or max(idx) >= self.num_classes:
            raise ValueError(f"class indices must be in [0, {self.num_classes}), got {idx[:5]}...")
        sub = PiNIModel(self.backbone, [self.classnames[i] for i in idx], self.template, self.noise_cfg)
        state = self.state_dict()
        per_class = self.noise_cfg.text_location == "feature" and self.noise_cfg.text_generator == "le"
        if per_class:
            state = {k: (v[idx] if k.startswith("text_gen.") else v) for k, v in state.items()}
        sub.load_state_dict(state)
        sub.shared_prefix = getattr(self, "shared_prefix", None)
        return sub

    def config(self) -> Dict[str, Any]:
        return {"noise": self.noise_cfg.to_dict(), "classnames": self.classnames, "template": self.template,
                "backbone": dict(self.backbone.identity)}
