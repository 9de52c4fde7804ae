"""Reading images from each source kind: images/s to list, identify (content id + size) and decode
them the way model perception does (no model), on this machine; one download per URL against
the old double fetch, over a loopback server that adds a fixed delay per request; and s3:// URIs
from a loopback S3 server (moto, when installed).

Usage: python bench/sources.py [--images 400] [--delay-ms 20]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import platform
import sys
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lance
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from forge.sources import listing  # noqa: E402
from forge.sources.decoding import decode  # noqa: E402
from forge.sources.identity import THREADS, identify  # noqa: E402
from forge.sources.reading import Downloads  # noqa: E402
from forge.perception.synthetic_scene import render_scene  # noqa: E402
from forge.spec.schema import HfSource, ImagesSource, TableSource, UrlsSource, WebDatasetSource  # noqa: E402

DECODE_SIDE = 518  # the depth model's input: what decoding is sized for


def write_sources(root: Path, count: int) -> dict:
    photos = root / "photos"
    photos.mkdir()
    for i in range(count):
        Image.fromarray(render_scene(9, i, 640, 480, 3, 6).rgb).save(photos / f"{i:05d}.jpg", quality=90)
    files = sorted(photos.iterdir())
    data = [f.read_bytes() for f in files]
    names = [f"photos/{f.name}" for f in files]
    pq.write_table(pa.table({"image": names}), root / "paths.parquet")
    pq.write_table(pa.table({"image": pa.array(data, pa.binary())}), root / "bytes.parquet", row_group_size=100)
    structs = pa.array([{"bytes": d, "path": n} for d, n in zip(data, names)],
                       pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    pq.write_table(pa.table({"image": structs}), root / "hf.parquet", row_group_size=100)
    lance.write_dataset(pa.table({"image": pa.array(data, pa.binary())}), str(root / "images.lance"))
    import datasets

    hf = datasets.Dataset.from_dict({"image": [str(f) for f in files]}).cast_column("image", datasets.Image())
    hf.save_to_disk(str(root / "hf_saved"))
    (root / "hf_export" / "data").mkdir(parents=True)
    hf.to_parquet(str(root / "hf_export" / "data" / "train-00000-of-00001.parquet"))
    (root / "shards").mkdir()
    for start in range(0, count, 100):
        with tarfile.open(root / "shards" / f"shard-{start // 100:04d}.tar", "w") as tar:
            for f in files[start:start + 100]:
                tar.add(f, arcname=f.name)
    return {"folder": ImagesSource(kind="images", path="photos"),
            "table: parquet paths": TableSource(kind="table", path="paths.parquet"),
            "table: parquet bytes": TableSource(kind="table", path="bytes.parquet"),
            "table: HF Image structs": TableSource(kind="table", path="hf.parquet"),
            "table: lance bytes": TableSource(kind="table", path="images.lance"),
            "hf: save_to_disk folder": HfSource(kind="hf", path="hf_saved"),
            "hf: Parquet export": HfSource(kind="hf", path="hf_export"),
            "webdataset shards": WebDatasetSource(kind="webdataset", path="shards")}


def _uris(source, root: Path) -> list[str]:
    return [uri for uri, _ in listing(source, root).entries()]


def measure(uris: list[str], downloads: Downloads, folder: str | None) -> tuple[float, float]:
    """Seconds to identify every image (forge's Daft UDF) and to decode every image (threads, as
    PrepareImages does)."""
    start = time.perf_counter()
    ids = identify(uris, folder).to_pydict()
    identified = time.perf_counter() - start
    assert all(error is None for error in ids["error"])
    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda uri: decode(downloads.read(uri), DECODE_SIDE), uris))
    return identified, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--delay-ms", type=float, default=20.0, help="added to every loopback HTTP response")
    args = parser.parse_args()
    os.environ.setdefault("DAFT_PROGRESS_BAR", "0")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; "
          f"{args.images} JPEGs of 640x480")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sources = write_sources(root, args.images)
        measure(_uris(sources["folder"], root), Downloads(None), None)  # warm-up: Daft's start, the page cache
        print("| source | list s | identify images/s | decode images/s |")
        print("|---|---|---|---|")
        for name, source in sources.items():
            start = time.perf_counter()
            uris = _uris(source, root)
            listed = time.perf_counter() - start
            identified, decoded = measure(uris, Downloads(None), None)
            results[name] = {"list_s": listed, "identify": len(uris) / identified, "decode": len(uris) / decoded}
            print(f"| {name} | {listed:.2f} | {len(uris) / identified:.0f} | {len(uris) / decoded:.0f} |")

        fetched: dict[str, int] = {}

        class Slow(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                fetched[self.path] = fetched.get(self.path, 0) + 1
                time.sleep(args.delay_ms / 1000)
                super().do_GET()

            def log_message(self, *a):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Slow, directory=str(root / "photos")))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            (root / "urls.txt").write_text("".join(f"http://127.0.0.1:{server.server_address[1]}/{f.name}\n"
                                                   for f in sorted((root / "photos").iterdir())))
            uris = _uris(UrlsSource(kind="urls", list="urls.txt"), root)
            for label, folder in (("double fetch (before)", None), ("one download", str(root / "downloads"))):
                fetched.clear()
                identified, decoded = measure(uris, Downloads(folder), folder)
                total = identified + decoded
                results[f"urls: {label}"] = {"seconds": total, "requests": sum(fetched.values())}
                print(f"| urls, {label}, {args.delay_ms:g} ms per request | - | {len(uris) / identified:.0f} | "
                      f"{len(uris) / decoded:.0f} | {len(uris) / total:.0f} images/s overall, "
                      f"{sum(fetched.values())} requests")
        finally:
            server.shutdown()
        results.update(_object_store(root, args.images))
    print(json.dumps(results))


def _object_store(root: Path, count: int) -> dict:
    """s3:// URIs from a loopback S3 server (moto), found through AWS_ENDPOINT_URL, one download each."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        print("| s3:// (moto not installed: skipped) | | | |")
        return {}
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    try:
        s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        s3.create_bucket(Bucket="bench")
        photos = sorted((root / "photos").iterdir())[:count]
        for photo in photos:
            s3.put_object(Bucket="bench", Key=f"photos/{photo.name}", Body=photo.read_bytes())
        uris = [f"s3://bench/photos/{p.name}" for p in photos]
        folder = str(root / "s3_downloads")
        identified, decoded = measure(uris, Downloads(folder), folder)
        total = identified + decoded
        print(f"| s3:// over a loopback S3 server (moto), one download | - | {len(uris) / identified:.0f} | "
              f"{len(uris) / decoded:.0f} | {len(uris) / total:.0f} images/s overall |")
        return {"s3: one download": {"seconds": total, "identify": len(uris) / identified, "decode": len(uris) / decoded}}
    finally:
        server.stop()


if __name__ == "__main__":
    main()
