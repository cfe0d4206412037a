"""Launch the app in-process for tests (the embedded model, a free port, no thread lock)."""
from __future__ import annotations

import contextlib
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@contextlib.contextmanager
def running_app(model: str = "embedded"):
    """Yields the local URL of a freshly built app; closes it afterwards."""
    import torch

    from demo import backbones
    from demo.build import build_app, launch_kwargs

    threads = torch.get_num_threads()  # the app sets its own; give the rest of the suite its own back
    app = build_app(model)
    kw = launch_kwargs()
    kw.update(prevent_thread_lock=True, quiet=True, server_port=_free_port())
    _, url, _ = app.launch(**kw)
    try:
        yield url
    finally:
        app.close()
        torch.set_num_threads(threads)
        backbones._TORCH_CONFIGURED = False


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
