"""Frozen CLIP backbones through open_clip, with what the noise generators need.

`load_backbone` accepts, like open_clip's own factory:
  - an open_clip model name + pretrained tag      ("ViT-B-16", pretrained="openai")
  - an open_clip model name + a local weights file ("ViT-B-16", pretrained="/w/vitb16.safetensors")
  - a local open_clip model directory              ("local-dir:/models/my_clip")
  - the embedded toy CLIP the project ships        ("embedded")

Weights are never silently replaced by a random init: a missing download fails within
`timeout` seconds with a message naming the cache directory and the alternatives.
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from .errors import ModelLoadError

EMBEDDED_NAMES = ("embedded", "pini-toyclip")
REPO_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_DIR = REPO_ROOT / "checkpoints" / "toyclip"
PRECISIONS = ("fp32", "fp16", "bf16", "amp")
# OpenAI CLIP's pixel normalisation (open_clip's OPENAI_DATASET_MEAN / _STD): the one copy in
# pini_core; a backbone's own preprocess config overrides it.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class BackboneError(ModelLoadError, RuntimeError):
    """A backbone could not be loaded; the message says what to do instead."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _alternatives() -> str:
    return ("Alternatives: pass a local weights file (--pretrained /path/to/weights.safetensors or .bin/.pt "
            "from open_clip/OpenAI), a local open_clip model directory (--model local-dir:/path/with/"
            "open_clip_config.json), or the embedded offline model (--model embedded).")


def _cache_dirs(cache_dir: Optional[str]) -> str:
    if cache_dir:
        return cache_dir
    from huggingface_hub import constants

    return f"{constants.HF_HUB_CACHE} (Hugging Face hub cache) and {os.path.expanduser('~/.cache/clip')} (URL downloads)"


def _check_name_and_tag(name: str, pretrained: Optional[str]) -> None:
    import open_clip

    models = open_clip.list_models()
    if name not in models:
        close = difflib.get_close_matches(name, models, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise BackboneError(
            f"Unknown open_clip model name {name!r}.{hint} `python -m pini_core models` lists them all; "
            "'embedded' is the offline toy CLIP; 'local-dir:/path' loads a local open_clip directory.")
    if pretrained and not _looks_like_path(pretrained):
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise BackboneError(
                f"Unknown pretrained tag {pretrained!r} for {name}. Known tags: {', '.join(tags) or '(none)'}. "
                "Or pass a local weights file path as the pretrained argument.")


def _looks_like_path(s: str) -> bool:
    return os.sep in s or s.endswith((".safetensors", ".bin", ".pt", ".pth")) or os.path.exists(s)


def _short(text: str, limit: int = 300) -> str:
    """`text` on one line, at most `limit` characters, cut at a word boundary (never mid-word)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    head = text[:limit + 1]
    cut = head.rsplit(" ", 1)[0].rstrip(" ,;:") if " " in head else ""
    return (cut or text[:limit]) + " ..."


def _is_torchscript_archive(path: str) -> bool:
    """True for a TorchScript archive (torch.jit.save; OpenAI's CLIP .pt files): a zip
    holding ``constants.pkl`` and compiled ``code/``, not a plain torch.save state dict."""
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in names)


def _torchscript_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The tensors of a TorchScript archive, read as open_clip reads OpenAI's .pt files
    (``torch.jit.load(..., map_location="cpu").state_dict()``, minus the non-tensor
    entries input_resolution / context_length / vocab_size). TorchScript's loader rebuilds
    only TorchScript types; no Python object of the file is unpickled."""
    try:
        archive = torch.jit.load(path, map_location="cpu")
    except (RuntimeError, ValueError, OSError) as e:
        raise BackboneError(f"Could not read the TorchScript archive {path}: {_short(e, 200)}. The file is "
                            "damaged or was written by a newer PyTorch.") from e
    state = {k: v.detach().clone() for k, v in archive.state_dict().items()}
    for key in ("input_resolution", "context_length", "vocab_size"):
        state.pop(key, None)
    return state


def _load_error_text(e: BaseException) -> str:
    """What went wrong loading a weights file, in words a user can act on. A pickle that
    holds more than tensors is refused as such (loading it would run code from the file):
    never suggest weights_only=False."""
    text = str(e)
    low = text.lower()
    if "weights_only" in low or "weights only" in low or type(e).__name__ == "UnpicklingError":
        return ("the file is a pickle holding Python objects besides tensors, which pini_core does not load "
                "(unpickling them could run code from the file). Use a .safetensors file, a .pt/.bin that holds "
                "only a state dict of tensors, or an OpenAI TorchScript .pt")
    return _short(text if text.strip() else type(e).__name__, 300)


def _from_weights_file(name: str, path: str, create) -> tuple:
    """(model, train_preprocess, preprocess) of architecture `name` with the weights in
    the local file `path`. `create(**kwargs)` is open_clip's factory for `name`.

    .safetensors and tensor-only torch files go through open_clip (``weights_only=True``);
    a TorchScript archive (OpenAI's original CLIP .pt) is read with
    :func:`_torchscript_state_dict` into a QuickGELU build of `name` (OpenAI's CLIPs use
    QuickGELU, as open_clip's ``openai`` tags do). Raises BackboneError (one line, never cut
    mid-word) when the file is missing, a folder, unreadable, or belongs to another model."""
    if not os.path.exists(path):
        raise BackboneError(f"Weights file not found: {path}")
    if os.path.isdir(path):
        raise BackboneError(f"{path} is a folder, not a weights file; for an open_clip model directory use "
                            f"--model local-dir:{path}")
    hint = "Check that the file belongs to this model name (open_clip naming)."
    if _is_torchscript_archive(path):
        state = _torchscript_state_dict(path)
        model, train_preprocess, preprocess = create(pretrained=None, force_quick_gelu=True)
        expected = model.state_dict()
        buffers = {k for k, _ in model.named_buffers()}
        state = {k: v for k, v in state.items() if k in expected or k not in buffers}  # non-persistent buffers
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        wrong = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in expected.items()
                 if k in state and tuple(state[k].shape) != tuple(v.shape)]
        if missing or unexpected or wrong:
            detail = "; ".join(x for x in (f"missing {missing[:3]}" if missing else "",
                                           f"unexpected {unexpected[:3]}" if unexpected else "",
                                           f"shape {wrong[:2]} (file vs {name})" if wrong else "") if x)
            raise BackboneError(f"The TorchScript archive {path} does not hold a {name} model ({_short(detail, 240)}). "
                                + hint)
        model.load_state_dict(state, strict=True)
        return model, train_preprocess, preprocess
    try:
        return create(pretrained=path)
    except Exception as e:  # wrong architecture for the file, truncated file, pickled objects, ...
        detail = _load_error_text(e)
        sep = " " if detail.endswith("...") else ". "
        raise BackboneError(f"Could not load weights file {path} into {name}: {detail}{sep}{hint}") from e


def _create_with_timeout(fn, timeout: float, what: str, cache_dir: Optional[str]):
    """Run open_clip's factory in a worker thread so an unreachable hub cannot hang us."""
    box: Dict[str, Any] = {}

    def work():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    # Keep each network attempt short; the thread timeout is the hard limit.
    _limit_hub_timeouts()
    t = threading.Thread(target=work, daemon=True, name="pini-load-backbone")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise BackboneError(
            f"Timed out after {timeout:.0f} s fetching pretrained weights for {what}: they are not in the "
            f"cache ({_cache_dirs(cache_dir)}) and the download did not answer (offline?). " + _alternatives())
    if "error" in box:
        e = box["error"]
        if isinstance(e, BackboneError):
            raise e
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, (OSError, RuntimeError, ValueError)) or "hub" in type(e).__module__:
            raise BackboneError(
                f"Could not load pretrained weights for {what}: {msg}. Weights are not in the cache "
                f"({_cache_dirs(cache_dir)}) or could not be read. " + _alternatives()) from e
        raise e
    return box["value"]


def _cached_weights_file(name: str, tag: str, cache_dir: Optional[str]) -> Optional[str]:
    """Path of already-downloaded weights for (name, tag), if any."""
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    cfg = open_clip.get_pretrained_cfg(name, tag) or {}
    repo = (cfg.get("hf_hub") or "").rstrip("/")
    if repo:
        for fname in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            hit = try_to_load_from_cache(repo, fname, cache_dir=cache_dir)
            if isinstance(hit, str) and os.path.exists(hit):
                return hit
    url = cfg.get("url") or ""
    if url:
        local = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if local.exists():
            return str(local)
    return None


HUB_PROBE_TIMEOUT = 5.0  # seconds the hub gets to answer one HEAD request before we call it offline
HUB_REQUEST_TIMEOUT = 8  # huggingface_hub's per-request timeouts while downloading (unless set by the user)


def _limit_hub_timeouts(seconds: int = HUB_REQUEST_TIMEOUT) -> None:
    """Cap huggingface_hub's per-request timeouts. They are module constants read when a
    request is made (HF_HUB_ETAG_TIMEOUT / HF_HUB_DOWNLOAD_TIMEOUT are read from the
    environment only at import, so setting the variables later has no effect); values the
    user set in the environment are kept."""
    from huggingface_hub import constants

    if "HF_HUB_ETAG_TIMEOUT" not in os.environ:
        constants.HF_HUB_ETAG_TIMEOUT = min(int(constants.HF_HUB_ETAG_TIMEOUT), seconds)
    if "HF_HUB_DOWNLOAD_TIMEOUT" not in os.environ:
        constants.HF_HUB_DOWNLOAD_TIMEOUT = min(int(constants.HF_HUB_DOWNLOAD_TIMEOUT), seconds)


def _probe_hub(what: str, cache_dir: Optional[str], timeout: float = HUB_PROBE_TIMEOUT) -> None:
    """Fail fast when the hub does not answer: ONE HTTP HEAD request to the hub endpoint
    (``HF_ENDPOINT``; proxies as huggingface_hub uses them), no retries. A network that
    refuses, or accepts the connection and never answers, fails within `timeout` (+1) s
    with a BackboneError naming the cache and the offline alternatives."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise BackboneError(f"Pretrained weights for {what} are not in the cache ({_cache_dirs(cache_dir)}) and "
                            "HF_HUB_OFFLINE is set. " + _alternatives())
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    endpoint = constants.ENDPOINT
    box: Dict[str, Any] = {}

    def probe():
        try:
            get_session().head(endpoint, timeout=timeout, follow_redirects=False)
            box["ok"] = True
        except Exception as e:  # noqa: BLE001 - any failure means: no usable answer
            box["error"] = e

    t = threading.Thread(target=probe, daemon=True, name="pini-probe-hub")
    t.start()
    t.join(timeout + 1)
    if not box.get("ok"):
        err = box.get("error")
        if err is None or "timeout" in type(err).__name__.lower() or "timed out" in str(err).lower():
            reason = f"no answer within {timeout:g} s"
        else:
            reason = _short(str(err) or type(err).__name__, 160)
        raise BackboneError(f"Pretrained weights for {what} are not in the cache ({_cache_dirs(cache_dir)}) and "
                            f"the hub at {endpoint} cannot be reached ({reason}): offline? " + _alternatives())


@dataclass
class Backbone:
    """A frozen open_clip CLIP plus the pieces PiNI needs."""

    model: nn.Module
    tokenizer: Any
    preprocess: Any
    train_preprocess: Any
    device: torch.device
    precision: str
    identity: Dict[str, Any]
    mean: Sequence[float] = CLIP_MEAN
    std: Sequence[float] = CLIP_STD

    # ----- sizes -------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        proj = self.model.text_projection
        return proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1]

    @property
    def token_dim(self) -> int:
        return self.model.token_embedding.weight.shape[1]

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def context_length(self) -> int:
        return int(self.model.positional_embedding.shape[0])

    @property
    def token_embedding(self) -> torch.Tensor:
        """[V, W] vocabulary embedding matrix (frozen)."""
        return self.model.token_embedding.weight

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    def autocast(self):
        if self.precision == "amp" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    # ----- image side ----------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.model.visual.conv1.weight.dtype if hasattr(self.model.visual, "conv1") else next(
            self.model.visual.parameters()).dtype

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] normalised pixels -> [B, D] un-normalised image features (fp32)."""
        with self.autocast():
            return self.model.encode_image(pixels.to(self.device, self.dtype)).float()

    def encode_image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, N, W] spatial tokens: ViT patch tokens after the last block,
        or the ResNet's last feature map flattened (raster order)."""
        visual = self.model.visual
        pixels = pixels.to(self.device, self.dtype)
        with self.autocast():
            if hasattr(visual, "output_tokens") and hasattr(visual, "conv1") and hasattr(visual, "transformer"):
                old = visual.output_tokens
                visual.output_tokens = True
                try:
                    _, tokens = visual(pixels)
                finally:
                    visual.output_tokens = old
                return tokens.float()
            if hasattr(visual, "layer4"):  # open_clip ModifiedResNet
                x = visual.stem(pixels)
                x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))
                return x.flatten(2).transpose(1, 2).float()
        raise BackboneError(f"spatial tokens are not supported for visual tower {type(visual).__name__}")

    # ----- text side -----------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        with self.autocast():
            return self.model.encode_text(self.tokenize(texts)).float()

    def embed_tokens(self, token_ids: torch.Tensor) -> torch.Tensor:
        """[C, L] token ids -> [C, L, W] word embeddings (what CoOp-style prompts edit)."""
        return self.model.token_embedding(token_ids.to(self.device))

    def encode_text_embeddings(self, embeds: torch.Tensor, token_ids: torch.Tensor,
                               truncate: bool = True) -> torch.Tensor:
        """CoOp-style text encoder: run the frozen text tower from word embeddings.

        `token_ids` [C, L] are the ids the embeddings stand for; they only locate the pooled
        (EOT) position, exactly as open_clip's `encode_text` does. With embeds =
        embed_tokens(token_ids) this reproduces `encode_text(token_ids)` bit for bit.
        """
        from open_clip.transformer import text_global_pool

        m = self.model
        cast_dtype = m.transformer.get_cast_dtype()
        token_ids = token_ids.to(embeds.device)
        pos, mask = m.positional_embedding, m.attn_mask
        if truncate and mask is not None and m.text_pool_type in ("argmax", "eos"):
            # With a causal mask, tokens after the pooled (EOT) position cannot change it:
            # run only up to the longest prompt's EOT. Same result, a fraction of the cost.
            if m.text_pool_type == "argmax":
                last = int(token_ids.argmax(dim=-1).max())
            else:
                last = int((token_ids == m.text_eos_id).int().argmax(dim=-1).max())
            n = last + 1
            embeds, token_ids, pos, mask = embeds[:, :n], token_ids[:, :n], pos[:n], mask[:n, :n]
        with self.autocast():
            x = embeds.to(cast_dtype) + pos.to(cast_dtype)
            x = m.transformer(x, attn_mask=mask)
            x = m.ln_final(x)
            x = text_global_pool(x, token_ids.to(x.device), m.text_pool_type,
                                 eos_token_id=getattr(m, "text_eos_id", None))
            if m.text_projection is not None:
                x = m.text_projection(x) if isinstance(m.text_projection, nn.Linear) else x @ m.text_projection
        return x.float()

    # ----- vocabulary ------------------------------------------------------------------
    def decode_token(self, token_id: int) -> str:
        dec = getattr(self.tokenizer, "decoder", None)
        if dec is not None:  # open_clip SimpleTokenizer: byte-level BPE pieces, words end with </w>
            piece = dec.get(int(token_id), f"<{token_id}>").replace("</w>", "")
            byte_decoder = getattr(self.tokenizer, "byte_decoder", None)
            if byte_decoder and all(c in byte_decoder for c in piece):
                piece = bytearray(byte_decoder[c] for c in piece).decode("utf-8", errors="replace")
            return piece
        if hasattr(self.tokenizer, "tokenizer"):  # HFTokenizer
            return self.tokenizer.tokenizer.convert_ids_to_tokens(int(token_id))
        return str(token_id)

    def special_token_ids(self) -> List[int]:
        enc = getattr(self.tokenizer, "encoder", {})
        ids = [enc[t] for t in ("<start_of_text>", "<end_of_text>") if t in enc]
        return ids + [0]

    def text_token_ids(self, text: str) -> List[int]:
        """BPE ids of `text` without SOS/EOS."""
        if hasattr(self.tokenizer, "encode"):
            return list(self.tokenizer.encode(text))
        ids = self.tokenizer([text])[0].tolist()
        return [i for i in ids if i not in self.special_token_ids()]


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _fingerprint(model: nn.Module) -> str:
    """A content hash of the weights (every byte): detects 'same name, different weights'."""
    h = hashlib.sha1()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return "fp2:" + h.hexdigest()[:16]


def register_model_config(name: str, cfg: Dict[str, Any]) -> None:
    """Register an open_clip model config under `name` (open_clip's add_model_config reads files)."""
    import json
    import tempfile

    import open_clip

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"{name}.json"
        path.write_text(json.dumps(cfg))
        open_clip.add_model_config(path)


def embedded_dir() -> Path:
    return Path(os.environ.get("PINI_EMBEDDED_DIR", EMBEDDED_DIR))


def load_backbone(name: str = "embedded", pretrained: Optional[str] = None, *, device: str = "auto",
                  precision: str = "fp32", cache_dir: Optional[str] = None, timeout: float = 20.0,
                  model_cfg: Optional[Dict[str, Any]] = None) -> Backbone:
    """Load a frozen CLIP (see module docstring).

    model_cfg: an open_clip model config dict to build `name` from (tiny test models,
    new architectures); registered with open_clip under `name` first. Then `pretrained`
    may be None for a random init, which is only allowed with an explicit model_cfg.
    pretrained may be a local file: .safetensors, a tensor-only .pt/.bin, or a TorchScript
    archive such as OpenAI's original CLIP .pt (see :func:`_from_weights_file`).
    timeout: seconds a download may take. Before it, ONE request checks that the hub
    answers (at most min(HUB_PROBE_TIMEOUT = 5 s, timeout)), so an offline machine, or a
    network that accepts connections and never answers, fails about 6 s after it starts
    fetching weights that are not cached; a download that starts and stalls fails after
    `timeout` s more (default 20: under 30 s in all).
    Raises :class:`BackboneError` (a :class:`pini_core.errors.ModelLoadError`) with one line
    saying what to do for every failure the user can fix.
    """
    import open_clip

    if precision not in PRECISIONS:
        raise BackboneError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    dev = resolve_device(device)
    if precision == "fp16" and dev.type == "cpu":
        raise BackboneError("fp16 weights are not supported on CPU; use fp32 or bf16 there (or amp on a GPU).")
    oc_precision = {"fp32": "fp32", "amp": "fp32", "fp16": "fp16", "bf16": "bf16"}[precision]

    identity: Dict[str, Any] = {"name": name, "pretrained": pretrained}
    if name in EMBEDDED_NAMES:
        d = embedded_dir()
        if not (d / "open_clip_config.json").exists():
            raise BackboneError(
                f"The embedded model is missing: expected {d}/open_clip_config.json and weights. "
                "Recreate it with `python -m pini_core pretrain` (see README), or use a real CLIP "
                "(--model ViT-B-16 --pretrained openai).")
        name, pretrained = f"local-dir:{d}", None
        identity = {"name": "embedded", "pretrained": None}
    if model_cfg is not None:
        register_model_config(name, model_cfg)

    def build():
        return open_clip.create_model_and_transforms(
            name, pretrained=pretrained, precision=oc_precision, device=dev, cache_dir=cache_dir)

    if name.startswith("local-dir:"):
        path = Path(name[len("local-dir:"):])
        if not (path / "open_clip_config.json").exists():
            raise BackboneError(f"{path} is not an open_clip model directory: open_clip_config.json is missing.")
        try:
            model, train_preprocess, preprocess = build()
        except Exception as e:  # a damaged config or weights file in the folder
            raise BackboneError(f"Could not load the open_clip model directory {path}: {_load_error_text(e)}") from e
    elif name.startswith("hf-hub:"):
        model, train_preprocess, preprocess = _create_with_timeout(build, timeout, name, cache_dir)
    else:
        if model_cfg is None:
            _check_name_and_tag(name, pretrained)
            if not pretrained:
                raise BackboneError(
                    f"No pretrained weights given for {name}: a random init is never used silently. "
                    "Pass --pretrained TAG (e.g. openai) or a local weights file. " + _alternatives())
        if pretrained and _looks_like_path(pretrained):
            model, train_preprocess, preprocess = _from_weights_file(
                name, pretrained, lambda **kw: open_clip.create_model_and_transforms(
                    name, precision=oc_precision, device=dev, cache_dir=cache_dir, **kw))
        elif pretrained:
            cached = _cached_weights_file(name, pretrained, cache_dir)
            if cached:  # load the cached file directly: no network round trip at all
                pretrained = cached
                model, train_preprocess, preprocess = build()
            else:
                _probe_hub(f"{name} ({pretrained})", cache_dir, min(HUB_PROBE_TIMEOUT, timeout))
                model, train_preprocess, preprocess = _create_with_timeout(
                    build, timeout, f"{name} ({pretrained})", cache_dir)
        else:
            model, train_preprocess, preprocess = build()
    if not hasattr(model, "token_embedding"):
        raise BackboneError(
            f"{identity['name']} has a custom (e.g. Hugging Face) text tower; PiNI's prompt injection needs "
            "open_clip's standard text tower (token_embedding + transformer). Pick another model.")
    _freeze(model)
    pcfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    identity.update({
        "arch": name if not name.startswith("local-dir:") else identity.get("name"),
        "embed_dim": None, "fingerprint": _fingerprint(model),
    })
    bb = Backbone(model=model, tokenizer=open_clip.get_tokenizer(name), preprocess=preprocess,
                  train_preprocess=train_preprocess, device=dev, precision=precision, identity=identity,
                  mean=tuple(pcfg.get("mean", CLIP_MEAN)), std=tuple(pcfg.get("std", CLIP_STD)))
    bb.identity["embed_dim"] = bb.embed_dim
    return bb


# ----- backbone specs and weight identity ------------------------------------------------
# One parser for how users name a backbone (CLI, benchmark, app), and the identities of a
# backbone's weights. Two identities exist, both recorded in shipped artefacts, so neither
# digest scheme may change: `_fingerprint` hashes the loaded tensors (Backbone.identity
# ["fingerprint"]: checkpoints refuse other weights by it); `weights_identity` digests the
# files *before* loading (the benchmark keys its result cells by it, so retrained weights
# under the same label make new cells without loading anything).

@dataclass(frozen=True)
class BackboneSpec:
    """A backbone as users name it: ``[LABEL=]NAME[:PRETRAINED]``.

    ``ViT-B-16:openai``; ``RN50:/w/rn50.pt``; ``embedded``; ``local-dir:/models/x``;
    ``hf-hub:org/name``. LABEL is what results and tables call it (default: the text
    itself); the paper's numbers are matched on labels such as ``ViT-B-16:openai``, so a
    local copy of OpenAI's weights is named ``ViT-B-16:openai=ViT-B-16:/w/ViT-B-16.pt``.
    `name` / `pretrained` are `load_backbone`'s arguments."""

    label: str
    name: str
    pretrained: Optional[str] = None

    @classmethod
    def parse(cls, text: str, allow_label: bool = True) -> "BackboneSpec":
        return parse_backbone_spec(text, allow_label)


def parse_backbone_spec(text: str, allow_label: bool = True) -> BackboneSpec:
    """``[LABEL=]NAME[:PRETRAINED]`` -> BackboneSpec (see there).

    ``local-dir:...`` and ``hf-hub:...`` are names (their colon is part of the name); a
    text without a colon is a name without pretrained weights (``embedded``, or a model
    built from a config). allow_label=False reads the whole text as NAME[:PRETRAINED]
    (the app's model box: a path may contain "=").
    Raises ConfigError (a PiniError) for an empty text or an empty label / name."""
    from .errors import ConfigError

    text = (text or "").strip()
    if not text:
        raise ConfigError("No model given: name a backbone such as embedded, ViT-B-16:openai, "
                          "NAME:/path/weights.safetensors or local-dir:/path.")
    label, sep, rest = text.partition("=") if allow_label else (text, "", text)
    if not sep:
        label, rest = text, text
    label, rest = label.strip(), rest.strip()
    if not label or not rest:
        raise ConfigError(f"cannot read backbone {text!r}; use LABEL=NAME:PRETRAINED or NAME:PRETRAINED")
    if rest.startswith(("local-dir:", "hf-hub:")) or ":" not in rest:
        return BackboneSpec(label=label, name=rest, pretrained=None)
    name, _, pretrained = rest.partition(":")
    if not name.strip():
        raise ConfigError(f"cannot read backbone {text!r}: no model name before ':'")
    return BackboneSpec(label=label, name=name.strip(), pretrained=pretrained.strip() or None)


def _file_digest(path: Path) -> str:
    """size + sha1 of the first and last MiB: cheap even for GB-sized weights, and any
    retrained or replaced file changes it."""
    h = hashlib.sha1()
    size = path.stat().st_size
    h.update(f"{path.name}:{size}".encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read())
    return h.hexdigest()[:12]


def _model_files(folder: Path) -> List[Path]:
    """The model itself in an open_clip folder (config + weights), not side files such as metadata."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*") if p.is_file() and (
        p.name == "open_clip_config.json" or p.suffix in (".safetensors", ".bin", ".pt", ".pth")))


def weights_identity(spec: BackboneSpec) -> str:
    """Identity of a backbone's weights known without loading them: ``files:<digest>,...``
    of the local files (embedded model, local-dir, weights file; `_file_digest` each), or
    ``NAME:PRETRAINED`` for a hub tag (the tag pins the weights). Never raises."""
    files: List[Path] = []
    if spec.name in EMBEDDED_NAMES:
        files = _model_files(embedded_dir())
    elif spec.name.startswith("local-dir:"):
        files = _model_files(Path(spec.name[len("local-dir:"):]))
    elif spec.pretrained and os.path.isfile(spec.pretrained):
        files = [Path(spec.pretrained)]
    if not files:
        return f"{spec.name}:{spec.pretrained}"
    return "files:" + ",".join(_file_digest(p) for p in files)
