"""Object-store URIs stand wherever an image path may: in a URL list and in a table's column. A loopback
S3 server (moto) stands in for the bucket, found through the usual AWS_* environment variables; a key
that is not there is one error row, and the rows equal those of the same photos in a folder."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from conftest import read_table, write_spec
from forge.cli import main
from helpers import models_spec, write_photos
from tiny_models import save_tiny_depth, save_tiny_owlvit

PHOTOS = 4


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    import boto3
    from moto.server import ThreadedMotoServer

    from forge.sources.remote import _store

    root = tmp_path_factory.mktemp("s3")
    write_photos(root / "photos", count=PHOTOS)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        _store.cache_clear()  # filesystems made before these variables were set point elsewhere
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
        s3.create_bucket(Bucket="photos")
        for photo in sorted((root / "photos").iterdir()):
            s3.put_object(Bucket="photos", Key=f"set/{photo.name}", Body=photo.read_bytes())
        models = str(save_tiny_depth(root / "depth")), str(save_tiny_owlvit(root / "owl"))
        yield root, models
        _store.cache_clear()
    server.stop()


def _build(root, models, source: dict, name: str) -> tuple[str, list[dict]]:
    spec = models_spec(*models)
    spec["source"] = source
    db = str(root / f"db_{name}")
    result = CliRunner().invoke(main, ["build", str(write_spec(root, spec, f"{name}.yaml")), "--db", db])
    assert result.exit_code == 0, result.output
    return result.output, read_table(db).to_pylist()


def _answers(rows: list[dict]) -> set:
    return {(r["image_id"], r["question"], r["answer"], r["margin"]) for r in rows}


def test_s3_uris_in_a_url_list_and_a_table_give_the_folders_rows(bucket, tmp_path):
    root, models = bucket
    _, expected = _build(root, models, {"kind": "images", "path": "photos"}, "folder")
    keys = [f"s3://photos/set/{p.name}" for p in sorted((root / "photos").iterdir())]
    (root / "urls.txt").write_text("\n".join(keys + ["s3://photos/set/missing.jpg"]) + "\n")
    output, rows = _build(root, models, {"kind": "urls", "list": "urls.txt"}, "urls")
    assert _answers(rows) == _answers(expected) and expected
    assert {r["image_uri"] for r in rows} == set(keys)  # lineage: the object's own URI
    assert "skipped 1: cannot read image" in output
    errors = CliRunner().invoke(main, ["query", "SELECT image_uri, reason FROM errors", "--db", str(root / "db_urls"),
                                       "--format", "json"])
    assert errors.exit_code == 0, errors.output
    [error] = json.loads(errors.output)
    assert error["image_uri"] == "s3://photos/set/missing.jpg" and "does not exist" in error["reason"]

    pq.write_table(pa.table({"image": keys, "licence": ["cc0"] * PHOTOS}), root / "objects.parquet")
    _, table_rows = _build(root, models, {"kind": "table", "path": "objects.parquet", "metadata": ["licence"]}, "table")
    assert _answers(table_rows) == _answers(expected)

    exported = tmp_path / "export"  # a trainer reads local files: the exporter fetches each object once
    result = CliRunner().invoke(main, ["sample", "--db", str(root / "db_urls"), "--n", "20", "--out", str(exported)])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(main, ["export-check", str(exported)]).exit_code == 0
    assert len(list((exported / "images").iterdir())) == PHOTOS


def test_an_azure_uri_reads_the_key_under_its_container(tmp_path, monkeypatch):
    """abfs://container@account.dfs.core.windows.net/key: pyarrow names the container's root `container`, and the
    key is read under it (no Azure here: a local filesystem stands in for the container's)."""
    import pyarrow.fs

    import forge.sources.remote as remote
    from forge.sources.reading import read

    (tmp_path / "photos" / "set").mkdir(parents=True)
    (tmp_path / "photos" / "set" / "a.jpg").write_bytes(b"picture")
    made = []

    def store(root: str):
        made.append(root)
        return pyarrow.fs.LocalFileSystem(), str(tmp_path / "photos")

    monkeypatch.setattr(remote, "_store", store)
    assert read("abfs://photos@account.dfs.core.windows.net/set/a.jpg") == b"picture"
    assert made == ["abfs://photos@account.dfs.core.windows.net"]
    with pytest.raises(FileNotFoundError):
        read("abfs://photos@account.dfs.core.windows.net/set/missing.jpg")

