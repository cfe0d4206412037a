"""Example images: the toy world's renders for the embedded model, real photographs
for real CLIP backbones.

The photographs come from scikit-image's `skimage.data`, installed from the package
registry (nothing is copied into this repository). They are written once to the app's
temp folder as PNG so the browser can show them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Tuple

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


def toy_examples() -> List[Tuple[str, str]]:
    """(name, path) of the toy world's example renders ($PINI_EXAMPLES_DIR overrides the folder)."""
    folder = Path(os.environ.get("PINI_EXAMPLES_DIR") or TOY_DIR)
    if not folder.is_dir():
        return []
    first = shipped_task()  # the task of the shipped generator (the Train tab's default) comes first
    files = sorted((p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")),
                   key=lambda p: (p.parent.name != first, str(p)))
    return [(str(p.relative_to(folder).with_suffix("")), str(p)) for p in files]


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
