"""The model picker's choices and a process-wide cache of loaded (frozen) backbones.

A backbone is read-only once loaded, so sessions share it; what differs per session
(the generator) lives in `demo.session.SessionState`.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

ENV_MODEL = "PINI_MODEL"
EMBEDDED = "embedded"

# (label shown, spec). A spec is "embedded", "NAME:TAG", "NAME:/path/weights.safetensors",
# "local-dir:/path" or "hf-hub:org/name".
CHOICES: List[Tuple[str, str]] = [
    ("Embedded toy CLIP (offline, instant)", EMBEDDED),
    ("ViT-B-16 · OpenAI (the paper's backbone, ~600 MB download)", "ViT-B-16:openai"),
    ("ViT-B-32 · OpenAI (~600 MB download)", "ViT-B-32:openai"),
    ("RN50 · OpenAI (~400 MB download)", "RN50:openai"),
    ("ViT-B-32 · LAION-2B (~600 MB download)", "ViT-B-32:laion2b_s34b_b79k"),
]
MAX_CACHED = 2  # backbones kept in memory at once


def default_spec(cli_value: Optional[str] = None) -> str:
    """--model wins, then $PINI_MODEL, then the embedded model."""
    return (cli_value or os.environ.get(ENV_MODEL) or EMBEDDED).strip()


def parse_spec(spec: str) -> Tuple[str, Optional[str]]:
    """spec -> (name, pretrained) for `pini_core.backbone.load_backbone`."""
    spec = (spec or "").strip()
    if not spec:
        raise ValueError("No model given. Pick one from the list, or type NAME:TAG (e.g. ViT-B-16:openai).")
    if spec == EMBEDDED or spec.startswith(("local-dir:", "hf-hub:")):
        return spec, None
    if ":" in spec:
        name, pretrained = spec.split(":", 1)
        return name.strip(), (pretrained.strip() or None)
    return spec, None


def is_embedded(spec: Optional[str]) -> bool:
    return (spec or "").strip() == EMBEDDED


def label_for(spec: str) -> str:
    for label, s in CHOICES:
        if s == spec:
            return label
    return spec


def choices_with(spec: str) -> List[Tuple[str, str]]:
    """The dropdown's choices, including a custom spec given by flag or env."""
    out = list(CHOICES)
    if spec not in {s for _, s in out}:
        out.append((spec, spec))
    return out


ENV_THREADS = "PINI_APP_THREADS"


def app_threads() -> int:
    """Torch threads per request: $PINI_APP_THREADS, else half the cores (1..4).

    The server runs several requests (and a training) at once; one intra-op thread per
    request on a small machine avoids oversubscription, which on a busy 2-core machine
    made a 48-px forward pass ~50x slower (1.5 s instead of 0.03 s)."""
    env = os.environ.get(ENV_THREADS)
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"${ENV_THREADS} must be a whole number of threads, got {env!r}") from None
    return max(1, min(4, (os.cpu_count() or 1) // 2))


_TORCH_CONFIGURED = False


def configure_torch() -> None:
    global _TORCH_CONFIGURED
    if not _TORCH_CONFIGURED:
        import torch

        torch.set_num_threads(app_threads())
        _TORCH_CONFIGURED = True


class _Cache:
    def __init__(self) -> None:
        self._items: "OrderedDict[str, object]" = OrderedDict()
        self._errors: Dict[str, str] = {}
        self._lock = threading.Lock()
        self._loading: Dict[str, threading.Lock] = {}

    def get_loaded(self, spec: str):
        with self._lock:
            bb = self._items.get(spec)
            if bb is not None:
                self._items.move_to_end(spec)
            return bb

    def last_error(self, spec: str) -> Optional[str]:
        return self._errors.get(spec)

    def load(self, spec: str):
        """Load (or return the cached) backbone; raises BackboneError/ValueError with a clear message."""
        bb = self.get_loaded(spec)
        if bb is not None:
            return bb
        with self._lock:
            lock = self._loading.setdefault(spec, threading.Lock())
        with lock:  # one load per spec at a time; others wait for it
            bb = self.get_loaded(spec)
            if bb is not None:
                return bb
            from pini_core.backbone import load_backbone

            configure_torch()
            name, pretrained = parse_spec(spec)
            try:
                bb = load_backbone(name, pretrained)
            except Exception as e:
                self._errors[spec] = str(e)
                raise
            self._errors.pop(spec, None)
            with self._lock:
                self._items[spec] = bb
                while len(self._items) > MAX_CACHED:
                    self._items.popitem(last=False)
            return bb


CACHE = _Cache()


def describe(bb, spec: str) -> str:
    ident = getattr(bb, "identity", {}) or {}
    return (f"**Loaded:** {label_for(spec)} — embedding size {bb.embed_dim}, image size {bb.image_size}px, "
            f"device {bb.device}, weights fingerprint `{ident.get('fingerprint', '?')}`.")


def failure_message(spec: str, err: BaseException) -> str:
    what = label_for(spec)
    return (f"**Could not load {what}.** {err}\n\n"
            "In this box you can also type `NAME:/path/to/weights.safetensors` or `local-dir:/path/to/open_clip_dir` "
            "for weights you have on disk. The rest of the app keeps working with the model that was loaded before "
            f"(or pick *{label_for(EMBEDDED)}*, which needs no download).")


def warm_up(cli_value: Optional[str] = None) -> threading.Thread:
    """Load the default backbone in a background thread (errors are kept for the page)."""

    def work():
        try:
            CACHE.load(default_spec(cli_value))
        except Exception:  # noqa: BLE001 - kept in CACHE.last_error; the page shows it on load
            pass
        try:  # matplotlib's first figure (imports, font cache) costs ~1 s: pay it now
            from demo import plots

            plots.heatmap([[0.0, 1.0], [1.0, 0.0]], "warm-up")
        except Exception:  # noqa: BLE001 - only a warm-up
            pass

    t = threading.Thread(target=work, daemon=True, name="pini-app-warm-up")
    t.start()
    return t
