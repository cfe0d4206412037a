"""Linear probe CLIP, as CoOp's `lpclip/linear_probe.py` runs it.

L2-regularised multinomial logistic regression (scikit-learn, lbfgs, max_iter 1000)
on the frozen encoder's UN-normalised image features. The inverse regularisation
strength C is chosen on the few-shot validation split: first over
{1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6}, then refined by CoOp's log-space bisection
between 0.1·C_peak and 10·C_peak (8 steps). Never selected on test.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .common import FeatureMethod

C_GRID = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)
REFINE_STEPS = 8


@dataclass
class CSearch:
    """What the C search tried: (C, val accuracy) in order, and the C kept."""

    tried: List[Tuple[float, float]] = field(default_factory=list)
    best_c: float = float("nan")


def _fit(x: np.ndarray, y: np.ndarray, c: float, max_iter: int):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        # The reference runs lbfgs with max_iter 1000 whatever happens; very large C on
        # separable few-shot features hits the limit, which is expected, not news.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(solver="lbfgs", max_iter=max_iter, C=c).fit(x, y)


def _val_acc(clf, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(clf.predict(x) == y))


def search_c(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, *,
             grid: Sequence[float] = C_GRID, refine_steps: int = REFINE_STEPS, max_iter: int = 1000):
    """CoOp's C search. Returns (fitted classifier, CSearch).

    Few-shot problems are tiny (N x D with N = k x classes): multi-threaded BLAS only adds
    overhead there (measured 30x slower on 2 shared cores), so the fits run with one BLAS
    thread; the mathematics is the same."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _search_c(x, y, xv, yv, grid, refine_steps, max_iter)


def _search_c(x, y, xv, yv, grid, refine_steps, max_iter):
    log = CSearch()
    accs = []
    for c in grid:
        acc = _val_acc(_fit(x, y, c, max_iter), xv, yv)
        log.tried.append((c, acc))
        accs.append(acc)
    c_peak = grid[int(np.argmax(accs))]  # first maximum, as np.argmax in the reference
    c_left, c_right = 0.1 * c_peak, 10.0 * c_peak
    clf_final, c_final = None, c_peak
    for _ in range(refine_steps):
        clf_l, clf_r = _fit(x, y, c_left, max_iter), _fit(x, y, c_right, max_iter)
        acc_l, acc_r = _val_acc(clf_l, xv, yv), _val_acc(clf_r, xv, yv)
        log.tried += [(c_left, acc_l), (c_right, acc_r)]
        lo, hi = math.log10(c_left), math.log10(c_right)
        if acc_l < acc_r:  # move towards the right end
            c_final, clf_final = c_right, clf_r
            lo, hi = 0.5 * (lo + hi), hi
        else:
            c_final, clf_final = c_left, clf_l
            lo, hi = lo, 0.5 * (lo + hi)
        c_left, c_right = 10.0 ** lo, 10.0 ** hi
    if clf_final is None:
        clf_final = _fit(x, y, c_final, max_iter)
    log.best_c = float(c_final)
    return clf_final, log


class LinearProbe(FeatureMethod):
    """A linear classifier on image features; fitted with `fit_features`, not by SGD."""

    def __init__(self, backbone, num_classes: int):
        super().__init__(backbone)
        if num_classes < 2:
            raise ValueError(f"a linear probe needs at least 2 classes, got {num_classes}")
        self.num_classes = num_classes
        d = backbone.embed_dim
        self.register_buffer("weight", torch.zeros(num_classes, d, device=backbone.device))
        self.register_buffer("bias", torch.zeros(num_classes, device=backbone.device))
        self.register_buffer("present", torch.zeros(num_classes, dtype=torch.bool, device=backbone.device))
        self.search: Optional[CSearch] = None

    def compute_loss(self, inputs, labels):
        raise RuntimeError("the linear probe is fitted by scikit-learn's logistic regression: "
                           "call LinearProbe.fit_features(train_features, train_labels, val_features, val_labels)")

    def fit_features(self, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, *,
                     grid: Sequence[float] = C_GRID, refine_steps: int = REFINE_STEPS,
                     max_iter: int = 1000) -> CSearch:
        """Fit on un-normalised features [N, D] with labels [N]; C searched on (xv, yv)."""
        x_np, y_np = x.detach().float().cpu().numpy(), y.detach().cpu().numpy().astype(int)
        xv_np, yv_np = xv.detach().float().cpu().numpy(), yv.detach().cpu().numpy().astype(int)
        if len(np.unique(y_np)) < 2:
            raise ValueError("the linear probe needs training examples of at least 2 classes")
        if len(yv_np) == 0:
            raise ValueError("the linear probe's C search needs a non-empty validation split")
        if y_np.max() >= self.num_classes or y_np.min() < 0:
            raise ValueError(f"labels must be in [0, {self.num_classes}), got range [{y_np.min()}, {y_np.max()}]")
        clf, log = search_c(x_np, y_np, xv_np, yv_np, grid=grid, refine_steps=refine_steps, max_iter=max_iter)
        self._load_sklearn(clf)
        self.search = log
        return log

    @torch.no_grad()
    def _load_sklearn(self, clf) -> None:
        classes = clf.classes_.astype(int)
        coef, intercept = clf.coef_, clf.intercept_
        if coef.shape[0] == 1:  # binary problem: sklearn keeps one row, logit(class1) - logit(class0)
            coef = np.concatenate([-coef / 2, coef / 2])
            intercept = np.concatenate([-intercept / 2, intercept / 2])
        self.weight.zero_(), self.bias.zero_(), self.present.zero_()
        idx = torch.as_tensor(classes, device=self.weight.device)
        self.weight[idx] = torch.as_tensor(coef, dtype=torch.float32, device=self.weight.device)
        self.bias[idx] = torch.as_tensor(intercept, dtype=torch.float32, device=self.weight.device)
        self.present[idx] = True

    def predict(self, inputs: Dict[str, torch.Tensor], *, mode: str = "mean", draws: int = 8,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        f = self.image_features(inputs)  # un-normalised, as the probe was fitted
        logits = f @ self.weight.t() + self.bias
        # classes never seen in training can never be predicted (sklearn's behaviour)
        return logits.masked_fill(~self.present, -1e9)
