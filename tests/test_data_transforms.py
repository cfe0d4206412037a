"""CLIP test / CoOp train transforms and the ImageDataset."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pini_core.data.images import ImageLoadError
from pini_core.data.transforms import (CLIP_MEAN, CLIP_STD, ImageDataset, clip_test_transform,
                                       clip_train_transform, collate_images)


def _norm(rgb, mean=CLIP_MEAN, std=CLIP_STD):
    return torch.tensor([(c / 255 - m) / s for c, m, s in zip(rgb, mean, std)])


def test_test_transform_resizes_short_side_and_centre_crops():
    im = Image.new("RGB", (400, 200), (255, 0, 0))
    im.paste((0, 255, 0), (100, 0, 300, 200))  # the centre 200 columns are green
    x = clip_test_transform(224)(im)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    centre = x[:, :, 8:-8]  # away from bicubic ringing at the crop edges
    assert torch.allclose(centre.mean(dim=(1, 2)), _norm((0, 255, 0)), atol=1e-3)


def test_test_transform_uses_given_size_and_stats():
    im = Image.new("RGB", (50, 80), (255, 0, 128))
    x = clip_test_transform(32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))(im)
    assert x.shape == (3, 32, 32)
    assert torch.allclose(x[:, 10, 10], torch.tensor([1.0, -1.0, 128 / 255 * 2 - 1]), atol=1e-3)
    assert clip_test_transform((24, 24))(im).shape == (3, 24, 24)


def test_train_transform_random_crop_and_flip():
    a = np.zeros((64, 64, 3), dtype=np.uint8)
    a[:, :32] = (255, 0, 0)
    a[:, 32:] = (0, 0, 255)
    im = Image.fromarray(a)
    tf = clip_train_transform(32)
    torch.manual_seed(0)
    xs = [tf(im) for _ in range(12)]
    assert all(x.shape == (3, 32, 32) for x in xs)
    assert any(not torch.equal(xs[0], x) for x in xs[1:])  # random
    # a full-image crop (scale=(1,1), ratio 1) with flip shows red on the right in some draws
    full = clip_train_transform(32, scale=(1.0, 1.0))
    red = _norm((255, 0, 0))
    sides = set()
    for _ in range(20):
        x = full(im)
        sides.add("left" if torch.allclose(x[:, 16, 2], red, atol=1e-2) else "right")
    assert sides == {"left", "right"}
    no_flip = clip_train_transform(32, scale=(1.0, 1.0), flip=False)
    assert all(torch.allclose(no_flip(im)[:, 16, 2], red, atol=1e-2) for _ in range(5))
    with pytest.raises(ValueError, match="scale"):
        clip_train_transform(32, scale=(0.0, 1.0))


def test_image_dataset_returns_tensor_label_index(tmp_path):
    paths = []
    for i, c in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        p = tmp_path / f"{i}.png"
        Image.new("RGBA", (40, 30), c + (255,)).save(p)
        paths.append(str(p))
    data = [(paths[0], 2), (paths[1], 0), (Image.new("L", (20, 20), 255), 1), (paths[2], 1)]
    ds = ImageDataset(data, clip_test_transform(16))
    x, y, i = ds[1]
    assert x.shape == (3, 16, 16) and (y, i) == (0, 1)
    assert torch.allclose(x[:, 8, 8], _norm((0, 255, 0)), atol=1e-3)
    assert torch.allclose(ds[2][0][:, 3, 3], _norm((255, 255, 255)), atol=1e-3)
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate_images)))
    assert batch[0].shape == (4, 3, 16, 16)
    assert batch[1].tolist() == [2, 0, 1, 1] and batch[2].tolist() == [0, 1, 2, 3]
    assert isinstance(ImageDataset(data)[0][0], Image.Image)
    with pytest.raises(IndexError):
        ds[4]


def test_image_dataset_broken_image_raise_or_skip(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (20, 20), (0, 0, 255)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really")
    data = [(str(bad), 0), (str(good), 1)]
    with pytest.raises(ImageLoadError, match=r"bad\.jpg"):
        ImageDataset(data, clip_test_transform(16))[0]
    ds = ImageDataset(data, clip_test_transform(16), on_error="skip")
    with pytest.warns(RuntimeWarning, match=r"bad\.jpg"):
        x, y, i = ds[0]
    assert (y, i) == (1, 1) and list(ds.skipped) == [0]
    with pytest.raises(ImageLoadError, match="none of the 1 images"), pytest.warns(RuntimeWarning):
        ImageDataset([(str(bad), 0)], on_error="skip")[0]
