"""Generator checkpoints: <name>.safetensors (weights only) + <name>.json (config + metadata)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .. import atomic
from .config import MuNGConfig
from .generator import MuNGGenerator


def _paths(path) -> tuple[Path, Path]:
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save_generator(generator: MuNGGenerator, path, metadata: dict | None = None) -> Path:
    """Atomically write `path`.safetensors and `path`.json; returns the .safetensors path."""
    wpath, jpath = _paths(path)
    wpath.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in generator.state_dict().items()}
    with atomic.atomic_path(wpath) as tmp:
        save_file(state, tmp, metadata={"format": "pt", "kind": "mung-generator"})
    doc = {"kind": "mung-generator", "config": generator.config.to_dict(),
           "num_parameters": generator.num_parameters(), "metadata": metadata or {}}
    atomic.write_json(jpath, doc)
    return wpath


def load_generator(path, host=None, device="cpu") -> MuNGGenerator:
    """Load a generator; with `host` given, check it was built for the host's dimensions."""
    wpath, jpath = _paths(path)
    for p in (wpath, jpath):
        if not p.is_file():
            raise FileNotFoundError(f"MuNG checkpoint file missing: {p} (expected a .safetensors + .json pair)")
    doc = json.loads(jpath.read_text())
    if doc.get("kind") != "mung-generator":
        raise ValueError(f"{jpath} is not a MuNG generator config (kind={doc.get('kind')!r})")
    cfg = MuNGConfig.from_dict(doc["config"])
    if host is not None:
        from .hosts import inspect_host
        spec = inspect_host(host)
        if (cfg.visual_dim, cfg.text_dim) != (spec.hidden_size, spec.text_dim):
            raise ValueError(
                f"{wpath.name} was trained for a host with visual/text dims {cfg.visual_dim}/{cfg.text_dim}, "
                f"but this {spec.family} host has {spec.hidden_size}/{spec.text_dim}; use a generator trained "
                "for this host (python -m pini_core mung train ...)")
    gen = MuNGGenerator(cfg)
    state = load_file(str(wpath))
    missing, unexpected = set(gen.state_dict()) - set(state), set(state) - set(gen.state_dict())
    if missing or unexpected:
        raise ValueError(f"{wpath} does not match the generator layout (missing {sorted(missing)}, "
                         f"unexpected {sorted(unexpected)})")
    gen.load_state_dict(state)
    return gen.to(device).eval()


def read_metadata(path) -> dict:
    return json.loads(_paths(path)[1].read_text()).get("metadata", {})
