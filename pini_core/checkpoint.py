"""PiNI checkpoints: the generators' weights as .safetensors + a JSON config.

A checkpoint is a folder:
    pini_generators.safetensors   generator weights only (the frozen CLIP is not copied)
    pini_config.json              backbone identity, noise config, class names, template,
                                  metrics, package version, sha256 of the weights, and
                                  ``config_sha256``: a sha256 of the config itself
Loading against another backbone or class list fails with a message saying what differs.
Through huggingface_hub's ModelHubMixin the same folder can be pushed to / loaded from the
Hub:  PiNICheckpoint.from_pretrained("user/repo", backbone=bb).

Saving replaces the two files as ONE unit (issue 12), with a small redo journal:
  1. both new files are written and fsynced under hidden staging names
     (``.pini_generators.safetensors.new``, ``.pini_config.json.new``);
  2. a commit marker ``.pini_commit.json`` is renamed into place and the folder fsynced:
     this rename is the commit point;
  3. the staged files are renamed over the old ones, then the marker is removed.
A reader that finds the marker reads the staged file where one is left (the new version),
so a kill at ANY point leaves a folder that loads as the old checkpoint (before the commit)
or the new one (after it), never a mix. The next save finishes a committed save (rolls it
forward) and deletes an uncommitted one's leftovers. Other files in the folder are never
touched.

What a checkpoint may make the tool do is limited (issue 12): its config is validated
(one clear :class:`CheckpointError` line per problem), covered by ``config_sha256``,
non-finite weights are refused, and :func:`backbone_spec_for` never returns a path or a
hub repository that the user did not pass.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from huggingface_hub import ModelHubMixin
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .version import __version__
from .backbone import EMBEDDED_NAMES, Backbone
from .errors import CheckpointFormatError, UnsafePathError
from .model import PiNIModel
from .noise import NoiseConfig

WEIGHTS_NAME = "pini_generators.safetensors"
CONFIG_NAME = "pini_config.json"
FORMAT = "pini-generators/1"
COMMIT_NAME = ".pini_commit.json"
STAGED_SUFFIX = ".new"
INTEGRITY_KEY = "config_sha256"
_FILES = (WEIGHTS_NAME, CONFIG_NAME)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class CheckpointError(CheckpointFormatError, ValueError):
    """A checkpoint cannot be used; the message says why and what to do."""


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint could not be written (disk full, permissions); the previous one is kept."""


# ----------------------------------------------------------------------------- small helpers

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonable(o: Any) -> Any:
    """numpy / torch scalars and arrays in metrics -> plain JSON values."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def config_digest(cfg: Dict[str, Any]) -> str:
    """sha256 of a config's canonical JSON (sorted keys, no spaces), without its own
    ``config_sha256`` entry: what ``config_sha256`` must equal."""
    body = {k: v for k, v in cfg.items() if k != INTEGRITY_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _staged(folder: Path, name: str) -> Path:
    return folder / f".{name}{STAGED_SUFFIX}"


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make renames in `folder` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_staged(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _nonfinite(state: Dict[str, torch.Tensor]) -> List[str]:
    """Names of floating-point tensors holding NaN or +-inf, with how many such values."""
    bad = []
    for k, v in state.items():
        if torch.is_tensor(v) and v.is_floating_point():
            n = int((~torch.isfinite(v)).sum())
            if n:
                bad.append(f"{k} ({n} of {v.numel()} values)")
    return bad


# ----------------------------------------------------------------------------- saving

def save_pini(model: PiNIModel, path: str | os.PathLike, metrics: Optional[Dict[str, Any]] = None,
              extra: Optional[Dict[str, Any]] = None) -> Path:
    """Save the generators of `model` to the folder `path` (created if needed); returns it.

    The two files replace a previous checkpoint at `path` as one unit (see the module
    docstring): a failure or a kill at any point leaves the old checkpoint or the new one.
    Other files in the folder are kept; leftovers of an interrupted earlier save are
    finished (committed) or removed (uncommitted) first.
    Raises :class:`CheckpointError` when the weights hold NaN/inf (nothing is written),
    ``TypeError`` when `metrics`/`extra` cannot be written as JSON (nothing is replaced),
    and :class:`CheckpointWriteError` (also an ``OSError``) when the disk refuses."""
    config = {
        "pini_core_version": __version__,
        "backbone": model.backbone.identity,
        "noise": model.noise_cfg.to_dict(),
        "classnames": model.classnames,
        "template": model.template,
        "metrics": metrics or {},
        **(extra or {}),
    }
    return save_unit(path, model.state_dict(), config, weights_name=WEIGHTS_NAME, config_name=CONFIG_NAME,
                     fmt=FORMAT, commit_name=COMMIT_NAME)


# ----------------------------------------------------------------------------- reading

def _fail(cfg_path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{cfg_path}: {what}; the checkpoint cannot be used. Re-save or re-train it.")


def _validate_config(cfg: Any, cfg_path: Path) -> None:
    """One clear CheckpointError per structural problem (issue 12, item 9)."""
    if not isinstance(cfg, dict):
        kind = "null" if cfg is None else type(cfg).__name__
        raise _fail(cfg_path, f"holds a JSON {kind}, not a checkpoint config (a JSON object with format, "
                              "backbone, noise, classnames, template)")
    if cfg.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path} has format {cfg.get('format')!r}; this pini_core reads {FORMAT!r}.")
    required = ("backbone", "noise", "classnames", "template")
    missing = [k for k in required if k not in cfg]
    if missing:
        raise _fail(cfg_path, f"the config lacks {', '.join(repr(k) for k in missing)} "
                              f"(a checkpoint config has {', '.join(required)})")
    bb = cfg["backbone"]
    if not isinstance(bb, dict) or not isinstance(bb.get("name"), str) or not bb["name"].strip():
        raise _fail(cfg_path, f"'backbone' must be an object with a model 'name', got {bb!r:.80}")
    for key in ("pretrained", "fingerprint", "arch"):
        if bb.get(key) is not None and not isinstance(bb[key], str):
            raise _fail(cfg_path, f"backbone {key!r} must be text or null, got {bb[key]!r:.80}")
    if not isinstance(cfg["noise"], dict):
        raise _fail(cfg_path, f"'noise' must be an object of noise settings, got {cfg['noise']!r:.80}")
    names = cfg["classnames"]
    if not isinstance(names, list) or not names:
        raise _fail(cfg_path, f"'classnames' must be a non-empty list of class names, got {names!r:.80}")
    odd = [n for n in names if not isinstance(n, str) or not n.strip()]
    if odd:
        raise _fail(cfg_path, f"every class name must be non-empty text; found {odd[0]!r:.60} "
                              f"({type(odd[0]).__name__}) among the {len(names)} class names")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise _fail(cfg_path, f"class name(s) {dup[:3]} appear more than once")
    t = cfg["template"]
    if not isinstance(t, str) or t.count("{}") != 1:
        raise _fail(cfg_path, f"'template' must be text with exactly one '{{}}' for the class name, got {t!r:.80}")
    sha = cfg.get("weights_sha256")
    if sha is not None and not (isinstance(sha, str) and _HEX64.match(sha)):
        raise _fail(cfg_path, f"'weights_sha256' must be 64 hex digits, got {sha!r:.80}")
    for key in ("metrics", "data"):
        if cfg.get(key) is not None and not isinstance(cfg[key], dict):
            raise _fail(cfg_path, f"{key!r} must be an object, got {cfg[key]!r:.80}")
    try:
        NoiseConfig.from_dict(cfg["noise"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{cfg_path}: its noise config cannot be used by pini_core {__version__} "
                              f"({e}); it was probably written by a newer version: upgrade pini_core.") from e


def read_config(path: str | os.PathLike) -> Dict[str, Any]:
    """The validated config of the checkpoint folder `path` (a dict).

    Reads the committed version when a save was interrupted (module docstring). Raises
    :class:`CheckpointError` (one line each) when the folder is not a checkpoint, the file
    is not JSON, is not an object (``[]``, ``null``), lacks ``backbone``/``noise``/
    ``classnames``/``template``, has non-text or duplicate class names, a template without
    one ``{}``, a noise config this version cannot read, or when it was changed after it
    was saved (``config_sha256`` differs; configs written before that field existed are
    accepted without it)."""
    folder = Path(path)
    cfg_path = unit_paths(folder, _FILES, COMMIT_NAME)[CONFIG_NAME]
    if not cfg_path.is_file():
        raise CheckpointError(f"{folder} is not a PiNI checkpoint: {CONFIG_NAME} is missing "
                              "(a checkpoint folder holds pini_config.json + pini_generators.safetensors).")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{folder / CONFIG_NAME} is not valid JSON ({e}); the file is damaged: "
                              "re-save or re-train.") from e
    except OSError as e:
        raise CheckpointError(f"{folder / CONFIG_NAME} cannot be read ({e.strerror or e}).") from e
    _validate_config(cfg, folder / CONFIG_NAME)
    digest = cfg.get(INTEGRITY_KEY)
    if digest is not None and digest != config_digest(cfg):
        raise CheckpointError(
            f"{folder / CONFIG_NAME} was changed after the checkpoint was saved (its config_sha256 does not "
            "match its content: an edited template, class list, backbone or noise setting would not fit the "
            "weights). Use the file as saved, or re-train.")
    return cfg


def backbone_spec_for(cfg: Dict[str, Any], model: Optional[str] = None,
                      pretrained: Optional[str] = None) -> Tuple[str, Optional[str]]:
    """(model name, pretrained) to load for a checkpoint config `cfg` (from :func:`read_config`).

    What the user passed wins: `model` (``--model``) as given, and `pretrained`
    (``--pretrained``) over the config's tag. Taken from the config are only the embedded
    toy CLIP and open_clip's own architecture names with their registered pretrained tags.
    A config naming ``local-dir:``, ``hf-hub:``, a file path or anything unknown is refused
    with :class:`pini_core.errors.UnsafePathError`: a checkpoint never makes the tool open
    a path or a hub repository the user did not pass (issue 12)."""
    if model:
        return model, pretrained
    saved = cfg["backbone"]
    name, tag = saved["name"], saved.get("pretrained")
    if name in EMBEDDED_NAMES:
        return name, pretrained
    if pretrained:
        tag = pretrained

    def refuse(what: str) -> UnsafePathError:
        flags = f"--model {name}" + (f" --pretrained {tag}" if tag else "")
        return UnsafePathError(
            f"the checkpoint's config names {what}; pini_core does not open local paths or hub repositories "
            f"named inside a checkpoint. If you trust it, pass the backbone yourself ({flags}).")

    if name.startswith(("local-dir:", "hf-hub:")) or any(c in name for c in "/\\~") or name.startswith("."):
        raise refuse(f"the backbone {name!r}")
    import open_clip

    if name not in open_clip.list_models():
        raise refuse(f"the backbone {name!r}, which is not an open_clip architecture name")
    if tag and not pretrained and tag not in open_clip.list_pretrained_tags_by_model(name):
        raise refuse(f"the weights {tag!r} for {name} (a file path or an unknown pretrained tag)")
    return name, tag


def _check_backbone(cfg: Dict[str, Any], backbone: Backbone, path: Path) -> None:
    saved, current = cfg["backbone"], backbone.identity
    # The weights' fingerprint decides: the same weights under another path or name are fine.
    if saved.get("fingerprint") and saved.get("fingerprint") == current.get("fingerprint"):
        return
    diffs = [f"{k}: checkpoint has {saved.get(k)!r}, loaded backbone has {current.get(k)!r}"
             for k in ("name", "pretrained", "embed_dim", "fingerprint") if saved.get(k) != current.get(k)]
    if diffs:
        raise CheckpointError(
            f"Checkpoint {path} was trained on a different backbone ({'; '.join(diffs)}). Load the backbone "
            f"it was trained with (--model {saved.get('name')}"
            + (f" --pretrained {saved.get('pretrained')}" if saved.get("pretrained") else "") + ") or re-train.")


def _check_classes(cfg: Dict[str, Any], classnames, path: Path) -> None:
    saved = list(cfg["classnames"])
    if classnames is None or list(classnames) == saved:
        return
    classnames = list(classnames)
    missing = [c for c in saved if c not in classnames]
    extra = [c for c in classnames if c not in saved]
    detail = []
    if len(saved) != len(classnames):
        detail.append(f"{len(saved)} classes in the checkpoint vs {len(classnames)} in the dataset")
    if missing:
        detail.append(f"only in the checkpoint: {missing[:5]}")
    if extra:
        detail.append(f"only in the dataset: {extra[:5]}")
    if not missing and not extra:
        detail.append("same classes in a different order")
    raise CheckpointError(f"Checkpoint {path} was trained on other classes ({'; '.join(detail)}). "
                          "Use the dataset it was trained on, or train a new checkpoint for this one.")


def load_pini(path: str | os.PathLike, backbone: Backbone, classnames=None) -> PiNIModel:
    """Rebuild a PiNIModel on `backbone` from a checkpoint folder; `classnames`, if given,
    must match the checkpoint's.

    Raises :class:`CheckpointError` (one line) when the config is unusable (see
    :func:`read_config`), the backbone or classes differ, the weights file is missing,
    truncated, replaced (sha256), holds NaN/inf values, or a tensor whose shape or name does
    not fit the generators the config describes."""
    folder = Path(path)
    cfg = read_config(folder)
    _check_backbone(cfg, backbone, folder)
    _check_classes(cfg, classnames, folder)
    weights = unit_paths(folder, _FILES, COMMIT_NAME)[WEIGHTS_NAME]
    shown = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{shown} is missing; the checkpoint is incomplete: re-save or re-train.")
    if cfg.get("weights_sha256") and _sha256(weights) != cfg["weights_sha256"]:
        raise CheckpointError(f"{shown} does not match its config (sha256 differs): the file is truncated or "
                              "was replaced. Re-save or re-train; do not mix files of two checkpoints.")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{shown} cannot be read ({e}): the file is truncated or damaged. "
                              "Re-save or re-train.") from e
    bad = _nonfinite(state)
    if bad:
        raise CheckpointError(f"{shown} holds NaN/inf weights ({', '.join(bad[:3])}): every prediction would be "
                              "NaN. The training that wrote it diverged; re-train (lower learning rate).")
    model = PiNIModel(backbone, cfg["classnames"], cfg["template"], NoiseConfig.from_dict(cfg["noise"]))
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(f"{shown} does not fit the generators of its config (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}).")
    wrong = [f"{k}: {list(state[k].shape)} in the file, {list(v.shape)} expected" for k, v in expected.items()
             if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise CheckpointError(f"{shown} does not fit the generators its config describes (tensor "
                              f"{'; '.join(wrong[:3])}): the config (template, classes, noise) and the weights "
                              "belong to different checkpoints. Re-save or re-train.")
    model.load_state_dict({k: v.to(backbone.device) for k, v in state.items()}, strict=True)
    model.eval()
    model.metrics = cfg.get("metrics") or {}
    model.checkpoint_config = cfg  # provenance (task, recipe, data seed): e.g. the meter rebuilds held-out images
    return model


class PiNICheckpoint(ModelHubMixin, library_name="pini_core", tags=["pi-noise", "clip", "few-shot"]):
    """Hub I/O for PiNI generators through huggingface_hub's ModelHubMixin.

        PiNICheckpoint(model).save_pretrained("dir")            # same files as save_pini
        PiNICheckpoint(model).push_to_hub("user/pini-pets")
        model = PiNICheckpoint.from_pretrained("user/pini-pets", backbone=bb).model
    """

    def __init__(self, model: PiNIModel):
        self.model = model

    def _save_pretrained(self, save_directory: Path) -> None:
        save_pini(self.model, save_directory, getattr(self.model, "metrics", None))

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download, local_files_only, token,
                         backbone: Backbone = None, classnames=None, **_) -> "PiNICheckpoint":
        if backbone is None:
            raise CheckpointError("from_pretrained needs backbone=load_backbone(...) (the frozen CLIP)")
        folder = Path(model_id)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(model_id, revision=revision, cache_dir=cache_dir, token=token,
                                            force_download=force_download, local_files_only=local_files_only,
                                            allow_patterns=[WEIGHTS_NAME, CONFIG_NAME]))
        return cls(load_pini(folder, backbone, classnames))


# --- shared by PiNI and MuNG ---
# One checkpoint format for every generator the project saves: a folder holding a
# .safetensors weights file and a JSON config that records `format` (name/version), the
# sha256 of the weights and `config_sha256` over the config itself (so the pair is pinned by
# content: sha256 of weights + config), written as ONE unit with the commit-marker protocol
# of `save_pini` (module docstring). The helpers below take the file names as arguments.

def unit_paths(folder: Path, files: Tuple[str, ...], commit_name: str) -> Dict[str, Path]:
    """{file name: the path holding its current content} for a unit of `files` in `folder`;
    after an interrupted but committed save the staged files are the current ones."""
    out = {name: folder / name for name in files}
    if (folder / commit_name).is_file():
        for name in files:
            if _staged(folder, name).is_file():
                out[name] = _staged(folder, name)
    return out


def _finish_or_discard(folder: Path, files: Tuple[str, ...], commit_name: str) -> None:
    """Before a save: roll a committed interrupted save forward, delete an uncommitted one's files."""
    if (folder / commit_name).is_file():
        for name in files:
            if _staged(folder, name).is_file():
                os.replace(_staged(folder, name), folder / name)
        _fsync_dir(folder)
        os.unlink(folder / commit_name)
        _fsync_dir(folder)
    for entry in folder.iterdir():  # staged files, marker temps, temps of the older atomic writer
        n = entry.name
        ours = any(n == _staged(folder, f).name or (n.startswith(f".{f}.") and n.endswith(".tmp"))
                   for f in (*files, commit_name))
        if ours and entry.is_file() and not entry.is_symlink():
            entry.unlink()


def save_unit(folder: str | os.PathLike, state: Dict[str, torch.Tensor], config: Dict[str, Any], *,
              weights_name: str, config_name: str, fmt: str, commit_name: str) -> Path:
    """Save `state` as `weights_name` (safetensors, metadata {"format": fmt}) and `config` plus
    {"format", "weights_sha256", "config_sha256"} as `config_name`, replacing a previous pair
    in `folder` as one unit (the `save_pini` protocol). Returns the folder.

    Raises CheckpointError for NaN/inf weights or a `folder` that is a file (nothing written),
    TypeError for a config that is not JSON-serialisable (nothing replaced), and
    CheckpointWriteError (an OSError) when the disk refuses (the previous pair is kept)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"cannot save a checkpoint to {folder}: it is a file, not a folder")
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    bad = _nonfinite(state)
    if bad:
        raise CheckpointError(f"not saved: the generator weights hold NaN/inf values ({', '.join(bad[:3])}); "
                              "training diverged. Lower the learning rate (fp32 precision) and re-train; the "
                              "previous checkpoint (if any) is kept.")
    files = (weights_name, config_name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _finish_or_discard(folder, files, commit_name)
    except OSError as e:
        raise CheckpointWriteError(f"cannot write the checkpoint folder {folder}: {e}") from e
    staged = {name: _staged(folder, name) for name in files}
    committed = False
    try:
        save_file(state, str(staged[weights_name]), metadata={"format": fmt})
        _fsync_file(staged[weights_name])
        doc = {"format": fmt, **config, "weights_sha256": _sha256(staged[weights_name])}
        doc = json.loads(json.dumps(doc, default=_jsonable))  # what a reader will see
        doc[INTEGRITY_KEY] = config_digest(doc)
        _write_staged(staged[config_name], json.dumps(doc, indent=2).encode("utf-8"))
        for p in staged.values():  # readable by the app's user too (pini_core.atomic.FILE_MODE)
            os.chmod(p, 0o644)
        marker_tmp = folder / f".{commit_name}.tmp"
        _write_staged(marker_tmp, json.dumps({"files": list(files), "format": fmt}).encode("utf-8"))
        os.replace(marker_tmp, folder / commit_name)  # the commit point
        committed = True
        _fsync_dir(folder)
        for name in files:
            os.replace(staged[name], folder / name)
        _fsync_dir(folder)
        os.unlink(folder / commit_name)
        _fsync_dir(folder)
    except BaseException as e:
        if not committed:
            for p in (*staged.values(), folder / f".{commit_name}.tmp"):
                try:
                    p.unlink()
                except OSError:
                    pass
        if isinstance(e, OSError) and not isinstance(e, CheckpointError):
            what = "the previous checkpoint is kept" if not committed else "the new checkpoint is complete"
            raise CheckpointWriteError(f"cannot write the checkpoint to {folder}: {e} ({what})") from e
        raise
    return folder


def read_unit(folder: str | os.PathLike, *, weights_name: str, config_name: str, fmt: str, commit_name: str,
              what: str) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """(config, CPU state dict) of a unit saved by `save_unit`, both verified: the format,
    `config_sha256` (the config as saved) and `weights_sha256` (the weights it vouches for),
    finite weights. `what` names the kind of checkpoint in messages ("MuNG generator").
    Raises CheckpointError (one line) for anything missing, damaged, edited or mixed."""
    folder = Path(folder)
    paths = unit_paths(folder, (weights_name, config_name), commit_name)
    cfg_path, weights = paths[config_name], paths[weights_name]
    shown_cfg, shown_w = folder / config_name, folder / weights_name
    if not cfg_path.is_file():
        raise CheckpointError(f"{folder} is not a {what} checkpoint: {config_name} is missing "
                              f"(the folder holds {config_name} + {weights_name}).")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{shown_cfg} is not valid JSON ({e}); the file is damaged: re-save or re-train.") from e
    except OSError as e:
        raise CheckpointError(f"{shown_cfg} cannot be read ({e.strerror or e}).") from e
    if not isinstance(cfg, dict) or cfg.get("format") != fmt:
        found = cfg.get("format") if isinstance(cfg, dict) else type(cfg).__name__
        raise CheckpointError(f"{shown_cfg} has format {found!r}; this pini_core reads {fmt!r}.")
    if cfg.get(INTEGRITY_KEY) != config_digest(cfg):
        raise CheckpointError(f"{shown_cfg} was changed after the checkpoint was saved (its {INTEGRITY_KEY} does "
                              "not match its content). Use the file as saved, or re-train.")
    if not weights.is_file():
        raise CheckpointError(f"{shown_w} is missing; the checkpoint is incomplete: re-save or re-train.")
    if _sha256(weights) != cfg.get("weights_sha256"):
        raise CheckpointError(f"{shown_w} does not match its config (sha256 differs): the file is truncated or "
                              "was replaced. Re-save or re-train; do not mix files of two checkpoints.")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{shown_w} cannot be read ({e}): the file is damaged. Re-save or re-train.") from e
    bad = _nonfinite(state)
    if bad:
        raise CheckpointError(f"{shown_w} holds NaN/inf weights ({', '.join(bad[:3])}); re-train.")
    return cfg, state


def hub_folder(model_id: str, files: Tuple[str, ...], *, revision=None, cache_dir=None, force_download=False,
               local_files_only=False, token=None) -> Path:
    """A local folder for `model_id`: the folder itself, or a snapshot of the Hub repository
    with only `files` (ModelHubMixin's `_from_pretrained` arguments)."""
    folder = Path(model_id)
    if folder.is_dir():
        return folder
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model_id, revision=revision, cache_dir=cache_dir, token=token,
                                  force_download=force_download, local_files_only=local_files_only,
                                  allow_patterns=list(files)))


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file (what a config's `weights_sha256` records)."""
    return _sha256(Path(path))
