"""ZeroGPU shim for Hugging Face Spaces.

On a ZeroGPU Space, functions that need the GPU must be wrapped in the
`spaces.GPU` decorator (the `spaces` package is preinstalled there). Everywhere
else (a laptop, CI, a CPU Space) the decorator must be a no-op, and the
`spaces` package must not be required. `gpu` does exactly that:

    from pini_core.spaces import gpu

    @gpu                      # or @gpu(duration=120) for long calls
    def classify(...): ...
"""
from __future__ import annotations

import importlib
import os
from typing import Any, Callable, Optional


def on_spaces() -> bool:
    """True when running inside a Hugging Face Space (the platform sets SPACE_ID)."""
    return bool(os.environ.get("SPACE_ID"))


def _spaces_module() -> Optional[Any]:
    """The `spaces` package when we are on a Space and it is importable, else None."""
    if not on_spaces():
        return None
    try:
        return importlib.import_module("spaces")
    except ImportError:
        return None


def zero_gpu_active() -> bool:
    """True when the ZeroGPU decorator will really be applied."""
    return _spaces_module() is not None


def gpu(fn: Optional[Callable] = None, *, duration: Optional[int] = None) -> Callable:
    """`spaces.GPU` on a Space that has the `spaces` package, otherwise the identity.

    Usable bare (`@gpu`) or with arguments (`@gpu(duration=120)`); `duration` is the
    longest the call may hold the GPU, in seconds (ZeroGPU's own default is 60).
    """

    def wrap(f: Callable) -> Callable:
        mod = _spaces_module()
        if mod is None:
            return f
        if duration is None:
            return mod.GPU(f)
        return mod.GPU(duration=duration)(f)

    if fn is not None:
        return wrap(fn)
    return wrap
