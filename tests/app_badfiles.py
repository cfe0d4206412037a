"""Generators of bad (and awkward but valid) upload files, shared by the app tests."""
from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A valid-looking PNG whose header claims width x height 8-bit grey pixels (400 M for
    the default), with a few rows of data: what a decompression bomb looks like to a reader
    of headers, and a cheap file (a few hundred bytes) to make."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


def corrupt_file(path: Path) -> Path:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not really an image" * 10)
    return path


def tiny_png(path: Path) -> Path:
    Image.new("RGB", (1, 1), (255, 0, 0)).save(path)
    return path


def photo_like(seed: int, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(6 * x + seed), np.cos(5 * y - seed), x * y], -1)
    return np.clip((base * 0.5 + 0.5) * 255 + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def cmyk_jpeg(path: Path) -> Path:
    Image.fromarray(photo_like(1)).convert("CMYK").save(path, "JPEG")
    return path


def png16(path: Path) -> Path:
    a = (photo_like(2)[..., 0].astype(np.uint16) * 257)
    Image.fromarray(a).save(path)  # uint16 -> a 16-bit grey PNG
    return path


def animated_gif(path: Path) -> Path:
    frames = [Image.fromarray(photo_like(s)) for s in (3, 4, 5)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def png_bytes(arr: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(arr).save(b, "PNG")
    return b.getvalue()


def class_zip(path: Path, classes=("red", "blue"), per_class: int = 6, prefix: str = "") -> Path:
    """A small valid dataset: one folder per class of coloured images."""
    with zipfile.ZipFile(path, "w") as z:
        for ci, name in enumerate(classes):
            for i in range(per_class):
                a = photo_like(10 * ci + i, 48)
                a[..., ci % 3] = np.clip(a[..., ci % 3].astype(int) + 120, 0, 255)
                z.writestr(f"{prefix}{name}/{i}.png", png_bytes(a))
    return path


def zip_without_images(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("cat/readme.txt", "no pictures here")
        z.writestr("dog/notes.csv", "a,b\n1,2\n")
    return path


def zip_escaping(path: Path, member: str = "../../evil/escape.png") -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("cat/1.png", png_bytes(photo_like(1, 32)))
        z.writestr(member, png_bytes(photo_like(2, 32)))
    return path


def zip_with_symlink(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("cat/1.png", png_bytes(photo_like(1, 32)))
        info = zipfile.ZipInfo("dog/link.png")
        info.external_attr = (0o120777 << 16)  # a symbolic link
        z.writestr(info, "/etc/passwd")
    return path
