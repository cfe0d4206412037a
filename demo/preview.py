"""Results on open: every tab's result for its default example is computed once, in a
background thread started when the app is built, and cached per generator, so the page shows
results as soon as it is served (issue 15, Build 1).

Only results of *shared* models are cached (the shipped generators, the embedded backbone,
the shipped MuNG model): a session's own generator is never cached, so sessions never see
each other's results. Each tab registers its default computation with `BuildContext.warm`;
its page-load handler calls the same handler, which finds the cached result (or waits for the
warm-up computing it, never computing it twice).
"""
from __future__ import annotations

import copy
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, Hashable, List, Optional

log = logging.getLogger("pini.app")
MAX_ENTRIES = 256

_lock = threading.Lock()
_cache: "OrderedDict[Hashable, Any]" = OrderedDict()
_key_locks: Dict[Hashable, threading.Lock] = {}
timings: Dict[str, float] = {}  # seconds each warm-up step took (shown in the server log)
_ready = threading.Event()


def cached(key: Optional[Hashable], compute: Callable[[], Any]) -> Any:
    """compute() once per key (None: never cached). A copy is returned each time, since Gradio
    may change the update dicts it is given."""
    if key is None:
        return compute()
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return copy.deepcopy(_cache[key])
        klock = _key_locks.setdefault(key, threading.Lock())
    with klock:  # a second caller waits for the first one's result
        with _lock:
            if key in _cache:
                return copy.deepcopy(_cache[key])
        value = compute()
        with _lock:
            _cache[key] = copy.deepcopy(value)
            while len(_cache) > MAX_ENTRIES:
                _cache.popitem(last=False)
            _key_locks.pop(key, None)
        return value


def model_key(model) -> Optional[Hashable]:
    """A cache key part for a shipped (shared, never changed) model; None for a session's own."""
    from demo.shipped import is_shipped

    return ("shipped", id(model)) if model is not None and is_shipped(model) else None


def no_progress(*args, **kwargs) -> None:
    return None


def start(spec: str, jobs: List[Callable[[], Any]]) -> threading.Thread:
    """Load the backbone `spec` and run every tab's default computation in one background thread."""

    def work():
        from demo import backbones

        t0 = time.time()
        try:
            backbones.CACHE.load(spec)
        except Exception:  # noqa: BLE001 - kept in CACHE.last_error; the page shows it
            _ready.set()
            return
        timings["backbone"] = time.time() - t0
        for job in jobs:
            t = time.time()
            try:
                job()
            except Exception:  # noqa: BLE001 - the tab computes (and reports) it on request instead
                log.exception("precomputing a tab's default result failed")
            timings[getattr(job, "__qualname__", str(job))] = time.time() - t
        timings["total"] = time.time() - t0
        log.info("results on open ready in %.1f s", timings["total"])
        _ready.set()

    t = threading.Thread(target=work, daemon=True, name="pini-app-preview")
    t.start()
    return t


def wait_ready(timeout: Optional[float] = None) -> bool:
    return _ready.wait(timeout)


def on_load(fn, n_outputs: int, status_index: int):
    """A page-load handler that shows a tab's error (e.g. 'no generator yet for this model') in the
    tab's status line instead of a pop-up when the page opens."""
    import gradio as gr

    def handler(*args):
        try:
            return fn(*args)
        except gr.Error as e:
            outs = [gr.update() for _ in range(n_outputs)]
            outs[status_index] = str(e.message)
            return outs

    handler.__name__ = getattr(fn, "__name__", "on_load")
    return handler
