"""PiNI checkpoints: the generators' weights as .safetensors + a JSON config.

A checkpoint is a folder:
    pini_generators.safetensors   generator weights only (the frozen CLIP is not copied)
    pini_config.json              backbone identity, noise config, class names, template,
                                  metrics, package version, sha256 of the weights
Writes are atomic (temp file + os.replace; the config, which vouches for the weights,
is written last). Loading against another backbone or class list fails with a message
saying what differs. Through huggingface_hub's ModelHubMixin the same folder can be
pushed to / loaded from the Hub:  PiNICheckpoint.from_pretrained("user/repo", backbone=bb).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional

from huggingface_hub import ModelHubMixin
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__, atomic
from .backbone import Backbone
from .model import PiNIModel
from .noise import NoiseConfig

WEIGHTS_NAME = "pini_generators.safetensors"
CONFIG_NAME = "pini_config.json"
FORMAT = "pini-generators/1"


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message says why and what to do."""


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


def save_pini(model: PiNIModel, path: str | os.PathLike, metrics: Optional[Dict[str, Any]] = None,
              extra: Optional[Dict[str, Any]] = None) -> Path:
    """Save the generators of `model` to the folder `path` (created if needed).

    Both files are fully written to temporary names first, then moved into place, so a
    failure at any point leaves a previous checkpoint at `path` intact."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    # Weights first, to a temporary name: the config records their hash. Nothing at `path`
    # is replaced until both files are complete (an unserialisable metric fails first).
    with atomic.atomic_path(folder / WEIGHTS_NAME) as tmp_w:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, tmp_w,
                  metadata={"format": FORMAT})
        config = {
            "format": FORMAT,
            "pini_core_version": __version__,
            "backbone": model.backbone.identity,
            "noise": model.noise_cfg.to_dict(),
            "classnames": model.classnames,
            "template": model.template,
            "metrics": metrics or {},
            "weights_sha256": _sha256(Path(tmp_w)),
            **(extra or {}),
        }
        text = json.dumps(config, indent=2, default=_jsonable)
    atomic.write_text(folder / CONFIG_NAME, text)
    return folder


def read_config(path: str | os.PathLike) -> Dict[str, Any]:
    folder = Path(path)
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.exists():
        raise CheckpointError(f"{folder} is not a PiNI checkpoint: {CONFIG_NAME} is missing "
                              "(a checkpoint folder holds pini_config.json + pini_generators.safetensors).")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({e}); the file is damaged: re-save or re-train.") from e
    if cfg.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path} has format {cfg.get('format')!r}; this pini_core reads {FORMAT!r}.")
    return cfg


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
    must match the checkpoint's."""
    folder = Path(path)
    cfg = read_config(folder)
    _check_backbone(cfg, backbone, folder)
    _check_classes(cfg, classnames, folder)
    weights = folder / WEIGHTS_NAME
    if not weights.exists():
        raise CheckpointError(f"{weights} is missing; the checkpoint is incomplete: re-save or re-train.")
    if cfg.get("weights_sha256") and _sha256(weights) != cfg["weights_sha256"]:
        raise CheckpointError(f"{weights} does not match its config (sha256 differs): the file is truncated or "
                              "was replaced. Re-save or re-train; do not mix files of two checkpoints.")
    try:
        state = load_file(str(weights), device=str(backbone.device))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights} cannot be read ({e}): the file is truncated or damaged. "
                              "Re-save or re-train.") from e
    try:
        noise = NoiseConfig.from_dict(cfg["noise"])
    except ValueError as e:
        raise CheckpointError(f"{folder / CONFIG_NAME}: its noise config cannot be used by pini_core {__version__} "
                              f"({e}); it was probably written by a newer version: upgrade pini_core.") from e
    model = PiNIModel(backbone, cfg["classnames"], cfg["template"], noise)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{weights} does not fit the generators of its config (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}).")
    model.eval()
    model.metrics = cfg.get("metrics", {})
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
