"""Find the miniature benchmark's results for the Learn tab: the reference protocol in
assets/bench/ and, if present, the tuned protocol in assets/bench/tuned/ (each written by the
benchmark's export: tables.md, fig5_accuracy_vs_shots*.png, fig6_gain_over_zeroshot*.png,
meta.json). Each is labelled with its protocol and PiNI recipe, read from its meta.json."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

BENCH_DIR = Path(__file__).resolve().parent.parent / "assets" / "bench"
TUNED = "tuned"  # sub-folder of BENCH_DIR with the tuned protocol's export
HOW = "Whoever runs this app can create it (docs/bench.md), then restart the app."


@dataclass
class BenchSection:
    """One protocol's results as the page shows them."""

    protocol: str  # "reference" | "tuned"
    title: str  # e.g. "Reference protocol: each method's own recipe (PiNI: recipe 'paper', ...)"
    description: str  # meta.json's description (the setting, in words); "" if absent
    table_md: Optional[str]  # tables.md without its own top heading and setting paragraph
    figures: List[str] = field(default_factory=list)  # Figure 5 first
    recipe: str = "paper"  # the PiNI preset the run used (meta.json config.recipe; old runs: profile)


def _meta(folder: Path) -> dict:
    try:
        return json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def recipe_words(name: str) -> str:
    """'paper' -> "recipe 'paper' (lr 0.002, 200 epochs)": read from the engine's presets."""
    try:
        from pini_core.experiment import reference_recipe

        r = reference_recipe("pini", 16, "toy-clutter", name)
        return f"recipe '{name}' (lr {r.lr:g}, {r.epochs} epochs)"
    except Exception:  # noqa: BLE001 - an unknown preset name in an old meta.json: show the name only
        return f"recipe '{name}'"


def _title(protocol: str, meta: dict) -> str:
    cfg = meta.get("config") or {}
    recipe = cfg.get("recipe") or cfg.get("profile") or "paper"
    if protocol == "tuned":
        grid = cfg.get("lr_grid")
        grid_txt = f" from {', '.join(f'{float(x):g}' for x in grid)}" if grid else ""
        return (f"Tuned protocol: one learning-rate grid{grid_txt} for every SGD-trained method, the lr chosen "
                f"on the few-shot validation split (never on test); PiNI otherwise follows {recipe_words(recipe)}")
    return (f"Reference protocol: every method trained with its own published recipe; PiNI with "
            f"{recipe_words(recipe)}")


def _strip_header(md: str, description: str) -> str:
    """tables.md repeats the heading and the setting paragraph the page already shows."""
    lines = md.splitlines()
    while lines and (not lines[0].strip() or lines[0].startswith("# ")):
        lines.pop(0)
    if lines and description and lines[0].strip() == description.strip():
        lines.pop(0)
    return "\n".join(lines).strip()


def _section(folder: Path, protocol: str) -> Optional[BenchSection]:
    if not folder.is_dir():
        return None
    table_file = folder / "tables.md"
    table = table_file.read_text(encoding="utf-8") if table_file.is_file() else None
    figs = sorted(folder.glob("fig5*.png")) + sorted(folder.glob("fig6*.png"))
    if not table and not figs:
        return None
    meta = _meta(folder)
    cfg = meta.get("config") or {}
    protocol = cfg.get("protocol") or protocol
    desc = (meta.get("description") or "").strip()
    return BenchSection(protocol=protocol, title=_title(protocol, meta), description=desc,
                        table_md=_strip_header(table, desc) if table else None, figures=[str(p) for p in figs],
                        recipe=str(cfg.get("recipe") or cfg.get("profile") or "paper"))


def bench_sections() -> Tuple[List[BenchSection], str]:
    """([reference section, tuned section] as far as they exist, note). The note says plainly
    what does not exist yet ('' when both do)."""
    sections = [s for s in (_section(BENCH_DIR, "reference"), _section(BENCH_DIR / TUNED, "tuned")) if s is not None]
    have = {s.protocol for s in sections}
    if not BENCH_DIR.is_dir():
        return [], "The miniature benchmark has not been run in this installation, so there is no table. " + HOW
    if not sections:
        return [], "The benchmark folder exists but holds no results yet. " + HOW
    if "tuned" not in have:
        return sections, ("The tuned-protocol table (one learning-rate grid for every method, chosen on the "
                          "validation split) has not been made in this installation yet. " + HOW)
    return sections, ""


def bench_files() -> Tuple[Optional[str], List[str], str]:
    """(markdown tables, figure paths (Figure 5 first), note) of the reference protocol only;
    kept for callers written before `bench_sections`."""
    sections, note = bench_sections()
    ref = next((s for s in sections if s.protocol == "reference"), None)
    if ref is None:
        return None, [], note
    return ref.table_md, ref.figures, ""


def shots_word(text: str) -> str:
    """'1 shots' -> '1 shot' in the tables' headers (the benchmark writes '<k> shots')."""
    return re.sub(r"\b1 shots\b", "1 shot", text)
