"""Load a spec file into a validated `Spec`, or fail with one line per problem.

Each problem reads `file:line: key.path: what is wrong (how to fix)`. Line numbers come
from the YAML node tree, so users land on the offending key.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import BaseModel, ValidationError

from forge.errors import ForgeError, SpecError
from forge.judge.relations import Relation, relation_for
from forge.judge.shapes import Shape
from forge.spec.expressions import BOOL, NUMBER, columns_for, compile_expression
from forge.spec.models import resolve_models
from forge.spec.schema import (COMPARATIVE_TYPES, IMAGE_SOURCES, AnnotationGrounding, AnnotationsSource, Answer,
                               CustomRelation, GroundingModel, ModelsPerception, QuestionForm, RecordsSource, Spec)
from forge.spec.templates import placeholders_used
from forge.vocabularies import resolve_vocabulary
from forge.yaml_files import read_yaml_text

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec plus where it came from; relative paths resolve against `base_dir`."""

    spec: Spec
    path: Path
    spec_hash: str

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        return (self.base_dir / relative).resolve()


def format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _line_index(node: yaml.Node, path: KeyPath = (), index: dict[KeyPath, int] | None = None) -> dict[KeyPath, int]:
    index = {} if index is None else index
    index.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = path + (str(key_node.value),)
            index[key_path] = key_node.start_mark.line + 1
            _line_index(value_node, key_path, index)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index[path + (i,)] = item.start_mark.line + 1
            _line_index(item, path + (i,), index)
    return index


class _Problems:
    def __init__(self, file: Path, lines: dict[KeyPath, int]):
        self.file, self.lines, self.items = file, lines, []

    def add(self, path: KeyPath, message: str) -> None:
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe, 1)
        self.items.append(f"{self.file}:{line}: {format_path(path)}: {message}")


def _unwrap_model(annotation: Any, raw: Any) -> type[BaseModel] | None:
    """The pydantic model a raw value is validated against, looking through list/Union/Annotated."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap_model(typing.get_args(annotation)[0], raw)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in (_unwrap_model(a, raw) for a in typing.get_args(annotation)) if m is not None]
        kind = raw.get("kind") if isinstance(raw, dict) else None
        for member in members:
            tag = member.model_fields.get("kind")
            if tag is not None and kind in typing.get_args(tag.annotation):
                return member
        return members[0] if len(members) == 1 else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _fields_at(path: KeyPath, data: Any) -> list[str]:
    """Keys allowed in the mapping at `path`, for 'did you mean' hints."""
    model: type[BaseModel] | None = Spec
    raw, annotation = data, None
    for part in path:
        if isinstance(part, int):
            raw = raw[part] if isinstance(raw, list) and part < len(raw) else None
            args = typing.get_args(annotation) if annotation is not None else ()
            model = _unwrap_model(args[0], raw) if args else None
            continue
        if model is None or part not in model.model_fields:
            return []
        annotation = model.model_fields[part].annotation
        raw = raw.get(part) if isinstance(raw, dict) else None
        model = _unwrap_model(annotation, raw)
    return list(model.model_fields) if model is not None else []


def _clean_loc(loc: tuple, data: Any) -> KeyPath | None:
    """The key path of a pydantic error location, without the union-member tags pydantic inserts; None for an
    error about a union member the value is not (a text given where a choice of texts or a mapping is
    allowed, a detector's settings given where annotations are meant, a list where a list or a text is)."""
    path: list[str | int] = []
    raw = data
    for part in loc:
        if isinstance(part, int):
            path.append(part)
            raw = raw[part] if isinstance(raw, list) and part < len(raw) else None
        elif isinstance(raw, dict) and part in raw:
            path.append(part)
            raw = raw[part]
        elif isinstance(raw, dict) and path and path[-1] in ("source", "perception") and part == raw.get("kind"):
            continue
        elif part.startswith("literal["):  # the member of a union that takes a fixed text
            if isinstance(raw, dict):
                return None
        elif part[:1].isupper():  # the member of a union of mappings, by its model's name
            if not _member_of(part, raw):
                return None
        elif part.startswith("function-"):
            continue
        elif not isinstance(raw, dict) and raw is not None and _type_tag(part):  # a plain union's member, by type
            if part.startswith("list[") != isinstance(raw, list):
                return None
        else:
            path.append(part)
            raw = None
    return tuple(path)


def _member_of(model_name: str, raw: Any) -> bool:
    """Whether a value given where several kinds of mapping are allowed is meant as `model_name`'s: a
    mapping, with that model's `kind` when the model has one, and without one when it has none."""
    import forge.spec.schema as schema

    model = getattr(schema, model_name, None)
    if not isinstance(raw, dict) or not (isinstance(model, type) and issubclass(model, BaseModel)):
        return False
    tag = model.model_fields.get("kind")
    return raw.get("kind") in typing.get_args(tag.annotation) if tag is not None else "kind" not in raw


def _type_tag(part: str) -> bool:
    """Whether a location part names a type (a member of a plain Union) rather than a key."""
    return part.startswith(("list[", "dict[", "constrained-")) or part in ("str", "int", "float", "bool")


def _pydantic_problems(exc: ValidationError, data: Any, problems: _Problems) -> None:
    seen: set[KeyPath] = set()
    for err in exc.errors():
        path = _clean_loc(err["loc"], data)
        if path is None:
            continue
        if path in seen:
            continue
        seen.add(path)
        kind, msg = err["type"], err["msg"]
        if kind == "extra_forbidden":
            allowed = _fields_at(path[:-1], data)
            close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
            problems.add(path, f"unknown key {path[-1]!r} ({hint})")
        elif kind == "missing":
            problems.add(path, "missing required key")
        elif kind == "union_tag_not_found":
            problems.add(path + ("kind",), "missing required key `kind`")
        elif kind == "union_tag_invalid":
            problems.add(path + ("kind",), msg.replace("Input tag", "kind"))
        else:
            msg = msg.removeprefix("Value error, ")
            shown = "" if kind.startswith("value_error") or "input" not in err else f", got {_short(err['input'])}"
            problems.add(path, f"{msg}{shown}")
    if not problems.items:  # every error belonged to a union member the value is not: say the first plainly
        first = exc.errors()[0]
        problems.add(tuple(p for p in first["loc"] if isinstance(p, int) or not _type_tag(str(p))), first["msg"])


def _short(value: Any) -> str:
    """A value as an error line shows it: its repr, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _check_paths(loaded_path: Path, spec: Spec, problems: _Problems) -> None:
    base = loaded_path.parent
    source = spec.source
    if isinstance(source, AnnotationsSource):
        for key, want_dir in (("instances", False), ("boxes", False), ("classes", False), ("images", True),
                              ("depth", True), ("labels", False)):
            if getattr(source, key) is None:
                continue
            target = base / getattr(source, key)
            if not target.exists():
                problems.add(("source", key), f"{target} does not exist (paths are relative to the spec file)")
            elif want_dir and not target.is_dir():
                problems.add(("source", key), f"{target} is not a folder")
        if not problems.items:
            from forge.sources.annotated import label_rules

            _source_problem(problems, lambda: label_rules(source, base))  # the label map's and exclusions' form
    if isinstance(source, RecordsSource):
        from forge.perception.table import RecordTable

        try:
            RecordTable.open(base / source.path)
        except ForgeError as exc:
            problems.add(("source", "path"), str(exc).removeprefix("source.path "))
    if isinstance(source, IMAGE_SOURCES):
        from forge.sources import check

        _source_problem(problems, lambda: check(source, base))


def _check_geometry(spec: Spec, base: Path, problems: _Problems) -> None:
    """Refuse what would make metric or gravity answers from nothing: a metric family over relative depth,
    a camera asked of a depth model that predicts none, records without cameras or 3D numbers."""
    from forge.perception.model_config import depth_traits, read_config
    from forge.perception.records import CAMERA_FIELDS, LIFTED_FIELDS

    needs = [(f, relation_for(f)[1]) for f in spec.families if not isinstance(f.relation, CustomRelation)]
    metric = [f.name for f, r in needs if r.needs_metric]
    geometric = [f.name for f, r in needs if r.needs_metric or r.needs_gravity]
    perception, source = spec.perception, spec.source
    traits = None
    if isinstance(perception, ModelsPerception):
        config = read_config(perception.depth.model, base)
        traits = depth_traits(config) if config is not None else None
        if traits is not None and traits.kind == "relative" and metric:
            problems.add(("perception", "depth", "model"),
                         f"{perception.depth.model} predicts relative depth, not metres; families {', '.join(metric)} answer in "
                         "metres: use a metric depth model (DepthPro, a Depth Anything V2 metric checkpoint, ZoeDepth)")
    if isinstance(source, AnnotationsSource) and source.depth_kind == "relative" and metric:
        problems.add(("source", "depth_kind"), f"relative depth cannot answer in metres (families {', '.join(metric)}); "
                                               "give metric depth maps or drop those families")
    if "camera" in spec.objects.model_fields_set and "model" in spec.objects.camera:
        if not isinstance(perception, ModelsPerception):
            problems.add(("objects", "camera"), f"lists model, but perception {perception.kind} runs no depth model "
                                                "that could predict a camera")
        elif traits is not None and not traits.predicts_fov:
            problems.add(("objects", "camera"), f"lists model, but {perception.depth.model} predicts no field of view; "
                                                "use a depth model that does (DepthPro) or take the camera from "
                                                "annotations or EXIF")
    if isinstance(source, RecordsSource) and geometric:
        from forge.perception.table import RecordTable

        try:
            absent = set(RecordTable.open(base / source.path).absent)
        except ForgeError:
            return  # the source check says what is wrong with the table
        if set(CAMERA_FIELDS[:4]) <= absent and not spec.verify.allow_default_camera:
            problems.add(("source", "path"), f"{base / source.path} has no camera columns (fx, fy, cx, cy) and families "
                                             f"{', '.join(geometric)} need each image's camera: add them, or set "
                                             "verify.allow_default_camera: true to use objects.horizontal_fov_deg")
        missing = [name for name in LIFTED_FIELDS if name in absent]
        if missing:
            problems.add(("source", "path"), f"{base / source.path} has no 3D object columns ({', '.join(missing)}) and "
                                             f"families {', '.join(geometric)} read objects lifted to 3D: write the "
                                             "records with them (forge lifts objects where the depth map is)")


def _check_models(spec: Spec, base: Path, problems: _Problems) -> None:
    """Refuse a segmenter that is no SAM or SAM 2, or one beside a SAM 3 grounder (which makes masks itself),
    where the models' configs are on this machine; a build checks again once it has downloaded them."""
    from forge.perception.model_config import model_problems

    perception = spec.perception
    if isinstance(perception, ModelsPerception) and perception.segmentation is not None:
        grounding = perception.grounding.model if isinstance(perception.grounding, GroundingModel) else None
        for key, message in model_problems(grounding, perception.segmentation.model, base):
            problems.add(("perception", *key), message)


def _source_problem(problems: _Problems, check: Callable[[], object]) -> None:
    """Run a source reader's own check; its error ("source.<key>: message") becomes a problem at that key."""
    try:
        check()
    except ForgeError as exc:
        _source_error(problems, exc)


def _source_error(problems: _Problems, exc: ForgeError) -> None:
    if isinstance(exc, SpecError):  # an annotation file's own problems: file and key path in each line already
        problems.items.extend(exc.problems)
        return
    key, _, message = str(exc).partition(": ")
    problems.add(("source", key.removeprefix("source.")), message)


_SOURCE_PERCEPTION = {"synthetic": {"synthetic"}, "annotations": {"annotations", "models"}, "images": {"models"}, "urls": {"models"},
                      "table": {"models"}, "hf": {"models"}, "webdataset": {"models"}, "records": {"records"}}


def _resolve_annotations(spec: Spec, base_dir: Path, problems: _Problems) -> Spec:
    """Name an annotated dataset after its annotation file unless `source.dataset` names it (QA rows carry
    it as `source_dataset`), and fill `grounding: annotations` with the annotation files' fingerprint, so
    cache keys and the spec hash say where the objects came from (another file or label map: other boxes)."""
    perception, source = spec.perception, spec.source
    if isinstance(source, AnnotationsSource) and source.dataset is None:
        source = source.model_copy(update={"dataset": Path(source.instances or source.boxes or "").stem})
        spec = spec.model_copy(update={"source": source})
    if not isinstance(perception, ModelsPerception) or not isinstance(perception.grounding, AnnotationGrounding) \
            or not isinstance(source, AnnotationsSource) or problems.items:
        return spec
    from forge.sources.annotated import fingerprint

    try:
        grounding = perception.grounding.model_copy(update={"fingerprint": fingerprint(source, base_dir)})
    except ForgeError as exc:
        _source_error(problems, exc)
        return spec
    return spec.model_copy(update={"perception": perception.model_copy(update={"grounding": grounding})})


def _resolve_vocabulary(spec: Spec, base_dir: Path, problems: _Problems) -> Spec:
    """Replace a vocabulary file or built-in name by its list, so hashes and caches see the words."""
    perception = spec.perception
    if not isinstance(perception, ModelsPerception) or not isinstance(perception.grounding, GroundingModel):
        return spec
    try:
        names = resolve_vocabulary(perception.grounding.vocabulary, base_dir)
    except (ValueError, OSError) as exc:
        problems.add(("perception", "grounding", "vocabulary"), str(exc))
        return spec
    grounding = perception.grounding.model_copy(update={"vocabulary": names})
    return spec.model_copy(update={"perception": perception.model_copy(update={"grounding": grounding})})


def _check_expression(text: str, columns: dict[str, str], kind: str, where: KeyPath, problems: _Problems) -> bool:
    try:
        compile_expression(text, columns, kind)
    except ValueError as exc:
        problems.add(where, str(exc))
        return False
    return True


def _check_annotation_perception(spec: Spec, problems: _Problems) -> None:
    """Annotations bring boxes; depth comes from their maps or from a model, never from nowhere."""
    source, perception = spec.source, spec.perception
    from_annotations = isinstance(perception, ModelsPerception) and isinstance(perception.grounding, AnnotationGrounding)
    if from_annotations and not isinstance(source, AnnotationsSource):
        problems.add(("perception", "grounding"), f"annotations: the boxes of an annotations source; source kind "
                                                  f"{source.kind!r} has none (use a detector)")
    if isinstance(source, AnnotationsSource) and isinstance(perception, ModelsPerception) and not from_annotations:
        problems.add(("perception", "grounding"), "an annotations source brings its boxes: set grounding: annotations "
                                                  "(depth, masks and the camera then come from the models)")
    if from_annotations and perception.flip_check:
        problems.add(("perception", "flip_check"), "needs a detector to find the objects again in the mirrored image; "
                                                   "annotations have no mirrored boxes")
    if isinstance(source, AnnotationsSource) and spec.perception.kind == "annotations" and source.depth is None:
        problems.add(("source", "depth"), "perception: annotations reads depth maps: give the depth folder and "
                                          "depth_format, or take depth from a model (perception: {kind: models, "
                                          "grounding: annotations, depth: {model: ...}})")


def _check_semantics(spec: Spec, problems: _Problems) -> None:
    allowed = _SOURCE_PERCEPTION[spec.source.kind]
    if spec.perception.kind not in allowed:
        problems.add(("perception", "kind"), f"source kind {spec.source.kind!r} needs perception {' or '.join(sorted(allowed))}, not {spec.perception.kind!r}")
    _check_annotation_perception(spec, problems)
    for i, rule in enumerate(spec.verify.rules):
        _check_expression(rule.keep, columns_for(3), BOOL, ("verify", "rules", i, "keep"), problems)
    if spec.verify.depth_agreement and getattr(spec.perception, "depth_check", None) is None:
        problems.add(("verify", "depth_agreement"), "needs a second depth model: set perception.depth_check (model perception)")
    if spec.verify.flip_consistency and not getattr(spec.perception, "flip_check", False):
        problems.add(("verify", "flip_consistency"), "needs the mirrored run: set perception.flip_check: true (model perception)")
    names = [rule.name for rule in spec.verify.rules]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.add(("verify", "rules", i, "name"), f"duplicate rule name {name!r}")
    family_names = [f.name for f in spec.families]
    for fi, family in enumerate(spec.families):
        where: KeyPath = ("families", fi)
        if family.name in family_names[:fi]:
            problems.add(where + ("name",), f"duplicate family name {family.name!r}")
        if isinstance(family.relation, CustomRelation):
            columns = columns_for(family.relation.arity)
            checked = [_check_expression(family.relation.holds, columns, BOOL, where + ("relation", "holds"), problems),
                       _check_expression(family.relation.margin, columns, NUMBER, where + ("relation", "margin"), problems)]
            if not all(checked):
                continue
        shape, relation = relation_for(family)
        for i, rule in enumerate(family.rules):
            if not shape.takes_custom_rules:
                problems.add(where + ("rules", i), f"{family.relation} questions take no custom rules (they are judged as a {shape.kind})")
                continue
            _check_expression(rule.keep, columns_for(len(shape.sides)), BOOL, where + ("rules", i, "keep"), problems)
            if rule.name in [r.name for r in family.rules[:i]] + names:
                problems.add(where + ("rules", i, "name"), f"duplicate rule name {rule.name!r}")
        if family.min_margin >= relation.max_margin:
            problems.add(where + ("min_margin",), f"{family.min_margin} can never be reached: {family.relation} margins are below {relation.max_margin}")
        comparative, options_are_data = relation.holds is not None, shape.choices() is not None
        if family.balance.by == "position" and not (comparative or options_are_data):
            problems.add(where + ("balance", "by"), "position needs answers chosen among choices; "
                                                    "use answer (balance the answer texts) or none")
        for qi, form in enumerate(family.questions):
            _check_form(form, shape, relation, where + ("questions", qi), problems)


def _check_form(form: QuestionForm, shape: Shape, relation: Relation, where: KeyPath, problems: _Problems) -> None:
    sides = tuple(shape.sides)
    allowed = sides + tuple(relation.values)
    comparative = relation.holds is not None
    answers: list[str] = []
    if comparative:
        if form.answer_type not in COMPARATIVE_TYPES:
            problems.add(where + ("answer_type",), f"this relation decides between two answers: use two_choice or yes_no, not {form.answer_type}")
        if not isinstance(form.answer, Answer):
            problems.add(where + ("answer",), "this relation decides between two answers: give {if_true: ..., if_false: ...}")
            return
        if len(form.choices) != 2:
            problems.add(where + ("choices",), "give the two choices the answer picks from")
            return
        answers = list(form.choices)
        if form.choices[0] == form.choices[1]:
            problems.add(where + ("choices",), "the two choices must differ")
        if form.answer_type == "yes_no" and list(form.choices) != ["yes", "no"]:
            problems.add(where + ("choices",), "yes_no questions have choices [yes, no]")
        for key in ("if_true", "if_false"):
            value = getattr(form.answer, key)
            if value not in form.choices:
                problems.add(where + ("answer", key), f"{value!r} is not one of the choices {list(form.choices)}")
        if form.answer.if_true == form.answer.if_false:
            problems.add(where + ("answer",), "if_true and if_false must differ, or every answer would be the same")
    else:
        if shape.answer_types is not None and form.answer_type not in shape.answer_types:
            problems.add(where + ("answer_type",), f"questions about a {shape.kind} of objects are "
                                                   f"{' or '.join(shape.answer_types)}, not {form.answer_type}")
        if form.answer_type in COMPARATIVE_TYPES:
            problems.add(where + ("answer_type",), f"this relation has no two-way answer: use one of box, point, number, label, not {form.answer_type}")
        if not isinstance(form.answer, str):
            problems.add(where + ("answer",), f"give the answer as a template using {', '.join('{' + v + '}' for v in allowed)}")
            return
        if form.choices:
            problems.add(where + ("choices",), "open answers take no choices")
        if relation.positions and form.answer.strip("{}") not in relation.positions:
            problems.add(where + ("answer",), f"the answer must be one option: "
                                              f"{' or '.join('{' + p + '}' for p in relation.positions)}")
        answers = [form.answer]
    answer_fields: set[str] = set()
    for ci, text in enumerate(answers):
        try:
            answer_fields.update(placeholders_used(text, allowed))
        except ValueError as exc:
            problems.add(where + (("choices", ci) if comparative else ("answer",)), str(exc))
    for ti, template in enumerate(form.templates):
        try:
            used = placeholders_used(template, allowed)
        except ValueError as exc:
            problems.add(where + ("templates", ti), str(exc))
            continue
        # comparative questions must name every object; open answers may name one (referring: "{a}")
        missing = [s for s in sides if s not in used and (comparative or s not in answer_fields)]
        if missing and shape.names_every_object:  # a count names its objects through {plural}
            where_named = "the question" if comparative else "the question or the answer"
            problems.add(where + ("templates", ti), f"template never names {{{missing[0]}}}: every object must appear in {where_named}")
        named = [s for s in dict.fromkeys(used) if s in sides]
        if named != sorted(named):
            problems.add(where + ("templates", ti), f"name objects in order {', '.join('{' + s + '}' for s in sides)}: the stored objects follow that order")
        if template in form.templates[:ti]:
            problems.add(where + ("templates", ti), "duplicate template")


def _duplicate_keys(node: yaml.Node, path: KeyPath, problems: "_Problems") -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                problems.items.append(f"{problems.file}:{key_node.start_mark.line + 1}: {format_path(path + (key,))}: "
                                      f"duplicate key (YAML would silently keep only the last one)")
            seen.add(key)
            _duplicate_keys(value_node, path + (key,), problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicate_keys(item, path + (i,), problems)


def dataset_problems(loaded: LoadedSpec) -> list[str]:
    """What only reading the dataset can say (`forge validate`; a build says it when it stages the
    annotations): a label map naming labels the dataset does not have."""
    source = loaded.spec.source
    if not isinstance(source, AnnotationsSource) or source.labels is None:
        return []
    from forge.sources.annotated import check_label_map

    problem = check_label_map(source, loaded.base_dir)
    return [f"{loaded.path}: source.labels: {problem}"] if problem else []


def spec_hash(spec: Spec) -> str:
    """Hash of the validated content (not the text): comments and key order do not change it."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load_spec(path: str | Path) -> LoadedSpec:
    """Read, parse and validate a spec file; raise ForgeError/SpecError naming every problem."""
    path = Path(path)
    if not path.is_file():
        raise ForgeError(f"{path}: spec file not found (give the path to a .yaml spec, e.g. specs/demo.yaml)")
    try:
        text = read_yaml_text(path, "spec")
    except ForgeError as exc:
        raise SpecError([str(exc)]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([f"{where}: YAML syntax error: {problem}"]) from None
    if not isinstance(data, dict):
        raise SpecError([f"{path}:1: (top level): a spec is a YAML mapping with keys version, name, source, perception, families"])
    problems = _Problems(path, _line_index(root) if root is not None else {})
    _duplicate_keys(root, (), problems)
    if problems.items:
        raise SpecError(problems.items)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        _pydantic_problems(exc, data, problems)
        raise SpecError(problems.items) from None
    _check_semantics(spec, problems)
    _check_paths(path, spec, problems)
    _check_geometry(spec, path.parent, problems)
    _check_models(spec, path.parent, problems)
    spec = _resolve_vocabulary(spec, path.parent, problems)
    spec = _resolve_annotations(spec, path.parent, problems)
    located, model_problems = resolve_models(spec, path.parent)
    for key, message in model_problems:
        problems.add(key, message)
    if problems.items:
        raise SpecError(problems.items)
    return LoadedSpec(spec=located, path=path, spec_hash=spec_hash(spec))  # the hash does not depend on where the spec is
