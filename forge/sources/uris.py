"""What an image URI may be: the file suffixes that are images, the schemes read over a network, and
how a URI is told from a path (so that `ftp://host/a.jpg` is an unsupported URL, not a local file)."""

from __future__ import annotations

import re

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}

# object stores, read through pyarrow's filesystems with the credentials of the usual environment variables
# (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*); their SDKs retry transient failures themselves
OBJECT_STORES = ("s3://", "gs://", "gcs://", "abfs://", "abfss://")
REMOTE = ("http://", "https://", *OBJECT_STORES)  # read by URI, never as local paths

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme_of(text: str) -> str | None:
    """`text`'s URI scheme with its separator (`ftp://`), or None for a path."""
    found = _SCHEME.match(text)
    return f"{found.group(1).lower()}://" if found else None
