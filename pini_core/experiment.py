"""The experiment description: one dataclass says everything a run does.

    ExperimentConfig = method + backbone + data + shots + seed + NoiseConfig + Recipe + EvalSpec

It round-trips through JSON (unknown keys are refused), is saved inside every checkpoint
and every benchmark record, and `pini_core.run(config)` turns it back into the same run.
The CLI (`python -m pini_core train`), the app's Train tab and each benchmark cell only
translate their inputs into one of these.

Defaults live in one place: the named presets below. The dataclass field defaults are the
`paper` preset for PiNI; every other preset is a documented set of differences.

| preset  | what it is                              | where its numbers come from                   |
|---------|-----------------------------------------|-----------------------------------------------|
| paper   | the PiNI paper's recipe                 | paper A.3 / Sec. 4: SGD lr 2e-3 (1e-3 on      |
|         |                                         | ImageNet), 200 epochs (100 on ImageNet),      |
|         |                                         | batch 32, cosine, CA with 1/sqrt(d) (it cites |
|         |                                         | Vaswani et al.), test with eps = 0            |
| authors | the authors' released code's behaviour  | hyzhang98/PiNI `clip_vpn.py` + Dassl configs  |
|         |                                         | (METHOD.md): lr 1e-3, 100 epochs, CA without  |
|         |                                         | scaling, one random draw per test batch,      |
|         |                                         | fresh augmentation every epoch, last partial  |
|         |                                         | batch dropped, Dassl's cosine over all epochs |
| toy     | the recipe for the embedded toy CLIP    | chosen on the toy tasks' val splits (the      |
|         |                                         | shipped generator's command, README): lr      |
|         |                                         | 0.001, 100 epochs, no augmentation (CoOp's    |
|         |                                         | crop cuts 64-px shapes to fragments)          |

Baselines keep their own reference recipes under every preset (`reference_recipe`):
CoOp / CLIP-Adapter as CoOp's configs, Tip-Adapter-F as its configs.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

from .data.names import canonical_dataset
from .errors import ConfigError
from .noise.config import AUTHORS_NOISE, NoiseConfig, NoiseConfigError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "cosine_dassl", "cosine_step", "warmup_cosine_step", "hf_cosine_warmup", "constant")
STEP_SCHEDULES = ("cosine_step", "warmup_cosine_step", "hf_cosine_warmup", "constant")  # usable with max_steps
EVAL_MODES = ("mean", "single", "average")
PRECISIONS = ("fp32", "amp")
MAX_SEED = 2 ** 32 - 1  # numpy / torch seeds must fit; larger ones overflow deep inside
FRESH_VIEWS = 0  # Recipe.aug_views = 0: one freshly augmented view per epoch


def _check_fields(cls, d: Any, where: str) -> Dict[str, Any]:
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a JSON object, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {unknown}; known: {sorted(known)}")
    return d


@dataclass
class Recipe:
    """How a method is trained (the trainer reads nothing else).

    optimizer: sgd (CoOp / PiNI: momentum, weight decay) | adamw (Tip-Adapter-F: betas, eps)
    schedule:  cosine      - Dassl: constant warm-up epochs at `warmup_lr`, then cosine over
                             the remaining epochs, set once per epoch;
               cosine_step - Tip-Adapter-F: cosine annealing per step over all steps, no warm-up;
               warmup_cosine_step - linear warm-up (t + 1) / W per step, then cosine (toy CLIP pretraining);
               hf_cosine_warmup - exactly transformers' get_cosine_schedule_with_warmup: warm-up t / W
                             (lr 0 at the first step), then cosine to 0 (MuNG's released codes);
               constant.
               The per-step warm-up W is `warmup_steps`, else ceil(total_steps * warmup_ratio) (the
               Hugging Face Trainer's rule), else warmup_epochs * steps_per_epoch.
    max_steps: > 0: a step budget - train exactly this many optimizer steps, cycling through the
               data (`epochs` is then unused; needs a per-step schedule); 0 = `epochs` epochs.
    max_grad_norm: clip the gradients' global norm to this before each step (0 = no clipping).
    aug_views: augmented views cached per training image when image features are cached;
               0 = as many views as epochs, a fresh one each epoch (the reference re-augments
               every epoch).
    """

    optimizer: str = "sgd"
    epochs: int = 200
    lr: float = 2e-3
    batch_size: int = 32
    momentum: float = 0.9
    weight_decay: float = 5e-4
    adam_betas: Tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    schedule: str = "cosine"
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    precision: str = "fp32"  # fp32 | amp (fp16 autocast + scaler on GPU, bf16 on CPU)
    augment: bool = True  # CoOp's random resized crop + flip
    aug_views: int = 4
    cache: str = "auto"  # auto: cache image features whenever no noise enters the image encoder
    drop_last: bool = False  # Dassl drops the last partial batch
    eval_every: int = 1  # validation accuracy every N epochs (0 = never)
    num_workers: int = 0
    log_every: int = 0  # also log every N steps to metrics.jsonl
    max_steps: int = 0  # step budget (0 = train `epochs` epochs)
    max_grad_norm: float = 0.0  # gradient clipping (0 = off)
    warmup_steps: int = 0  # per-step schedules' warm-up in steps (0 = warmup_ratio / warmup_epochs)
    warmup_ratio: float = 0.0  # per-step schedules' warm-up as a fraction of all steps (0 = warmup_epochs)

    def __post_init__(self) -> None:
        self.adam_betas = tuple(float(b) for b in self.adam_betas)

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"training precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.cache not in ("auto", "on", "off"):
            raise ConfigError(f"cache must be auto, on or off, got {self.cache!r}")
        _int_range("epochs", self.epochs, 1, 100_000)
        _int_range("batch size", self.batch_size, 1, 1_000_000)
        _int_range("warm-up epochs", self.warmup_epochs, 0, 100_000)
        _int_range("augmented views", self.aug_views, 0, 10_000)
        _int_range("eval_every", self.eval_every, 0, 100_000)
        for name in ("lr", "warmup_lr", "weight_decay", "momentum", "adam_eps"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.lr <= 0:
            raise ConfigError(f"the learning rate must be > 0, got {self.lr!r} (e.g. 0.002)")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ConfigError(f"adam_betas must be two numbers in [0, 1), got {list(self.adam_betas)}")
        _int_range("max_steps", self.max_steps, 0, 1_000_000_000)
        _int_range("warm-up steps", self.warmup_steps, 0, 1_000_000_000)
        for name in ("max_grad_norm", "warmup_ratio"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.warmup_ratio > 1:
            raise ConfigError(f"warmup_ratio is a fraction of all steps, in [0, 1]; got {self.warmup_ratio!r}")
        if self.warmup_steps and self.warmup_ratio:
            raise ConfigError("give the warm-up as warmup_steps or as warmup_ratio, not both")
        if self.max_steps and self.schedule not in STEP_SCHEDULES:
            raise ConfigError(f"a step budget (max_steps) needs a per-step schedule {STEP_SCHEDULES}, "
                              f"got {self.schedule!r}")

    @property
    def betas(self) -> Tuple[float, float]:
        """Alias of `adam_betas` (the name the MuNG recipes used); not a field, not serialised."""
        return self.adam_betas

    def views(self) -> int:
        """Augmented views to cache: `aug_views`, or one per epoch when it is 0."""
        return self.epochs if self.aug_views == FRESH_VIEWS else self.aug_views

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Recipe":
        return cls(**_check_fields(cls, d, "recipe"))


@dataclass
class DataSpec:
    """Which images: a registered dataset name (`python -m pini_core datasets`) and its root."""

    dataset: str = "toy-clutter"
    root: Optional[str] = None
    on_broken_image: str = "raise"  # raise | skip (skipped images are counted in the result)
    # The dataset's own seed: renders a toy task / carves an ImageFolder's val and test.
    # Fixed across the experiment seeds, so every seed is tested on the same images (CoOp).
    seed: int = 1

    def validate(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError("data.dataset must be a dataset name, e.g. toy-clutter or imagefolder")
        _int_range("data seed", self.seed, 0, MAX_SEED)
        if self.on_broken_image not in ("raise", "skip"):
            raise ConfigError(f"on_broken_image must be raise or skip, got {self.on_broken_image!r}")

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "DataSpec":
        return cls(**_check_fields(cls, d, "data"))


@dataclass
class EvalSpec:
    """How test accuracy is computed: mode mean (eps = 0), single (one random draw per test
    batch, the authors' code) or average (mean softmax over `draws` draws)."""

    mode: str = "mean"
    draws: int = 8

    def validate(self) -> None:
        if self.mode not in EVAL_MODES:
            raise ConfigError(f"eval mode must be one of {EVAL_MODES}, got {self.mode!r}")
        _int_range("eval draws", self.draws, 1, 10_000)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "EvalSpec":
        return cls(**_check_fields(cls, d, "eval"))


def _int_range(name: str, v: Any, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{name} must be a whole number, got {v!r}")
    if not lo <= v <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {v}")


@dataclass
class ExperimentConfig:
    """Everything one run does; `pini_core.run(config)` executes it.

    method:        a registered method name (`pini_core.methods.list_methods()`)
    backbone:      open_clip model name, `local-dir:/path`, or `embedded`
    pretrained:    open_clip tag (`openai`) or a local weights file; None for `embedded`
    shots:         k training images per class (CoOp protocol: 1, 2, 4, 8, 16)
    seed:          few-shot sampling, generator initialisation and training order
    shared_prefix: encode prompts that share a prefix once per step (exact; speed only)
    """

    method: str = "pini"
    backbone: str = "embedded"
    pretrained: Optional[str] = None
    data: DataSpec = field(default_factory=DataSpec)
    shots: int = 16
    seed: int = 1
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    recipe: Recipe = field(default_factory=Recipe)
    eval: EvalSpec = field(default_factory=EvalSpec)
    options: Dict[str, Any] = field(default_factory=dict)  # method options, e.g. {"ensemble": true}
    preset: str = "paper"  # provenance: the preset this config started from
    shared_prefix: bool = True
    device: str = "auto"
    precision: str = "fp32"  # backbone weights: fp32 | fp16 | bf16 | amp

    # ------------------------------------------------------------------ checks
    def validate(self) -> "ExperimentConfig":
        """Check every field's own range before any work; raises ConfigError naming the bad one.
        What depends on the method (its name, options, shots >= 1 for trained methods) is
        checked by `pini_core.methods.check_config`, which also calls this."""
        if not isinstance(self.method, str) or not self.method:
            raise ConfigError("method must be a registered method name, e.g. pini")
        if not isinstance(self.backbone, str) or not self.backbone.strip():
            raise ConfigError("backbone must be a model name such as embedded or ViT-B-16")
        _int_range("shots", self.shots, 0, 100_000)
        _int_range("seed", self.seed, 0, MAX_SEED)
        if self.precision not in ("fp32", "fp16", "bf16", "amp"):
            raise ConfigError(f"precision must be fp32, fp16, bf16 or amp, got {self.precision!r}")
        if not isinstance(self.options, dict):
            raise ConfigError(f"options must be a JSON object, got {type(self.options).__name__}")
        self.data.validate()
        self.recipe.validate()
        self.eval.validate()
        try:
            self.noise.validate()
        except NoiseConfigError as e:
            raise ConfigError(str(e)) from None
        return self

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> Dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(data=asdict(self.data), noise=self.noise.to_dict(), recipe=self.recipe.to_dict(),
                 eval=asdict(self.eval), options=dict(self.options))
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any) -> "ExperimentConfig":
        d = dict(_check_fields(cls, d, "experiment config"))
        try:
            parts = {"data": DataSpec.from_dict(d.pop("data", {})),
                     "noise": NoiseConfig.from_dict(_check_fields(NoiseConfig, d.pop("noise", {}), "noise")),
                     "recipe": Recipe.from_dict(d.pop("recipe", {})),
                     "eval": EvalSpec.from_dict(d.pop("eval", {}))}
        except (NoiseConfigError, TypeError) as e:
            raise ConfigError(f"experiment config: {e}") from None
        return cls(**d, **parts)

    @classmethod
    def from_json(cls, text: str) -> "ExperimentConfig":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"experiment config is not valid JSON: {e}") from None
        return cls.from_dict(d)

    def replace(self, **changes) -> "ExperimentConfig":
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------- presets
PRESET_DOCS = {
    "paper": "the PiNI paper's recipe (SGD lr 2e-3, 200 epochs, 100 on ImageNet at lr 1e-3; CA with 1/sqrt(d); "
             "test with eps = 0)",
    "authors": "the authors' released code (lr 1e-3, 100 epochs, CA without scaling, one random noise draw per "
               "test batch, fresh augmentation every epoch, last partial batch dropped)",
    "toy": "the embedded toy CLIP's recipe, chosen on the toy tasks' val splits (lr 0.001, 100 epochs, "
           "no augmentation)",
}
PRESETS = tuple(PRESET_DOCS)

# Each preset is a set of differences from the dataclass defaults (= paper).
_PRESET_NOISE = {"paper": {}, "authors": dict(AUTHORS_NOISE), "toy": {}}  # AUTHORS_NOISE: unscaled CA, raw LE sigma
_PRESET_EVAL = {"paper": {}, "authors": {"mode": "single"}, "toy": {}}


def _coop_epochs(shots: int, dataset: str) -> int:
    """CoOp's configs: 50 epochs at 1 shot, 100 at 2/4, 200 at 8/16; 50 on ImageNet."""
    if canonical_dataset(dataset) == "imagenet" or shots <= 1:
        return 50
    return 100 if shots <= 4 else 200


def reference_recipe(method: str, shots: int, dataset: str = "", preset: str = "paper") -> Recipe:
    """The training recipe of `method` at `shots` on `dataset` under `preset`.

    Baselines follow their reference code under every preset: CoOp and CLIP-Adapter
    CoOp's configs (SGD lr 2e-3, batch 32, cosine, 1 warm-up epoch at 1e-5, epochs by
    shots); Tip-Adapter-F its configs (AdamW lr 1e-3, eps 1e-4, cosine per step, batch
    256, 20 epochs). PiNI follows the preset. Methods without gradient training get the
    default recipe (unused). Raises ConfigError for an unknown preset."""
    if preset not in PRESET_DOCS:
        raise ConfigError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    imagenet = canonical_dataset(dataset) == "imagenet"
    if method in ("coop", "clip_adapter"):
        return Recipe(epochs=_coop_epochs(shots, dataset), lr=2e-3)
    if method == "tip_adapter_f":
        return Recipe(optimizer="adamw", epochs=20, lr=1e-3, adam_eps=1e-4, batch_size=256, weight_decay=0.01,
                      schedule="cosine_step", warmup_epochs=0, aug_views=10)
    if method == "tip_adapter":
        return Recipe(aug_views=10)  # its cache keys: the mean of 10 augmented passes
    if method == "pini":
        if preset == "toy":
            return Recipe(epochs=100, lr=0.001, augment=False)
        if preset == "authors":
            return Recipe(epochs=100, lr=1e-3, aug_views=FRESH_VIEWS, drop_last=True, schedule="cosine_dassl")
        return Recipe(epochs=100 if imagenet else 200, lr=1e-3 if imagenet else 2e-3)
    return Recipe()


def preset_config(preset: str = "paper", *, method: str = "pini", shots: int = 16, dataset: str = "toy-clutter",
                  **overrides) -> ExperimentConfig:
    """An ExperimentConfig from a named preset; `overrides` replace top-level fields
    (`recipe=`, `noise=`, ... objects, or `seed=`, `backbone=`, ...).

    >>> cfg = preset_config("toy", shots=4)
    >>> cfg.recipe.lr, cfg.recipe.epochs
    (0.001, 100)
    """
    if preset not in PRESET_DOCS:
        raise ConfigError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    cfg = ExperimentConfig(method=method, shots=shots, data=DataSpec(dataset=dataset), preset=preset,
                           noise=NoiseConfig(**_PRESET_NOISE[preset]), eval=EvalSpec(**_PRESET_EVAL[preset]),
                           recipe=reference_recipe(method, shots, dataset, preset))
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


def default_preset(backbone: str) -> str:
    """`toy` for the embedded toy CLIP, `paper` for real CLIPs."""
    return "toy" if backbone in ("embedded", "pini-toyclip") else "paper"


def list_presets() -> List[Tuple[str, str]]:
    return list(PRESET_DOCS.items())
