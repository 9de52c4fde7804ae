"""OpenAI chat fine-tuning for vision: JSONL of {messages: [{role: user, content: [{type: image_url,
image_url: {url}}, {type: text, text}]}, {role: assistant, content}]}. The image goes inline as a
base64 data URL (the file then stands alone; OpenAI takes only URLs) or, with `--openai-images path`,
as the exported file's path (for loaders that open local files). The format allows no other keys, so
the lineage of each line is the same line of `openai_meta.jsonl`."""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Iterator

from forge.export.reading import ReadSample, guarded, ids, json_lines, stated_sizes, turns
from forge.export.samples import ExportOptions, Sample
from forge.export.writing import write_jsonl

FILE, META = "openai.jsonl", "openai_meta.jsonl"
MEDIA = {".jpg": "image/jpeg", ".png": "image/png"}


def _url(sample: Sample, inline: bool) -> str:
    if not inline:
        return sample.image.path
    data = base64.b64encode(sample.image.file.read_bytes()).decode("ascii")
    return f"data:{MEDIA[sample.image.file.suffix]};base64,{data}"


def messages(sample: Sample, inline: bool = True) -> list[dict]:
    out = []
    for i, row in enumerate(sample.rows):
        content = ([{"type": "image_url", "image_url": {"url": _url(sample, inline)}}] if i == 0 else [])
        out.append({"role": "user", "content": content + [{"type": "text", "text": row["question"]}]})
        out.append({"role": "assistant", "content": row["answer"]})
    return out


def write(samples: list[Sample], out: Path, options: ExportOptions) -> list[Path]:
    return [write_jsonl(out / FILE, [{"messages": messages(s, options.openai_inline)} for s in samples]),
            write_jsonl(out / META, [{"image": s.image.path, **s.meta()} for s in samples])]


def _image(url: str, root: Path) -> Path | bytes:
    """The picture of an image_url: the bytes of a base64 data URL, else a file under the image root."""
    if not url.startswith("data:"):
        return root / url
    header, _, data = url.partition(",")
    if not header.endswith(";base64"):
        raise ValueError(f"the data URL {header[:40]!r} is not base64")
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"the data URL's base64 is broken ({exc})") from None


def _parse(line: str, meta_line: str, name: str, root: Path) -> ReadSample:
    conversation, meta = json.loads(line)["messages"], json.loads(meta_line)
    [url] = [part["image_url"]["url"] for m in conversation if m["role"] == "user" and isinstance(m["content"], list)
             for part in m["content"] if part["type"] == "image_url"]
    return ReadSample(FILE, name, ids(meta["qa_id"]), turns(conversation, "role", "content", "user", "assistant"),
                      _image(url, root), stated_sizes(meta))


def read(folder: Path, root: Path) -> Iterator[ReadSample]:
    """Each line with its image_url (one per conversation) and the same line of the meta file for its lineage."""
    lines, metas = json_lines(folder, FILE), json_lines(folder, META)
    if len(lines) != len(metas):
        yield ReadSample(META, "", problem=f"has {len(metas)} lines for the {len(lines)} of {FILE}; export again")
    for (name, line), (_, meta) in zip(lines, metas):
        yield guarded(FILE, name, lambda: _parse(line, meta, name, root))
