"""Baselines of the PiNI paper, run as their reference code runs them, on the engine's
data, trainer and feature cache: zero-shot CLIP, linear probe, CoOp, CLIP-Adapter,
Tip-Adapter and Tip-Adapter-F. Their training recipes: `pini_core.experiment.reference_recipe`;
they register by name in `pini_core.methods`."""
from .clip_adapter import Adapter, CLIPAdapter
from .common import FeatureMethod, text_classifier
from .coop import CoOp
from .linear_probe import LinearProbe, search_c
from .tip_adapter import TipAdapter, TipHyper, search_grid
from .tip_train import fit_tip_adapter_f
from .zeroshot import ENSEMBLE_TEMPLATES, ZeroShotCLIP

__all__ = ["Adapter", "CLIPAdapter", "FeatureMethod", "text_classifier", "CoOp", "LinearProbe", "search_c",
           "TipAdapter", "TipHyper", "search_grid", "fit_tip_adapter_f",
           "ENSEMBLE_TEMPLATES", "ZeroShotCLIP"]
