"""What the tab builders share while the page is being built."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Tuple

import gradio as gr


@dataclass
class BuildContext:
    session: gr.State  # SessionState per browser session
    default_spec: str  # the backbone the page opens on
    example_dropdowns: List[gr.Dropdown] = field(default_factory=list)  # refreshed on model change
    generator_status: List[gr.Markdown] = field(default_factory=list)  # refreshed after training
    # (fn, inputs, outputs) or (fn, inputs, outputs, extra app.load keyword arguments), run on page load
    page_load: List[Tuple[Any, ...]] = field(default_factory=list)
    # zero-argument callables computing a tab's default result at start-up (demo.preview)
    warm: List[Callable[[], Any]] = field(default_factory=list)
