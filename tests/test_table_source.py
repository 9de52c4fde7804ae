"""`source: table`: the same photos given as a folder, or in a table's column as paths, bytes or Hugging
Face `Image` structs (Parquet, in several row groups), in a Lance dataset, a `datasets.save_to_disk`
folder, or as CSV/JSONL paths, give the same QA rows; bad table settings are one line from `forge validate`."""

from __future__ import annotations

import json
import re

import lance
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from conftest import read_table, write_spec
from forge.cli import main
from helpers import models_spec, write_photos
from tiny_models import save_tiny_depth, save_tiny_owlvit

PHOTOS = 5


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    write_photos(root / "photos", count=PHOTOS)
    files = sorted((root / "photos").iterdir())
    names = [f"photos/{f.name}" for f in files]
    data = [f.read_bytes() for f in files]
    pq.write_table(pa.table({"image": names, "licence": ["cc-by"] * PHOTOS}), root / "paths.parquet")
    pq.write_table(pa.table({"image": pa.array(data, pa.binary())}), root / "bytes.parquet")
    structs = pa.array([{"bytes": d, "path": n} for d, n in zip(data, names)],
                       pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    pq.write_table(pa.table({"img": structs}), root / "hf.parquet", row_group_size=2)
    lance.write_dataset(pa.table({"image": pa.array(data, pa.binary())}), str(root / "images.lance"))
    import datasets

    hf = datasets.Dataset.from_dict({"image": [str(f) for f in files]}).cast_column("image", datasets.Image())
    hf.save_to_disk(str(root / "hf_saved"))  # Arrow files with the Image feature (bytes, path)
    with_labels = datasets.Dataset.from_dict({"image": [str(f) for f in files], "label": list(range(PHOTOS))})
    with_labels = with_labels.cast_column("image", datasets.Image())
    write_photos(root / "held_out", count=PHOTOS + 1)  # a picture of the test split only: reading it would add rows
    other = str(root / "held_out" / f"p{PHOTOS}.jpg")
    extra = datasets.Dataset.from_dict({"image": [other], "label": [9]}).cast_column("image", datasets.Image())
    datasets.DatasetDict({"train": with_labels, "test": extra}).save_to_disk(str(root / "hf_dict"))
    (root / "hf_export" / "data").mkdir(parents=True)  # the Hub's Parquet layout: files named by split
    with_labels.select(range(3)).to_parquet(str(root / "hf_export" / "data" / "train-00000-of-00002.parquet"))
    with_labels.select(range(3, PHOTOS)).to_parquet(str(root / "hf_export" / "data" / "train-00001-of-00002.parquet"))
    extra.to_parquet(str(root / "hf_export" / "data" / "test-00000-of-00001.parquet"))
    (root / "hf_single").mkdir()  # one file per split
    with_labels.to_parquet(str(root / "hf_single" / "train.parquet"))
    extra.to_parquet(str(root / "hf_single" / "test.parquet"))
    import tarfile

    for shard, members in (("shard-0.tar", files[:3]), ("shard-1.tar", files[3:])):
        with tarfile.open(root / shard, "w") as tar:
            for f in members:
                tar.add(f, arcname=f"{f.stem}.jpg")
                meta = root / f"{f.stem}.json"
                meta.write_text(json.dumps({"caption": f.stem}))
                tar.add(meta, arcname=f"{f.stem}.json")
    (root / "paths.csv").write_text("image,licence\n" + "".join(f"{n},cc-by\n" for n in names))
    (root / "paths.jsonl").write_text("".join(json.dumps({"image": n}) + "\n" for n in names))
    models = str(save_tiny_depth(root / "depth")), str(save_tiny_owlvit(root / "owl"))
    return root, models


def _rows(root, models, source: dict, name: str) -> tuple[set, list[str]]:
    spec = models_spec(*models)
    spec["source"] = source
    result = CliRunner().invoke(main, ["build", str(write_spec(root, spec, f"{name}.yaml")), "--db", str(root / f"db_{name}")])
    assert result.exit_code == 0, result.output
    rows = read_table(root / f"db_{name}").to_pylist()
    return {(r["image_id"], r["question"], r["answer"], r["margin"]) for r in rows}, [r["image_uri"] for r in rows]


def test_every_kind_of_table_gives_the_folders_rows(world):
    root, models = world
    expected, _ = _rows(root, models, {"kind": "images", "path": "photos"}, "folder")
    assert expected
    tables = {"paths": {"path": "paths.parquet"}, "bytes": {"path": "bytes.parquet"},
              "hf": {"path": "hf.parquet", "image_column": "img"}, "lance": {"path": "images.lance"},
              "csv": {"path": "paths.csv"}, "jsonl": {"path": "paths.jsonl"}, "hf_saved": {"path": "hf_saved"}}
    for name, path in (("hf_dict", "hf_dict"), ("hf_parquet", "hf_export"), ("hf_single", "hf_single")):
        rows, uris = _rows(root, models, {"kind": "hf", "path": path}, name)  # no image column named: the Image feature's
        assert rows == expected, name
        assert all(u.startswith("table://") and "column=image" in u for u in uris), name
        assert not any(re.search(r"/test[-./]", u) for u in uris), name  # nothing of the test split
    shards, uris = _rows(root, models, {"kind": "webdataset", "path": "shard-*.tar"}, "webdataset")
    assert shards == expected and all(u.startswith("tar://") and "member=" in u for u in uris)
    for name, source in tables.items():
        rows, uris = _rows(root, models, {"kind": "table", **source}, name)
        assert rows == expected, name
        if name in ("bytes", "hf", "lance"):  # lineage: the file and row each image came from
            assert all(u.startswith("table://") and "row=" in u for u in uris), name


def test_an_image_in_a_table_shows_and_exports(world, tmp_path):
    root, models = world
    _rows(root, models, {"kind": "table", "path": "hf.parquet", "image_column": "img"}, "hf_export")
    db = str(root / "db_hf_export")
    assert CliRunner().invoke(main, ["show", "--db", db, "--n", "2", "--out", str(tmp_path / "png")]).exit_code == 0
    result = CliRunner().invoke(main, ["sample", "--db", db, "--n", "10", "--out", str(tmp_path / "exp")])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(main, ["export-check", str(tmp_path / "exp")]).exit_code == 0


@pytest.mark.parametrize("source, message", [
    ({"path": "nothing.parquet"}, "source.path: .* matches no table"),
    ({"path": "paths.parquet", "image_column": "picture"}, "source.image_column: .* has no column 'picture' \\(its columns: image, licence\\)"),
    ({"path": "paths.parquet", "image_column": "licence"}, None),
    ({"path": "ints.parquet"}, "source.image_column: 'image' in .* is int64; it must hold paths or URLs"),
    ({"path": "mixed"}, "source.path: .*tables of one kind only"),
    ({"kind": "webdataset", "path": "none-*.tar"}, "source.path: .* matches no tar shard"),
    ({"kind": "webdataset", "path": "not_a_tar.tar"}, "source.path: .*not_a_tar.tar is not a tar archive \\(nor a gzip, "
                                                     "bz2 or xz compressed one\\); give WebDataset .tar shards"),
    ({"path": "bytes.parquet", "metadata": ["image"]}, "source.metadata: 'image' in .* holds bytes, which a QA row cannot carry"),
    ({"path": "paths.parquet", "metadata": ["licence", "license"]}, "source.metadata: .* has no column 'license' \\(its columns: image, licence\\)"),
])
def test_bad_table_settings_are_one_line(world, source, message):
    _validate(world, source, message)


@pytest.mark.parametrize("source, message", [
    ({"path": "hf_dict", "split": "validation"}, "source.split: .*hf_dict has the splits train, test; not 'validation'"),
    ({"path": "hf_export", "split": "dev"}, "source.split: .*hf_export has the splits test, train; not 'dev'"),
    ({"path": "hf_dict", "image_column": "label"}, "source.image_column: 'label' in .* is int64"),
    ({"path": "photos"}, "source.path: .*photos is neither a datasets save_to_disk folder .* nor a Parquet export"),
    ({"path": "paths.parquet"}, "source.path: .*paths.parquet describes no dataset features \\(its columns: image, "
                                "licence\\), so it is a plain table: use `kind: table` with `image_column`"),
    ({"path": "two_images.parquet"}, "source.image_column: .* has several Image columns \\(a, b\\); choose one"),
    ({"path": "missing"}, "source.path: .*missing does not exist"),
    ({"path": "hf_single", "split": "validation"}, "source.split: .*hf_single has the splits test, train; not 'validation'"),
    ({"path": "broken_dict"}, "source.path: .*dataset_dict.json is not as `datasets` writes it .*save the dataset again"),
    ({"path": "broken_export"}, "source.path: .*train-0.parquet is not a readable Parquet export"),
])
def test_bad_hf_settings_are_one_line(world, source, message):
    import datasets

    root, _ = world
    photo = str(sorted((root / "photos").iterdir())[0])
    two = datasets.Dataset.from_dict({"a": [photo], "b": [photo]}).cast_column("a", datasets.Image()).cast_column("b", datasets.Image())
    two.to_parquet(str(root / "two_images.parquet"))
    (root / "broken_dict").mkdir(exist_ok=True)
    (root / "broken_dict" / "dataset_dict.json").write_text('{"splits": ')
    (root / "broken_export").mkdir(exist_ok=True)
    (root / "broken_export" / "train-0.parquet").write_bytes(b"PAR1 not really")
    _validate(world, {"kind": "hf", **source}, message)


def _validate(world, source: dict, message: str | None) -> None:
    root, models = world
    pq.write_table(pa.table({"image": [1, 2]}), root / "ints.parquet")
    (root / "mixed").mkdir(exist_ok=True)
    pq.write_table(pa.table({"image": ["a.jpg"]}), root / "mixed" / "a.parquet")
    (root / "mixed" / "b.csv").write_text("image\na.jpg\n")
    (root / "not_a_tar.tar").write_bytes(b"PK\x03\x04 a zip file, say" * 40)
    spec = models_spec(*models)
    spec["source"] = {"kind": "table", **source}
    result = CliRunner().invoke(main, ["validate", str(write_spec(root, spec, "bad.yaml"))])
    if message is None:  # a text column of something else validates; the build then skips what does not open
        assert result.exit_code == 0, result.output
        return

    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert re.search(message, result.stderr), result.stderr


def test_carried_metadata_and_dataset_name_reach_every_qa_row_and_slice_by_licence(world, tmp_path):
    root, models = world
    files = sorted((root / "photos").iterdir())
    licences = ["cc-by", "cc0", "cc-by", "cc-by-nc", "cc0"]
    pq.write_table(pa.table({"image": [f"photos/{f.name}" for f in files], "licence": licences,
                             "source_id": list(range(100, 100 + PHOTOS))}), root / "licensed.parquet")
    spec = models_spec(*models)
    spec["source"] = {"kind": "table", "path": "licensed.parquet", "metadata": ["licence", "source_id"],
                      "dataset": "photos-2026"}
    db = str(tmp_path / "db")
    result = CliRunner().invoke(main, ["build", str(write_spec(root, spec, "licensed.yaml")), "--db", db])
    assert result.exit_code == 0, result.output
    rows = read_table(db).to_pylist()
    assert rows and {r["source_dataset"] for r in rows} == {"photos-2026"}
    by_file = {f"{root / 'photos' / f.name}": {"licence": lic, "source_id": 100 + i} for i, (f, lic) in enumerate(zip(files, licences))}
    for row in rows:  # each row carries its own image's fields, not a neighbour's
        assert json.loads(row["source_meta"]) == by_file[row["image_uri"]]
    free = [r for r in rows if json.loads(r["source_meta"])["licence"] != "cc-by-nc"]
    query = ("SELECT count(*) AS n FROM qa WHERE source_dataset = 'photos-2026' "
             "AND json_extract_string(source_meta, '$.licence') <> 'cc-by-nc'")
    result = CliRunner().invoke(main, ["query", query, "--db", db, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["n"] == len(free) < len(rows)

    spec["source"] = {"kind": "webdataset", "path": "shard-*.tar", "metadata": ["caption"]}
    result = CliRunner().invoke(main, ["build", str(write_spec(root, spec, "captioned.yaml")), "--db", db])
    assert result.exit_code == 0, result.output
    assert "depth: 0 run, 5 cached" in result.output  # the same photos from another source: perceived once
    shard_rows = [r for r in read_table(db).to_pylist() if r["image_uri"].startswith("tar://")]
    assert shard_rows and all(r["source_dataset"] is None for r in shard_rows)
    for row in shard_rows:  # the caption of the sample's own {key}.json
        member = row["image_uri"].split("member=")[1]
        assert json.loads(row["source_meta"]) == {"caption": member.removesuffix(".jpg")}


def test_a_photo_in_two_shards_is_perceived_and_asked_about_once(world, tmp_path):
    import shutil
    import tarfile

    root, models = world
    shards = tmp_path / "shards"
    shards.mkdir()
    for shard in ("shard-0.tar", "shard-1.tar"):
        shutil.copy(root / shard, shards / shard)
    first = sorted((root / "photos").iterdir())[0]
    with tarfile.open(shards / "shard-2.tar", "w") as tar:
        tar.add(first, arcname="copy.jpg")
    spec = models_spec(*models)
    spec["source"] = {"kind": "webdataset", "path": str(shards)}
    db = str(tmp_path / "db")
    result = CliRunner().invoke(main, ["build", str(write_spec(tmp_path, spec, "s.yaml")), "--db", db])
    assert result.exit_code == 0, result.output
    assert "5 read, 0 skipped, 1 duplicates" in result.output
    assert "depth: 5 run, 1 cached" in result.output  # the copy in shard-2 is served from the cache
    uris = {r["image_uri"] for r in read_table(db).to_pylist()}
    assert not any("copy.jpg" in u for u in uris)
