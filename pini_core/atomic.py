"""Atomic file writes: the new content goes to a temporary file in the same folder, is
flushed to disk, then renamed over the target (`os.replace`). A crash or an exception at
any point leaves either the old file or the new one, never half of either, so a user's
checkpoint, results file or metadata survives an interrupted save."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator

FILE_MODE = 0o644  # mkstemp makes 0600; what the project writes is meant to be read by others (the app)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to `path`; write it completely inside the block. On a
    normal exit it replaces `path`; on an exception it is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # whatever library wrote it, make it durable before the rename
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, **dumps_kwargs: Any) -> None:
    """`json.dumps` runs first, so an unserialisable object fails before anything is touched."""
    write_text(path, json.dumps(obj, **{"indent": 2, **dumps_kwargs}))


def update_json(path: str | os.PathLike, entries: Dict[str, Any]) -> None:
    """Add or replace top-level `entries` in the JSON object at `path` (created if missing),
    written atomically — e.g. a model's sidecar `pini_meta.json`."""
    p = Path(path)
    doc = json.loads(p.read_text()) if p.is_file() else {}
    doc.update(entries)
    write_json(p, doc)
