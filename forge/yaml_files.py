"""Reading a user's YAML file (a spec, a mix) safely, before anything interprets it.

Anchors and aliases let a few hundred bytes expand to gigabytes ("billion laughs"); deep nesting makes
the parser recurse until Python gives up; neither is needed in a spec or a mix. Both are refused from
the parser's event stream, which never builds the document and never recurses, so a hostile file costs
one pass over its text. Every refusal is one line naming the file, the line and what to do.
"""

from __future__ import annotations

from pathlib import Path

import yaml

MAX_BYTES = 1 << 20  # a spec or a mix is a page of YAML; a megabyte is already absurd
MAX_DEPTH = 32  # nested mappings and lists: a spec needs about six


def read_yaml_text(path: Path, what: str) -> str:
    """The file's text after the size, encoding, anchor and nesting checks; ForgeError (one line) if any fails.
    `what` names the kind of file in messages ("spec", "mix file")."""
    from forge.errors import ForgeError

    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ForgeError(f"{path}: {what} is {size} bytes; a {what} is limited to {MAX_BYTES} bytes")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ForgeError(f"{path}: {what} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ForgeError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            mark = event.start_mark
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise ForgeError(f"{path}:{mark.line + 1}:{mark.column + 1}: YAML anchors and aliases (&, *) are not "
                                 f"allowed in a {what}; write the values out")
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ForgeError(f"{path}:{mark.line + 1}:{mark.column + 1}: nested more than {MAX_DEPTH} levels "
                                     f"deep; a {what} is a few levels of mappings and lists")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError as exc:
        problem_mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{problem_mark.line + 1}:{problem_mark.column + 1}" if problem_mark else str(path)
        raise ForgeError(f"{where}: YAML syntax error: {getattr(exc, 'problem', None) or exc}") from None
    return text
