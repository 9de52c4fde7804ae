"""Reading and decoding images on CPU workers, before anything reaches a model."""

from __future__ import annotations

import hashlib
import io
import time
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

Image.MAX_IMAGE_PIXELS = None  # forge applies its own limit, MAX_FULL_DECODE_PIXELS, before decoding
# JPEGs decode at 1/2..1/8 scale (draft mode), so they may be huge; other formats decode at full size,
# so beyond this many pixels they are refused rather than risk gigabytes of memory
MAX_FULL_DECODE_PIXELS = 64_000_000
MAX_JPEG_PIXELS = 1_000_000_000
_ORIENTATION = 0x0112
_TRANSPOSED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def content_id(data: bytes) -> str:
    """Image id: hash of the file's bytes, so the same picture has one id wherever it lives."""
    return hashlib.sha256(data).hexdigest()[:32]


URL_TIMEOUT_S = 20.0
MAX_DOWNLOAD_BYTES = 64 << 20
# object stores, read through pyarrow's filesystems with the credentials of the usual environment variables
# (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*); their SDKs retry transient failures themselves
OBJECT_STORES = ("s3://", "gs://", "gcs://", "abfs://", "abfss://")
REMOTE = ("http://", "https://", *OBJECT_STORES)  # read by URI, never as local paths


URL_ATTEMPTS = 3  # a transient failure (connection, timeout, 429, 5xx) is retried, after 0.5 s then 1 s
RETRY_BACKOFF_S = 0.5


def _transient(exc: OSError) -> bool:
    """Worth another try: the server or the network may answer next time; a 404 or 403 will not."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 429 or exc.code >= 500
    return True


def read(uri: str) -> bytes:
    """Bytes of a local path, an http(s) URL (timeout, size cap, retries of transient failures; the
    last failure raises OSError), an object-store URI (s3://, gs://, abfs://), a table cell
    (`table://`) or a shard member (`tar://`)."""
    if uri.startswith("table://"):  # an image held in a table's cell (source: table)
        from forge.perception.image_tables import cell_bytes

        return cell_bytes(uri)
    if uri.startswith("tar://"):  # a member of a WebDataset shard (source: webdataset)
        from forge.perception.shards import member_bytes

        return member_bytes(uri)
    if not uri.startswith(REMOTE):
        return Path(uri).read_bytes()
    data = _object(uri) if uri.startswith(OBJECT_STORES) else _url(uri)
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise OSError(f"download larger than {MAX_DOWNLOAD_BYTES >> 20} MiB")
    return data


@lru_cache(maxsize=32)
def _store(root: str):
    """The filesystem of one bucket or container (`s3://bucket`, `abfs://container@account.dfs.core.windows.net`)
    and the path it gives the root (`bucket`, `container`), made once per process."""
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(root)


def _url(uri: str) -> bytes:
    """At most MAX_DOWNLOAD_BYTES + 1 bytes of an http(s) URL, transient failures tried again."""
    attempt = 0
    while True:
        try:
            with urllib.request.urlopen(uri, timeout=URL_TIMEOUT_S) as response:  # URLError, timeouts: OSErrors
                return response.read(MAX_DOWNLOAD_BYTES + 1)
        except OSError as exc:
            attempt += 1
            if attempt == URL_ATTEMPTS or not _transient(exc):
                raise
            time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))


def _object(uri: str) -> bytes:
    """At most MAX_DOWNLOAD_BYTES + 1 bytes of an object-store URI."""
    scheme, _, rest = uri.partition("://")
    authority, _, key = rest.partition("/")
    store, base = _store(f"{scheme}://{authority}")
    with store.open_input_stream(f"{base}/{key}") as stream:
        return stream.read(MAX_DOWNLOAD_BYTES + 1)


def check_size(img: Image.Image) -> None:
    """Raise ValueError for images that cannot be decoded within bounded memory."""
    width, height = img.size
    limit = MAX_JPEG_PIXELS if img.format == "JPEG" else MAX_FULL_DECODE_PIXELS
    if width * height > limit:
        raise ValueError(f"image too large to decode safely: {width}x{height} {img.format} "
                         f"({width * height / 1e6:.0f} MP > {limit / 1e6:.0f} MP)")


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB for the models: 16-bit scaled to 8-bit, transparency composited over mid-gray."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if img.mode.startswith("I;16") else max(float(values.max()), 1.0)
        return Image.fromarray(np.clip(values / scale * 255 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) of the picture as displayed: EXIF orientations 5-8 swap the stored axes."""
    width, height = img.size
    return (height, width) if img.getexif().get(_ORIENTATION, 1) in _TRANSPOSED else (width, height)


def decode(data: bytes, longest_needed: int) -> tuple[Image.Image, tuple[int, int]]:
    """RGB image, EXIF orientation applied, reduced while decoding when far larger than needed.

    Returns the image and the picture's true (width, height) after orientation, so boxes
    stay fractions of the real picture even when it was decoded at reduced size.
    """
    with Image.open(io.BytesIO(data)) as img:
        check_size(img)
        width, height = oriented_size(img)  # before draft(), which shrinks img.size
        img.draft("RGB", (longest_needed, longest_needed))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
        rgb = to_rgb(ImageOps.exif_transpose(img))
    if max(rgb.size) > 2 * longest_needed:
        rgb.thumbnail((2 * longest_needed, 2 * longest_needed), Image.BILINEAR)
    return rgb, (width, height)


def to_square(image: Image.Image, height: int, width: int, pad_square: bool) -> np.ndarray:
    """Resize (optionally after padding to a square, bottom/right, mid-gray) to a fixed model input."""
    if pad_square:
        side = max(image.size)
        canvas = Image.new("RGB", (side, side), (128, 128, 128))
        canvas.paste(image, (0, 0))
        image = canvas
    return np.array(image.resize((width, height), Image.BICUBIC), dtype=np.uint8)  # writable for torch
