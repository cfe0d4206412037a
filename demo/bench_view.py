"""Find the miniature benchmark's results: `python -m pini_core bench ... --export assets/bench`
copies tables.md and the figures (fig5_accuracy_vs_shots*.png, fig6_gain_over_zeroshot*.png) here."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

BENCH_DIR = Path(__file__).resolve().parent.parent / "assets" / "bench"
HOW = ("Run `python -m pini_core bench --export assets/bench` (see docs/bench.md) to create it, then restart "
       "the app.")


def bench_files() -> Tuple[Optional[str], List[str], str]:
    """(markdown tables, figure paths (Figure 5 first), note). The note says plainly when
    nothing exists yet."""
    if not BENCH_DIR.is_dir():
        return None, [], "The miniature benchmark has not been run in this installation, so there is no table. " + HOW
    table_file = BENCH_DIR / "tables.md"
    tables = [table_file] if table_file.is_file() else sorted(BENCH_DIR.glob("*.md"))
    table = tables[0].read_text(encoding="utf-8") if tables else None
    figs = sorted(BENCH_DIR.glob("fig5*.png")) + sorted(BENCH_DIR.glob("fig6*.png"))
    note = "" if (table or figs) else "The benchmark folder exists but holds no results yet. " + HOW
    return table, [str(p) for p in figs], note
