"""Per-browser-session state (held in a `gr.State`: users never see each other's models).

Each session has its own chosen backbone, its own generator (trained in the Train tab
or loaded from a checkpoint) and its own scratch folder for uploads and checkpoints.
Backbones themselves are shared read-only across sessions (see `demo.backbones`).
"""
from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

# All files the app writes live under one folder in the system temp dir, which Gradio
# may serve (only the files the app returns are copied to Gradio's cache and served).
APP_TMP = Path(tempfile.gettempdir()) / "pini-app"


@dataclass
class SessionState:
    backbone_spec: Optional[str] = None  # e.g. "embedded", "ViT-B-16:openai"
    method: Any = None  # a PiNIModel for `method_backbone`, or None
    method_label: str = ""  # where the generator came from, shown in the UI
    method_backbone: Optional[str] = None
    history: List[Dict[str, Any]] = field(default_factory=list)  # last training run's epochs
    eval_data: List[Any] = field(default_factory=list)  # held-out images of the generator's task
    _id: str = ""
    _stop: Any = None  # threading.Event, created lazily (an Event cannot be deep-copied)

    @property
    def workdir(self) -> Path:
        if not self._id:
            self._id = uuid.uuid4().hex[:16]
        d = APP_TMP / self._id
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def stop_event(self) -> threading.Event:
        if self._stop is None:
            self._stop = threading.Event()
        return self._stop

    def generator_for(self, backbone_spec: str):
        """The session's generator if it belongs to the backbone in use, else None."""
        if self.method is not None and self.method_backbone == backbone_spec:
            return self.method
        from demo import backbones
        from demo.shipped import shipped_generator

        if backbones.is_embedded(backbone_spec):  # fall back to the generator shipped for it
            shipped = shipped_generator(backbones.CACHE.get_loaded(backbone_spec))
            if shipped is not None:
                model, label, test = shipped
                self.method_label = self.method_label or label
                if not self.eval_data:
                    self.eval_data = test
                return model
        return None

    def set_generator(self, method, label: str, backbone_spec: str) -> None:
        self.method, self.method_label, self.method_backbone = method, label, backbone_spec

    def cleanup(self) -> None:
        if self._id:
            shutil.rmtree(APP_TMP / self._id, ignore_errors=True)


def new_scratch_dir(session: SessionState, prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=session.workdir))


def cleanup_session(session: Optional[SessionState]) -> None:
    if isinstance(session, SessionState):
        session.cleanup()
