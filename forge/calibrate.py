"""`forge calibrate`: how often a spec's kept answers are wrong, measured against ground truth, as a
function of each family's `min_margin`; and the smallest margin whose error is within a target.

The spec's own perception runs on the truth set's images (its models; or, with `boxes="truth"`,
the true boxes with the model's depth). Each perceived object is matched to a true object of the
same label (IoU >= `match_iou`); every candidate that passes every rule but `min_margin` is then
judged twice, once from perception and once with the true objects put in its place
(`Shape.with_truth`). A kept answer is wrong when it names an object that matches no true one, or
when the truth decides it the other way (`Relation.decision`). An answer in metres (`Relation.measures`)
has an error instead: its relative difference from the value the true objects give; its family's curve
is the median and 90th percentile of that error as `min_margin` rises, and the proposal is the smallest
margin whose 90th percentile is within `metric_target`.
"""

from __future__ import annotations

import csv
import math
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import daft
import numpy as np
import polars as pl

from forge.errors import ForgeError
from forge.judge.chunk import Judge
from forge.judge.objects import OBJECT_COLUMNS, chunk_objects
from forge.judge.shapes import Truth
from forge.judge.verify import MARGIN_RULE
from forge.perception.annotations import DEPTH_SUFFIX, check_image, perceive_annotations
from forge.perception.records import LIFTED_FIELDS, RECORD_SCHEMA, Detection, image_record, measured_objects
from forge.perception.table import RECORD_POLARS
from forge.perception.tasks import RunOptions
from forge.sources.annotated import stage
from forge.spec.load import LoadedSpec
from forge.spec.schema import AnnotationGrounding, AnnotationsSource, ImagesSource, ModelsPerception

MATCH_IOU = 0.5
TRUTH_FIELDS = ("x1", "y1", "x2", "y2", "depth", "depth_spread", "occlusion", "depth_source", "mask", *LIFTED_FIELDS)
METRIC_TARGET = 0.2  # the 90th percentile of relative error a proposed metric margin keeps within
GRID_POINTS = 101


@dataclass(frozen=True)
class TruthSet:
    """A ground-truth folder: `instances.json` (COCO, with `segmentation` where there are masks),
    `images/` and `depth/` (`<image stem>.png` in millimetres or `.npy` in metres)."""

    source: AnnotationsSource

    @classmethod
    def open(cls, folder: Path, depth_kind: str = "metric") -> TruthSet:
        folder = folder.resolve()
        for name, is_dir in (("instances.json", False), ("images", True), ("depth", True)):
            path = folder / name
            if not (path.is_dir() if is_dir else path.is_file()):
                raise ForgeError(f"--truth {folder}: no {name}{'/' if is_dir else ''} there; a truth folder holds "
                                 "instances.json (COCO), images/ and depth/ (<image stem>.png in mm or .npy in m)")
        suffixes = {p.suffix for p in (folder / "depth").iterdir()}
        formats = [fmt for fmt, suffix in DEPTH_SUFFIX.items() if suffix in suffixes]
        if len(formats) != 1:
            raise ForgeError(f"--truth {folder}/depth: expected depth maps as .png (16-bit mm) or .npy (metres), "
                             f"one kind, found {sorted(suffixes) or 'no files'}")
        return cls(AnnotationsSource(kind="annotations", instances=str(folder / "instances.json"),
                                     images=str(folder / "images"), depth=str(folder / "depth"),
                                     depth_format=formats[0], depth_kind=depth_kind))

    def records(self, loaded: LoadedSpec, db: Path) -> pl.DataFrame:
        """The true perception records: annotated boxes, depth over each mask (else the occlusion-aware box);
        the truth's annotations are staged in `db` (once per file)."""
        objects = loaded.spec.objects.model_copy(update={"depth_from": "auto"})
        annotated = stage(self.source, Path("/"), db, check_image)
        return _collect(perceive_annotations(self.source, Path("/"), objects, annotated.read(0, annotated.rows)))


def _collect(frame) -> pl.DataFrame:
    batches = [pl.from_arrow(batch) for batch in frame.to_arrow_iter()]
    out = pl.concat(batches) if batches else pl.DataFrame(schema=RECORD_POLARS)
    assert isinstance(out, pl.DataFrame)
    return out.select(RECORD_SCHEMA.names).cast(RECORD_POLARS, strict=False)


def perceived_records(loaded: LoadedSpec, truth: TruthSet, truth_records: pl.DataFrame, boxes: str, db: Path,
                      options: RunOptions) -> pl.DataFrame:
    """The spec's perception of the truth images: its models run on them (cached in `db`), or its
    annotations / records table restricted to the images the truth set has."""
    spec = loaded.spec
    kind = spec.perception.kind
    if kind == "synthetic":
        raise ForgeError(f"{loaded.path}: perception is synthetic: its scenes are exact, there is nothing to calibrate; "
                         "calibrate a spec whose perception is models, annotations or records")
    if boxes == "truth" and kind != "models":
        raise ForgeError(f"--boxes truth: only for perception: models (true boxes with the model's depth); "
                         f"{loaded.path} has perception: {kind}")
    if kind == "models":
        return _model_records(loaded, truth, truth_records, boxes, db, options)
    if kind == "annotations":
        from forge.perception.perceivers import AnnotationPerceiver

        perceiver = AnnotationPerceiver(loaded, None)
        perceiver.inputs(db)
        records = _collect(perceiver.records(0, perceiver.items))
    else:
        from forge.perception.table import RecordTable

        table = RecordTable.open(loaded.resolve(spec.source.path))
        records = table.read(0, table.rows)
    records = records.filter(pl.col("image_id").is_in(truth_records["image_id"].drop_nulls().implode()))
    if records.is_empty():
        raise ForgeError(f"{loaded.path}: none of its images is in the truth set {Path(truth.source.images)} "
                         "(images are matched by content); point --truth at annotations of the same pictures")
    return records


def _model_records(loaded: LoadedSpec, truth: TruthSet, truth_records: pl.DataFrame, boxes: str, db: Path,
                   options: RunOptions) -> pl.DataFrame:
    from forge.perception.cache import PerceptionCache
    from forge.perception.model_perceiver import ModelPerceiver
    from forge.perception.camera import Camera
    from forge.perception.gravity import Gravity
    from forge.perception.models import camera_for, decode_depth_map
    from forge.perception.tasks import TASKS, perception_label
    from forge.store import Store

    perception = loaded.spec.perception
    assert isinstance(perception, ModelsPerception)
    update: dict = {"source": ImagesSource(kind="images", path=truth.source.images)}
    if isinstance(perception.grounding, AnnotationGrounding):  # the truth's own boxes, with the spec's models
        from forge.sources.annotated import fingerprint

        grounding = perception.grounding.model_copy(update={"fingerprint": fingerprint(truth.source, Path("/"))})
        update = {"source": truth.source, "perception": perception.model_copy(update={"grounding": grounding})}
        boxes = "perceived"
    on_truth = LoadedSpec(loaded.spec.model_copy(update=update), loaded.path, loaded.spec_hash)
    perceiver = ModelPerceiver(on_truth, options, None)
    store = Store(db)
    with store.build_lock(f"{loaded.spec.name} (forge calibrate)", lambda m: print(m, file=sys.stderr)), \
            tempfile.TemporaryDirectory(dir=store.path) as index:
        perceiver.inputs(db)
        perceiver.prepare(store, Path(index))  # writes the perception cache: never at the same time as a build
        if boxes == "perceived":
            return _collect(perceiver.records(0, perceiver.items))
    key = TASKS["depth"].cache_key(perception)
    ids = truth_records["image_id"].drop_nulls().to_list()
    cached_maps = PerceptionCache(store).frame(TASKS["depth"].table, key).where(daft.col("image_id").is_in(ids))
    maps = {row["image_id"]: row for row in cached_maps.to_pylist()}
    objects = loaded.spec.objects
    out = []
    for record in truth_records.filter(pl.col("image_id").is_in(list(maps))).to_dicts():
        cached = maps[record["image_id"]]
        width, height = record["width"], record["height"]
        source = record["camera_source"]  # the truth set's own camera (its K or EXIF), else the default
        known = {source: Camera(record["fx"], record["fy"], record["cx"], record["cy"], source)} if source != "default" else {}
        camera, scale = camera_for(objects, width, height, known, cached["fov"])
        depth = decode_depth_map(cached["depth"], cached["rows"], cached["cols"]) * np.float32(scale)
        gravity = (Gravity((record["up_x"], record["up_y"], record["up_z"]), record["camera_height"], "annotation")
                   if record["gravity_source"] == "annotation" else None)
        found = [Detection(o["label"], o["score"], (o["x1"], o["y1"], o["x2"], o["y2"]), o["mask"]) for o in record["objects"]]
        measured, geometry = measured_objects(found, depth, (width, height), objects.depth_percentile, objects.depth_from,
                                              camera, gravity, cached["kind"] == "metric")
        out.append(image_record(record["image_id"], record["image_uri"], width, height, cached["kind"],
                                perception_label(perception) + ";boxes=truth", measured, geometry))
    return pl.DataFrame(out, schema=RECORD_POLARS)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (n, 4) with every box of `b` (m, 4)."""
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def match(perceived: list[dict], true: list[dict], min_iou: float = MATCH_IOU) -> list[int | None]:
    """For each perceived object, the true object of the same label it overlaps most (greedy by IoU,
    each true object used once), or None."""
    out: list[int | None] = [None] * len(perceived)
    if not perceived or not true:
        return out
    box = lambda o: [o["x1"], o["y1"], o["x2"], o["y2"]]  # noqa: E731
    overlap = _iou(np.array([box(o) for o in perceived], float), np.array([box(o) for o in true], float))
    same = np.array([[p["label"] == t["label"] for t in true] for p in perceived])
    overlap = np.where(same, overlap, 0.0)
    used: set[int] = set()
    for flat in np.argsort(-overlap, axis=None, kind="stable"):
        i, j = divmod(int(flat), len(true))
        if overlap[i, j] < min_iou:
            break
        if out[i] is None and j not in used:
            out[i] = j
            used.add(j)
    return out


def truth_for(perceived: pl.DataFrame, truth_records: pl.DataFrame, loaded: LoadedSpec, min_iou: float) -> Truth:
    """Per perceived object, its matched true object's columns (`Truth`), in the perceived chunk's numbering."""
    by_id = {r["image_id"]: r for r in truth_records.filter(pl.col("error").is_null()).to_dicts()}
    substituted, matched, counts = [], [], []
    for img, record in enumerate(perceived.filter(pl.col("error").is_null()).to_dicts()):
        true = by_id.get(record["image_id"], {"objects": []})["objects"]
        pairs = match(record["objects"], true, min_iou)
        objects = [{**o, **{k: true[j][k] for k in TRUTH_FIELDS}} if j is not None else o
                   for o, j in zip(record["objects"], pairs)]
        substituted.append({**record, "objects": objects})
        matched += [{"img": img, "idx": i, "matched": j is not None} for i, j in enumerate(pairs)]
        labels: dict[str, int] = {}
        for o in true:
            labels[o["label"]] = labels.get(o["label"], 0) + 1
        counts += [{"img": img, "label": label, "count": n} for label, n in labels.items()]
    chunk = chunk_objects(pl.DataFrame(substituted, schema=RECORD_POLARS), loaded.spec)
    columns = [c for c in OBJECT_COLUMNS if c in chunk.objects.columns and c not in ("label", "idx")]
    objects = chunk.objects.select("img", "idx", *columns).join(
        pl.DataFrame(matched, schema={"img": pl.UInt32, "idx": pl.Int64, "matched": pl.Boolean}), on=["img", "idx"])
    return Truth(objects, pl.DataFrame(counts, schema={"img": pl.UInt32, "label": pl.String, "count": pl.Int64}))


@dataclass
class Curve:
    """One family's kept answers and wrong answers as `min_margin` rises."""

    family: str
    current: float  # the spec's min_margin
    margins: np.ndarray  # of every candidate that passes every rule but min_margin (and could be checked)
    wrong: np.ndarray
    matched_share: float
    unverifiable: int = 0  # candidates whose true answer is undefined (a true object without depth)
    proposed: float | None = None

    def at(self, threshold: float) -> tuple[int, int]:
        """(kept, wrong) at min_margin = threshold."""
        kept = self.margins >= threshold
        return int(kept.sum()), int((kept & self.wrong).sum())

    def grid(self) -> list[float]:
        top = float(np.quantile(self.margins, 0.99)) if self.margins.size else 1.0
        top = top if math.isfinite(top) and top > 0 else 1.0
        return sorted(set(np.round(np.linspace(0, top, GRID_POINTS), 6).tolist()) | {self.current}
                      | ({self.proposed} if self.proposed is not None else set()))

    def propose(self, target: float, min_kept: int) -> None:
        """The smallest margin (rounded up to 0.01) keeping at least `min_kept` answers at most `target` wrong."""
        order = np.argsort(-self.margins, kind="stable")
        margins, wrong = self.margins[order], np.cumsum(self.wrong[order])
        kept = np.arange(1, margins.size + 1)
        last = np.r_[margins[1:] != margins[:-1], True]  # ties: a threshold keeps every equal margin
        ok = last & (kept >= min_kept) & (wrong <= target * kept)
        self.proposed = None
        for i in np.flatnonzero(ok)[::-1]:  # from the smallest margin up
            # every threshold above the next smaller margin keeps the same answers: take the smallest on a 0.01 grid
            below = float(margins[i + 1]) if i + 1 < margins.size else -math.inf
            rounded = max(0.0, math.floor(below * 100 + 1e-9) / 100 + 0.01) if below >= 0 else 0.0
            if rounded > margins[i]:
                rounded = math.ceil(max(float(margins[i]), 0.0) * 100 - 1e-9) / 100
            kept_there, wrong_there = self.at(rounded)
            if kept_there >= min_kept and wrong_there <= target * kept_there:
                self.proposed = rounded
                return


@dataclass
class MetricCurve:
    """One metric family's kept answers and their relative errors as `min_margin` (metres) rises."""

    family: str
    current: float
    margins: np.ndarray
    errors: np.ndarray  # relative error of each candidate's answer (the largest of its numbers')
    matched_share: float
    proposed: float | None = None

    def at(self, threshold: float) -> tuple[int, float | None, float | None]:
        """(kept, median error, 90th percentile error) at min_margin = threshold."""
        kept = self.errors[self.margins >= threshold]
        if not kept.size:
            return 0, None, None
        return int(kept.size), float(np.median(kept)), float(np.percentile(kept, 90))

    def grid(self) -> list[float]:
        top = float(np.quantile(self.margins, 0.99)) if self.margins.size else 1.0
        return sorted(set(np.round(np.linspace(0, top, GRID_POINTS), 6).tolist()) | {self.current}
                      | ({self.proposed} if self.proposed is not None else set()))

    def propose(self, target: float, min_kept: int) -> None:
        """The smallest margin on the grid keeping at least `min_kept` answers whose 90th percentile error
        is within `target`."""
        self.proposed = next((t for t in self.grid() if (kept := self.at(t))[0] >= min_kept and kept[2] <= target), None)


@dataclass
class Calibration:
    spec_path: Path
    truth_images: int
    perceived_images: int
    target: float
    curves: list[Curve] = field(default_factory=list)
    metric: list[MetricCurve] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"forge calibrate {self.spec_path}: {self.perceived_images} of {self.truth_images} truth images perceived; "
               f"target: at most {self.target:.1%} of kept answers wrong"]
        for curve in self.curves:
            total = curve.margins.size
            out.append(f"{curve.family}: {total} candidates pass every rule but min_margin; "
                       f"{curve.matched_share:.0%} of the objects they name match a true object"
                       + (f"; {curve.unverifiable} without a true answer (no true depth), left out" if curve.unverifiable else ""))
            out.append(f"  {'min_margin':>10}  {'kept':>7}  {'kept %':>7}  {'wrong':>6}  {'error %':>7}")
            shown = sorted({*np.round(np.linspace(0, max(curve.grid()), 11), 2).tolist(), curve.current,
                            *([curve.proposed] if curve.proposed is not None else [])})
            for threshold in shown:
                kept, wrong = curve.at(threshold)
                mark = " <- spec" if threshold == curve.current else ""
                mark += " <- proposed" if threshold == curve.proposed else ""
                out.append(f"  {threshold:>10.2f}  {kept:>7}  {_share(kept, total):>7}  {wrong:>6}  {_share(wrong, kept):>7}{mark}")
            if curve.proposed is None:
                out.append(f"  no min_margin keeps enough answers at most {self.target:.1%} wrong: this perception "
                           "cannot be trusted for this family on this truth set")
        for curve in self.metric:
            out.append(f"{curve.family}: {curve.margins.size} answers in metres pass every rule but min_margin (metres); "
                       f"{curve.matched_share:.0%} of the objects they name match a true object; error = |answer - "
                       "truth| / truth")
            out.append(f"  {'min_margin':>10}  {'kept':>7}  {'median':>7}  {'90th %':>7}")
            shown = sorted({*np.round(np.linspace(0, max(curve.grid()), 11), 2).tolist(), curve.current,
                            *([curve.proposed] if curve.proposed is not None else [])})
            for threshold in shown:
                kept, median, p90 = curve.at(threshold)
                mark = (" <- spec" if threshold == curve.current else "") + (" <- proposed" if threshold == curve.proposed else "")
                out.append(f"  {threshold:>10.2f}  {kept:>7}  {_percent(median):>7}  {_percent(p90):>7}{mark}")
            if curve.proposed is None:
                out.append(f"  no min_margin keeps enough answers with a 90th percentile error within {METRIC_TARGET:.0%}")
        for family, why in self.skipped.items():
            out.append(f"{family}: not calibrated: {why}")
        proposals = [c for c in [*self.curves, *self.metric] if c.proposed is not None]
        if proposals:
            out.append(f"# proposed margins; paste into {self.spec_path} (set each family's min_margin):")
            out.append("families:")
            for curve in proposals:
                out.append(f"  - name: {curve.family}")
                if isinstance(curve, MetricCurve):
                    kept, median, p90 = curve.at(curve.proposed)
                    out.append(f"    min_margin: {curve.proposed:.2f}   # median error {_percent(median)}, 90th percentile "
                               f"{_percent(p90)} of {kept} kept; was {curve.current:g}")
                    continue
                kept, wrong = curve.at(curve.proposed)
                out.append(f"    min_margin: {curve.proposed:.2f}   # {_share(wrong, kept)} wrong of {kept} kept "
                           f"({_share(kept, curve.margins.size)} of candidates); was {curve.current:g}")
        return out


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _percent(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "-"


def calibrate(loaded: LoadedSpec, truth: TruthSet, db: Path, target: float = 0.01, boxes: str = "perceived",
              min_iou: float = MATCH_IOU, min_kept: int = 30, options: RunOptions = RunOptions()) -> Calibration:
    truth_records = truth.records(loaded, db)
    usable = truth_records.filter(pl.col("error").is_null())["image_id"].implode()
    perceived = perceived_records(loaded, truth, truth_records, boxes, db, options)
    perceived = perceived.filter(pl.col("image_id").is_in(usable))  # no truth, nothing to say right or wrong
    seen = perceived.filter(pl.col("error").is_null())
    result = Calibration(loaded.path, truth_records.filter(pl.col("error").is_null()).height, seen.height, target)
    known = truth_for(perceived, truth_records, loaded, min_iou)
    chunk = chunk_objects(perceived, loaded.spec)
    for family in Judge(loaded, loaded.spec.seed).families:
        relation = family.relation
        assert family.rules[-1][0] == MARGIN_RULE
        judged, _ = family.judged(chunk)
        eligible = judged.filter(pl.col("reject").is_in([0, len(family.rules)])).with_row_index("candidate")
        if relation.measures:
            curve = _metric_curve(family.name, family.family.min_margin, relation.measures, eligible,
                                  family.shape.with_truth(eligible, known).sort("candidate"))
            if curve is None:
                result.skipped[family.name] = "no candidate passes its other rules and names true objects with 3D numbers"
            else:
                curve.propose(METRIC_TARGET, min_kept)
                result.metric.append(curve)
            continue
        decided = relation.decision()
        checked = family.shape.with_truth(eligible, known).sort("candidate")
        mine = eligible.select([d.alias(f"mine_{i}") for i, d in enumerate(decided)])
        true = checked.select("matched", *[d.alias(f"true_{i}") for i, d in enumerate(decided)])
        verdict = pl.concat([eligible.select("margin"), true, mine], how="horizontal").with_columns(
            undefined=pl.any_horizontal(False, *[pl.col(f"true_{i}").is_null() for i in range(len(decided))]),
            differs=pl.any_horizontal(False, *[(pl.col(f"mine_{i}") != pl.col(f"true_{i}")).fill_null(True)
                                               for i in range(len(decided))]))
        verdict = verdict.with_columns(undefined=pl.col("undefined") & pl.col("matched"))
        usable = verdict.filter(~pl.col("undefined"))
        if usable.is_empty():
            result.skipped[family.name] = "no candidate passes its other rules on the truth images"
            continue
        curve = Curve(family.name, family.family.min_margin, usable["margin"].to_numpy().astype(float),
                      (~usable["matched"] | usable["differs"]).to_numpy(), float(usable["matched"].mean()),
                      int(verdict["undefined"].sum()))
        curve.propose(target, min_kept)
        result.curves.append(curve)
    if not result.curves and not result.metric and not result.skipped:
        raise ForgeError(f"{loaded.path}: no family could be calibrated")
    return result


def _metric_curve(name: str, current: float, measures: dict[str, pl.Expr], eligible: pl.DataFrame,
                  checked: pl.DataFrame) -> MetricCurve | None:
    """Relative errors of a metric family's candidates against the same numbers from the true objects;
    candidates naming an object that matches no true one (or has no true 3D numbers) are left out."""
    mine = eligible.select([expr.alias(key) for key, expr in measures.items()])
    true = checked.select("matched", *[expr.alias(key) for key, expr in measures.items()])
    errors = pl.concat([eligible.select("margin"), true.rename({k: f"true_{k}" for k in measures}), mine], how="horizontal")
    errors = errors.with_columns(error=pl.max_horizontal([(pl.col(k) - pl.col(f"true_{k}")).abs() / pl.col(f"true_{k}")
                                                         for k in measures]))
    usable = errors.filter(pl.col("matched") & pl.col("error").is_not_null() & pl.col("error").is_finite())
    if usable.is_empty():
        return None
    return MetricCurve(name, current, usable["margin"].to_numpy().astype(float), usable["error"].to_numpy().astype(float),
                       float(eligible.height and usable.height / eligible.height))


def write_csv(result: Calibration, path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["family", "min_margin", "kept", "kept_fraction", "wrong", "error", "median_error", "p90_error"])
        for curve in result.curves:
            for threshold in curve.grid():
                kept, wrong = curve.at(threshold)
                writer.writerow([curve.family, f"{threshold:.6g}", kept, f"{kept / max(curve.margins.size, 1):.6f}", wrong,
                                 f"{wrong / kept:.6f}" if kept else "", "", ""])
        for metric in result.metric:  # answers in metres: relative errors instead of wrong answers
            for threshold in metric.grid():
                kept, median, p90 = metric.at(threshold)
                writer.writerow([metric.family, f"{threshold:.6g}", kept, f"{kept / max(metric.margins.size, 1):.6f}", "", "",
                                 f"{median:.6f}" if median is not None else "", f"{p90:.6f}" if p90 is not None else ""])


PANEL = (560, 300)  # width, height of one family's plot
PLOT = (60, 30, 500, 250)  # plotting area inside a panel: left, top, right, bottom


def write_png(result: Calibration, path: Path) -> None:
    """One panel per comparative family: error % of kept answers (red, left axis) and answers kept % (blue,
    right axis) against min_margin; dashed: the target, the spec's margin (grey), the proposal (green).
    (Families answering in metres are in the text and the CSV.)"""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=12)
    width, height = PANEL
    image = Image.new("RGB", (width, height * max(len(result.curves), 1)), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = PLOT
    for n, curve in enumerate(result.curves):
        y0 = n * height
        grid = curve.grid()
        x_max = max(grid) or 1.0
        points = [(t, *curve.at(t)) for t in grid]
        error_max = max([w / k for _, k, w in points if k] + [result.target * 2, 1e-9])

        def x(t: float) -> float:
            return left + (right - left) * t / x_max

        def y(share: float, scale: float) -> float:
            return y0 + bottom - (bottom - top) * share / scale

        draw.rectangle((left, y0 + top, right, y0 + bottom), outline="black")
        draw.text((left, y0 + 8), f"{curve.family}: error of kept answers (red) and answers kept (blue)", fill="black", font=font)
        draw.text((left, y0 + bottom + 6), "0", fill="black", font=font)
        draw.text((right - 40, y0 + bottom + 6), f"{x_max:.2f}", fill="black", font=font)
        draw.text(((left + right) / 2 - 30, y0 + bottom + 20), "min_margin", fill="black", font=font)
        draw.text((4, y0 + top - 6), f"{error_max:.0%}", fill="red", font=font)
        draw.text((4, y0 + bottom - 6), "0%", fill="red", font=font)
        draw.text((right + 6, y0 + top - 6), "100%", fill="blue", font=font)
        draw.text((right + 6, y0 + bottom - 6), "0%", fill="blue", font=font)
        total = max(curve.margins.size, 1)
        draw.line([(x(t), y(k / total, 1.0)) for t, k, _ in points], fill="blue", width=2)
        errors = [(x(t), y(w / k, error_max)) for t, k, w in points if k]
        if len(errors) > 1:
            draw.line(errors, fill="red", width=2)
        _dashed(draw, [(left, y(result.target, error_max)), (right, y(result.target, error_max))], "red")
        _dashed(draw, [(x(min(curve.current, x_max)), y0 + top), (x(min(curve.current, x_max)), y0 + bottom)], "grey")
        if curve.proposed is not None:
            _dashed(draw, [(x(curve.proposed), y0 + top), (x(curve.proposed), y0 + bottom)], "green")
    image.save(path)


def _dashed(draw, line: list[tuple[float, float]], fill: str, dash: float = 6.0) -> None:
    (x1, y1), (x2, y2) = line
    length = max(math.hypot(x2 - x1, y2 - y1), 1e-9)
    for start in np.arange(0, length, 2 * dash):
        end = min(start + dash, length)
        draw.line([(x1 + (x2 - x1) * start / length, y1 + (y2 - y1) * start / length),
                   (x1 + (x2 - x1) * end / length, y1 + (y2 - y1) * end / length)], fill=fill, width=1)
