"""MuNG generator checkpoints, in the same format as PiNI's (`pini_core.checkpoint`).

A checkpoint is a folder:
    mung_generator.safetensors   the generator's weights (float32)
    mung_config.json             format "mung-generator/1", the MuNGConfig, the parameter
                                 count, free metadata (command, metrics), the sha256 of the
                                 weights and `config_sha256` over the config itself
written as one unit (`pini_core.checkpoint.save_unit`: staged files, commit marker, rename),
read back verified (`read_unit`: format, both hashes, finite weights), and pushed to / loaded
from the Hub through huggingface_hub's ModelHubMixin (`MuNGCheckpoint`).

The earlier file pair (`<name>.safetensors` + `<name>.json`, no hash) is read only by
`convert_legacy`, which writes the folder format with identical weights.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from huggingface_hub import ModelHubMixin

from ..version import __version__
from ..checkpoint import CheckpointError, file_sha256, hub_folder, read_unit, save_unit
from .config import MuNGConfig
from .generator import MuNGGenerator

WEIGHTS_NAME = "mung_generator.safetensors"
CONFIG_NAME = "mung_config.json"
FORMAT = "mung-generator/1"
COMMIT_NAME = ".mung_commit.json"
KIND = "mung-generator"
_UNIT = dict(weights_name=WEIGHTS_NAME, config_name=CONFIG_NAME, fmt=FORMAT, commit_name=COMMIT_NAME)


def _legacy_pair(path) -> tuple[Path, Path]:
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def is_generator(path) -> bool:
    """True if `path` is a MuNG generator checkpoint folder (its config file exists)."""
    return (Path(path) / CONFIG_NAME).is_file()


def save_generator(generator: MuNGGenerator, path, metadata: dict | None = None) -> Path:
    """Save `generator` to the checkpoint folder `path` (created if needed); returns the folder.

    Weights are stored as float32. Raises CheckpointError for NaN/inf weights and
    CheckpointWriteError when the disk refuses (see `pini_core.checkpoint.save_unit`)."""
    state = {k: v.detach().to("cpu", torch.float32) for k, v in generator.state_dict().items()}
    config = {"pini_core_version": __version__, "kind": KIND, "config": generator.config.to_dict(),
              "num_parameters": generator.num_parameters(), "metadata": metadata or {}}
    return save_unit(path, state, config, **_UNIT)


def _not_a_folder_hint(path: Path) -> str:
    w, j = _legacy_pair(path)
    if w.is_file() and j.is_file():
        return (f" {w.name} + {j.name} are a generator in the earlier file-pair format (no hash); convert it "
                f"once: python -m pini_core mung convert --old {w.with_suffix('')} --out FOLDER")
    return ""


def read_generator(path) -> tuple[dict, dict]:
    """(config document, CPU state dict) of the checkpoint folder `path`, verified
    (format, weights and config hashes, finite weights). Raises CheckpointError."""
    path = Path(path)
    try:
        return read_unit(path, what="MuNG generator", **_UNIT)
    except CheckpointError as e:
        hint = _not_a_folder_hint(path) if not is_generator(path) else ""
        if hint:
            raise CheckpointError(f"{e}{hint}") from e
        raise


def load_generator(path, host=None, device="cpu") -> MuNGGenerator:
    """Load a generator from its checkpoint folder; with `host` given, check it was built
    for the host's dimensions. Returns the generator in eval mode on `device`.

    Raises CheckpointError (a PiniError and a ValueError) for a missing, damaged, edited
    or mismatched checkpoint, and when the host's visual/text dims differ from the config's."""
    doc, state = read_generator(path)
    path = Path(path)
    if doc.get("kind") != KIND or not isinstance(doc.get("config"), dict):
        raise CheckpointError(f"{path / CONFIG_NAME} is not a MuNG generator config (kind={doc.get('kind')!r})")
    try:
        cfg = MuNGConfig.from_dict(doc["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path / CONFIG_NAME}: its generator config cannot be used by pini_core "
                              f"{__version__} ({e}).") from e
    if host is not None:
        from .hosts import inspect_host
        spec = inspect_host(host)
        if (cfg.visual_dim, cfg.text_dim) != (spec.hidden_size, spec.text_dim):
            raise CheckpointError(
                f"{path.name} was trained for a host with visual/text dims {cfg.visual_dim}/{cfg.text_dim}, "
                f"but this {spec.family} host has {spec.hidden_size}/{spec.text_dim}; use a generator trained "
                "for this host (python -m pini_core mung train ...)")
    gen = MuNGGenerator(cfg)
    expected = gen.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        raise CheckpointError(f"{path / WEIGHTS_NAME} does not match the generator layout of its config (missing "
                              f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}, shapes differ "
                              f"{wrong[:3]})")
    gen.load_state_dict(state)
    return gen.to(device).eval()


def read_metadata(path) -> dict:
    """The free metadata saved with the generator (command, data, metrics, ...)."""
    return read_generator(path)[0].get("metadata", {})


def convert_legacy(old, out, note: Optional[str] = None) -> Path:
    """Rewrite a generator saved in the earlier file pair (`old`.safetensors + `old`.json) as a
    checkpoint folder `out`, with identical weights (checked tensor by tensor) and its metadata;
    "converted_from" records the old files and the old weights' sha256. Returns `out`.
    Raises CheckpointError if the pair is missing or not a MuNG generator."""
    from safetensors.torch import load_file

    wpath, jpath = _legacy_pair(old)
    for p in (wpath, jpath):
        if not p.is_file():
            raise CheckpointError(f"earlier-format MuNG generator file missing: {p} (expected a .safetensors + "
                                  ".json pair)")
    doc = json.loads(jpath.read_text())
    if doc.get("kind") != KIND:
        raise CheckpointError(f"{jpath} is not a MuNG generator config (kind={doc.get('kind')!r})")
    gen = MuNGGenerator(MuNGConfig.from_dict(doc["config"]))
    state = load_file(str(wpath))
    gen.load_state_dict(state)  # strict: the pair must fit its config
    meta = dict(doc.get("metadata") or {})
    meta["converted_from"] = {"files": [wpath.name, jpath.name], "weights_sha256": file_sha256(wpath),
                              "format": "file pair (.safetensors + .json), before mung-generator/1"}
    if note:
        meta["conversion_note"] = note
    save_generator(gen, out, meta)
    _, new_state = read_generator(out)
    changed = [k for k in state if not torch.equal(state[k].float(), new_state[k])]
    if changed or set(state) != set(new_state):
        raise CheckpointError(f"conversion of {wpath} changed tensors {changed[:3]}; nothing should change")
    return Path(out)


class MuNGCheckpoint(ModelHubMixin, library_name="pini_core", tags=["mung", "multimodal-llm", "pi-noise"]):
    """Hub I/O for MuNG generators through huggingface_hub's ModelHubMixin (as `PiNICheckpoint`).

        MuNGCheckpoint(gen).save_pretrained("dir")          # same files as save_generator
        MuNGCheckpoint(gen).push_to_hub("user/mung-llava")
        gen = MuNGCheckpoint.from_pretrained("user/mung-llava", host=model).generator
    """

    def __init__(self, generator: MuNGGenerator, metadata: dict | None = None):
        self.generator = generator
        self.metadata = metadata or {}

    def _save_pretrained(self, save_directory: Path) -> None:
        save_generator(self.generator, save_directory, self.metadata)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download, local_files_only, token,
                         host=None, device: str = "cpu", **_) -> "MuNGCheckpoint":
        folder = hub_folder(model_id, (WEIGHTS_NAME, CONFIG_NAME), revision=revision, cache_dir=cache_dir,
                            force_download=force_download, local_files_only=local_files_only, token=token)
        return cls(load_generator(folder, host=host, device=device), read_metadata(folder))


__all__ = ["WEIGHTS_NAME", "CONFIG_NAME", "FORMAT", "is_generator", "save_generator", "read_generator",
           "load_generator", "read_metadata", "convert_legacy", "MuNGCheckpoint"]

