"""NoiseConfig: which generator sits where (paper Table 1), as configuration."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict

VISUAL_LOCATIONS = ("none", "image", "feature")
TEXT_LOCATIONS = ("none", "prompt", "feature")
# Table 1: the generators the paper tried at each location, plus "cnn_authors" at the raw
# image: the authors' released CNN (`clip_vpn_cnn_image.py`, see noise/visual.py
# AuthorsImageCNN), a separate choice from the project's own residual CNN ("cnn").
GENERATORS = {
    ("visual", "image"): ("mlp", "cnn", "ca", "cnn_authors"),
    ("visual", "feature"): ("mlp", "ca"),
    ("text", "prompt"): ("le",),
    ("text", "feature"): ("mlp", "le"),
}
SIGMA_MODES = ("abs", "exp", "softplus", "none")
TEXT_SIGMA_MODES = ("same",) + SIGMA_MODES  # "same": the text generator uses `sigma` too
FUSIONS = ("add", "mul")
# The authors' released code in NoiseConfig terms (METHOD.md; tests/test_authors_equivalence.py
# checks the generators against their computation). clip_vpn.py: visual feature + CA without
# 1/sqrt(d), query detached, sigma = |Linear|; prompt + LE with 16 "x" placeholders, N(0, 0.02)
# init, sigma_t used raw. The `authors` preset's noise (experiment.py).
AUTHORS_NOISE = {"visual_location": "feature", "visual_generator": "ca", "text_location": "prompt",
                 "text_generator": "le", "fusion": "add", "ca_scale": False, "ca_detach_query": True,
                 "sigma": "abs", "text_sigma": "none", "n_ctx": 16, "init_std": 0.02, "train_draws": 1}
# clip_vpn_cnn_image.py: their raw-image CNN, fixed hand-written prompts, no text noise.
AUTHORS_CNN_NOISE = {"visual_location": "image", "visual_generator": "cnn_authors", "text_location": "none",
                     "fusion": "add", "sigma": "abs", "image_noise_scale": 0.1, "train_draws": 1}


from pini_core.errors import ConfigError  # noqa: E402  (one error hierarchy, issue 12)


class NoiseConfigError(ConfigError, ValueError):
    pass


@dataclass
class NoiseConfig:
    """Where noise is injected and how it is generated.

    Defaults are the paper's headline setting: visual feature + cross-attention (CA) and
    prompt word embeddings + learnable embeddings (LE), additive, m = 1.
    """

    visual_location: str = "feature"  # none | image | feature
    visual_generator: str = "ca"  # image: mlp|cnn|ca|cnn_authors ; feature: mlp|ca
    text_location: str = "prompt"  # none | prompt | feature
    text_generator: str = "le"  # prompt: le ; feature: mlp|le
    fusion: str = "add"  # add: x + eps ; mul: x * (1 + eps)
    # sigma positivity of the visual generator (and of the text one when text_sigma is
    # "same"). Paper: sigma is a std (>= 0, Eq. 14). Authors' code: |Linear| for CA, |.| for
    # their raw-image CNN.
    sigma: str = "abs"
    # sigma positivity of the text generator. Authors' code: the LE sigma_t is used raw as a
    # std ("none"; same distribution as |sigma_t| because eps is symmetric, not the same draw).
    text_sigma: str = "same"
    # Cross-attention scaling. Paper cites Vaswani et al. (softmax(QK^T / sqrt(d)));
    # the authors' code uses no 1/sqrt(d) scaling.
    ca_scale: bool = True
    ca_detach_query: bool = True  # code: the pooled image embedding is detached as the query
    hidden_dim: int = 0  # MLP hidden width; 0 = same as the input width
    n_ctx: int = 16  # number of "x" placeholder tokens before the template (authors' layout)
    init_std: float = 0.02  # N(0, init_std) init of LE parameters (code)
    # Raw-image generators: the project's mlp / cnn / ca multiply their mu and sigma by this
    # (a fixed factor; their own output size stays learnable). cnn_authors: the fixed per-pixel
    # RMS of each mu / sigma channel (the authors' CNN normalises to sqrt(H*W) * 0.1).
    image_noise_scale: float = 0.1
    cnn_layers: int = 10  # the project's raw-image residual CNN ("cnn") depth (paper: 10 layers)
    cnn_width: int = 32  # its width (not used by cnn_authors: widths 64/128/64 as the authors')
    train_draws: int = 1  # m in Eq. 13

    def __post_init__(self) -> None:
        self.validate()

    @property
    def text_sigma_mode(self) -> str:
        """The sigma positivity the text generator uses (`text_sigma`, or `sigma` if "same")."""
        return self.sigma if self.text_sigma == "same" else self.text_sigma

    @property
    def has_visual(self) -> bool:
        return self.visual_location != "none"

    @property
    def has_text(self) -> bool:
        return self.text_location != "none"

    def validate(self) -> None:
        if self.visual_location not in VISUAL_LOCATIONS:
            raise NoiseConfigError(f"visual_location must be one of {VISUAL_LOCATIONS}, got {self.visual_location!r}")
        if self.text_location not in TEXT_LOCATIONS:
            raise NoiseConfigError(f"text_location must be one of {TEXT_LOCATIONS}, got {self.text_location!r}")
        for side, loc, gen in (("visual", self.visual_location, self.visual_generator),
                               ("text", self.text_location, self.text_generator)):
            if loc == "none":
                continue
            allowed = GENERATORS[(side, loc)]
            if gen not in allowed:
                raise NoiseConfigError(
                    f"{side} generator {gen!r} is not available at location {loc!r}; "
                    f"choose one of {allowed} (paper Table 1)")
        if self.sigma not in SIGMA_MODES:
            raise NoiseConfigError(f"sigma must be one of {SIGMA_MODES}, got {self.sigma!r}")
        if self.text_sigma not in TEXT_SIGMA_MODES:
            raise NoiseConfigError(f"text_sigma must be one of {TEXT_SIGMA_MODES}, got {self.text_sigma!r}")
        if self.fusion not in FUSIONS:
            raise NoiseConfigError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.train_draws < 1:
            raise NoiseConfigError("train_draws (m) must be >= 1")
        if self.n_ctx < 0:
            raise NoiseConfigError("n_ctx must be >= 0")

    def describe(self) -> str:
        v = f"{self.visual_location}+{self.visual_generator}" if self.has_visual else "none"
        t = f"{self.text_location}+{self.text_generator}" if self.has_text else "none"
        return f"visual={v}, text={t}, fusion={self.fusion}"

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "NoiseConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise NoiseConfigError(f"unknown noise config keys: {sorted(unknown)}")
        return cls(**d)
