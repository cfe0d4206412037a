"""Example images: the toy world's renders for the embedded model, real photographs
for real CLIP backbones.

The photographs come from scikit-image's `skimage.data`, installed from the package
registry (nothing is copied into this repository). They are written once to the app's
temp folder as PNG so the browser can show them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Tuple

from demo.session import APP_TMP
from demo.shipped import shipped_task

REPO = Path(__file__).resolve().parent.parent
TOY_DIR = REPO / "assets" / "examples"

# name in skimage.data -> (label, licence as stated in scikit-image's docstrings)
PHOTOS = {
    "astronaut": ("astronaut (Eileen Collins)", "NASA, public domain"),
    "chelsea": ("cat (Chelsea)", "CC0, Stefan van der Walt"),
    "coffee": ("coffee cup", "CC0, Rachel Michetti"),
    "rocket": ("rocket launch (Falcon 9)", "SpaceX, public domain"),
}
PHOTO_CLASSES = ["astronaut", "cat", "coffee", "rocket", "dog", "car"]
LICENCE_NOTE = ("Photographs: scikit-image sample data (`skimage.data`), installed with scikit-image: "
                + "; ".join(f"{label}: {lic}" for label, lic in PHOTOS.values()) + ".")


def _folder() -> Path:
    return Path(os.environ.get("PINI_EXAMPLES_DIR") or TOY_DIR)


def examples_record() -> dict:
    """assets/examples/examples.json (`python -m pini_core examples`): the rule, true labels and
    the recorded outcomes; {} when absent."""
    from pini_core.world.examples import read_examples

    return read_examples(_folder())


def toy_examples() -> List[Tuple[str, str]]:
    """(name, path) of the toy world's example renders ($PINI_EXAMPLES_DIR overrides the folder).
    The shipped generator's task comes first, its default example (chosen by the rule in
    pini_core/world/examples.py) at the top."""
    folder = _folder()
    if not folder.is_dir():
        return []
    first = shipped_task()  # the task of the shipped generator (the Train tab's default) comes first
    default = (examples_record().get("tasks", {}).get(first) or {}).get("default")
    files = [p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")
             and p.relative_to(folder).parts[0] != "mung"]  # MuNG's (image, question) pairs are its own
    named = [(str(p.relative_to(folder).with_suffix("")), str(p)) for p in files]
    return sorted(named, key=lambda x: (x[0] != default, not x[0].startswith(f"{first}/"), x[0]))


def true_label(name: Optional[str]) -> Optional[str]:
    """The true class of a toy example (examples.json, else the file name `<index>_<class>`)."""
    if not name:
        return None
    task = name.split("/")[0]
    for row in (examples_record().get("tasks", {}).get(task) or {}).get("examples", []):
        if row.get("name") == name:
            return row.get("true")
    stem = name.rsplit("/", 1)[-1]
    return stem.split("_", 1)[1] if "_" in stem and stem.split("_", 1)[0].isdigit() else None


def curated(task: Optional[str]) -> List[dict]:
    """The rows examples.json records for `task` (chosen by the rule), [] if none."""
    return list((examples_record().get("tasks", {}).get(task or "") or {}).get("examples", []))


def mung_examples() -> List[dict]:
    """MuNG's (image, question, true answer) examples chosen by the rule, default first; each row
    has "name", "question", "true" and "path"."""
    rec = examples_record().get("mung") or {}
    rows = []
    for r in rec.get("examples", []):
        path = _folder() / r["file"]
        if path.is_file():
            rows.append({**r, "path": str(path)})
    default = rec.get("default")
    return sorted(rows, key=lambda r: r["name"] != default)


def photo_examples() -> List[Tuple[str, str]]:
    """(label, png path) for the scikit-image photographs; [] when scikit-image is absent."""
    out = []
    d = APP_TMP / "photos"
    for name, (label, _) in PHOTOS.items():
        path = d / f"{name}.png"
        if not path.exists():
            try:
                import skimage.data
                from PIL import Image

                arr = getattr(skimage.data, name)()
            except Exception:  # scikit-image missing or a sample not shipped: skip that photo
                continue
            d.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.png")
            Image.fromarray(arr).save(tmp)
            tmp.replace(path)
        out.append((label, str(path)))
    return out


def examples_for(spec: str) -> List[Tuple[str, str]]:
    """Examples suited to a backbone: toy renders for the embedded model, photos otherwise."""
    from demo.backbones import is_embedded

    return toy_examples() if is_embedded(spec) else photo_examples()
