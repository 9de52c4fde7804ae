"""Every row of a source is accounted for — read, skipped with its reason, or a duplicate — and cheaply: a
copy of an image is measured once per build whatever the windows, empty cells and unsupported URL schemes
are `errors` rows, and the summary groups skip reasons by kind (a few examples each) instead of one line per
image, while the `errors` table keeps every image's own reason (for the spec's latest build)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from conftest import read_table, write_spec
from forge import skipped
from forge.build import run_build
from forge.cli import main
from forge.perception.model_perceiver import ModelPerceiver
from forge.spec.load import load_spec
from helpers import models_spec, write_photos
from tiny_models import save_tiny_depth, save_tiny_owlvit

PHOTOS = 3


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("accounting")
    write_photos(root / "photos", count=PHOTOS)
    return root, (str(save_tiny_depth(root / "depth")), str(save_tiny_owlvit(root / "owl")))


def _build(root, models, source: dict, name: str, db, **options):
    spec = models_spec(*models)
    spec["name"], spec["source"] = name, source
    return run_build(load_spec(write_spec(root, spec, f"{name}.yaml")), db, echo=lambda _: None, **options)


def _qa(db) -> set:
    return {(r["image_id"], r["question"], r["answer"], r["margin"]) for r in read_table(db).to_pylist()}


def test_copies_are_measured_once_and_every_row_is_accounted_for(world, tmp_path, monkeypatch):
    root, models = world
    _build(root, models, {"kind": "images", "path": "photos"}, "folder", tmp_path / "folder")
    names = [f"photos/p{i}.jpg" for i in range(PHOTOS)]
    cells = names * 4 + ["photos/gone.jpg", None, "", "photos/gone2.jpg"]  # 12 copies of 3 photos, 4 without an image
    pq.write_table(pa.table({"image": cells}), root / "copies.parquet")
    (root / "copies.csv").write_text("image\n" + "".join(f"{c}\n" if c else '""\n' for c in cells))
    measured: list[int] = []
    plan = ModelPerceiver.records_plan
    monkeypatch.setattr(ModelPerceiver, "records_plan",
                        lambda self, images, ids=None: measured.append(len(ids)) or plan(self, images, ids))
    for table in ("copies.parquet", "copies.csv"):
        measured.clear()
        db = tmp_path / table
        report = _build(root, models, {"kind": "table", "path": table}, "copies", db, chunk_size=5)  # copies span windows
        assert sum(measured) == PHOTOS  # depth statistics and objects of each photo once, not per copy
        assert report.models.run == {"depth": PHOTOS, "grounding": PHOTOS}
        assert (report.images, report.skipped.total, report.duplicates) == (PHOTOS + 4, 4, 9)
        assert report.images + report.duplicates == len(cells)  # read (skipped among them) or a duplicate
        assert _qa(db) == _qa(tmp_path / "folder")
        errors = {r["image_uri"]: r["reason"] for r in read_table(db, "errors", "image_uri").to_pylist()}
        assert len(errors) == 4
        empty = [reason for uri, reason in errors.items() if uri.startswith("table://")]
        assert empty and all("holds no image (image is empty)" in reason for reason in empty), errors


def test_skips_are_grouped_by_kind_and_the_errors_table_keeps_each(world, tmp_path):
    root, models = world
    missing = [f"gone/{i:07d}.png" for i in range(40)]
    listing = root / "urls.txt"
    listing.write_text("\n".join(["photos/p0.jpg", *missing, "ftp://example.invalid/a.jpg", "FTP://example.invalid/b.jpg"]))
    spec = models_spec(*models)
    spec["name"], spec["source"] = "listed", {"kind": "urls", "list": "urls.txt"}
    db = str(tmp_path / "db")
    result = CliRunner().invoke(main, ["build", str(write_spec(root, spec, "listed.yaml")), "--db", db])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines() if line.strip().startswith("skipped ")]
    examples = ", ".join(str(root / m) for m in missing[:skipped.EXAMPLES])
    assert lines == [f"skipped 40: cannot read image: No such file or directory (e.g. {examples})",
                     "skipped 2: cannot read image: ftp is not a scheme forge reads: give http, https, s3, gs, gcs, "
                     "abfs, abfss URLs or local paths (e.g. ftp://example.invalid/a.jpg, FTP://example.invalid/b.jpg)"]
    assert "42 skipped" in result.output
    errors = {r["image_uri"]: r["reason"] for r in read_table(db, "errors", "image_uri").to_pylist()}
    assert len(errors) == 42 and errors[str(root / missing[7])] == "cannot read image: No such file or directory"
    assert "ftp is not a scheme" in errors["ftp://example.invalid/a.jpg"]  # never read as a local path

    listing.write_text("photos/p0.jpg\nftp://example.invalid/a.jpg\n")  # fixed: the spec's rows are replaced
    assert CliRunner().invoke(main, ["build", str(root / "listed.yaml"), "--db", db]).exit_code == 0
    assert read_table(db, "errors", "image_uri")["image_uri"].to_pylist() == ["ftp://example.invalid/a.jpg"]


def test_skip_kinds_leave_out_what_varies_and_stay_bounded(monkeypatch):
    assert skipped.kind("row 812 of /data/t.parquet holds no image (image is empty)") == "row N of … holds no image (image is empty)"
    assert skipped.kind("depth map scene_004.npy is 100x100, another shape than its image (320x240)") == \
        "depth map scene_N.npy is NxN, another shape than its image (NxN)"
    assert skipped.kind("cannot read image: s3://b/k.jpg: AWS Error NO_SUCH_KEY") == "cannot read image: … AWS Error NO_SUCH_KEY"
    assert skipped.kind("cannot read image: HTTP Error 404: Not Found") == "cannot read image: HTTP Error N: Not Found"
    monkeypatch.setattr(skipped, "MAX_KINDS", 5)
    summary = skipped.Skipped()
    for i in range(2000):
        summary.add(f"/x/{i}.png", f"reason {chr(97 + i % 26)}")
    assert len(summary.counts) == 6 and summary.counts[skipped.OTHER] == 2000 - 5 * 77  # 5 kinds told apart
    assert all(len(shown) <= skipped.EXAMPLES for shown in summary.examples.values())
    monkeypatch.setattr(skipped, "SHOWN", 2)
    assert summary.lines() == [f"    skipped {2000 - 5 * 77}: other reasons (e.g. /x/5.png, /x/6.png, /x/7.png)",
                               "    skipped 77: reason a (e.g. /x/0.png, /x/26.png, /x/52.png)",
                               f"    skipped {4 * 77}: 4 other kinds of reason"]
