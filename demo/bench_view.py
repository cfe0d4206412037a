"""Find the miniature benchmark's results (written by `python -m pini_core bench`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

BENCH_DIR = Path(__file__).resolve().parent.parent / "assets" / "bench"


def bench_files() -> Tuple[Optional[str], Optional[str], str]:
    """(markdown table, plot path, note). The note says plainly when nothing exists yet."""
    if not BENCH_DIR.is_dir():
        return None, None, ("The miniature benchmark has not been run in this installation, so there is "
                            "no table to show. Run `python -m pini_core bench` to create it.")
    tables = sorted(BENCH_DIR.glob("*.md"))
    plots = sorted(BENCH_DIR.glob("*.png"))
    table = tables[0].read_text(encoding="utf-8") if tables else None
    plot = str(plots[0]) if plots else None
    note = "" if (table or plot) else "The benchmark folder exists but holds no results yet."
    return table, plot, note
