"""The model picker's choices and a process-wide cache of loaded (frozen) backbones.

A backbone is read-only once loaded, so sessions share it; what differs per session
(the generator) lives in `demo.session.SessionState`.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from pini_core.errors import ConfigError, ModelLoadError, PiniError, UnsafePathError

ENV_MODEL = "PINI_MODEL"
EMBEDDED = "embedded"
EMBEDDED_NAMES_ALIASES = ("embedded", "pini-toyclip")  # pini_core.backbone.EMBEDDED_NAMES

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
    """spec -> (name, pretrained) for `pini_core.backbone.load_backbone`, read by the one
    spec parser `pini_core.backbone.parse_backbone_spec` (no LABEL= part in the app's box)."""
    from pini_core.backbone import parse_backbone_spec

    if not (spec or "").strip():
        raise ConfigError("No model given. Pick one from the list, or type NAME:TAG (e.g. ViT-B-16:openai).")
    parsed = parse_backbone_spec(spec, allow_label=False)
    return parsed.name, parsed.pretrained


# ----- what a visitor may load (the operator decides; the model box is typed by strangers) --------
ENV_ALLOW_DIR = "PINI_APP_ALLOW_DIR"  # folders (os.pathsep-separated) whose weights visitors may load
ENV_ALLOW_MODELS = "PINI_APP_ALLOW_MODELS"  # architectures allowed whatever their size (comma list, or *)
ENV_MAX_PARAMS_M = "PINI_APP_MAX_PARAMS_M"  # largest architecture a visitor may build, millions of params
ENV_ALLOW_HUB = "PINI_APP_ALLOW_HUB"  # "1": visitors may load hf-hub:ORG/NAME models
DEFAULT_MAX_PARAMS_M = 200.0  # ViT-B/16 (150 M) and RN50x4 (178 M) fit; ViT-L/14 (428 M) does not
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".npz", ".json")


def allowed_dirs() -> List[str]:
    """The operator's folders for local weights ($PINI_APP_ALLOW_DIR), resolved; [] = none."""
    raw = os.environ.get(ENV_ALLOW_DIR, "")
    return [os.path.realpath(os.path.expanduser(d)) for d in raw.split(os.pathsep) if d.strip()]


def allowed_models() -> List[str]:
    """Architectures the operator allows at any size ($PINI_APP_ALLOW_MODELS; '*' = all)."""
    return [m.strip() for m in os.environ.get(ENV_ALLOW_MODELS, "").split(",") if m.strip()]


def max_params() -> float:
    """Largest architecture (parameters) a visitor may make the server build."""
    from demo.session import _env_number

    return _env_number(ENV_MAX_PARAMS_M, DEFAULT_MAX_PARAMS_M, "millions of parameters") * 1e6


def hub_allowed() -> bool:
    return os.environ.get(ENV_ALLOW_HUB, "").strip().lower() in ("1", "true", "yes")


def estimate_params(model_cfg: Dict) -> Optional[int]:
    """Parameters of an open_clip model config (`open_clip.get_model_config(name)`), without
    building it: closed-form for CLIP's own ViT / ModifiedResNet towers (within ~3 %), a count
    on PyTorch's meta device (no memory) for timm towers; None when the size cannot be told
    without downloading (Hugging Face text towers)."""
    e = int(model_cfg.get("embed_dim", 512))
    v, t = model_cfg.get("vision_cfg", {}) or {}, model_cfg.get("text_cfg", {}) or {}
    if t.get("hf_model_name"):
        return None
    if v.get("timm_model_name"):
        return _meta_count(model_cfg)
    w, layers = int(v.get("width", 768)), v.get("layers", 12)
    if isinstance(layers, (list, tuple)):  # ModifiedResNet: bottleneck stages + attention pool
        vis = sum(int(n) * 17 * (w * 2 ** i) ** 2 for i, n in enumerate(layers))
        pool = w * 32
        vis += 3 * pool * pool + pool * e
    else:  # ViT: (4 + 2 * mlp_ratio) w^2 per block, patch + position embeddings, projection
        p, img = int(v.get("patch_size", 16)), v.get("image_size", 224)
        img = int(img[0] if isinstance(img, (list, tuple)) else img)
        mlp = float(v.get("mlp_ratio", 4.0))
        vis = int(layers) * (4 + 2 * mlp) * w * w + 3 * p * p * w + ((img // p) ** 2 + 1) * w + w * e
    tw, tl, tm = int(t.get("width", 512)), int(t.get("layers", 12)), float(t.get("mlp_ratio", 4.0))
    txt = tl * (4 + 2 * tm) * tw * tw + (int(t.get("vocab_size", 49408)) + int(t.get("context_length", 77))) * tw
    return int(vis + txt + tw * e)


def _meta_count(model_cfg: Dict) -> Optional[int]:
    try:
        import torch
        from open_clip.factory import CLIP, CustomTextCLIP

        cls = CustomTextCLIP if model_cfg.get("custom_text") else CLIP
        cfg = {k: v for k, v in model_cfg.items() if k in ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu",
                                                             "init_logit_scale", "init_logit_bias")}
        with torch.device("meta"):
            model = cls(**cfg)
        return sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001 - an unknown structure: its size is unknown
        return None


def _refuse_path() -> None:
    dirs = allowed_dirs()
    if not dirs:
        raise UnsafePathError(
            "This app does not open files or folders on the server. Pick a model from the list, or type "
            "NAME:TAG with a published tag (e.g. ViT-B-16:openai). (Whoever runs the app can allow a folder "
            f"of weights with `python app.py --allow-dir DIR` or ${ENV_ALLOW_DIR}.)")
    raise UnsafePathError("This app only opens weights inside the folder(s) its operator allowed: "
                          f"{', '.join(dirs)}. Type NAME:/full/path/inside/that/folder or local-dir:/full/path.")


def _check_path(path: str) -> str:
    """The resolved path when it lies inside an allowed folder (links resolved, so none leads
    out), else UnsafePathError. The answer does not depend on whether the path exists."""
    dirs = allowed_dirs()
    if not dirs or not os.path.isabs(path):
        _refuse_path()
    real = os.path.realpath(path)
    if not any(real == d or real.startswith(d.rstrip(os.sep) + os.sep) for d in dirs):
        _refuse_path()
    return real


def _looks_like_path(s: str) -> bool:
    return (os.sep in s or "/" in s or s.startswith(("~", ".")) or s.lower().endswith(_WEIGHT_SUFFIXES))


def _check_size(name: str, model_cfg: Optional[Dict]) -> None:
    allow = allowed_models()
    if "*" in allow or name in allow:
        return
    n = estimate_params(model_cfg) if model_cfg else None
    limit = max_params()
    hint = (f"Whoever runs the app can allow it with `python app.py --allow-model {name}` "
            f"(${ENV_ALLOW_MODELS}) or raise the limit with --max-params-m (${ENV_MAX_PARAMS_M}).")
    if n is None:
        raise ModelLoadError(f"This app cannot tell the size of {name} before building it, so it does not build "
                             f"it. {hint}")
    if n > limit:
        raise ModelLoadError(f"{name} has about {n / 1e6:.0f} M parameters; this app builds models of up to "
                             f"{limit / 1e6:.0f} M for its visitors. {hint}")


def check_visitor_spec(spec: str, operator_spec: Optional[str] = None) -> str:
    """Refuse, before anything is opened or built, a model spec a visitor typed that would make
    the server read a path of the visitor's choosing or build a large architecture.

    Always allowed: the list's choices and the operator's own --model / $PINI_MODEL. Local paths
    (`NAME:/path`, `local-dir:/path`) only inside $PINI_APP_ALLOW_DIR (resolved; no link leads
    out; the same message whether or not the file exists), `hf-hub:` only with
    $PINI_APP_ALLOW_HUB, unknown pretrained tags never (they could name a relative file), and
    architectures only up to $PINI_APP_MAX_PARAMS_M million parameters unless listed in
    $PINI_APP_ALLOW_MODELS. Returns the stripped spec; raises UnsafePathError / ModelLoadError."""
    spec = (spec or "").strip()
    name, pretrained = parse_spec(spec)
    if spec == EMBEDDED or spec in {s for _, s in CHOICES} or spec == (operator_spec or default_spec()).strip():
        return spec
    if spec.startswith("hf-hub:"):
        if not hub_allowed():
            raise UnsafePathError("This app does not download models from the Hugging Face hub for its visitors. "
                                  "Pick a model from the list (whoever runs the app can allow hub models with "
                                  f"`python app.py --allow-hub` or ${ENV_ALLOW_HUB}=1).")
        return spec
    if spec.startswith("local-dir:"):
        real = _check_path(spec[len("local-dir:"):])
        try:
            with open(os.path.join(real, "open_clip_config.json")) as f:
                cfg = json.load(f).get("model_cfg")
        except (OSError, ValueError, AttributeError):
            return spec  # inside the allowed folder: the loader explains what is missing
        _check_size(os.path.basename(real), cfg if isinstance(cfg, dict) else None)
        return spec
    import open_clip

    if name in EMBEDDED_NAMES_ALIASES:
        return spec
    if pretrained and pretrained not in open_clip.list_pretrained_tags_by_model(name):
        if _looks_like_path(pretrained):
            _check_path(pretrained)
        elif name in open_clip.list_models():
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise ModelLoadError(f"Unknown pretrained tag {pretrained!r} for {name}. Known tags: "
                                 f"{', '.join(tags) or '(none)'}.")
    if name not in open_clip.list_models():
        return spec  # the loader explains unknown names (with suggestions) without opening anything
    _check_size(name, open_clip.get_model_config(name))
    return spec


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
            raise ConfigError(f"${ENV_THREADS} must be a whole number of threads, got {env!r}") from None
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
                if not isinstance(e, PiniError):  # a bug, not the user's input: the log has the details
                    logging.getLogger("pini.app").exception("loading %s failed", spec)
                self._errors[spec] = str(e) if isinstance(e, PiniError) else GENERIC_LOAD_FAILURE
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


GENERIC_LOAD_FAILURE = "Something went wrong on the server while loading it; the details are in the server log."


def failure_message(spec: str, err: BaseException) -> str:
    """The model panel's text for a failed load: a PiniError's message (without server paths),
    a generic line for anything else (a bug; logged)."""
    from demo.util import scrub_paths

    what = label_for(spec)
    reason = str(err) if isinstance(err, PiniError) else GENERIC_LOAD_FAILURE
    hint = ""
    if allowed_dirs():
        hint = ("In this box you can also type `NAME:/path/to/weights.safetensors` or "
                "`local-dir:/path/to/open_clip_dir` "
                f"for weights inside {', '.join(allowed_dirs())}. ")
    return (f"**Could not load {scrub_paths(what)}.** {scrub_paths(reason)}\n\n{hint}"
            "The rest of the app keeps working with the model that was loaded before "
            f"(or pick *{label_for(EMBEDDED)}*, which needs no download).")


def box_label() -> str:
    """The model box's label: what a visitor may type there."""
    if allowed_dirs():
        return "CLIP model (or type NAME:TAG, NAME:/path/weights.safetensors, local-dir:/path)"
    return "CLIP model (or type NAME:TAG, e.g. ViT-B-16:openai)"


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
