"""Bad specs: each mistake gives exactly one clear line naming file, line and key path; exit code 2."""

from __future__ import annotations

import copy
import re

import pytest
from click.testing import CliRunner

from conftest import demo_dict, write_spec
from forge.cli import main


def _edit(fn):
    spec = demo_dict()
    fn(spec)
    return spec


def _set(path, value):
    def apply(spec):
        node = spec
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return apply


def _delete(path):
    def apply(spec):
        node = spec
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return apply


T0 = ["families", 0, "questions", 0]
CASES = {
    "unknown top-level key": (_set(["familes"], []), r"familes: unknown key 'familes' \(did you mean 'families'\?\)"),
    "unknown nested key": (_set(T0 + ["templats"], ["x"]), r"families\[0\]\.questions\[0\]\.templats: unknown key 'templats' \(did you mean 'templates'\?\)"),
    "missing name": (_delete(["name"]), r":\d+: name: missing required key"),
    "wrong type": (_set(["source", "images"], "many"), r"source\.images: Input should be a valid integer.*'many'"),
    "unknown placeholder": (_set(T0 + ["templates", 2], "Is the {a} nearer than the {c}?"), r"families\[0\]\.questions\[0\]\.templates\[2\]: unknown placeholder \{c\} \(allowed: \{a\}, \{b\}\)"),
    "template misses object": (_set(T0 + ["templates", 1], "Which is closer, the {a}?"), r"templates\[1\]: template never names \{b\}"),
    "too few phrasings": (_set(T0 + ["templates"], ["Which is closer, {a} or {b}?"]), r"questions\[0\]\.templates: List should have at least 3 items"),
    "unknown relation": (_set(["families", 0, "relation"], "depth_ordr"), r"families\[0\]\.relation: Input should be 'grounding', .*'depth_order'.*got 'depth_ordr'"),
    "bad expression": (_set(["families", 0, "relation"], {"holds": "a_depth <", "margin": "1"}), r"families\[0\]\.relation\.holds: cannot parse expression"),
    "unknown column": (_set(["families", 0, "relation"], {"holds": "a_dept < b_depth", "margin": "1"}), r"relation\.holds: unknown column 'a_dept'.*did you mean a_depth\?"),
    # expressions are type-checked against the columns' types when the spec loads
    "text compared with a number": (_set(["verify", "rules"], [{"name": "x", "keep": "a_label > 3"}]), r"verify\.rules\[0\]\.keep: 'a_label > 3' compares a text value with a number one"),
    "math on text": (_set(["verify", "rules"], [{"name": "x", "keep": "sqrt(a_label) > 1"}]), r"verify\.rules\[0\]\.keep: sqrt needs number arguments, got a text one"),
    "holds is a number": (_set(["families", 0, "relation"], {"holds": "a_cx", "margin": "1"}), r"families\[0\]\.relation\.holds: 'a_cx' gives a number value; it must give true/false"),
    "keep is a number": (_set(["verify", "rules"], [{"name": "x", "keep": "1"}]), r"verify\.rules\[0\]\.keep: '1' gives a number value; it must give true/false"),
    "margin is text": (_set(["families", 0, "relation"], {"holds": "a_cx < b_cx", "margin": "a_label"}), r"families\[0\]\.relation\.margin: 'a_label' gives a text value; it must give a number"),
    "forbidden function": (_set(["verify", "rules"], [{"name": "x", "keep": "url_download(a_label) IS NULL"}]), r"verify\.rules\[0\]\.keep: function 'url_download' is not allowed"),
    "impossible margin": (_set(["families", 1, "min_margin"], 1.5), r"families\[1\]\.min_margin: 1\.5 can never be reached"),
    "negative margin": (_set(["families", 1, "min_margin"], -0.1), r"families\[1\]\.min_margin: Input should be greater than or equal to 0"),
    "answer not a choice": (_set(T0 + ["answer", "if_true"], "{c}"), r"answer\.if_true: '\{c\}' is not one of the choices"),
    "unknown source kind": (_set(["source", "kind"], "webcam"), r"source\.kind: kind 'webcam' found using 'kind' does not match"),
    "perception mismatch": (_set(["perception"], "annotations"), r"perception\.kind: source kind 'synthetic' needs perception synthetic"),
    "bad object range": (_set(["source", "objects"], [5, 2]), r"source\.objects: must be \[min, max\]"),
    "missing source path": (
        lambda s: s.update(source={"kind": "images", "path": "no/such/folder"}, perception={"kind": "models", "depth": {"model": "x"}, "grounding": {"model": "y", "vocabulary": ["cup"]}}),
        r"source\.path: .*no/such/folder does not exist",
    ),
    "wrong version": (_set(["version"], 2), r"version: Input should be 1"),
    "duplicate family": (_set(["families", 1, "name"], "depth_order"), r"families\[1\]\.name: duplicate family name 'depth_order'"),
    "bad area range": (_set(["verify", "max_area"], 0.0005), r"verify: min_area \(0\.001\) must be below max_area \(0\.0005\)"),
    "empty vocabulary": (
        lambda s: s.update(source={"kind": "images", "path": "."}, perception={"kind": "models", "depth": {"model": "x"}, "grounding": {"model": "y", "vocabulary": []}}),
        r"perception\.grounding\.vocabulary: vocabulary is empty or has blank names",
    ),
    "unknown vocabulary": (
        lambda s: s.update(source={"kind": "images", "path": "."}, perception={"kind": "models", "depth": {"model": "x"}, "grounding": {"model": "y", "vocabulary": "coco80"}}),
        r"perception\.grounding\.vocabulary: 'coco80' is neither a built-in vocabulary \(coco, objects365\) nor a file",
    ),
    "repeated vocabulary name": (
        lambda s: s.update(source={"kind": "images", "path": "."}, perception={"kind": "models", "depth": {"model": "x"}, "grounding": {"model": "y", "vocabulary": ["cup", "dog", "cup"]}}),
        r"perception\.grounding\.vocabulary: vocabulary repeats 'cup'",
    ),
    "percentile out of range": (_set(["objects", "depth_percentile"], 0), r"objects\.depth_percentile: Input should be greater than 0"),
    "field of view out of range": (_set(["objects", "horizontal_fov_deg"], 200), r"objects\.horizontal_fov_deg: Input should be less than 179"),
    "bad family name": (_set(["families", 0, "name"], "Depth Order"), r"families\[0\]\.name: String should match pattern"),
    "table name escaping the db": (_set(["output"], {"table": "../../etc/qa"}), r"output\.table: String should match pattern"),
    "open answer for a two-way relation": (_set(T0 + ["answer"], "{a}"), r"questions\[0\]\.answer: this relation decides between two answers"),
    "choices for an open answer": (
        lambda s: s["families"].__setitem__(0, {"name": "g", "relation": "grounding", "min_margin": 0.1, "questions": [{
            "answer_type": "box", "answer": "{box}", "choices": ["{a}", "x"],
            "templates": ["Where is the {a}?", "Box of the {a}?", "Locate the {a}."]}]}),
        r"families\[0\]\.questions\[0\]\.choices: open answers take no choices",
    ),
    "malformed template brace": (_set(T0 + ["templates", 0], "Which is closer, the {a or the {b}?"), r"templates\[0\]: malformed template"),
    "unknown answer type": (_set(T0 + ["answer_type"], "essay"), r"questions\[0\]\.answer_type: Input should be 'two_choice'"),
    "impossible set size": (
        lambda s: s["families"].__setitem__(0, {"name": "x", "relation": "depth_extreme", "min_margin": 0.1, "set_size": [2, 6],
                                                "questions": [{"answer_type": "multiple_choice", "answer": "{nearest}",
                                                               "templates": ["{options}?", "Of {options}?", "Among {options}?"]}]}),
        r"families\[0\]\.set_size: must be \[min, max\] with 3 <= min <= max <= 5",
    ),
    "value placeholder of another family": (_set(T0 + ["templates", 0], "How far is the {a} from the {b}: {distance}?"), r"unknown placeholder \{distance\}"),
    "glob matching nothing": (
        lambda s: s.update(source={"kind": "images", "path": "no/such/**/*.jpg"}, perception={"kind": "models", "depth": {"model": "x"}, "grounding": {"model": "y", "vocabulary": ["cup"]}}),
        r"source\.path: glob '.*no/such/\*\*/\*\.jpg' matches no file",
    ),
    "missing url list": (
        lambda s: s.update(source={"kind": "urls", "list": "nowhere.txt"}, perception={"kind": "models", "depth": {"model": "x"}, "grounding": {"model": "y", "vocabulary": ["cup"]}}),
        r"source\.list: .*nowhere\.txt does not exist",
    ),
    "negative image count": (_set(["source", "images"], -5), r"source\.images: Input should be greater than or equal to 1"),
    "rule on a column that does not exist": (_set(["families", 0, "rules"], [{"name": "r", "keep": "a_colour = 'red'"}]), r"families\[0\]\.rules\[0\]\.keep: unknown column 'a_colour'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_spec_gives_one_clear_line(tmp_path, case):
    edit, pattern = CASES[case]
    path = write_spec(tmp_path, _edit(edit))
    for command in (["validate", str(path)], ["build", str(path), "--db", str(tmp_path / "db")]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"error: {path}:"), lines[0]
        assert re.search(pattern, lines[0]), lines[0]
        assert "Traceback" not in result.output
    assert not (tmp_path / "db").exists()


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nname: x\nsource: {kind: synthetic\nfamilies: []\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}:4:") and "YAML syntax error" in result.stderr


def test_missing_spec_file(tmp_path):
    result = CliRunner().invoke(main, ["build", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "spec file not found" in result.stderr


def test_line_numbers_point_at_the_key(tmp_path):
    spec = copy.deepcopy(demo_dict())
    spec["families"][0]["min_margin"] = "wide"
    path = write_spec(tmp_path, spec)
    result = CliRunner().invoke(main, ["validate", str(path)])
    line = int(result.stderr.split(":")[2])
    assert path.read_text().splitlines()[line - 1].strip().startswith("min_margin:")


def test_several_mistakes_are_all_reported(tmp_path):
    spec = demo_dict()
    spec["families"][0]["min_margin"] = -1
    spec["families"][1]["questions"][0]["templates"][0] = "{x} {a} {b}"
    result = CliRunner().invoke(main, ["validate", str(write_spec(tmp_path, spec))])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1  # pydantic errors stop before semantic checks
    spec["families"][0]["min_margin"] = 0.2
    spec["families"][0]["questions"][0]["templates"][0] = "{y} {a} {b}"
    result = CliRunner().invoke(main, ["validate", str(write_spec(tmp_path, spec))])
    assert len(result.stderr.strip().splitlines()) == 2


@pytest.mark.parametrize("vocabulary, expected", [
    ("coco", (80, "person", "toothbrush")),
    ("objects365", (365, "person", "table tennis ball")),
    ("labels.txt", (2, "mug", "kettle")),
])
def test_vocabulary_from_builtin_or_file(tmp_path, vocabulary, expected):
    from forge.spec.load import load_spec

    (tmp_path / "labels.txt").write_text("# kitchen\nmug\n\n kettle \n")
    spec = demo_dict()
    spec.update(source={"kind": "images", "path": "."},
                perception={"kind": "models", "depth": {"model": "x"}, "grounding": {"model": "y", "vocabulary": vocabulary}})
    names = load_spec(write_spec(tmp_path, spec)).spec.perception.grounding.vocabulary
    assert (len(names), names[0], names[-1]) == expected
    assert len(set(names)) == len(names)


RAW_CASES = {
    "billion laughs": ('version: 1\na: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
                       + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n" for i in range(8)),
                       r":2:\d+: YAML anchors and aliases \(&, \*\) are not allowed"),
    "duplicate key": ("version: 1\nname: a\nname: b\n", r":3: name: duplicate key"),
    "top-level list": ("- version: 1\n", r"a spec is a YAML mapping"),
    "empty file": ("", r"a spec is a YAML mapping"),
    "tab indentation": ("version: 1\nsource:\n\tkind: synthetic\n", r":3:\d+: YAML syntax error"),
    "huge file": ("# padding\n" * 120_000, r"spec is \d+ bytes; a spec is limited to 1048576 bytes"),
}


@pytest.mark.parametrize("case", sorted(RAW_CASES))
def test_malformed_yaml_is_refused_before_any_work_in_one_line(tmp_path, case):
    text, pattern = RAW_CASES[case]
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["build", str(path), "--db", str(tmp_path / "db")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), lines
    assert not (tmp_path / "db").exists()


def test_unknown_model_id_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"not really a jpeg")
    spec = demo_dict()
    spec.update(source={"kind": "images", "path": "photos"},
                perception={"kind": "models", "depth": {"model": "nobody/no-depth-model"},
                            "grounding": {"model": "nobody/no-detector", "vocabulary": ["cup"]}})
    result = CliRunner().invoke(main, ["build", str(write_spec(tmp_path, spec)), "--db", str(tmp_path / "db"), "--offline"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "'nobody/no-depth-model' is neither a local folder" in result.stderr
    assert not (tmp_path / "db").exists()


def test_there_are_at_least_thirty_malformed_spec_cases():
    assert len(CASES) + len(RAW_CASES) + 2 >= 30
