"""Upload safety (pini_core.uploads) and the ZeroGPU shim (pini_core.spaces), without a server."""
from __future__ import annotations

import sys
import types
import zipfile

import numpy as np
import pytest
from PIL import Image

from pini_core import spaces, uploads
from pini_core.uploads import UploadError, extract_image_zip, open_uploaded_image
from tests import app_badfiles as bad


@pytest.mark.parametrize("make, words", [
    (bad.corrupt_file, "corrupt"),
    (bad.tiny_png, "1x1"),
    (bad.huge_png, "40 megapixels"),
])
def test_bad_images_are_refused_with_a_reason(tmp_path, make, words):
    path = make(tmp_path / "upload.png")
    with pytest.raises(UploadError) as e:
        open_uploaded_image(path)
    msg = str(e.value)
    assert words in msg
    assert "'upload.png'" in msg and str(tmp_path) not in msg  # the user's name, not the server path


def test_huge_png_is_refused_before_decoding(tmp_path):
    path = bad.huge_png(tmp_path / "bomb.png")
    assert path.stat().st_size < 10_000  # cheap file, 400 megapixel claim
    with pytest.raises(UploadError, match="decompression bomb|limit"):
        open_uploaded_image(path)


def test_too_many_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_IMAGE_BYTES", 1000)
    path = tmp_path / "big.png"
    Image.fromarray(bad.photo_like(0, 128)).save(path)
    with pytest.raises(UploadError, match="limit is"):
        open_uploaded_image(path)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(UploadError, match="empty"):
        open_uploaded_image(p)


@pytest.mark.parametrize("make", [bad.cmyk_jpeg, bad.png16, bad.animated_gif])
def test_awkward_but_valid_images_become_rgb(tmp_path, make):
    path = make(tmp_path / ("x" + {"cmyk_jpeg": ".jpg", "png16": ".png", "animated_gif": ".gif"}[make.__name__]))
    im = open_uploaded_image(path)
    assert im.mode == "RGB" and im.size == (96, 96)
    a = np.asarray(im)
    assert a.std() > 5  # real content survived the conversion, not a blank image


def test_16bit_png_keeps_its_values(tmp_path):
    path = bad.png16(tmp_path / "g16.png")
    assert Image.open(path).mode.startswith("I;16")
    expect = bad.photo_like(2)[..., 0]
    got = np.asarray(open_uploaded_image(path))[..., 0]
    assert np.abs(got.astype(int) - expect.astype(int)).max() <= 1


def test_good_zip_with_top_folder(tmp_path):
    z = bad.class_zip(tmp_path / "d.zip", classes=("red", "blue", "green"), per_class=3, prefix="mydata/")
    ds = extract_image_zip(z, tmp_path / "out")
    assert ds.classnames == ["blue", "green", "red"]
    assert ds.counts() == {"blue": 3, "green": 3, "red": 3}
    for path, label in ds.items:
        assert path.startswith(str((tmp_path / "out").resolve()))
        assert f"/{ds.classnames[label]}/" in path
    uploads.check_zip_images(ds)


def test_zip_with_split_folders(tmp_path):
    z = tmp_path / "s.zip"
    with zipfile.ZipFile(z, "w") as f:
        for split in ("train", "test"):
            for c in ("cat", "dog"):
                f.writestr(f"{split}/{c}/1.png", bad.png_bytes(bad.photo_like(1, 32)))
    ds = extract_image_zip(z, tmp_path / "out")
    assert ds.classnames == ["cat", "dog"] and len(ds.items) == 4


def test_zip_without_images(tmp_path):
    with pytest.raises(UploadError, match="contains no images"):
        extract_image_zip(bad.zip_without_images(tmp_path / "n.zip"), tmp_path / "out")


@pytest.mark.parametrize("member", ["../../evil/escape.png", "/etc/evil.png", "cat/../../x.png", "C:/evil.png",
                                    "..\\..\\evil.png"])
def test_zip_escaping_its_folder_is_refused_and_writes_nothing(tmp_path, member):
    z = bad.zip_escaping(tmp_path / "e.zip", member)
    out = tmp_path / "deep" / "out"
    with pytest.raises(UploadError, match="escapes its folder"):
        extract_image_zip(z, out)
    assert not out.exists()  # refused before anything was written
    assert not (tmp_path / "evil").exists()


def test_zip_symlink_is_refused(tmp_path):
    with pytest.raises(UploadError, match="symbolic link"):
        extract_image_zip(bad.zip_with_symlink(tmp_path / "l.zip"), tmp_path / "out")


def test_zip_bomb_ratio_is_refused(tmp_path):
    z = tmp_path / "b.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as f:
        f.writestr("cat/1.png", b"\x00" * 5_000_000)
        f.writestr("dog/1.png", b"\x00" * 10)
    with pytest.raises(UploadError, match="zip bomb"):
        extract_image_zip(z, tmp_path / "out")


def test_not_a_zip_and_one_class(tmp_path):
    p = tmp_path / "x.zip"
    p.write_bytes(b"hello")
    with pytest.raises(UploadError, match="not a zip"):
        extract_image_zip(p, tmp_path / "o1")
    one = bad.class_zip(tmp_path / "one.zip", classes=("cat",))
    with pytest.raises(UploadError, match="only one class"):
        extract_image_zip(one, tmp_path / "o2")


def test_loose_images_are_explained(tmp_path):
    z = tmp_path / "l.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("1.png", bad.png_bytes(bad.photo_like(1, 32)))
        f.writestr("dog/1.png", bad.png_bytes(bad.photo_like(1, 32)))
    with pytest.raises(UploadError, match="outside class folders"):
        extract_image_zip(z, tmp_path / "out")


def test_a_bad_image_inside_a_zip_is_named(tmp_path):
    z = tmp_path / "c.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("cat/ok.png", bad.png_bytes(bad.photo_like(1, 32)))
        f.writestr("dog/broken.png", b"\x89PNGgarbage")
    ds = extract_image_zip(z, tmp_path / "out")
    with pytest.raises(UploadError, match="dog/broken.png"):
        uploads.check_zip_images(ds)


# ----- ZeroGPU shim ----------------------------------------------------------------------
def _f(x):
    return x + 1


def test_gpu_shim_is_a_no_op_off_spaces(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert spaces.gpu(_f) is _f
    assert spaces.gpu(duration=30)(_f) is _f
    assert not spaces.zero_gpu_active()


def test_gpu_shim_uses_spaces_gpu_on_a_space(monkeypatch):
    calls = []
    fake = types.ModuleType("spaces")

    def GPU(fn=None, duration=None):
        calls.append(duration)
        if fn is None:
            return lambda f: ("wrapped", f)
        return ("wrapped", fn)

    fake.GPU = GPU
    monkeypatch.setitem(sys.modules, "spaces", fake)
    monkeypatch.setenv("SPACE_ID", "someone/pini")
    assert spaces.gpu(_f) == ("wrapped", _f)
    assert spaces.gpu(duration=120)(_f) == ("wrapped", _f)
    assert calls == [None, 120]
    assert spaces.zero_gpu_active()


def test_gpu_shim_without_the_package_on_a_space(monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/pini")
    monkeypatch.setitem(sys.modules, "spaces", None)  # import fails
    assert spaces.gpu(_f) is _f
