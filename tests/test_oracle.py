"""Every emitted answer agrees with the exact geometry of the synthetic scenes.

Easy scenes (no two boxes touch) are an exact oracle: every eligible pair is asked and every margin
is the true one. Cluttered scenes, the default, are the hard one: objects hide each other in part,
repeat labels and cross the border; every kept answer must still be right with depth from masks
and from the occlusion-aware box, while a fair share of the unambiguous pairs is kept; depth from
the whole box, as peers take it, is shown to be wrong there.
"""

from __future__ import annotations

import functools

import yaml
import pytest

from conftest import DEMO_SPEC, read_table, write_spec
from forge.build import run_build
from forge.perception.synthetic import render_uri, scene_uri
from forge.spec.load import load_spec
from truth import eligible_pairs


CLUTTERED_IMAGES = 150


@functools.lru_cache(maxsize=None)
def _scene(uri: str):
    return render_uri(uri)


def _build(folder, **objects) -> tuple:
    spec = yaml.safe_load(DEMO_SPEC.read_text())
    spec["objects"].update(objects)
    spec["source"]["images"] = CLUTTERED_IMAGES
    loaded = load_spec(write_spec(folder, spec))
    report = run_build(loaded, folder / "db", echo=lambda _: None)
    return loaded, report, read_table(folder / "db").to_pylist()


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory):
    """The demo spec on easy scenes, the exact oracle."""
    folder = tmp_path_factory.mktemp("oracle")
    spec = yaml.safe_load(DEMO_SPEC.read_text())
    spec["source"].update(scene="easy", objects=[3, 7])
    loaded = load_spec(write_spec(folder, spec))
    report = run_build(loaded, folder / "db", echo=lambda _: None)
    return loaded, report, read_table(folder / "db").to_pylist()


def test_the_shipped_demo_writes_over_a_thousand_rows_from_over_a_hundred_images(tmp_path):
    loaded = load_spec(DEMO_SPEC)
    report = run_build(loaded, tmp_path / "db", echo=lambda _: None)
    assert loaded.spec.source.scene == "cluttered"
    assert report.images == loaded.spec.source.images >= 100
    assert read_table(tmp_path / "db").num_rows == report.qa_rows == report.write.rows >= 1000


def _truth_for(rows):
    cache = {}
    for row in rows:
        if row["image_uri"] not in cache:
            cache[row["image_uri"]] = eligible_pairs(row["image_uri"], min_area=0.001)
        yield row, cache[row["image_uri"]]


def test_depth_order_answers_match_geometry(demo_build):
    loaded, _, rows = demo_build
    min_margin = next(f.min_margin for f in loaded.spec.families if f.name == "depth_order")
    depth_rows = [r for r in rows if r["family"] == "depth_order"]
    assert depth_rows
    positions = set()
    for row, pairs in _truth_for(depth_rows):
        a_label, b_label = (o["label"] for o in row["objects"])
        truth = pairs[frozenset((a_label, b_label))]
        a, b = truth["objects"][a_label], truth["objects"][b_label]
        closer, farther = (a, b) if a.z_front < b.z_front else (b, a)
        asks_closer = row["template_id"].startswith("depth_order/0/")
        expected = closer.label if asks_closer else farther.label
        assert row["answer"] == expected, row["question"]
        assert row["choices"] == [a_label, b_label]
        assert truth["depth_margin"] >= min_margin
        assert row["margin"] == pytest.approx(truth["depth_margin"], rel=1e-5)
        positions.add(row["choices"].index(row["answer"]))
    assert positions == {0, 1}


def test_left_right_answers_match_geometry(demo_build):
    loaded, _, rows = demo_build
    min_margin = next(f.min_margin for f in loaded.spec.families if f.name == "left_right")
    lr_rows = [r for r in rows if r["family"] == "left_right"]
    for row, pairs in _truth_for(lr_rows):
        a_label, b_label = (o["label"] for o in row["objects"])
        truth = pairs[frozenset((a_label, b_label))]
        a, b = truth["objects"][a_label], truth["objects"][b_label]
        a_centre, b_centre = a.box_px[0] + a.box_px[2], b.box_px[0] + b.box_px[2]
        assert row["answer"] == ("left" if a_centre < b_centre else "right"), row["question"]
        assert truth["lr_margin"] >= min_margin
        assert row["margin"] == pytest.approx(truth["lr_margin"], abs=1e-9)
        x1, y1, x2, y2 = a.box_px
        w, h = truth["width"], 240
        assert row["objects"][0]["box"] == pytest.approx([x1 / w, y1 / h, x2 / w, y2 / h])
    answers = [r["answer"] for r in lr_rows]
    assert set(answers) == {"left", "right"}
    assert 0.4 < answers.count("left") / len(answers) < 0.6


def test_every_eligible_pair_is_asked_exactly_once_per_family(demo_build):
    """Every eligible pair is asked once, except those balancing dropped (the funnel says how many)."""
    loaded, report, rows = demo_build
    margins = {f.name: f.min_margin for f in loaded.spec.families}
    asked = {(r["family"], r["image_uri"], frozenset(o["label"] for o in r["objects"])) for r in rows}
    assert len(asked) == len(rows)
    from forge.perception.synthetic import scene_uri

    expected, ties = set(), set()
    for index in range(loaded.spec.source.images):
        uri = scene_uri(loaded.spec.source, loaded.spec.seed, index)
        for key, truth in eligible_pairs(uri, min_area=0.001).items():
            for family, margin in (("depth_order", truth["depth_margin"]), ("left_right", truth["lr_margin"])):
                # a margin equal to the threshold (integer pixel gaps can hit it exactly) may fall either way
                if abs(margin - margins[family]) < 1e-9:
                    ties.add((family, uri, key))
                elif margin > margins[family]:
                    expected.add((family, uri, key))
    assert asked - ties <= expected
    for family in margins:
        missing = {item for item in expected - asked if item[0] == family}
        family_ties = sum(1 for item in ties if item[0] == family)
        dropped = report.funnel[family]["balance"]
        assert dropped - family_ties <= len(missing) <= dropped, family
    assert len(ties) < 0.02 * len(expected)


def test_funnel_adds_up(demo_build):
    _, report, rows = demo_build
    for family, counts in report.funnel.items():
        kept = counts["kept"]
        assert kept == sum(1 for r in rows if r["family"] == family)
        assert counts["truncated"] > 0 and counts["unique_labels"] > 0 and counts["min_margin"] > 0
    considered = {sum(c.values()) for c in report.funnel.values()}
    assert len(considered) == 1  # every family judges the same pairs


def _unambiguous(loaded, uri: str) -> dict:
    """family -> label pairs of a cluttered scene that a question may be asked about, by the truth:
    named objects unique, whole in the picture, big enough; the true margin clearly past the minimum."""
    scene = _scene(uri)
    margins = {f.name: f.min_margin for f in loaded.spec.families}
    out = {"depth_order": set(), "left_right": set()}
    for key, truth in eligible_pairs(uri, min_area=loaded.spec.verify.min_area, scene=scene).items():
        if truth["depth_margin"] >= margins["depth_order"] * 1.05:
            out["depth_order"].add(key)
        if truth["lr_margin"] >= margins["left_right"] + 2 / scene.depth.shape[1]:
            out["left_right"].add(key)
    return out


@pytest.fixture(scope="module", params=["auto", "box_visible", "box"])
def cluttered(request, tmp_path_factory):
    """The shipped demo (cluttered scenes) built with one depth estimator: masks (auto),
    the occlusion-aware box, or the whole box."""
    return request.param, *_build(tmp_path_factory.mktemp(request.param), depth_from=request.param)


KEPT_AT_LEAST = {"auto": 0.9, "box_visible": 0.6}  # of the unambiguous pairs, per estimator


def test_every_kept_answer_is_right_under_occlusion_and_enough_are_kept(cluttered):
    depth_from, loaded, report, rows = cluttered
    wrong, kept, unambiguous, asked = {}, {}, {}, {}
    for row in rows:
        family = row["family"]
        scene = _scene(row["image_uri"])
        by_label = {o.label: o for o in scene.objects}
        a, b = (by_label[o["label"]] for o in row["objects"])
        if family == "depth_order":
            closer, farther = (a, b) if a.z_front < b.z_front else (b, a)
            expected = closer.label if row["template_id"].startswith("depth_order/0/") else farther.label
        else:
            expected = "left" if a.box_px[0] + a.box_px[2] < b.box_px[0] + b.box_px[2] else "right"
        wrong[family] = wrong.get(family, 0) + (row["answer"] != expected)
        kept[family] = kept.get(family, 0) + 1
        asked.setdefault(family, set()).add((row["image_uri"], frozenset(o["label"] for o in row["objects"])))
    for index in range(loaded.spec.source.images):
        uri = scene_uri(loaded.spec.source, loaded.spec.seed, index)
        for family, pairs in _unambiguous(loaded, uri).items():
            unambiguous.setdefault(family, set()).update((uri, key) for key in pairs)
    for family in ("depth_order", "left_right"):
        share = len(asked[family] & unambiguous[family]) / len(unambiguous[family])
        print(f"{depth_from}: {family} {kept[family]} kept, {wrong.get(family, 0)} wrong, "
              f"{share:.0%} of {len(unambiguous[family])} unambiguous pairs asked")
        if depth_from == "box" and family == "depth_order":
            assert wrong[family] > 0  # the whole box takes the occluder's depth: why forge does not
            continue
        assert wrong.get(family, 0) == 0, family
        assert share >= KEPT_AT_LEAST.get(depth_from, 0), family

