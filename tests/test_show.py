"""`forge show` draws each row's boxes where its objects are, with the row's text, as PNGs or HTML."""

from __future__ import annotations

import base64
import html
import io
import re

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import demo_dict, read_table, write_spec
from forge.build import run_build
from forge.cli import main
from forge.draw import OBJECT_COLORS
from forge.spec.load import load_spec
from scene_data import make_dataset, use_annotations


@pytest.fixture(scope="module")
def db(demo_db):
    return demo_db  # only read here


def _show(*args: str) -> str:
    result = CliRunner().invoke(main, ["show", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _edge_points(box: list[float], size: tuple[int, int]) -> list[tuple[int, int]]:
    """A pixel inside each of the 3-pixel-wide box outline's four sides, at the side's middle."""
    w, h = size
    x1, y1, x2, y2 = round(box[0] * (w - 1)), round(box[1] * (h - 1)), round(box[2] * (w - 1)), round(box[3] * (h - 1))
    mx, my = (x1 + x2) // 2, (y1 + y2) // 2
    return [(x1 + 1, my), (x2 - 1, my), (mx, y1 + 1), (mx, y2 - 1)]


def _assert_boxes_drawn(image: Image.Image, row: dict) -> None:
    pixels = np.asarray(image.convert("RGB"))
    for position, obj in enumerate(row["objects"]):
        color = OBJECT_COLORS[position]
        hits = [tuple(pixels[y, x]) == color for x, y in _edge_points(obj["box"], image.size)]
        # a later box or label may cover one side; the last object's box is never covered
        assert sum(hits) >= (4 if position == len(row["objects"]) - 1 else 2), (row["qa_id"], obj, hits)


def test_pngs_draw_each_object_box_where_the_row_says(db, tmp_path):
    output = _show("--db", str(db), "--n", "6", "--out", str(tmp_path / "png"))
    assert "6 PNG files" in output
    rows = read_table(db).to_pylist()[:6]  # show picks the first rows in qa_id order
    files = sorted((tmp_path / "png").glob("*.png"))
    assert [f.name.split("_", 1)[1] for f in files] == [f"{r['family']}_{r['qa_id'][:12]}.png" for r in rows]
    for path, row in zip(files, rows):
        with Image.open(path) as png:
            assert png.width == 480  # 320x240 scenes at the default --size
            image = png.crop((0, 0, 480, 360))
            caption = np.asarray(png.convert("L").crop((0, 360, 480, png.height)))
        _assert_boxes_drawn(image, row)
        assert (caption < 100).any() and (caption == 255).mean() > 0.7  # dark text on the white strip

    # a box in the wrong place would fail: shift the row's boxes and the drawn edges no longer match
    moved = dict(rows[0], objects=[dict(o, box=[o["box"][0] + 0.05, *o["box"][1:]]) for o in rows[0]["objects"]])
    with Image.open(files[0]) as png, pytest.raises(AssertionError):
        _assert_boxes_drawn(png.crop((0, 0, 480, 360)), moved)


def test_html_page_embeds_drawn_images_and_escaped_text(db, tmp_path):
    _show("--db", str(db), "--family", "left_right", "--where", "margin > 0.2", "--n", "4", "--size", "320",
          "--out", str(tmp_path / "preview.html"))
    page = (tmp_path / "preview.html").read_text()
    rows = [r for r in read_table(db).to_pylist() if r["family"] == "left_right" and r["margin"] > 0.2][:4]
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(rows) == page.count("<figure>") == 4
    for data, row in zip(images, rows):
        assert html.escape(row["question"]) in page and row["qa_id"] in page
        assert f"<b>A: {html.escape(row['answer'])}</b>" in page
        assert f"margin: {row['margin']:.3f}" in page
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert image.size == (320, 240)
        _assert_boxes_drawn(image, row)


def _top_vs_bottom_brightness(image: Image.Image) -> tuple[float, float]:
    gray = np.asarray(image.convert("L"), dtype=np.float64)
    return gray[: gray.shape[0] // 6].mean(), gray[-gray.shape[0] // 6:].mean()


def test_depth_overlay_shows_near_bright_and_far_dark(db, tmp_path):
    _show("--db", str(db), "--n", "1", "--out", str(tmp_path / "plain"))
    _show("--db", str(db), "--n", "1", "--depth", "--out", str(tmp_path / "depth"))
    [plain] = (tmp_path / "plain").glob("*.png")
    [depth] = (tmp_path / "depth").glob("*.png")
    sky, ground = _top_vs_bottom_brightness(Image.open(plain).crop((0, 0, 480, 360)))
    assert sky > ground  # the rendered sky is light, the ground darker
    far, near = _top_vs_bottom_brightness(Image.open(depth).crop((0, 0, 480, 360)))
    assert near > far + 60  # with the overlay the far sky is dark, the near ground bright
    _assert_boxes_drawn(Image.open(depth).crop((0, 0, 480, 360)), read_table(db).to_pylist()[0])


def test_depth_overlay_for_annotation_builds_reads_their_depth_maps(tmp_path):
    make_dataset(tmp_path / "data", "png16_mm", count=6, clutter=False)
    spec = write_spec(tmp_path, use_annotations(demo_dict(), "png16_mm"))
    run_build(load_spec(spec), tmp_path / "db", echo=lambda _: None)
    result = CliRunner().invoke(main, ["show", "--db", str(tmp_path / "db"), "--n", "2", "--depth", "--out",
                                       str(tmp_path / "out")])
    assert result.exit_code == 0 and "no depth overlay" not in result.output, result.output
    for path in sorted((tmp_path / "out").glob("*.png")):
        far, near = _top_vs_bottom_brightness(Image.open(path).crop((0, 0, 480, 360)))
        assert near > far + 60


@pytest.mark.parametrize("args, message", [
    (["--family", "nope"], "no rows in table 'qa' match --family nope; check the filter"),
    (["--where", "margin > 5"], "no rows in table 'qa' match --where 'margin > 5'"),
    (["--where", "no_such_column = 1"], "no_such_column"),
    (["--table", "qa; drop"], "--table 'qa; drop': a table name is letters, digits and _"),
])
def test_bad_selection_is_one_line_error(db, tmp_path, args, message):
    result = CliRunner().invoke(main, ["show", "--db", str(db), *args, "--out", str(tmp_path / "x.html")])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and message in result.output, result.output
    assert not (tmp_path / "x.html").exists()


def _png_pictures(folder) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB"), dtype=np.int16) for p in sorted(folder.glob("*.png"))]


def _masks_drawn(db, tmp_path, rows: list[dict], masks_of) -> None:
    """With masks, each named object's mask pixels take a tint of its colour; without, nothing changes;
    pixels outside every mask and box are the same either way. `rows` are in qa_id order, as show draws them."""
    chosen = ("--where", "qa_id IN ({})".format(", ".join(f"'{row['qa_id']}'" for row in rows)))
    _show("--db", str(db), "--n", str(len(rows)), "--size", "320", *chosen, "--out", str(tmp_path / "masked"))
    _show("--db", str(db), "--n", str(len(rows)), "--size", "320", "--no-masks", *chosen, "--out", str(tmp_path / "plain"))
    tinted = 0
    for row, masked, plain in zip(rows, _png_pictures(tmp_path / "masked"), _png_pictures(tmp_path / "plain")):
        masks = masks_of(row)
        height = masks[0].shape[0] if masks and masks[0] is not None else 240
        masked, plain = masked[:height], plain[:height]  # the picture, not the caption strip
        covered = np.zeros(masked.shape[:2], bool)
        for position, (obj, mask) in enumerate(zip(row["objects"], masks)):
            if mask is None:
                continue
            inner = mask & np.roll(mask, 3, 0) & np.roll(mask, -3, 0) & np.roll(mask, 3, 1) & np.roll(mask, -3, 1)
            x1, y1, x2, y2 = (round(v * (s - 1)) for v, s in zip(obj["box"], (320, height, 320, height)))
            inner[max(y1 - 25, 0):y1 + 25, :] = False  # away from the box outline and the label
            inner[:, max(x1 - 4, 0):x1 + 4] = inner[:, max(x2 - 4, 0):x2 + 4] = inner[y2 - 4:y2 + 4, :] = False
            if inner.sum() < 20:
                continue
            expected = 0.6 * plain[inner] + 0.4 * np.array(OBJECT_COLORS[position])
            assert np.abs(masked[inner] - expected).max() <= 3, (row["qa_id"], obj["label"])
            tinted += 1
            covered |= mask
        for obj in row["objects"]:
            x1, y1, x2, y2 = (round(v * (s - 1)) for v, s in zip(obj["box"], (320, height, 320, height)))
            covered[max(y1 - 30, 0):y2 + 5, max(x1 - 5, 0):x2 + 5] = True
        assert (masked[~covered] == plain[~covered]).all()
    assert tinted >= max(2, len(rows) // 2)  # objects big enough to test inside their outline


def test_masks_of_synthetic_scenes_are_filled_in_their_objects_colour(db, tmp_path):
    from forge.perception.synthetic import render_uri

    # the five rows whose smallest object is largest: big enough to look inside their outlines
    rows = sorted(read_table(db).to_pylist(), key=lambda r: -min((o["box"][2] - o["box"][0]) * (o["box"][3] - o["box"][1])
                                                                for o in r["objects"]))[:5]
    rows.sort(key=lambda r: r["qa_id"])

    def masks_of(row):
        scene = render_uri(row["image_uri"])
        boxes = [(x1 / 320, y1 / 240, x2 / 320, y2 / 240) for x1, y1, x2, y2 in (o.box_px for o in scene.objects)]
        return [scene.mask(boxes.index(tuple(pytest.approx(v) for v in o["box"]))) for o in row["objects"]]

    _masks_drawn(db, tmp_path, rows, masks_of)


def test_masks_of_annotation_builds_come_from_their_segmentation(tmp_path):
    scenes = make_dataset(tmp_path / "data", "png16_mm", count=6, masks=True)
    spec = write_spec(tmp_path, use_annotations(demo_dict(), "png16_mm"))
    run_build(load_spec(spec), tmp_path / "db", echo=lambda _: None)
    rows = read_table(tmp_path / "db").to_pylist()[:4]

    def masks_of(row):
        scene = scenes[row["image_uri"].rsplit("/", 1)[1]]
        boxes = [(x1 / 320, y1 / 240, x2 / 320, y2 / 240) for x1, y1, x2, y2 in (o.box_px for o in scene.objects)]
        return [scene.mask(boxes.index(tuple(pytest.approx(v) for v in o["box"]))) for o in row["objects"]]

    _masks_drawn(tmp_path / "db", tmp_path, rows, masks_of)


def test_show_without_the_builds_spec_still_draws_the_rows(tmp_path):
    """Masks are looked up through the spec the build recorded; a spec moved since leaves them out, no more."""
    make_dataset(tmp_path / "data", "png16_mm", count=4, masks=True)
    spec = write_spec(tmp_path, use_annotations(demo_dict(), "png16_mm"))
    run_build(load_spec(spec), tmp_path / "db", echo=lambda _: None)
    spec.rename(tmp_path / "moved.yaml")
    result = CliRunner().invoke(main, ["show", "--db", str(tmp_path / "db"), "--n", "2", "--out", str(tmp_path / "png")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "png").glob("*.png"))) == 2
