"""CLIP's test transform, CoOp's train transform, and a torch Dataset over (source, label).

Test (CLIP / CoOp): resize the short side to ``image_size`` (bicubic), centre crop,
ToTensor, normalise with the backbone's mean/std.
Train (CoOp's ``INPUT.TRANSFORMS = ["random_resized_crop", "random_flip", "normalize"]``
with Dassl's defaults): RandomResizedCrop(image_size, scale=(0.08, 1.0), bicubic),
RandomHorizontalFlip(0.5), ToTensor, normalise.
Mean/std/size come from the backbone (open_clip's preprocess config); the OpenAI CLIP
values are only defaults.
"""
from __future__ import annotations

import warnings
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from pini_core.backbone import CLIP_MEAN, CLIP_STD  # the one copy of CLIP's mean/std
from pini_core.data.images import ImageLoadError, load_image
from pini_core.data.imagefolder import check_on_error
from pini_core.errors import ConfigError

COOP_CROP_SCALE = (0.08, 1.0)

Size = Union[int, Sequence[int]]


def _size(image_size: Size) -> Tuple[int, int]:
    if isinstance(image_size, int):
        h = w = image_size
    else:
        h, w = (int(s) for s in image_size)
    if h < 1 or w < 1:
        raise ConfigError(f"image_size must be positive, got {image_size!r}")
    return h, w


def clip_test_transform(image_size: Size = 224, mean: Sequence[float] = CLIP_MEAN,
                        std: Sequence[float] = CLIP_STD) -> T.Compose:
    """RGB PIL image -> normalised [3, H, W] float tensor, CLIP's evaluation transform."""
    h, w = _size(image_size)
    return T.Compose([
        T.Resize(max(h, w), interpolation=InterpolationMode.BICUBIC),
        T.CenterCrop((h, w)),
        T.ToTensor(),
        T.Normalize(mean=tuple(mean), std=tuple(std)),
    ])


def clip_train_transform(image_size: Size = 224, mean: Sequence[float] = CLIP_MEAN,
                         std: Sequence[float] = CLIP_STD, scale: Tuple[float, float] = COOP_CROP_SCALE,
                         flip: bool = True) -> T.Compose:
    """CoOp's training augmentation: random resized crop (scale 0.08-1, bicubic) + flip."""
    h, w = _size(image_size)
    if not (0.0 < scale[0] <= scale[1] <= 1.0):
        raise ConfigError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
    steps = [T.RandomResizedCrop((h, w), scale=tuple(scale), interpolation=InterpolationMode.BICUBIC)]
    if flip:
        steps.append(T.RandomHorizontalFlip(0.5))
    steps += [T.ToTensor(), T.Normalize(mean=tuple(mean), std=tuple(std))]
    return T.Compose(steps)


class ImageDataset(Dataset):
    """``data`` (a list of ``(source, label)``) as a Dataset of ``(image, label, index)``.

    Images go through :func:`load_image` (so every odd file kind works and a broken one
    names itself), then ``transform`` (None returns the RGB PIL image). With
    ``on_error="skip"`` a broken image is replaced by the next loadable item (its index
    is returned, so callers see the substitution) and recorded in ``self.skipped``
    (per process; for counts in ``splits.meta`` run ``verify_splits`` up front).
    """

    def __init__(self, data: Sequence, transform: Optional[Callable] = None,
                 on_error: str = "raise", **load_kwargs):
        self.data = list(data)
        self.transform = transform
        self.on_error = check_on_error(on_error)
        self.load_kwargs = load_kwargs
        self.skipped: dict = {}

    def __len__(self) -> int:
        return len(self.data)

    def _load(self, index: int):
        source, label = self.data[index][0], int(self.data[index][1])
        image = load_image(source, **self.load_kwargs)
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def __getitem__(self, index: int):
        n = len(self.data)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        index %= n
        for step in range(n):
            i = (index + step) % n
            try:
                image, label = self._load(i)
                return image, label, i
            except ImageLoadError as e:
                if self.on_error == "raise":
                    raise
                if i not in self.skipped:
                    self.skipped[i] = str(e)
                    warnings.warn(f"skipping broken image: {e}", RuntimeWarning, stacklevel=2)
        raise ImageLoadError(f"none of the {n} images could be loaded; first error: "
                             f"{next(iter(self.skipped.values()), '?')}")


def collate_images(batch):
    """Collate ``(tensor, label, index)`` items into ``(images [B,3,H,W], labels [B], indices [B])``."""
    images, labels, indices = zip(*batch)
    return torch.stack(images), torch.tensor(labels, dtype=torch.long), torch.tensor(indices, dtype=torch.long)
