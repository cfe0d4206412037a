"""load_image: every odd image kind -> RGB with the right size and values; clear errors."""
import io
import warnings

import numpy as np
import pytest
from PIL import Image

from pini_core.data.images import DEFAULT_MAX_PIXELS, ImageLoadError, load_image


def _save(im, path, **kw):
    im.save(path, **kw)
    return str(path)


def _arr(im):
    assert im.mode == "RGB"
    return np.asarray(im).astype(int)


def test_rgb_png_roundtrip_from_path_bytes_filelike_and_pil(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    path = _save(Image.fromarray(a), tmp_path / "x.png")
    data = open(path, "rb").read()
    for src in (path, tmp_path / "x.png", data, bytearray(data), io.BytesIO(data),
                Image.open(path)):
        out = load_image(src)
        assert out.size == (20, 12)
        np.testing.assert_array_equal(np.asarray(out), a)


def test_result_is_independent_of_the_input_pil_image():
    src = Image.new("RGB", (16, 16), (1, 2, 3))
    out = load_image(src)
    out.putpixel((0, 0), (9, 9, 9))
    assert src.getpixel((0, 0)) == (1, 2, 3)


def test_cmyk_tiff_exact_and_jpeg_approx(tmp_path):
    im = Image.new("CMYK", (16, 8), (0, 0, 0, 0))  # no ink = white
    im.paste((0, 255, 255, 0), (0, 0, 8, 8))  # magenta + yellow = red
    out = _arr(load_image(_save(im, tmp_path / "c.tif")))
    assert out.shape == (8, 16, 3)
    assert tuple(out[4, 2]) == (255, 0, 0)
    assert tuple(out[4, 12]) == (255, 255, 255)
    out = _arr(load_image(_save(im, tmp_path / "c.jpg", quality=95)))
    assert np.abs(out[4, 2] - [255, 0, 0]).max() < 12
    assert np.abs(out[4, 12] - [255, 255, 255]).max() < 12


def test_16bit_png_scaled_to_8bit(tmp_path):
    a = np.array([[0, 257 * 100, 65535, 257 * 7, 51528] * 4] * 8, dtype=np.uint16)
    im = Image.fromarray(a)
    assert im.mode == "I;16"
    path = _save(im, tmp_path / "g16.png")
    assert Image.open(path).mode.startswith("I")  # PIL opens it as a 16/32-bit mode
    out = _arr(load_image(path))
    assert out.shape == (8, 20, 3)
    # v8 = round(v / 257): 51528 / 257 = 200.498 -> 200 (a /256 scaling would give 201)
    np.testing.assert_array_equal(out[0, :5, 0], [0, 100, 255, 7, 200])
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_32bit_int_and_float_modes():
    i16 = Image.fromarray(np.full((8, 8), 257 * 40, dtype=np.int32), mode="I")
    assert _arr(load_image(i16))[0, 0, 0] == 40  # 16-bit data stored in mode I
    i8 = Image.fromarray(np.full((8, 8), 77, dtype=np.int32), mode="I")
    assert _arr(load_image(i8))[0, 0, 0] == 77  # 8-bit range kept
    neg = np.zeros((8, 8), dtype=np.int32)
    neg[0, 0], neg[0, 1] = -1000, 1000
    out = _arr(load_image(Image.fromarray(neg, mode="I")))
    assert (out[0, 0, 0], out[0, 1, 0], out[3, 3, 0]) == (0, 255, 128)  # min-max stretch
    f = Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32), mode="F")
    assert _arr(load_image(f))[0, 0, 0] == 128


def test_palette_with_transparency_composited_on_white(tmp_path):
    im = Image.new("P", (10, 10), 0)
    im.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)  # 0 = blue, 1 = red
    im.paste(1, (0, 0, 5, 10))
    im.info["transparency"] = 0  # blue is transparent
    for fmt in ("png", "gif"):
        path = _save(im, tmp_path / f"p.{fmt}", transparency=0)
        out = _arr(load_image(path))
        assert tuple(out[5, 2]) == (255, 0, 0), fmt
        assert tuple(out[5, 8]) == (255, 255, 255), fmt


def test_la_and_rgba_alpha(tmp_path):
    la = Image.new("LA", (8, 8), (0, 0))
    la.paste((0, 255), (0, 0, 4, 8))
    out = _arr(load_image(_save(la, tmp_path / "la.png")))
    assert tuple(out[0, 0]) == (0, 0, 0) and tuple(out[0, 7]) == (255, 255, 255)
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 128))
    out = _arr(load_image(_save(rgba, tmp_path / "a.png")))
    assert out[0, 0, 0] == 255 and abs(out[0, 0, 1] - 127) <= 1 and abs(out[0, 0, 2] - 127) <= 1
    out = _arr(load_image(rgba, background=(0, 0, 0)))
    assert out[0, 0, 0] in (128, 127) and out[0, 0, 1] == 0


def test_one_bit_and_grey(tmp_path):
    b = Image.new("1", (9, 9), 1)
    assert tuple(_arr(load_image(_save(b, tmp_path / "b.png")))[0, 0]) == (255, 255, 255)
    g = Image.new("L", (9, 9), 42)
    assert tuple(_arr(load_image(g))[3, 3]) == (42, 42, 42)


@pytest.mark.parametrize("fmt", ["gif", "webp", "png"])
def test_animated_first_frame(tmp_path, fmt):
    frames = [Image.new("RGB", (20, 10), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    kw = {"lossless": True} if fmt == "webp" else {}
    path = _save(frames[0], tmp_path / f"anim.{fmt}", save_all=True, append_images=frames[1:],
                 duration=100, **kw)
    assert getattr(Image.open(path), "n_frames", 1) == 3
    out = _arr(load_image(path))
    assert out.shape == (10, 20, 3)
    assert np.abs(out - [255, 0, 0]).max() <= 2


def test_exif_orientation_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(im, tmp_path / "o.jpg", exif=exif, quality=95)
    out = _arr(load_image(path))
    assert out.shape == (40, 20, 3)  # 20 wide, 40 high once turned upright
    assert np.abs(out[5, 10] - [255, 0, 0]).max() < 20  # the red left half is now on top
    assert np.abs(out[35, 10] - [0, 0, 255]).max() < 20
    raw = _arr(load_image(path, exif_transpose=False))
    assert raw.shape == (20, 40, 3)


def test_missing_empty_directory_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(ImageLoadError, match=r"nope\.png: file not found"):
        load_image(tmp_path / "nope.png")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty\.jpg: the file is empty"):
        load_image(empty)
    with pytest.raises(ImageLoadError, match="is a folder"):
        load_image(tmp_path)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ImageLoadError, match=r"junk\.jpg: not an image file") as e:
        load_image(junk)
    assert "re-export" in str(e.value).lower()
    assert isinstance(e.value, ValueError) and e.value.source_name == str(junk)
    with pytest.raises(ImageLoadError, match="uploaded data is empty"):
        load_image(b"")
    with pytest.raises(TypeError, match="file path, bytes"):
        load_image(12345)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_truncated_file_names_the_file(tmp_path, fmt):
    a = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = tmp_path / f"full.{fmt}"
    Image.fromarray(a).save(full)
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ImageLoadError, match=rf"cut\.{fmt}: the image data is truncated"):
        load_image(cut)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    big = tmp_path / "big.png"
    Image.new("1", (9000, 5000)).save(big)  # 45 MP of zeros: a few kB on disk
    assert big.stat().st_size < 200_000
    with pytest.raises(ImageLoadError, match=r"45,000,000 pixels, above the limit of 40,000,000") as e:
        load_image(big)
    assert "decompression bomb" in str(e.value) and "max_pixels" in str(e.value)
    assert DEFAULT_MAX_PIXELS == 40_000_000
    with pytest.raises(ImageLoadError, match="above the limit of 1,000 pixels"):
        load_image(Image.new("RGB", (100, 100)), max_pixels=1000)


def test_pil_global_limit_is_handled_both_ways(tmp_path, monkeypatch):
    path = _save(Image.new("RGB", (100, 100), (5, 6, 7)), tmp_path / "m.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL itself now refuses > 2000 px
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning may leak
        out = load_image(path)  # our limit (40 MP) allows it: PIL's is lifted for this call
        assert tuple(_arr(out)[0, 0]) == (5, 6, 7)
        assert Image.MAX_IMAGE_PIXELS == 1000  # and restored
        with pytest.raises(ImageLoadError, match="decompression bomb"):
            load_image(path, max_pixels=1500)
    out = load_image(path, max_pixels=None)
    assert out.size == (100, 100)


def test_tiny_image_refused_with_size_in_message():
    with pytest.raises(ImageLoadError, match=r"only 4x20 pixels; at least 8"):
        load_image(Image.new("RGB", (4, 20)))
    assert load_image(Image.new("RGB", (4, 20)), min_side=4).size == (4, 20)
