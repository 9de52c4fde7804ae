"""Images over the network: http(s) URLs and object-store URIs, with a timeout, a size cap and retries."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from functools import lru_cache

from forge.sources.uris import OBJECT_STORES

URL_TIMEOUT_S = 20.0
MAX_DOWNLOAD_BYTES = 64 << 20
URL_ATTEMPTS = 3  # a transient failure (connection, timeout, 429, 5xx) is retried, after 0.5 s then 1 s
RETRY_BACKOFF_S = 0.5


def fetch(uri: str) -> bytes:
    """The bytes of an http(s) URL or an object-store URI; OSError when it cannot be read or is larger
    than MAX_DOWNLOAD_BYTES (the last failure of the retries raises)."""
    data = _object(uri) if uri.startswith(OBJECT_STORES) else _url(uri)
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise OSError(f"download larger than {MAX_DOWNLOAD_BYTES >> 20} MiB")
    return data


def _transient(exc: OSError) -> bool:
    """Worth another try: the server or the network may answer next time; a 404 or 403 will not."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code == 429 or exc.code >= 500
    return True


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
