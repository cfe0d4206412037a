"""Figures 5 and 6 of the paper from result records (matplotlib, Agg backend).

Figure 5: accuracy vs number of shots, one panel per dataset plus the average over
datasets (top-left), one line per method (mean over seeds, band = ± std), zero-shot
CLIP as a star at 0 shots and a dashed level. Where the paper has the same setting
(11 CoOp datasets, ViT-B/16 OpenAI) its Table 2 averages are drawn as faint dotted lines.
Figure 6: gain of a method (PiNI by default) over zero-shot CLIP per dataset, at the
table's shot count (16 when measured).
"""
from __future__ import annotations

import math
import os
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import paper  # noqa: E402
from .results import latest_per_setting  # noqa: E402
from .tables import _datasets, _methods, default_table_shots  # noqa: E402

COLORS = {"zeroshot": "#7f7f7f", "linear_probe": "#1f77b4", "coop": "#2ca02c", "clip_adapter": "#9467bd",
          "tip_adapter": "#8c564b", "tip_adapter_f": "#e377c2", "pini": "#d62728"}


def _save(fig, path: Path) -> Path:
    """Atomic PNG write (temp file + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _curves(recs: List[dict], datasets: List[str]) -> Dict[str, Dict[str, Dict[int, List[float]]]]:
    """panel ('__average__' or dataset) -> method -> shots -> per-seed accuracies."""
    out: Dict[str, Dict[str, Dict[int, List[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    by_seed: Dict[tuple, Dict[str, float]] = defaultdict(dict)
    for r in recs:
        k = 0 if r["method"] == "zeroshot" else r["shots"]
        out[r["dataset"]][r["method"]][k].append(float(r["accuracy"]))
        by_seed[(r["method"], k, r["seed"])][r["dataset"]] = float(r["accuracy"])
    for (m, k, _), per_ds in sorted(by_seed.items(), key=lambda kv: str(kv[0])):
        if all(d in per_ds for d in datasets):
            out["__average__"][m][k].append(statistics.fmean(per_ds[d] for d in datasets))
    return out


def figure5(records: Iterable[dict], backbone: str, path: str | os.PathLike) -> Path:
    recs = [r for r in latest_per_setting(records) if r["backbone"] == backbone]
    if not recs:
        raise ValueError(f"no results for backbone {backbone!r}")
    datasets = _datasets(recs)
    methods = _methods(recs, include_zeroshot=True)
    curves = _curves(recs, datasets)
    shots = sorted({r["shots"] for r in recs if r["method"] != "zeroshot"} | {0})
    xpos = {k: i for i, k in enumerate(shots)}  # evenly spaced: 0 1 2 4 8 16
    panels = ["__average__"] + datasets if len(datasets) > 1 else datasets
    ncol = min(4, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels):
        data = curves.get(panel, {})
        for m in methods:
            pts = data.get(m, {})
            if not pts:
                continue
            color = COLORS.get(m)
            if m == "zeroshot":
                zs = statistics.fmean(pts[0])
                ax.axhline(zs, color=color, ls="--", lw=1)
                ax.plot([xpos[0]], [zs], marker="*", ms=12, color=color, ls="", label=paper.method_display(m))
                continue
            ks = sorted(pts)
            mean = [statistics.fmean(pts[k]) for k in ks]
            std = [statistics.stdev(pts[k]) if len(pts[k]) > 1 else 0.0 for k in ks]
            xs = [xpos[k] for k in ks]
            ax.plot(xs, mean, marker="o", ms=4, color=color, label=paper.method_display(m))
            ax.fill_between(xs, [a - s for a, s in zip(mean, std)], [a + s for a, s in zip(mean, std)],
                            color=color, alpha=0.15, lw=0)
        if panel == "__average__":
            for m in methods:
                ref = [(k, paper.table2_value(m, k, datasets, backbone)) for k in shots if k > 0]
                ref = [(k, v) for k, v in ref if v is not None]
                if ref:
                    ax.plot([xpos[k] for k, _ in ref], [v for _, v in ref], ls=":", lw=1,
                            color=COLORS.get(m), alpha=0.6)
            title = f"Average over {len(datasets)} datasets"
        else:
            title = paper.dataset_display(panel) if paper.canonical_dataset(panel) else panel
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(len(shots)))
        ax.set_xticklabels([str(k) for k in shots])
        ax.set_xlabel("shots per class")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7 if ncol > 1 else 3), frameon=False,
               bbox_to_anchor=(0.5, -0.02 if ncol > 1 else -0.12))
    fig.suptitle(f"Few-shot accuracy vs shots ({paper.backbone_display(backbone)}; mean ± std over seeds)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return _save(fig, Path(path))


def figure6(records: Iterable[dict], backbone: str, path: str | os.PathLike, method: str = "pini",
            shots: Optional[int] = None) -> Path:
    recs = [r for r in latest_per_setting(records) if r["backbone"] == backbone]
    shots = default_table_shots(recs) if shots is None else shots
    datasets = _datasets(recs)
    gains, names = [], []
    for d in datasets:
        zs = [float(r["accuracy"]) for r in recs if r["method"] == "zeroshot" and r["dataset"] == d]
        m = [float(r["accuracy"]) for r in recs if r["method"] == method and r["dataset"] == d and r["shots"] == shots]
        if zs and m:
            gains.append(statistics.fmean(m) - statistics.fmean(zs))
            names.append(paper.dataset_display(d))
    if not gains:
        raise ValueError(f"figure 6 needs zero-shot and {method} results at {shots} shots on backbone {backbone!r}")
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(gains) + 2), 3.6))
    colors = ["#2ca02c" if g >= 0 else "#d62728" for g in gains]
    bars = ax.bar(range(len(gains)), gains, color=colors)
    for b, g in zip(bars, gains):
        ax.annotate(f"{g:+.2f}", (b.get_x() + b.get_width() / 2, g), ha="center",
                    va="bottom" if g >= 0 else "top", fontsize=8)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(gains)))
    ax.set_xticklabels(names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
    ax.set_ylabel("accuracy gain (points)")
    ax.set_title(f"{paper.method_display(method)} − zero-shot CLIP, {shots} shots "
                 f"({paper.backbone_display(backbone)})", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, Path(path))
