"""Safe image loading: any path / bytes / file-like / PIL image -> an RGB PIL image.

Every failure is an :class:`ImageLoadError` (a ``ValueError``) whose message names
the file and says what to do. Handled on the way:

* missing, empty, corrupt, truncated and non-image files;
* decompression bombs (``max_pixels``) and images too small to classify (``min_side``);
* EXIF orientation (the picture is turned the way a viewer shows it);
* animated GIF / WebP / APNG (the first frame);
* transparency (palette ``tRNS``, RGBA, LA, PA) composited on a white background;
* CMYK, YCbCr, 1-bit, 8-bit grey;
* 16-bit and 32-bit grey (``I;16*``, ``I``, ``F``), scaled to 8 bits (see :func:`_to_8bit`).

The Gradio app uses this for uploads and the datasets use it for every file.
"""
from __future__ import annotations

import io
import os
import threading
import warnings
from typing import BinaryIO, Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pini_core.errors import ConfigError, DataError

DEFAULT_MAX_PIXELS = 40_000_000  # 40 megapixels: a large phone photo is ~12-50 MP
DEFAULT_MIN_SIDE = 8  # smaller images carry nothing a 224-px CLIP can classify
WHITE = (255, 255, 255)

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image]

# PIL's own bomb check reads the global Image.MAX_IMAGE_PIXELS. We only touch that
# global when a caller asks for a limit above it, and then under this lock.
_PIL_LIMIT_LOCK = threading.Lock()


class ImageLoadError(DataError, ValueError):
    """An image could not be loaded; the message names the file and what to do."""

    def __init__(self, message: str, source_name: str = ""):
        super().__init__(message)
        self.source_name = source_name


def describe_source(source: object) -> str:
    """A short human name for an image source, used in error messages."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, Image.Image):
        name = getattr(source, "filename", "") or ""
        return f"in-memory image {name}".strip() if name else "in-memory image"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"uploaded bytes ({len(source)} bytes)"
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, str) else "file-like object"


def _bomb_message(name: str, pixels: int | None, max_pixels: int) -> str:
    size = f"{pixels:,} pixels" if pixels is not None else "more pixels than allowed"
    return (f"{name}: image has {size}, above the limit of {max_pixels:,} pixels; refusing to "
            "decode it (it may be a decompression bomb, and would exhaust memory). "
            "Downscale the image, or pass a larger max_pixels= if you trust the file.")


def _open(fp, name: str, max_pixels: int | None) -> Image.Image:
    """Image.open with PIL's bomb check mapped onto ours."""
    def _do_open():
        with warnings.catch_warnings():
            # We apply our own limit below; PIL's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(fp)

    try:
        return _do_open()
    except Image.DecompressionBombError as e:
        pil_limit = Image.MAX_IMAGE_PIXELS
        if max_pixels is not None and pil_limit is not None and max_pixels <= 2 * pil_limit:
            raise ImageLoadError(_bomb_message(name, None, max_pixels), name) from e
        # The caller allows more than PIL does: lift PIL's limit for this open only.
        with _PIL_LIMIT_LOCK:
            old = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None if max_pixels is None else max_pixels
            try:
                if hasattr(fp, "seek"):
                    fp.seek(0)
                return _do_open()
            finally:
                Image.MAX_IMAGE_PIXELS = old


def _to_8bit(im: Image.Image) -> Image.Image:
    """Scale a high-bit-depth single-channel image to 8-bit 'L'.

    * ``I;16``, ``I;16L``, ``I;16B``, ``I;16N``: full scale is 65535, so v8 = round(v / 257)
      (65535 / 255 = 257 exactly: 0 -> 0, 65535 -> 255, and 8-bit-in-16-bit data x*257 -> x).
    * ``I`` (32-bit int, which is how PIL opens some 16-bit PNG/TIFF files): values in
      0..255 are kept; values in 0..65535 are treated as 16-bit (/257); anything else
      (negative, or > 65535) is min-max stretched to 0..255.
    * ``F`` (float): values in [0, 1] are scaled by 255; values in [0, 255] kept;
      anything else min-max stretched.
    """
    a = np.asarray(im, dtype=np.float64)
    mode = im.mode
    if mode.startswith("I;16"):
        out = a / 257.0
    else:
        finite = a[np.isfinite(a)]
        lo = float(finite.min()) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 0.0
        if mode == "F" and lo >= 0.0 and hi <= 1.0:
            out = a * 255.0
        elif lo >= 0.0 and hi <= 255.0:
            out = a
        elif mode == "I" and lo >= 0.0 and hi <= 65535.0:
            out = a / 257.0
        else:
            out = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
    out = np.nan_to_num(out, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), mode="L")


def _composite_on(im: Image.Image, background: Tuple[int, int, int]) -> Image.Image:
    rgba = im.convert("RGBA")
    base = Image.new("RGBA", rgba.size, tuple(background) + (255,))
    return Image.alpha_composite(base, rgba).convert("RGB")


def to_rgb(im: Image.Image, background: Tuple[int, int, int] = WHITE) -> Image.Image:
    """Convert a decoded PIL image of any mode to a new RGB image."""
    mode = im.mode
    if mode == "RGB":
        return im.copy()
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _to_8bit(im).convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        return _composite_on(im, background)
    if mode == "P":
        return im.convert("RGB")
    return im.convert("RGB")  # L, 1, CMYK, YCbCr, RGBX, ...


def load_image(source: ImageInput, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               min_side: int = DEFAULT_MIN_SIDE, background: Tuple[int, int, int] = WHITE,
               exif_transpose: bool = True) -> Image.Image:
    """Load ``source`` (a path, bytes, a binary file-like object or a PIL image) as a new,
    fully decoded RGB PIL image.

    ``max_pixels`` (None = no limit) refuses decompression bombs before decoding;
    ``min_side`` refuses images whose shorter side is below it. Transparent pixels are
    composited on ``background``; EXIF orientation is applied; animated files give their
    first frame. Raises :class:`ImageLoadError` naming the file on any failure.
    """
    name = describe_source(source)
    if max_pixels is not None and max_pixels < 1:
        raise ConfigError(f"max_pixels must be a positive number of pixels or None, got {max_pixels}")

    if isinstance(source, Image.Image):
        return _finish(source, name, max_pixels, min_side, background, exif_transpose)

    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise ImageLoadError(f"{path}: file not found. Check the path (and the dataset root "
                                 "folder) or remove the entry from the dataset.", path)
        if os.path.isdir(path):
            raise ImageLoadError(f"{path}: is a folder, not an image file.", path)
        if os.path.getsize(path) == 0:
            raise ImageLoadError(f"{path}: the file is empty (0 bytes); re-download or "
                                 "re-export it, or remove it from the dataset.", path)
        try:
            fp = open(path, "rb")
        except OSError as e:
            raise ImageLoadError(f"{path}: cannot be read ({e.strerror}); check its permissions.",
                                 path) from e
        with fp:
            return _decode(fp, name, max_pixels, min_side, background, exif_transpose)

    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageLoadError("the uploaded data is empty (0 bytes); upload an image file.", name)
        return _decode(io.BytesIO(bytes(source)), name, max_pixels, min_side, background,
                       exif_transpose)

    if hasattr(source, "read"):
        return _decode(source, name, max_pixels, min_side, background, exif_transpose)

    raise TypeError(f"load_image expects a file path, bytes, a binary file-like object or a "
                    f"PIL image, got {type(source).__name__}")


def _decode(fp, name, max_pixels, min_side, background, exif_transpose) -> Image.Image:
    try:
        im = _open(fp, name, max_pixels)
    except ImageLoadError:
        raise
    except UnidentifiedImageError as e:
        raise ImageLoadError(f"{name}: not an image file PIL can read (corrupt, or an "
                             "unsupported format). Re-export it as PNG or JPEG, or remove it "
                             "from the dataset.", name) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(f"{name}: cannot open the image ({e}). The file is probably "
                             "corrupt; re-export it as PNG or JPEG, or remove it.", name) from e
    with im:
        _check_size(im.size, name, max_pixels, min_side)
        try:
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)  # animated GIF / WebP / APNG: the first frame
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
        except Image.DecompressionBombError as e:
            raise ImageLoadError(_bomb_message(name, None, max_pixels or 0), name) from e
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            msg = str(e)
            what = "truncated (incomplete download?)" if "truncat" in msg.lower() else "corrupt"
            raise ImageLoadError(f"{name}: the image data is {what}: {msg}. Re-download or "
                                 "re-export the file, or remove it from the dataset "
                                 "(datasets: on_error='skip').", name) from e
        return _finish(im, name, max_pixels, min_side, background, exif_transpose)


def _check_size(size, name, max_pixels, min_side) -> None:
    w, h = size
    if max_pixels is not None and w * h > max_pixels:
        raise ImageLoadError(_bomb_message(name, w * h, max_pixels), name)
    if min(w, h) < min_side:
        raise ImageLoadError(f"{name}: image is only {w}x{h} pixels; at least {min_side} pixels "
                             "on each side are needed. Use a larger image.", name)


def _finish(im, name, max_pixels, min_side, background, exif_transpose) -> Image.Image:
    _check_size(im.size, name, max_pixels, min_side)
    try:
        if exif_transpose:
            transposed = ImageOps.exif_transpose(im)
            im = transposed if transposed is not None else im
        out = to_rgb(im, background)
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageLoadError(f"{name}: cannot convert the image (mode {im.mode}) to RGB ({e}). "
                             "Re-export it as an 8-bit RGB PNG or JPEG.", name) from e
    _check_size(out.size, name, max_pixels, min_side)
    return out
