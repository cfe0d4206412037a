"""The method registry: PiNI and every baseline register by name; the harness owns the loop.

A *method* is an ``nn.Module`` that holds the frozen backbone by reference and implements
one protocol (:class:`Method`):

    needs_pixels: bool                                      noise enters the raw image
    compute_loss(inputs, labels) -> scalar loss             inputs {"features": [B, D]} or {"pixels": ...}
    predict(inputs, *, mode, draws, generator) -> [B, C]    logits

Only parameters with ``requires_grad`` train (through ``pini_core.trainer.fit``). A
registered :class:`MethodSpec` says how to build the method for a few-shot task and how
it is fitted: ``gradient`` (the shared trainer), ``closed_form`` (a fit on cached features,
e.g. the linear probe's logistic regression, Tip-Adapter's cache) or ``none`` (zero-shot).
Its ``after_fit`` hook runs searches on the few-shot *val* split (never on test).

    >>> from pini_core.methods import list_methods
    >>> list_methods()
    ['zeroshot', 'linear_probe', 'coop', 'clip_adapter', 'tip_adapter', 'tip_adapter_f', 'pini']
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol, runtime_checkable

import torch

from .errors import ConfigError

TRAINING_KINDS = ("gradient", "closed_form", "none")


@runtime_checkable
class Method(Protocol):
    """The protocol every registered method implements (see module docstring)."""

    needs_pixels: bool

    def compute_loss(self, inputs: Dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor: ...

    def predict(self, inputs: Dict[str, torch.Tensor], *, mode: str = "mean", draws: int = 8,
                generator: Optional[torch.Generator] = None) -> torch.Tensor: ...


@dataclass
class MethodContext:
    """What a method's builder and hooks may use. `encode(data, augment=False, views=1)`
    returns cached image features ([N, D], or [V, N, D] for views > 1)."""

    backbone: Any
    data: Any  # few-shot DatasetSplits: classnames, template, train, val
    config: Any  # ExperimentConfig
    encode: Callable[..., torch.Tensor]
    info: Dict[str, Any] = field(default_factory=dict)  # extra facts for the result record

    @property
    def templates(self) -> List[str]:
        """The dataset's template, plus CLIP's 7-template ensemble when the method's
        `options` ask for it (`{"ensemble": true}`)."""
        from .baselines import ENSEMBLE_TEMPLATES

        ensemble = bool(self.config.options.get("ensemble", False))
        return [self.data.template] + (list(ENSEMBLE_TEMPLATES) if ensemble else [])


@dataclass(frozen=True)
class MethodSpec:
    name: str
    display: str
    build: Callable[[MethodContext], torch.nn.Module]
    training: str = "gradient"  # gradient | closed_form | none
    fit: Optional[Callable[[torch.nn.Module, MethodContext], None]] = None  # closed-form fit
    after_fit: Optional[Callable[[torch.nn.Module, MethodContext], None]] = None  # val searches
    options: tuple = ()  # keys allowed in ExperimentConfig.options
    doc: str = ""


_REGISTRY: Dict[str, MethodSpec] = {}


def register_method(name: str, display: str, *, training: str = "gradient", fit=None, after_fit=None,
                    options: tuple = (), doc: str = ""):
    """Decorator: register `build(ctx) -> nn.Module` under `name`."""
    if training not in TRAINING_KINDS:
        raise ValueError(f"training must be one of {TRAINING_KINDS}, got {training!r}")

    def deco(build):
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered")
        _REGISTRY[name] = MethodSpec(name, display, build, training, fit, after_fit, tuple(options),
                                     doc or (build.__doc__ or "").strip())
        return build
    return deco


def list_methods() -> List[str]:
    return list(_REGISTRY)


def get_method_spec(name: str) -> MethodSpec:
    """The registered spec; ConfigError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown method {name!r}; choose from {', '.join(_REGISTRY)}") from None


def check_config(config):
    """Every check of an ExperimentConfig, before any work: its fields' ranges
    (`ExperimentConfig.validate`), a registered method, options the method takes, and at
    least one shot for methods that train. Returns the config; raises ConfigError."""
    config.validate()
    spec = get_method_spec(config.method)
    if spec.training != "none" and config.shots < 1:
        raise ConfigError(f"shots must be between 1 and 100000 for {spec.display}, got {config.shots}")
    unknown = sorted(set(config.options) - set(spec.options))
    if unknown:
        raise ConfigError(f"method {spec.name!r} takes no option(s) {unknown}; it takes {list(spec.options) or 'none'}")
    return config


def build_method(ctx: MethodContext) -> torch.nn.Module:
    """Construct the configured method for ctx's task (seeded by the caller)."""
    check_config(ctx.config)
    return get_method_spec(ctx.config.method).build(ctx)


# ---------------------------------------------------------------------- the methods
def _labels(data):
    from .features import labels_of

    return labels_of(data)


@register_method("zeroshot", "Zero-shot CLIP", training="none", options=("ensemble",))
def _zeroshot(ctx: MethodContext):
    """CLIP's hand-written prompt classifier (one template per dataset, paper Table 6)."""
    from .baselines import ZeroShotCLIP

    return ZeroShotCLIP(ctx.backbone, ctx.data.classnames, ctx.templates)


def _fit_linear_probe(method, ctx: MethodContext) -> None:
    x, xv = ctx.encode(ctx.data.train), ctx.encode(ctx.data.val)
    log = method.fit_features(x, _labels(ctx.data.train), xv, _labels(ctx.data.val))
    ctx.info["val_search"] = {"C": log.best_c, "tried": len(log.tried)}


@register_method("linear_probe", "Linear Probe", training="closed_form", fit=_fit_linear_probe)
def _linear_probe(ctx: MethodContext):
    """L2 logistic regression on image features, C searched on val (CLIP's protocol)."""
    from .baselines import LinearProbe

    return LinearProbe(ctx.backbone, len(ctx.data.classnames))


@register_method("coop", "CoOp")
def _coop(ctx: MethodContext):
    """16 learnable context vectors shared by all classes, class token at the end."""
    from .baselines import CoOp

    return CoOp(ctx.backbone, ctx.data.classnames)


@register_method("clip_adapter", "CLIP-Adapter")
def _clip_adapter(ctx: MethodContext):
    """A residual bottleneck adapter on the image feature (ratio 0.2)."""
    from .baselines import CLIPAdapter

    return CLIPAdapter(ctx.backbone, ctx.data.classnames, ctx.data.template)


def _tip_cache(ctx: MethodContext, learnable: bool):
    from .baselines import TipAdapter, TipHyper

    from .data.templates import check_prompt_lengths

    check_prompt_lengths(ctx.backbone, ctx.data.classnames, ctx.templates)  # before encoding any image
    r = ctx.config.recipe
    views = ctx.encode(ctx.data.train, augment=r.augment, views=max(1, r.views()), seed=ctx.config.seed)
    return TipAdapter(ctx.backbone, ctx.data.classnames, ctx.templates, views, _labels(ctx.data.train),
                      hyper=TipHyper.for_dataset(ctx.config.data.dataset), learnable_keys=learnable)


def _tip_search(method, ctx: MethodContext) -> None:
    found = method.search_hyperparameters(ctx.encode(ctx.data.val), _labels(ctx.data.val))
    ctx.info["val_search"] = {k: round(v, 4) for k, v in found.items()}


@register_method("tip_adapter", "Tip-Adapter", training="closed_form", after_fit=_tip_search,
                 options=("ensemble",))
def _tip_adapter(ctx: MethodContext):
    """Training-free cache model of the few-shot features (keys = mean of augmented views)."""
    return _tip_cache(ctx, learnable=False)


@register_method("tip_adapter_f", "Tip-Adapter-F", after_fit=_tip_search, options=("ensemble",))
def _tip_adapter_f(ctx: MethodContext):
    """Tip-Adapter with learnable cache keys, fine-tuned by the shared trainer (AdamW)."""
    return _tip_cache(ctx, learnable=True)


@register_method("pini", "PiNI")
def _pini(ctx: MethodContext):
    """Learned noise mu + sigma * eps on the visual and text sides (Eq. 11-14)."""
    from .model import PiNIModel

    return PiNIModel(ctx.backbone, ctx.data.classnames, ctx.data.template, ctx.config.noise)
