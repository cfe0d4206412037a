"""NoiseConfig: which generator sits where (paper Table 1), as configuration."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict

VISUAL_LOCATIONS = ("none", "image", "feature")
TEXT_LOCATIONS = ("none", "prompt", "feature")
# Table 1: the generators the paper tried at each location.
GENERATORS = {
    ("visual", "image"): ("mlp", "cnn", "ca"),
    ("visual", "feature"): ("mlp", "ca"),
    ("text", "prompt"): ("le",),
    ("text", "feature"): ("mlp", "le"),
}
SIGMA_MODES = ("abs", "exp", "softplus", "none")
FUSIONS = ("add", "mul")


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
    visual_generator: str = "ca"  # image: mlp|cnn|ca ; feature: mlp|ca
    text_location: str = "prompt"  # none | prompt | feature
    text_generator: str = "le"  # prompt: le ; feature: mlp|le
    fusion: str = "add"  # add: x + eps ; mul: x * (1 + eps)
    # sigma positivity. Paper: sigma is a std (>= 0). Authors' code: |Linear| for CA and
    # no constraint for LE (equivalent in distribution because eps is symmetric).
    sigma: str = "abs"
    # Cross-attention scaling. Paper cites Vaswani et al. (softmax(QK^T / sqrt(d)));
    # the authors' code uses no 1/sqrt(d) scaling.
    ca_scale: bool = True
    ca_detach_query: bool = True  # code: the pooled image embedding is detached as the query
    hidden_dim: int = 0  # MLP hidden width; 0 = same as the input width
    n_ctx: int = 16  # number of "x" placeholder tokens before the template (authors' layout)
    init_std: float = 0.02  # N(0, init_std) init of LE parameters (code)
    image_noise_scale: float = 0.1  # raw-image generators: mu, sigma scaled by this (code)
    cnn_layers: int = 10  # raw-image residual CNN depth (paper: 10 layers)
    cnn_width: int = 32
    train_draws: int = 1  # m in Eq. 13

    def __post_init__(self) -> None:
        self.validate()

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
