"""Safe handling of files that strangers upload (the app, a Space).

Two entry points:

* `open_uploaded_image(path)` -> RGB PIL image, or `UploadError` with a message a
  person can act on (too many bytes, too many pixels, too small, not an image).
  Decoding itself (CMYK, 16-bit, palette, animated GIF, EXIF rotation, bombs) is
  done by `pini_core.data.images.load_image`; this module only adds the app's limits.
* `extract_image_zip(path, dest)` -> `ZipDataset`: a zip of class-named image
  folders, unpacked without ever writing outside `dest` (no absolute paths, no
  `..`, no symlinks), with limits on members, bytes and compression ratio.
"""
from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Dict, List, Tuple, Union

from PIL import Image

# --- limits (the app's policy; a Space is shared by strangers) ---------------------
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # one uploaded image file
MAX_IMAGE_PIXELS = 40_000_000  # width * height of one image (a 20000x20000 PNG is 400 M)
MIN_IMAGE_SIDE = 8  # smaller images carry no usable content
MAX_ZIP_BYTES = 200 * 1024 * 1024  # the zip file itself
MAX_ZIP_UNCOMPRESSED = 500 * 1024 * 1024  # sum of the members' sizes
MAX_ZIP_MEMBERS = 5000
MAX_ZIP_RATIO = 200  # uncompressed / compressed, per member (zip bombs)
SPLIT_NAMES = {"train", "val", "test"}  # ImageFolder's optional split folders
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class UploadError(ValueError):
    """An upload was refused; the message says why and what to do."""


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"


def open_uploaded_image(path: Union[str, os.PathLike], *, name: str | None = None) -> Image.Image:
    """Open an uploaded image file as RGB within the app's limits.

    Raises UploadError (never a traceback) for files that are too large, images with
    too many or too few pixels, and files that are not images. Decoding (CMYK, 16-bit,
    animated GIF, EXIF rotation, bomb checks) is `pini_core.data.images.load_image`'s.
    """
    shown = name or os.path.basename(str(path))
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise UploadError(f"Could not read the upload {shown!r}: {e.strerror or e}. Please upload it again.") from e
    if size == 0:
        raise UploadError(f"The file {shown!r} is empty. Please upload an image file (PNG, JPEG, ...).")
    if size > MAX_IMAGE_BYTES:
        raise UploadError(f"The file {shown!r} is {_mb(size)}; the limit is {_mb(MAX_IMAGE_BYTES)}. "
                          "Please upload a smaller image.")
    from pini_core.data.images import ImageLoadError, load_image  # decoding, bombs, CMYK, 16-bit, GIF

    try:
        # load_image refuses images over max_pixels from the header, before decoding.
        return load_image(os.fspath(path), max_pixels=MAX_IMAGE_PIXELS, min_side=MIN_IMAGE_SIDE)
    except ImageLoadError as e:
        if "decompression bomb" in str(e):  # the library's advice (max_pixels=) is for developers
            raise UploadError(f"The image {shown!r} has more pixels than this app accepts "
                              f"({MAX_IMAGE_PIXELS / 1e6:.0f} megapixels; it may be a decompression bomb). "
                              "Please downscale it (e.g. to 4000x4000 or less) and upload it again.") from e
        # Its message names the server-side temp path; show the user's file name instead.
        msg = str(e).replace(os.fspath(path), repr(shown))
        raise UploadError(msg) from e


@dataclass
class ZipDataset:
    """An unpacked zip of class folders: root/<class name>/<image>."""

    root: Path  # give it to get_dataset('imagefolder', root=...)
    classnames: List[str]
    items: List[Tuple[str, int]]  # (image path, label)
    skipped: List[str] = field(default_factory=list)  # members that were not images

    def counts(self) -> Dict[str, int]:
        out = {c: 0 for c in self.classnames}
        for _, y in self.items:
            out[self.classnames[y]] += 1
        return out


def _safe_member_path(name: str) -> PurePosixPath:
    """The member's relative path, or UploadError when it would land outside the folder."""
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in p.parts:
        raise UploadError(f"The zip contains the path {name!r}, which escapes its folder. "
                          "Refused: please zip only a folder of class-named image folders.")
    return p


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return stat.S_ISLNK(mode)


def extract_image_zip(zip_path: Union[str, os.PathLike], dest: Union[str, os.PathLike]) -> ZipDataset:
    """Unpack a zip of class-named image folders into `dest`, safely.

    Accepted layouts (those of `pini_core.data.imagefolder`): `cat/1.jpg, dog/2.jpg, ...`,
    or `train/cat/1.jpg, test/cat/9.jpg, ...`, either inside one top folder (`pets/cat/1.jpg`).
    Non-image members are skipped and listed. Raises UploadError for
    a file that is not a zip, paths that escape the folder, symlinks, bombs, and a zip
    with no images or fewer than two classes.
    """
    zip_path = Path(zip_path)
    dest = Path(dest)
    shown = zip_path.name
    try:
        size = zip_path.stat().st_size
    except OSError as e:
        raise UploadError(f"Could not read the upload {shown!r}. Please upload it again.") from e
    if size > MAX_ZIP_BYTES:
        raise UploadError(f"The zip {shown!r} is {_mb(size)}; the limit is {_mb(MAX_ZIP_BYTES)}.")
    if not zipfile.is_zipfile(zip_path):
        raise UploadError(f"The file {shown!r} is not a zip archive. Please upload a .zip of class-named "
                          "image folders (e.g. cat/1.jpg, dog/2.jpg).")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise UploadError(f"The zip {shown!r} is damaged: {e}") from e
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise UploadError(f"The zip {shown!r} has {len(infos)} entries; the limit is {MAX_ZIP_MEMBERS}.")
        images: List[Tuple[zipfile.ZipInfo, PurePosixPath]] = []
        skipped: List[str] = []
        total = 0
        for info in infos:
            rel = _safe_member_path(info.filename)  # check every member, even skipped ones
            if _is_symlink(info):
                raise UploadError(f"The zip contains a symbolic link {info.filename!r}. Refused: "
                                  "please zip the image files themselves.")
            if info.is_dir():
                continue
            parts = rel.parts
            if any(part.startswith(".") for part in parts) or (parts and parts[0] == "__MACOSX"):
                continue  # hidden files and macOS resource forks
            if rel.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append(info.filename)
                continue
            total += info.file_size
            if total > MAX_ZIP_UNCOMPRESSED:
                raise UploadError(f"The zip {shown!r} unpacks to more than {_mb(MAX_ZIP_UNCOMPRESSED)}. "
                                  "Please send fewer or smaller images.")
            if info.compress_size > 0 and info.file_size / info.compress_size > MAX_ZIP_RATIO:
                raise UploadError(f"The member {info.filename!r} is compressed more than {MAX_ZIP_RATIO}:1 "
                                  "(a possible zip bomb). Refused.")
            images.append((info, rel))
        if not images:
            raise UploadError(f"The zip {shown!r} contains no images. Expected class-named folders of "
                              "images, e.g. cat/1.jpg, dog/2.jpg.")
        # Strip one common top folder (`pets/cat/1.jpg` -> `cat/1.jpg`).
        rels = [rel for _, rel in images]
        while all(len(r.parts) >= 3 for r in rels) and len({r.parts[0] for r in rels}) == 1:
            rels = [PurePosixPath(*r.parts[1:]) for r in rels]
        split_layout = {r.parts[0].lower() for r in rels} <= SPLIT_NAMES and all(len(r.parts) >= 3 for r in rels)
        depth = 1 if split_layout else 0  # where the class folder sits in a member's path
        loose = [str(r) for r in rels if len(r.parts) < depth + 2]
        if loose:
            raise UploadError(f"The zip has images outside class folders (e.g. {loose[0]!r}). Put each "
                              "class's images in a folder named after the class, e.g. cat/1.jpg.")
        classnames = sorted({r.parts[depth] for r in rels})
        if len(classnames) < 2:
            raise UploadError(f"The zip has only one class folder ({classnames[0]!r}); a classifier needs "
                              "at least two.")
        dest.mkdir(parents=True, exist_ok=True)
        dest_resolved = dest.resolve()
        index = {c: i for i, c in enumerate(classnames)}
        items: List[Tuple[str, int]] = []
        for (info, _), rel in zip(images, rels):
            target = (dest / Path(*rel.parts)).resolve()
            if dest_resolved not in target.parents:  # belt and braces after _safe_member_path
                raise UploadError(f"The zip member {info.filename!r} escapes its folder. Refused.")
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with zf.open(info) as src, open(target, "wb") as out:
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > info.file_size or written > MAX_IMAGE_BYTES:
                        raise UploadError(f"The member {info.filename!r} is larger than it declares or than "
                                          f"{_mb(MAX_IMAGE_BYTES)}. Refused.")
                    out.write(chunk)
            items.append((str(target), index[rel.parts[depth]]))
    return ZipDataset(root=dest, classnames=classnames, items=items, skipped=skipped)


def check_zip_images(ds: ZipDataset) -> ZipDataset:
    """Open every image of an unpacked zip with the app's limits; UploadError names the first bad one."""
    for path, _ in ds.items:
        rel = os.path.relpath(path, ds.root)
        open_uploaded_image(path, name=rel)
    return ds
