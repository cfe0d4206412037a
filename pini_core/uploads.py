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

import json
import os
import shutil
import stat
import zipfile
import zlib
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
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


from pini_core.errors import DataError  # noqa: E402  (one error hierarchy, issue 12)


class UploadError(DataError, ValueError):
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


def _show(name: str, limit: int = 80) -> str:
    """A member or folder name as a message shows it: quoted, long names shortened."""
    if len(name) <= limit:
        return repr(name)
    return repr(name[:48] + "…" + name[-24:]) + f" ({len(name)} characters)"


def _safe_member_path(name: str) -> PurePosixPath:
    """The member's relative path, or UploadError when it would land outside the folder."""
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in p.parts:
        raise UploadError(f"The zip contains the path {_show(name)}, which escapes its folder. "
                          "Refused: please zip only a folder of class-named image folders.")
    return p


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return stat.S_ISLNK(mode)


# Compression methods Python's zipfile can read (others, e.g. Deflate64, fail at read time).
_READABLE_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
                     zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
MAX_NAME_BYTES = 255  # one file or folder name (the limit of common file systems)
MAX_PATH_BYTES = 1024  # a member's whole path inside the zip


def _split_lookup() -> Dict[str, str]:
    """Folder name (lower case) -> split, exactly as `pini_core.data.imagefolder` reads them."""
    from pini_core.data.imagefolder import SPLIT_DIR_NAMES

    return {n: split for split, names in SPLIT_DIR_NAMES.items() for n in names}


def _check_member(info: zipfile.ZipInfo) -> PurePosixPath:
    """Refuse members that would write outside the folder (every member, even skipped ones);
    returns the relative path."""
    rel = _safe_member_path(info.filename)
    if _is_symlink(info):
        raise UploadError(f"The zip contains a symbolic link {_show(info.filename)}. Refused: "
                          "please zip the image files themselves.")
    return rel


def _check_readable(info: zipfile.ZipInfo, rel: PurePosixPath) -> None:
    """Refuse an image member that cannot be unpacked: encrypted, an unreadable compression,
    a name too long for a file system."""
    if info.flag_bits & 0x1:
        raise UploadError(f"The zip member {_show(info.filename)} is encrypted (password-protected). "
                          "Please zip the images without a password.")
    if info.compress_type not in _READABLE_METHODS:
        raise UploadError(f"The zip member {_show(info.filename)} uses a compression method this app cannot "
                          f"read (method {info.compress_type}). Please re-create the zip with standard "
                          "(deflate) compression.")
    if len(info.filename.encode("utf-8")) > MAX_PATH_BYTES:
        raise UploadError(f"The zip member {_show(info.filename)} has a path longer than {MAX_PATH_BYTES} "
                          "bytes. Please use shorter folder and file names.")
    for part in rel.parts:
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            what = "folder" if part != rel.parts[-1] else "file"
            raise UploadError(f"The zip has a {what} name of {len(part)} characters: {_show(part)}. "
                              f"Names may have at most {MAX_NAME_BYTES} bytes; please rename it.")


def _scan_zip(zf: zipfile.ZipFile, shown: str):
    """Check a zip's entries without unpacking anything.

    Returns (images [(info, path relative to the dataset root)], class names, skipped names,
    bytes the images unpack to, depth of the class folder in a path). Raises UploadError for
    every problem this module knows, so nothing is written for a zip that would fail later."""
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise UploadError(f"The zip {shown!r} has {len(infos)} entries; the limit is {MAX_ZIP_MEMBERS}.")
    images: List[Tuple[zipfile.ZipInfo, PurePosixPath]] = []
    skipped: List[str] = []
    total = 0
    for info in infos:
        rel = _check_member(info)
        if info.is_dir():
            continue
        parts = rel.parts
        if any(part.startswith(".") for part in parts) or (parts and parts[0] == "__MACOSX"):
            continue  # hidden files and macOS resource forks
        if rel.suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append(info.filename)
            continue
        _check_readable(info, rel)
        total += info.file_size
        if total > MAX_ZIP_UNCOMPRESSED:
            raise UploadError(f"The zip {shown!r} unpacks to more than {_mb(MAX_ZIP_UNCOMPRESSED)}. "
                              "Please send fewer or smaller images.")
        if info.compress_size > 0 and info.file_size / info.compress_size > MAX_ZIP_RATIO:
            raise UploadError(f"The member {_show(info.filename)} is compressed more than {MAX_ZIP_RATIO}:1 "
                              "(a possible zip bomb). Refused.")
        images.append((info, rel))
    if not images:
        raise UploadError(f"The zip {shown!r} contains no images. Expected class-named folders of "
                          "images, e.g. cat/1.jpg, dog/2.jpg.")
    # The same path twice, or a path that is a file and also a folder (cat/x.png + cat/x.png/y.png).
    files: Dict[PurePosixPath, str] = {}
    for info, rel in images:
        if rel in files:
            raise UploadError(f"The zip contains {_show(str(rel))} twice. Please keep one of them.")
        files[rel] = info.filename
    for info, rel in images:
        for parent in rel.parents:
            if parent in files:
                raise UploadError(f"The zip uses {_show(str(parent))} both as a file and as a folder (it also "
                                  f"holds {_show(info.filename)}). Please rename one of them.")
    # Strip one common top folder (`pets/cat/1.jpg` -> `cat/1.jpg`).
    rels = [rel for _, rel in images]
    while all(len(r.parts) >= 3 for r in rels) and len({r.parts[0] for r in rels}) == 1:
        rels = [PurePosixPath(*r.parts[1:]) for r in rels]
    # Split layout exactly as the ImageFolder reader decides it: every top folder is a split name.
    lookup = _split_lookup()
    tops = sorted({r.parts[0] for r in rels if len(r.parts) > 1})
    split_layout = bool(tops) and all(t.lower() in lookup for t in tops)
    if split_layout:
        seen: Dict[str, str] = {}
        for t in tops:
            other = seen.setdefault(lookup[t.lower()], t)
            if other != t:
                raise UploadError(f"The zip has both {other}/ and {t}/, which are the same split "
                                  f"({lookup[t.lower()]}). Please keep one of them.")
        if "train" not in seen:
            raise UploadError(f"The zip has split folders ({', '.join(t + '/' for t in tops)}) but no train/ "
                              "folder. Put the training images in train/<class>/ (test/ and val/ are optional).")
        direct = [str(r) for r in rels if len(r.parts) < 3]
        if direct:
            first = PurePosixPath(direct[0])
            raise UploadError(f"The zip has images directly in the split folder {first.parts[0]}/ (e.g. "
                              f"{_show(direct[0])}). Inside {first.parts[0]}/, put each class's images in a "
                              f"folder named after the class, e.g. {first.parts[0]}/cat/1.jpg.")
    depth = 1 if split_layout else 0  # where the class folder sits in a member's path
    loose = [str(r) for r in rels if len(r.parts) < depth + 2]
    if loose:
        raise UploadError(f"The zip has images outside class folders (e.g. {_show(loose[0])}). Put each "
                          "class's images in a folder named after the class, e.g. cat/1.jpg.")
    classnames = sorted({r.parts[depth] for r in rels})
    if len(classnames) < 2:
        raise UploadError(f"The zip has only one class folder ({_show(classnames[0])}); a classifier needs "
                          "at least two.")
    return [(info, rel) for (info, _), rel in zip(images, rels)], classnames, skipped, total, depth


def _open_zip(zip_path: Path, shown: str) -> zipfile.ZipFile:
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
        return zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise UploadError(f"The zip {shown!r} is damaged and cannot be read. Please re-create it.") from e


def zip_unpacked_bytes(zip_path: Union[str, os.PathLike], *, shown: str | None = None) -> int:
    """Bytes the zip's images unpack to, after every check of `extract_image_zip` that needs no
    unpacking (UploadError otherwise): call it to make room before unpacking."""
    zip_path = Path(zip_path)
    shown = shown or zip_path.name
    with _open_zip(zip_path, shown) as zf:
        return _scan_zip(zf, shown)[3]


def extract_image_zip(zip_path: Union[str, os.PathLike], dest: Union[str, os.PathLike], *,
                      shown: str | None = None) -> ZipDataset:
    """Unpack a zip of class-named image folders into `dest`, safely.

    Accepted layouts (those of `pini_core.data.imagefolder`): `cat/1.jpg, dog/2.jpg, ...`,
    or `train/cat/1.jpg, test/cat/9.jpg, ...`, either inside one top folder (`pets/cat/1.jpg`).
    Non-image members are skipped and listed. Raises UploadError, naming the member as it is in
    the zip (never a server path) and before anything is written where it can tell, for: a file
    that is not a zip, paths that escape the folder, symlinks, encrypted members, unreadable
    compression, names too long for a file system, a path used as a file and as a folder,
    duplicate members, bombs, images outside class folders (also directly in train/ or test/),
    fewer than two classes, and members whose data is damaged (bad CRC). `shown`: the name
    the user knows the zip by (default: the file's name).
    """
    zip_path = Path(zip_path)
    dest = Path(dest)
    shown = shown or zip_path.name
    with _open_zip(zip_path, shown) as zf:
        images, classnames, skipped, _, depth = _scan_zip(zf, shown)
        created = not dest.exists()
        dest.mkdir(parents=True, exist_ok=True)
        try:
            items = _unpack(zf, images, classnames, depth, dest)
        except BaseException:
            if created:
                shutil.rmtree(dest, ignore_errors=True)
            raise
    return ZipDataset(root=dest, classnames=classnames, items=items, skipped=skipped)


def _unpack(zf: zipfile.ZipFile, images, classnames: List[str], depth: int, dest: Path) -> List[Tuple[str, int]]:
    dest_resolved = dest.resolve()
    index = {c: i for i, c in enumerate(classnames)}
    items: List[Tuple[str, int]] = []
    for info, rel in images:
        target = (dest / Path(*rel.parts)).resolve()
        if dest_resolved not in target.parents:  # belt and braces after _safe_member_path
            raise UploadError(f"The zip member {_show(info.filename)} escapes its folder. Refused.")
        written = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > info.file_size or written > MAX_IMAGE_BYTES:
                        raise UploadError(f"The member {_show(info.filename)} is larger than it declares or "
                                          f"than {_mb(MAX_IMAGE_BYTES)}. Refused.")
                    out.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise UploadError(f"The zip member {_show(info.filename)} is damaged (its data or checksum does "
                              "not match what the zip records). Please re-create the zip.") from e
        except (NotImplementedError, RuntimeError) as e:  # unsupported method / needs a password
            raise UploadError(f"The zip member {_show(info.filename)} cannot be read by this app "
                              "(encrypted or an unusual compression). Please re-create the zip.") from e
        except OSError as e:  # the server's file system refused (e.g. out of space)
            raise UploadError(f"The zip member {_show(info.filename)} could not be unpacked on the server "
                              f"({e.strerror or type(e).__name__}). Please try again later.") from e
        items.append((str(target), index[rel.parts[depth]]))
    return items


INDEX_NAME = ".pini-unpacked.json"  # written last: its presence means the folder is complete


def save_unpacked(ds: ZipDataset, root: Union[str, os.PathLike]) -> ZipDataset:
    """Record an unpacked dataset now living at `root` (it was unpacked elsewhere and moved
    there) and return it with paths under `root`; `load_unpacked(root)` reads it back."""
    root = Path(root)
    rel = [(os.path.relpath(p, ds.root), y) for p, y in ds.items]
    index = {"classnames": ds.classnames, "items": rel, "skipped": ds.skipped}
    tmp = root / (INDEX_NAME + ".tmp")
    tmp.write_text(json.dumps(index))
    os.replace(tmp, root / INDEX_NAME)
    return ZipDataset(root=root, classnames=list(ds.classnames), items=[(str(root / p), y) for p, y in rel],
                      skipped=list(ds.skipped))


def load_unpacked(root: Union[str, os.PathLike]) -> "ZipDataset | None":
    """The dataset `save_unpacked` recorded at `root`, or None when there is none (or it is
    incomplete: a file is missing)."""
    root = Path(root)
    try:
        index = json.loads((root / INDEX_NAME).read_text())
        items = [(str(root / p), int(y)) for p, y in index["items"]]
        classnames = [str(c) for c in index["classnames"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not all(os.path.isfile(p) for p, _ in items):
        return None
    return ZipDataset(root=root, classnames=classnames, items=items, skipped=list(index.get("skipped", [])))


def check_zip_images(ds: ZipDataset) -> ZipDataset:
    """Open every image of an unpacked zip with the app's limits; UploadError names the first bad one."""
    for path, _ in ds.items:
        rel = os.path.relpath(path, ds.root)
        open_uploaded_image(path, name=rel)
    return ds
