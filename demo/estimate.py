"""What the Train tab says *before* a training starts: how long it will take (raw-image noise
is slow: every step runs the CLIP image encoder forwards and backwards) and, for an uploaded
zip, how many images it really trains and tests on.

The per-image costs were measured on the 2-core classroom machine this app targets (embedded
toy CLIP, one thread per training, `python -m pini_core train` with 16 shots on toy-clutter):
raw-image CNN ~0.05 s per training image per epoch, feature / prompt noise ~0.0003 s (the image
features are encoded once and cached). Other backbones are scaled by their parameter count.
"""
from __future__ import annotations

from typing import Optional

SECONDS_PER_IMAGE = {"image": 0.05, "feature": 0.0003, "none": 0.0003}  # per epoch, embedded toy CLIP
SETUP_SECONDS = {"image": 8.0, "feature": 4.0, "none": 4.0}  # rendering/encoding + the final evaluation
EMBEDDED_PARAMS_M = 2.3
SLOW_SECONDS = 60  # from here on the estimate is in bold


def _fmt(seconds: float) -> str:
    if seconds < 60:
        return f"{max(5, int(round(seconds / 5.0)) * 5)} s"
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min"


def _scale(spec: Optional[str]) -> float:
    from demo import backbones

    if not spec or backbones.is_embedded(spec):
        return 1.0
    try:
        bb = backbones.CACHE.get_loaded(spec)
        n = sum(p.numel() for p in bb.model.parameters()) / 1e6 if bb is not None else 150.0
    except Exception:  # noqa: BLE001 - only an estimate
        n = 150.0
    return max(1.0, n / EMBEDDED_PARAMS_M)


def training_seconds(visual_location: str, n_train: int, epochs: int, spec: Optional[str] = None) -> float:
    kind = visual_location if visual_location in SECONDS_PER_IMAGE else "feature"
    return (SETUP_SECONDS[kind] + SECONDS_PER_IMAGE[kind] * max(1, n_train) * max(1, epochs)) * (
        _scale(spec) if kind == "image" else 1.0)


def training_note(visual_location: str, shots: int, n_classes: int, epochs: int, spec: Optional[str] = None,
                  zip_line: str = "") -> str:
    """One Markdown line: 'About 2.5 min on this machine (raw-image noise: ...)'."""
    try:
        shots, n_classes, epochs = int(shots), int(n_classes), int(epochs)
    except (TypeError, ValueError):
        return zip_line
    secs = training_seconds(visual_location, shots * n_classes, epochs, spec)
    est = _fmt(secs)
    if visual_location == "image":
        txt = (f"⏱ **About {est}** on this machine for {epochs} epoch{'' if epochs == 1 else 's'} × "
               f"{shots * n_classes} images — raw-image noise runs the image encoder forwards and backwards "
               "on every step; about twice as long while another student trains. Fewer epochs or shots "
               "finish sooner.")
    else:
        txt = (f"⏱ About {est} on this machine (feature and prompt noise are fast: the images are encoded once).")
        if secs >= SLOW_SECONDS:
            txt = txt.replace("About", "**About").replace(" on this", "** on this", 1)
    return f"{txt}\n\n{zip_line}" if zip_line else txt


def zip_summary(ds, splits, shots: int) -> str:
    """What an uploaded zip really gives: images per class, the split sizes, the shots actually
    used, and a warning when the test split is too small for a meaningful accuracy."""
    counts = ds.counts()
    per_class = ", ".join(f"{c} {n}" for c, n in counts.items())
    n_train = {c: 0 for c in splits.classnames}
    for _, y in splits.train:
        n_train[splits.classnames[y]] += 1
    used = {c: min(int(shots), n) for c, n in n_train.items()}
    lo, hi = min(used.values(), default=0), max(used.values(), default=0)
    used_txt = f"{lo}" if lo == hi else f"{lo}–{hi}"
    line = (f"Your zip: **{len(ds.items)} images in {len(counts)} classes** ({per_class}); split into "
            f"{len(splits.train)} training, {len(splits.val)} validation and {len(splits.test)} test images. "
            f"Training uses **{used_txt} per class**")
    line += f" (you asked for {int(shots)}; the zip has fewer)." if hi < int(shots) else "."
    n_test = len(splits.test)
    if n_test < 30:
        line += (f" ⚠ Only {n_test} test images: one image changes the accuracy by "
                 f"{100.0 / max(1, n_test):.0f} points, so small differences mean nothing. Add more images "
                 "per class for a fair test.")
    return line


def train_note(task: str, zip_path, shots, epochs, visual: str, seed, state) -> str:
    """The Train tab's estimate line for its current inputs (and the zip's real counts)."""
    from pini_core.errors import PiniError

    from demo import tab_train
    from demo.session import SessionState

    loc = tab_train.VISUAL.get(visual, ("feature", ""))[0]
    spec = state.backbone_spec if isinstance(state, SessionState) else None
    zip_line, n_classes, k = "", 10, shots
    try:
        k = int(shots)
        if task == tab_train.UPLOAD_TASK:
            if not zip_path or not isinstance(state, SessionState):
                return training_note(loc, k, 2, epochs, spec, "Upload a zip of class-named image folders.")
            from pini_core.data.registry import get_dataset

            from demo.session import session_zip

            ds = session_zip(state, zip_path)  # unpacked once per session; the training reuses it
            splits = get_dataset("imagefolder", root=str(ds.root), seed=1 if seed in (None, "") else int(seed))
            zip_line = zip_summary(ds, splits, k)
            n_classes = len(splits.classnames)
            per = [sum(1 for _, y in splits.train if y == c) for c in range(n_classes)]
            k = max(min(k, n) for n in per) if per else k
        else:
            from pini_core.world.tasks import classnames_of

            n_classes = len(classnames_of(task)) if str(task).startswith("toy-") else n_classes
    except PiniError as e:
        from demo.util import scrub_paths

        zip_line = f"⚠ {scrub_paths(str(e))}"
    except (TypeError, ValueError, KeyError):
        pass
    return training_note(loc, k, n_classes, epochs, spec, zip_line)
