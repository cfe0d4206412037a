"""Write what a benchmark run measured: the markdown tables, Figures 5 and 6 and a
small meta file, into the results folder (and optionally copy them for the app)."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from .. import atomic
from . import plots, tables
from .results import latest_per_setting

TABLES_FILE = "tables.md"
META_FILE = "meta.json"


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")


def figure_names(backbones: List[str]) -> Dict[str, Dict[str, str]]:
    """backbone -> {"fig5": file name, "fig6": file name}; no suffix with one backbone."""
    out = {}
    for b in backbones:
        sfx = "" if len(backbones) == 1 else f"_{_slug(b)}"
        out[b] = {"fig5": f"fig5_accuracy_vs_shots{sfx}.png", "fig6": f"fig6_gain_over_zeroshot{sfx}.png"}
    return out


def write_report(records: Iterable[dict], out_dir: str | os.PathLike, meta: Optional[Dict] = None) -> List[Path]:
    """tables.md + PNGs + meta.json into out_dir; returns the files written."""
    out = Path(out_dir)
    recs = latest_per_setting(records)
    written: List[Path] = []
    header = "# Benchmark results (measured)\n\n"
    if meta and meta.get("description"):
        header += meta["description"].strip() + "\n\n"
    atomic.write_text(out / TABLES_FILE, header + tables.all_tables(recs))
    written.append(out / TABLES_FILE)
    backbones = list(dict.fromkeys(r["backbone"] for r in recs))
    for b, names in figure_names(backbones).items():
        written.append(plots.figure5(recs, b, out / names["fig5"]))
        method = "pini" if any(r["method"] == "pini" and r["backbone"] == b for r in recs) else None
        has_zs = any(r["method"] == "zeroshot" and r["backbone"] == b for r in recs)
        if method and has_zs:
            written.append(plots.figure6(recs, b, out / names["fig6"], method=method))
    if meta is not None:
        atomic.write_text(out / META_FILE, json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
        written.append(out / META_FILE)
    return written


def export(files: Iterable[Path], dest: str | os.PathLike) -> List[Path]:
    """Copy report files (and the results file) to `dest` (e.g. assets/bench for the app)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for f in files:
        f = Path(f)
        target = dest / f.name
        fd, tmp = tempfile.mkstemp(dir=dest, prefix=f.name + ".", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(f, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        copied.append(target)
    return copied
