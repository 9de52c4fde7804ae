"""A corpus of broken and awkward images: the build finishes, keeps the good ones, records the rest."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import lancedb
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import write_spec
from forge.cli import main
from forge.perception.synthetic_scene import render_scene
from helpers import models_spec
from tiny_models import save_tiny_depth, save_tiny_owlvit
from forge.sources.decoding import decode
from forge.sources.identity import content_id


def _jpeg(img: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height but carries almost no data (a decompression bomb's header)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _png_short_chunk(img: Image.Image) -> bytes:
    """A PNG whose IDAT chunk says it is shorter than it is: PIL then reads image data as the next chunk's
    header and raises SyntaxError ("broken PNG file") as soon as the EXIF is looked for."""
    data = bytearray(_png(img))
    at = data.index(b"IDAT") - 4
    data[at:at + 4] = struct.pack(">I", 10)
    return bytes(data)


def _rotated_jpeg() -> bytes:
    img = Image.new("RGB", (80, 40), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 10))  # red marker top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    return _jpeg(img, exif=exif, quality=95)


def scene(i: int) -> Image.Image:
    return Image.fromarray(render_scene(5, i, 160, 120, 3, 5, clutter=False).rgb)


GOOD = {
    "good_0.jpg": lambda: _jpeg(scene(0)),
    "good_1.png": lambda: _png(scene(1)),
    "cmyk.jpg": lambda: _jpeg(scene(2).convert("CMYK")),
    "gray.jpg": lambda: _jpeg(scene(3).convert("L")),
    "gray16.png": lambda: _png(Image.fromarray((np.asarray(scene(4).convert("L"), dtype=np.uint16) * 257))),
    "palette_alpha.png": lambda: _png(scene(5).convert("RGBA").quantize(16)),
    "rotated.jpg": _rotated_jpeg,
    "one_pixel.png": lambda: _png(Image.new("RGB", (1, 1), (10, 20, 30))),
}
BAD = {
    "zero_bytes.jpg": (lambda: b"", "cannot read image"),
    "truncated.jpg": (lambda: _jpeg(scene(6))[:600], "cannot read image"),
    "truncated.png": (lambda: _png(scene(7))[:900], "cannot read image"),
    "not_an_image.png": (lambda: b"hello, I am a text file\n" * 20, "cannot read image"),
    "short_idat.png": (lambda: _png_short_chunk(scene(8)), "cannot read image: broken PNG file"),
    "bomb.png": (lambda: _png_header_only(20_000, 20_000), "cannot read image: image too large to decode safely"),
}


@pytest.fixture(scope="module")
def corpus_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    photos = root / "photos"
    photos.mkdir()
    for name, make in GOOD.items():
        (photos / name).write_bytes(make())
    for name, (make, _) in BAD.items():
        (photos / name).write_bytes(make())
    depth, owl = save_tiny_depth(root / "depth"), save_tiny_owlvit(root / "owl")
    result = CliRunner().invoke(main, ["build", str(write_spec(root, models_spec(str(depth), str(owl)))), "--db", str(root / "db")])
    return root, result


def test_build_finishes_and_records_every_skipped_image_with_its_reason(corpus_build):
    root, result = corpus_build
    assert result.exit_code == 0, result.output
    assert f"{len(GOOD) + len(BAD)} read, {len(BAD)} skipped" in result.output
    errors = lancedb.connect(str(root / "db")).open_table("errors").to_arrow().to_pylist()
    by_file = {Path(e["image_uri"]).name: e["reason"] for e in errors}
    assert set(by_file) == set(BAD)
    for name, (_, reason) in BAD.items():
        assert by_file[name].startswith(reason), (name, by_file[name])
    stats = CliRunner().invoke(main, ["stats", "--db", str(root / "db")])
    assert f"skipped images: {len(BAD)} (table `errors`)" in stats.output


def test_good_and_awkward_images_are_perceived_and_asked_about(corpus_build):
    root, _ = corpus_build
    db = lancedb.connect(str(root / "db"))
    ids = {content_id((root / "photos" / name).read_bytes()): name for name in GOOD}
    for table in ("perception_depth", "perception_detections"):
        cached = set(db.open_table(table).to_arrow().column("image_id").to_pylist())
        assert cached == set(ids), (table, {ids.get(i, i) for i in cached ^ set(ids)})
    asked = {Path(r["image_uri"]).name for r in db.open_table("qa").to_arrow().to_pylist()}
    assert {"good_0.jpg", "good_1.png", "cmyk.jpg", "gray16.png", "palette_alpha.png"} <= asked


def test_rebuild_does_not_duplicate_error_rows(corpus_build):
    root, _ = corpus_build
    result = CliRunner().invoke(main, ["build", str(root / "spec.yaml"), "--db", str(root / "db")])
    assert result.exit_code == 0
    assert lancedb.connect(str(root / "db")).open_table("errors").count_rows() == len(BAD)


def test_progress_totals_count_bad_images_once(corpus_build):
    from forge.build import run_build
    from forge.spec.load import load_spec
    from helpers import RecordingProgress

    root, _ = corpus_build
    progress = RecordingProgress()
    report = run_build(load_spec(root / "spec.yaml"), root / "db", echo=lambda _: None, progress=progress)
    bars = {bar["label"]: bar for bar in progress.bars}
    files = len(GOOD) + len(BAD)
    perceiving = bars["perceiving with depth + grounding"]
    assert (perceiving["total"], sum(perceiving["updates"])) == (files, files)
    # one perception record per file: the readable ones from the cache, the unreadable ones as errors
    assert (bars["reading perception"]["total"], sum(bars["reading perception"]["updates"])) == (files, files)
    assert report.images == files


def test_decoding_honours_orientation_bit_depth_and_transparency():
    image, size = decode(_rotated_jpeg(), 960)
    assert size == (40, 80) and image.size == (40, 80)
    assert np.asarray(image)[2, 37, 0] > 200  # the red marker moved to the top-right
    sixteen, _ = decode(_png(Image.fromarray(np.full((4, 4), 32896, np.uint16))), 960)
    assert np.asarray(sixteen)[0, 0].tolist() == [128, 128, 128]  # 16-bit mid-gray stays mid-gray, not white
    clear = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.asarray(decode(_png(clear), 960)[0])[0, 0].tolist() == [128, 128, 128]  # transparent -> gray


def _peak_rss_mb(script: str) -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so the child would report pytest's peak
    code = f"{script}\nprint(int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) / 1024)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def test_a_huge_jpeg_decodes_within_bounded_memory(tmp_path):
    huge = tmp_path / "huge.jpg"
    Image.new("L", (12_000, 12_000), 90).save(huge, quality=50)
    small = tmp_path / "small.jpg"
    Image.new("L", (64, 64), 90).save(small)
    run = "from pathlib import Path\nfrom forge.sources.decoding import decode\nimg, size = decode(Path({!r}).read_bytes(), 960)\nassert max(img.size) <= 1920, img.size"
    extra = _peak_rss_mb(run.format(str(huge))) - _peak_rss_mb(run.format(str(small)))
    assert extra < 150  # a full decode would need 432 MB for RGB (144 MB even as grayscale)


def test_url_list_source_records_unreachable_and_missing_urls(tmp_path):
    import functools
    import http.server
    import socket
    import threading

    served = tmp_path / "served"
    served.mkdir()
    for i in range(3):
        scene(i).save(served / f"img_{i}.jpg")
    fetched: dict[str, int] = {}

    class Counting(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server API)
            fetched[self.path] = fetched.get(self.path, 0) + 1
            super().do_GET()

    handler = functools.partial(Counting, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connections are refused
    base = f"http://127.0.0.1:{server.server_address[1]}"
    (tmp_path / "photos").mkdir()
    scene(3).save(tmp_path / "photos" / "local.jpg")
    (tmp_path / "urls.txt").write_text("\n".join([
        "# three served images, one local path, one refused connection, one 404",
        *(f"{base}/img_{i}.jpg" for i in range(3)),
        "photos/local.jpg",
        f"http://127.0.0.1:{dead_port}/gone.jpg",
        f"{base}/missing.jpg",
    ]) + "\n")
    try:
        depth, owl = save_tiny_depth(tmp_path / "depth"), save_tiny_owlvit(tmp_path / "owl")
        spec = models_spec(str(depth), str(owl))
        spec["source"] = {"kind": "urls", "list": "urls.txt"}
        result = CliRunner().invoke(main, ["build", str(write_spec(tmp_path, spec)), "--db", str(tmp_path / "db")])
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    assert "6 read, 2 skipped" in result.output
    assert {path: n for path, n in fetched.items() if path.startswith("/img_")} == {f"/img_{i}.jpg": 1 for i in range(3)}
    assert not (tmp_path / "db" / ".forge-downloads").exists()  # one download each, kept only until the models ran
    db = lancedb.connect(str(tmp_path / "db"))
    errors = {e["image_uri"]: e["reason"] for e in db.open_table("errors").to_arrow().to_pylist()}
    assert "Connection refused" in errors[f"http://127.0.0.1:{dead_port}/gone.jpg"]
    assert "404" in errors[f"{base}/missing.jpg"]
    uris = {r["image_uri"] for r in db.open_table("qa").to_arrow().to_pylist()}
    assert any(u.startswith(base) for u in uris) and str(tmp_path / "photos" / "local.jpg") in uris


def test_url_reads_retry_transient_failures_only(tmp_path):
    """A 503 or a dropped connection is tried again (3 attempts); a 404 is final at once."""
    import http.server
    import threading

    from forge.sources.reading import read

    payload = _jpeg(scene(0))
    requests: dict[str, int] = {}

    class Flaky(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server API)
            seen = requests[self.path] = requests.get(self.path, 0) + 1
            if self.path == "/flaky.jpg" and seen < 3:
                self.send_error(503)
            elif self.path == "/flaky.jpg":
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            else:
                self.send_error(404 if self.path == "/missing.jpg" else 503)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert read(f"{base}/flaky.jpg") == payload  # two 503s, then the image
        with pytest.raises(OSError, match="404"):
            read(f"{base}/missing.jpg")
        with pytest.raises(OSError, match="503"):
            read(f"{base}/down.jpg")
    finally:
        server.shutdown()
    assert requests == {"/flaky.jpg": 3, "/missing.jpg": 1, "/down.jpg": 3}


def _corrupted(data: bytes, rng: np.random.Generator, kind: int) -> bytes:
    out = bytearray(data)
    if kind == 0:  # cut short
        return bytes(out[: int(rng.integers(1, len(out)))])
    if kind == 1:  # a few bytes overwritten
        for at in rng.integers(0, len(out), int(rng.integers(1, 6))):
            out[at] = int(rng.integers(0, 256))
        return bytes(out)
    at = int(rng.integers(0, len(out)))  # bytes inserted
    return bytes(out[:at] + bytes(rng.integers(0, 256, int(rng.integers(1, 20)), dtype=np.uint8)) + out[at:])


def test_every_way_pil_fails_on_a_corrupted_file_is_an_unreadable_image(tmp_path):
    """Thousands of corrupted PNG, JPEG, WebP, TIFF, GIF and BMP files (cut short, overwritten, padded)
    through identification and decoding: whatever PIL raises is one of `UNREADABLE` (what the build
    records as a skipped image), never an exception that would stop a build."""
    from forge.sources.decoding import UNREADABLE
    from forge.sources.identity import _identify
    from forge.sources.reading import Downloads

    rng = np.random.default_rng(0)
    tags = Image.Exif()
    tags[0x0112], tags[0x8769] = 6, {0xA405: 28}
    picture = scene(9)
    failures: dict[str, int] = {}
    for fmt in ("PNG", "JPEG", "WEBP", "TIFF", "GIF", "BMP"):
        buffer = io.BytesIO()
        picture.save(buffer, fmt, **({"exif": tags} if fmt in ("PNG", "JPEG", "WEBP") else {}))
        for trial in range(150):
            data = _corrupted(buffer.getvalue(), rng, trial % 3)
            path = tmp_path / f"fuzz.{fmt.lower()}"
            path.write_bytes(data)
            broken = _identify(str(path), Downloads(None))["error"] is not None  # never raises: an error is a value
            try:
                decode(data, 64)
            except UNREADABLE:
                broken = True
            failures[fmt] = failures.get(fmt, 0) + broken
    assert min(failures.values()) > 10, failures  # the corruptions do break files of every format
