"""Exports of sampled or queried QA rows in the formats training code reads.

- llava: JSON list of {id, image, conversations: [{from: human, value: "<image>\\n" + question}, {from: gpt, ...}]}
- messages: JSONL of OpenAI/ShareGPT-style {messages: [{role: user, content: [image, text]}, {role: assistant, ...}]}
- qwen: JSON list in Qwen-VL style: "Picture 1: <img>URI</img>" prompts; box answers as
  <ref>label</ref><box>(x1,y1),(x2,y2)</box> on the [0, 1000] grid
- parquet, jsonl: the rows themselves
- webdataset: tar shards of {key}.png/.jpg (the image bytes) + {key}.json (the row)
Images are referenced by URI in the JSON formats; webdataset carries the bytes.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from forge.errors import ForgeError

FORMATS = ("llava", "messages", "qwen", "parquet", "jsonl", "webdataset")
SHARD_SIZE = 1000


def _llava(row: dict) -> dict:
    return {"id": row["qa_id"], "image": row["image_uri"], "conversations": [
        {"from": "human", "value": "<image>\n" + row["question"]}, {"from": "gpt", "value": row["answer"]}]}


def _messages(row: dict) -> dict:
    return {"id": row["qa_id"], "messages": [
        {"role": "user", "content": [{"type": "image", "image": row["image_uri"]}, {"type": "text", "text": row["question"]}]},
        {"role": "assistant", "content": [{"type": "text", "text": row["answer"]}]}]}


def qwen_answer(row: dict) -> str:
    """Box answers become <ref>label</ref><box>(x1,y1),(x2,y2)</box>; others stay as they are."""
    numbers = re.fullmatch(r"\((\d+),(\d+),(\d+),(\d+)\)", row["answer"])
    if row["answer_type"] == "box" and numbers:
        x1, y1, x2, y2 = numbers.groups()
        return f"<ref>{row['objects'][0]['label']}</ref><box>({x1},{y1}),({x2},{y2})</box>"
    return row["answer"]


def _qwen(row: dict) -> dict:
    return {"id": row["qa_id"], "conversations": [
        {"from": "user", "value": f"Picture 1: <img>{row['image_uri']}</img>\n{row['question']}"},
        {"from": "assistant", "value": qwen_answer(row)}]}


def image_bytes(uri: str) -> tuple[bytes, str]:
    """The image's bytes and file extension, from a path, URL or synthetic:// URI."""
    if uri.startswith("synthetic://"):
        from forge.perception.synthetic import render_uri

        return render_uri(uri).png_bytes(), "png"
    from udfs.images import read

    suffix = Path(uri.split("?")[0]).suffix.lower().lstrip(".") or "jpg"
    return read(uri), "jpg" if suffix == "jpeg" else suffix


def _webdataset(rows: list[dict], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for start in range(0, max(len(rows), 1), SHARD_SIZE):
        shard = out / f"shard-{start // SHARD_SIZE:06d}.tar"
        with tarfile.open(shard, "w") as tar:
            for row in rows[start:start + SHARD_SIZE]:
                try:
                    data, ext = image_bytes(row["image_uri"])
                except OSError as exc:
                    raise ForgeError(f"cannot read image {row['image_uri']} for the webdataset export: {exc}") from None
                for name, payload in ((f"{row['qa_id']}.{ext}", data),
                                      (f"{row['qa_id']}.json", json.dumps(row, default=str).encode())):
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime = len(payload), 0  # mtime 0: identical samples, identical shards
                    tar.addfile(info, io.BytesIO(payload))
        shards.append(shard)
    return shards


def export(table: pa.Table, fmt: str, out: Path) -> list[Path]:
    """Write rows in `fmt` to `out` (a file; a folder of shards for webdataset); returns what was written."""
    rows = table.to_pylist()
    if fmt == "parquet":
        pq.write_table(table, out)
    elif fmt == "webdataset":
        return _webdataset(rows, out)
    elif fmt in ("messages", "jsonl"):
        convert = _messages if fmt == "messages" else (lambda r: r)
        out.write_text("".join(json.dumps(convert(r), default=str) + "\n" for r in rows), encoding="utf-8")
    elif fmt in ("llava", "qwen"):
        convert = _llava if fmt == "llava" else _qwen
        out.write_text(json.dumps([convert(r) for r in rows], indent=1), encoding="utf-8")
    else:
        raise ForgeError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    return [out]


EXPORT_NEEDS = {"llava": ("qa_id", "image_uri", "question", "answer"),
                "messages": ("qa_id", "image_uri", "question", "answer"),
                "qwen": ("qa_id", "image_uri", "question", "answer", "answer_type", "objects"),
                "jsonl": (), "webdataset": ("qa_id", "image_uri")}


def export_query_result(table: pa.Table, fmt: str, out: Path | None) -> list[Path]:
    """Export a `forge query` result; it must carry the QA columns the format uses."""
    if out is None:
        raise ForgeError(f"--format {fmt} needs --out")
    missing = [c for c in EXPORT_NEEDS[fmt] if c not in table.column_names]
    if missing:
        raise ForgeError(f"--format {fmt} needs the columns {', '.join(missing)}: select them, e.g. SELECT * FROM qa WHERE ...")
    return export(table, fmt, out)
