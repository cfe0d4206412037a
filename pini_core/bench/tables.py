"""Markdown tables laid out as the PiNI paper's Tables 2, 7, 3 and 4, from result
records (see `results.py`), mean ± std over seeds, with the paper's number beside the
measured one wherever the setting matches (see `paper.py`).

Conventions
- Accuracies are percent. "mean ± std" is over seeds, std is the sample std (n-1);
  a single seed shows the mean only. A missing cell is "—".
- Zero-shot CLIP has no shots and no seed: it is the paper's "shot 0" row.
- Table 2 averages over datasets per seed first (only seeds that finished every
  dataset), then takes mean ± std over those seeds.
- Table 3's "Ave." is the mean over the source and all targets, per seed (this is how
  the paper's printed averages come out).
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Sequence

from . import paper
from .results import latest_per_setting

DASH = "—"


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    vals = list(values)
    if not vals:
        raise ValueError("no values")
    mean = statistics.fmean(vals)
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return mean, std, len(vals)


def fmt_cell(values: Sequence[float], paper_value: Optional[float] = None) -> str:
    if not values:
        text = DASH
    else:
        mean, std, n = mean_std(values)
        text = f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"
    if paper_value is not None:
        text += f" (paper {paper_value:.2f})"
    return text


def _md_table(header: List[str], rows: List[List[str]], align: Optional[List[str]] = None) -> str:
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _ordered(items: Iterable[str], order: Sequence[str]) -> List[str]:
    items = list(dict.fromkeys(items))
    known = [x for x in order if x in items]
    return known + [x for x in items if x not in known]


def _datasets(records: List[dict]) -> List[str]:
    order = paper.paper_results()["datasets"]
    names = list(dict.fromkeys(r["dataset"] for r in records))
    return sorted(names, key=lambda d: (order.index(paper.canonical_dataset(d))
                                        if paper.canonical_dataset(d) in order else len(order), names.index(d)))


def _methods(records: List[dict], include_zeroshot: bool) -> List[str]:
    ms = sorted({r["method"] for r in records}, key=paper.method_sort_key)
    return [m for m in ms if include_zeroshot or m != "zeroshot"]


def _seeds_text(records: List[dict]) -> str:
    seeds = sorted({r["seed"] for r in records if r["method"] != "zeroshot"})
    return ", ".join(str(s) for s in seeds) if seeds else DASH


def default_table_shots(records: List[dict]) -> Optional[int]:
    """16 if present (the paper's setting), else the largest trained shot count."""
    shots = sorted({r["shots"] for r in records if r["method"] != "zeroshot"})
    if not shots:
        return None
    return 16 if 16 in shots else shots[-1]


def _acc(r: dict) -> float:
    return float(r["accuracy"])


def _zs_by_dataset(records: List[dict]) -> Dict[str, List[float]]:
    out: Dict[str, List[float]] = defaultdict(list)
    for r in records:
        if r["method"] == "zeroshot":
            out[r["dataset"]].append(_acc(r))
    return out


# --------------------------------------------------------------------- Table 2
def table2(records: Iterable[dict], backbone: str) -> str:
    """Average over datasets per number of shots (paper Table 2), one backbone."""
    recs = [r for r in latest_per_setting(records) if r["backbone"] == backbone]
    if not recs:
        raise ValueError(f"no results for backbone {backbone!r}")
    datasets = _datasets(recs)
    methods = _methods(recs, include_zeroshot=False)
    shots = sorted({r["shots"] for r in recs if r["method"] != "zeroshot"})

    zs = _zs_by_dataset(recs)
    zs_vals: List[float] = []
    if zs and all(d in zs for d in datasets):
        zs_vals = [statistics.fmean(statistics.fmean(zs[d]) for d in datasets)]
    zs_paper = paper.table2_value("zeroshot", 0, datasets, backbone)
    columns = methods or ["zeroshot"]
    rows = [["0"] + [fmt_cell(zs_vals, zs_paper) for _ in columns]]
    for k in shots:
        row = [str(k)]
        for m in methods:
            per_seed: Dict[int, Dict[str, float]] = defaultdict(dict)
            for r in recs:
                if r["method"] == m and r["shots"] == k:
                    per_seed[r["seed"]][r["dataset"]] = _acc(r)
            vals = [statistics.fmean(v[d] for d in datasets)
                    for _, v in sorted(per_seed.items()) if all(d in v for d in datasets)]
            row.append(fmt_cell(vals, paper.table2_value(m, k, datasets, backbone)))
        rows.append(row)
    header = ["Shots"] + [paper.method_display(m) for m in columns]
    caption = (f"**Table 2 (measured)**: accuracy (%) averaged over {len(datasets)} dataset"
               f"{'s' if len(datasets) != 1 else ''} ({', '.join(datasets)}), backbone "
               f"{paper.backbone_display(backbone)}, mean ± std over seeds {_seeds_text(recs)}. "
               "Shot 0 is zero-shot CLIP.")
    return caption + "\n\n" + _md_table(header, rows)


# --------------------------------------------------------------------- Table 7
def table7(records: Iterable[dict], backbone: str, shots: Optional[int] = None) -> str:
    """Per dataset at one shot count (paper Table 7, 16 shots), one backbone."""
    recs = [r for r in latest_per_setting(records) if r["backbone"] == backbone]
    if not recs:
        raise ValueError(f"no results for backbone {backbone!r}")
    shots = default_table_shots(recs) if shots is None else shots
    datasets = _datasets(recs)
    methods = _methods(recs, include_zeroshot=True)
    rows = []
    for m in methods:
        row = [paper.method_display(m)]
        for d in datasets:
            vals = [_acc(r) for r in recs if r["method"] == m and r["dataset"] == d
                    and (m == "zeroshot" or r["shots"] == shots)]
            row.append(fmt_cell(vals, paper.table7_value(m, d, shots, backbone)))
        rows.append(row)
    header = ["Method"] + [paper.dataset_display(d) for d in datasets]
    caption = (f"**Table 7 (measured)**: accuracy (%) per dataset, {shots} shots, backbone "
               f"{paper.backbone_display(backbone)}, mean ± std over seeds {_seeds_text(recs)}.")
    return caption + "\n\n" + _md_table(header, rows)


# --------------------------------------------------------------------- Table 3
def table3(records: Iterable[dict], backbone: str, source: str, shots: Optional[int] = None) -> str:
    """Source -> targets (paper Table 3, domain generalisation), one backbone."""
    recs = [r for r in latest_per_setting(records)
            if r["backbone"] == backbone and r["dataset"] == source and r.get("targets")]
    if not recs:
        raise ValueError(f"no domain-generalisation results (records with 'targets') for {source!r} "
                         f"on backbone {backbone!r}")
    shots = default_table_shots(recs) if shots is None else shots
    target_order = [t for t in paper.paper_results()["table3"]["targets"]]
    targets = list(dict.fromkeys(t for r in recs for t in r["targets"]))
    targets = sorted(targets, key=lambda t: (target_order.index(paper.canonical_dataset(t))
                                             if paper.canonical_dataset(t) in target_order else len(target_order),
                                             targets.index(t)))
    columns = [source] + targets
    methods = _methods(recs, include_zeroshot=True)
    rows = []
    for m in methods:
        mrecs = sorted((r for r in recs if r["method"] == m and (m == "zeroshot" or r["shots"] == shots)),
                       key=lambda r: r["seed"])
        row = [paper.method_display(m)]
        for c in columns:
            vals = [_acc(r) if c == source else float(r["targets"][c]) for r in mrecs
                    if c == source or c in r["targets"]]
            row.append(fmt_cell(vals, paper.table3_value(m, source, c, shots, backbone)))
        aves = [statistics.fmean([_acc(r)] + [float(r["targets"][t]) for t in targets])
                for r in mrecs if all(t in r["targets"] for t in targets)]
        row.append(fmt_cell(aves, paper.table3_value(m, source, "average", shots, backbone)))
        rows.append(row)
    header = (["Method", f"{paper.dataset_display(source)} (source)"]
              + [paper.dataset_display(t) for t in targets] + ["Ave."])
    caption = (f"**Table 3 (measured)**: trained on {source} ({shots} shots), tested on its targets; "
               f"backbone {paper.backbone_display(backbone)}, mean ± std over seeds {_seeds_text(recs)}. "
               "Ave. = mean over source and targets.")
    return caption + "\n\n" + _md_table(header, rows)


# --------------------------------------------------------------------- Table 4
def table4(records: Iterable[dict], shots: Optional[int] = None,
           backbones: Optional[Sequence[str]] = None) -> str:
    """Methods x backbones per dataset (paper Table 4, 16 shots)."""
    recs = latest_per_setting(records)
    if not recs:
        raise ValueError("no results")
    shots = default_table_shots(recs) if shots is None else shots
    if backbones is None:
        order = paper.paper_results()["table4"]["backbones"]
        backbones = _ordered((r["backbone"] for r in recs), order)
    datasets = _datasets(recs)
    methods = _methods(recs, include_zeroshot=True)
    rows = []
    for d in datasets:
        for i, m in enumerate(methods):
            row = [paper.dataset_display(d) if i == 0 else "", paper.method_display(m)]
            for b in backbones:
                vals = [_acc(r) for r in recs if r["method"] == m and r["dataset"] == d and r["backbone"] == b
                        and (m == "zeroshot" or r["shots"] == shots)]
                row.append(fmt_cell(vals, paper.table4_value(m, d, b, shots)))
            rows.append(row)
    header = ["Dataset", "Method"] + [paper.backbone_display(b) for b in backbones]
    caption = (f"**Table 4 (measured)**: accuracy (%) per visual backbone, {shots} shots, "
               f"mean ± std over seeds {_seeds_text(recs)}.")
    return caption + "\n\n" + _md_table(header, rows, align=["---", "---"] + ["---:"] * len(backbones))


# --------------------------------------------------------------------- timing
def timing_table(records: Iterable[dict], backbone: str) -> str:
    """Mean training time per cell (seconds) per method and shots: what a cell costs."""
    recs = [r for r in latest_per_setting(records) if r["backbone"] == backbone]
    methods = _methods(recs, include_zeroshot=True)
    shots = sorted({r["shots"] for r in recs})
    rows = []
    for m in methods:
        row = [paper.method_display(m)]
        for k in shots:
            vals = [float(r.get("train_time_s", 0.0)) for r in recs if r["method"] == m and r["shots"] == k]
            row.append(f"{statistics.fmean(vals):.2f}" if vals else DASH)
        rows.append(row)
    header = ["Method"] + [f"{k} shots" for k in shots]
    caption = (f"**Training time per cell (s)**, mean over datasets and seeds, backbone "
               f"{paper.backbone_display(backbone)} (feature extraction of the test set excluded).")
    return caption + "\n\n" + _md_table(header, rows)


def dg_sources(records: Iterable[dict], backbone: str) -> List[str]:
    return list(dict.fromkeys(r["dataset"] for r in records if r["backbone"] == backbone and r.get("targets")))


def all_tables(records: Iterable[dict]) -> str:
    """Every table the records support, as one markdown document."""
    recs = latest_per_setting(records)
    if not recs:
        return "_No finished cells yet._\n"
    backbones = list(dict.fromkeys(r["backbone"] for r in recs))
    parts = []
    for b in backbones:
        parts.append(table2(recs, b))
        parts.append(table7(recs, b))
        for src in dg_sources(recs, b):
            parts.append(table3(recs, b, src))
    if len(backbones) > 1:
        parts.append(table4(recs))
    for b in backbones:
        parts.append(timing_table(recs, b))
    return "\n\n".join(parts) + "\n"
