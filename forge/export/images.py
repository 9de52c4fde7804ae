"""The images of an export: one file per image, as a trainer will open it.

Trainers open `image` paths with PIL and do not apply EXIF orientation, read JPEG and PNG, and
cannot open `synthetic://` URIs or (offline) http URLs. So every referenced image is written once
into `<export>/images/<image id>.<jpg|png>`: JPEG and PNG files without a rotation are linked or
copied as they are; rotated photos are written with the rotation applied, other formats (WebP,
TIFF, BMP, ...) as PNG, synthetic scenes rendered, URLs downloaded. Paths in the annotation files
are relative to the export folder (or to `--image-root`), so the folder can move to the training
machine.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from forge.errors import ForgeError
from forge.sources import tables, webdataset
from forge.sources.decoding import UNREADABLE, reason
from forge.sources.reading import read
from forge.sources.uris import REMOTE

IMAGE_MODES = ("copy", "link", "none")
READABLE = {"JPEG": "jpg", "PNG": "png"}  # formats every trainer's loader opens
_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ExportedImage:
    """One image as the export references it: `path` is written into the annotation files (relative to
    the export folder or the image root); `file` is where it is on this machine; `width`, `height`
    are the picture's size as a trainer opens it."""

    path: str
    file: Path
    width: int
    height: int


class ImageWriter:
    """Writes (or links, or only locates) each image once, however many QA rows use it."""

    def __init__(self, out: Path, mode: str, image_root: Path | None = None, staging: Path | None = None):
        """Paths are written for the export folder `out` (relative to it, or to `image_root`); the files go
        into `staging` (default `out`) until the finished export takes `out`'s place."""
        if mode not in IMAGE_MODES:
            raise ForgeError(f"--images {mode!r}: use one of {', '.join(IMAGE_MODES)}")
        self.out, self.mode = out, mode
        self.root = (image_root or out).resolve()
        self.folder = (staging or out) / "images"
        self.done: dict[str, ExportedImage] = {}

    def add(self, uri: str, image_id: str) -> ExportedImage:
        if image_id not in self.done:
            self.done[image_id] = self._export(uri, image_id)
        return self.done[image_id]

    def _export(self, uri: str, image_id: str) -> ExportedImage:
        if uri.startswith("synthetic://"):
            from forge.perception.synthetic import render_uri

            self._need_files(uri, "a synthetic scene exists only as its URI")
            return self._write(image_id, "png", render_uri(uri).png_bytes())
        remote = uri.startswith((*REMOTE, tables.SCHEME, webdataset.SCHEME))  # no file of its own to link or reference
        if remote:
            self._need_files(uri, "trainers cannot fetch URLs or read images out of tables")
        try:
            data = read(uri)
            with Image.open(io.BytesIO(data)) as img:
                kind, orientation = img.format, img.getexif().get(_ORIENTATION, 1)
                if kind in READABLE and orientation == 1:
                    width, height = img.size
                    return self._as_is(uri, image_id, READABLE[kind], data, width, height, remote)
                self._need_files(uri, f"it needs converting ({'EXIF rotation' if orientation != 1 else kind})")
                picture = ImageOps.exif_transpose(img)
                ext = "jpg" if kind == "JPEG" else "png"
                if ext == "jpg":
                    picture = picture.convert("RGB")
                elif picture.mode not in ("RGB", "RGBA", "L", "LA"):
                    picture = picture.convert("RGBA" if "transparency" in picture.info or picture.mode.endswith("A") else "RGB")
                buffer = io.BytesIO()
                picture.save(buffer, format="JPEG" if ext == "jpg" else "PNG", quality=95)
        except UNREADABLE as exc:
            raise ForgeError(f"cannot read image {uri} for the export: {reason(exc)} (moved or deleted since the build?)") from None
        return self._write(image_id, ext, buffer.getvalue())

    def _need_files(self, uri: str, why: str) -> None:
        if self.mode == "none":
            raise ForgeError(f"--images none cannot reference {uri}: {why}; use --images copy (or link)")

    def _as_is(self, uri: str, image_id: str, ext: str, data: bytes, width: int, height: int, remote: bool) -> ExportedImage:
        if remote:
            return self._write(image_id, ext, data)
        source = Path(uri).resolve()
        if self.mode == "none":
            return ExportedImage(self._relative(source), source, width, height)
        target = self._target(image_id, ext)
        if self.mode == "link":
            os.symlink(source, target)
        else:
            shutil.copyfile(source, target)
        return ExportedImage(self._relative(self.out / "images" / target.name), target, width, height)

    def _write(self, image_id: str, ext: str, data: bytes) -> ExportedImage:
        target = self._target(image_id, ext)
        target.write_bytes(data)
        with Image.open(target) as img:
            width, height = img.size
        return ExportedImage(self._relative(self.out / "images" / target.name), target, width, height)

    def _target(self, image_id: str, ext: str) -> Path:
        """Where an image's file is written (the folder is new: nothing of an earlier export is there)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f"{image_id}.{ext}"

    def _relative(self, file: Path) -> str:
        """The path the annotation files carry: relative to the image root (the export folder by default)."""
        real = Path(os.path.realpath(file.parent)) / file.name  # the folder resolved as the root is, not a link
        try:
            return Path(os.path.relpath(real, self.root)).as_posix()
        except ValueError:  # another drive (Windows): no relative path exists
            return real.as_posix()
