"""The results file: one JSON object per finished benchmark cell, one per line.

Crash-safe by construction: a line is written with one `write` call, flushed and
fsync'ed before the next cell starts, so a killed run leaves at worst one truncated
last line. Loading ignores (and `repair` removes) such a line; nothing else is lost.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Dict, Iterable, List

from .. import atomic

# Fields that identify a cell; `config` is a short hash of the method's settings
# (epochs, lr, ...) so that a changed setting is a new cell, never a silent reuse.
KEY_FIELDS = ("method", "dataset", "shots", "seed", "backbone", "config")


def config_hash(config: dict) -> str:
    """Stable 10-hex-digit hash of a JSON-serialisable settings dict."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:10]


def cell_key(record: dict) -> tuple:
    missing = [k for k in KEY_FIELDS if k not in record]
    if missing:
        raise KeyError(f"result record lacks {missing}; got keys {sorted(record)}")
    return tuple(record[k] for k in KEY_FIELDS)


class ResultsFile:
    """Append-only JSON-lines store of finished cells."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -- reading -------------------------------------------------------------------
    def _read_lines(self) -> tuple[List[dict], int, str]:
        """(records, byte length of the good prefix, tail state).

        tail state: "ok", "truncated" (the last line is cut off mid-write: ignored) or
        "no-newline" (the last line is complete JSON but lacks its newline)."""
        if not self.path.exists():
            return [], 0, "ok"
        data = self.path.read_bytes()
        records: List[dict] = []
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            end = len(data) if nl < 0 else nl
            line = data[pos:end].strip()
            is_last = nl < 0 or data[nl + 1:].strip() == b""
            if line:
                try:
                    rec = json.loads(line.decode("utf-8"))
                    if not isinstance(rec, dict):
                        raise ValueError("a line must hold a JSON object")
                except (ValueError, UnicodeDecodeError) as e:
                    if is_last:
                        return records, pos, "truncated"
                    line_no = data[:pos].count(b"\n") + 1
                    raise ValueError(
                        f"{self.path}: line {line_no} is not valid JSON ({e}) and is not the last line; "
                        "the file was edited by hand or two runs wrote to it at once. "
                        "Fix or delete that line, then rerun.") from None
                records.append(rec)
                if nl < 0:
                    return records, len(data), "no-newline"
            pos = end + 1
        return records, len(data), "ok"

    def load(self) -> List[dict]:
        """All complete records (a truncated last line is skipped with a warning)."""
        records, _, tail = self._read_lines()
        if tail == "truncated":
            warnings.warn(f"{self.path}: ignoring a truncated last line (left by an interrupted write)")
        return records

    def done_keys(self) -> set:
        return {cell_key(r) for r in self.load() if all(k in r for k in KEY_FIELDS)}

    # -- writing -------------------------------------------------------------------
    def repair(self) -> bool:
        """Drop a truncated last line / add a missing final newline (atomic rewrite).
        Returns True when the file was changed."""
        _, good_end, tail = self._read_lines()
        if tail == "ok":
            return False
        data = self.path.read_bytes()[:good_end]
        if data and not data.endswith(b"\n"):
            data += b"\n"
        atomic.write_bytes(self.path, data)
        return True

    def append(self, record: dict) -> None:
        """Append one finished cell: a single write of one line, flushed and fsync'ed."""
        cell_key(record)  # validate
        line = json.dumps(record, sort_keys=True, default=_json_default) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repair()
        with open(self.path, "ab") as f:
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"cannot store {type(o).__name__} in a result record")


def latest_per_setting(records: Iterable[dict]) -> List[dict]:
    """Keep one record per (method, dataset, shots, seed, backbone): the last written.
    A rerun with other settings (another `config`) therefore replaces older numbers
    in the tables, while the file keeps the full history."""
    out: Dict[tuple, dict] = {}
    for r in records:
        out[(r["method"], r["dataset"], r["shots"], r["seed"], r["backbone"])] = r
    return list(out.values())
