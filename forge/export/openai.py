"""OpenAI chat fine-tuning for vision: JSONL of {messages: [{role: user, content: [{type: image_url,
image_url: {url}}, {type: text, text}]}, {role: assistant, content}]}. The image goes inline as a
base64 data URL (the file then stands alone; OpenAI takes only URLs) or, with `--openai-images path`,
as the exported file's path (for loaders that open local files). The format allows no other keys, so
the lineage of each line is the same line of `openai_meta.jsonl`."""

from __future__ import annotations

import base64
from pathlib import Path

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
